# Defines ocl::spng, an imported target for libspng (PNG decoding and encoding in every build;
# Debian's libspng-dev, or the GPU kit). libspng ships a pkg-config file but no CMake package,
# so the header and library are looked up directly. Included by ocl's own build and by the
# installed oclConfig.cmake.
if(TARGET ocl::spng)
  return()
endif()
find_path(OCL_SPNG_INCLUDE_DIR spng.h)
find_library(OCL_SPNG_LIBRARY NAMES spng)
if(NOT OCL_SPNG_INCLUDE_DIR OR NOT OCL_SPNG_LIBRARY)
  message(FATAL_ERROR "libspng not found (header: '${OCL_SPNG_INCLUDE_DIR}', library: "
                      "'${OCL_SPNG_LIBRARY}'): install libspng-dev (bash scripts/install-deps.sh), "
                      "or give the GPU kit's folder in CMAKE_PREFIX_PATH (scripts/make-gpu-kit.sh)")
endif()
add_library(ocl::spng UNKNOWN IMPORTED)
set_target_properties(ocl::spng PROPERTIES
  IMPORTED_LOCATION "${OCL_SPNG_LIBRARY}"
  INTERFACE_INCLUDE_DIRECTORIES "${OCL_SPNG_INCLUDE_DIR}")
