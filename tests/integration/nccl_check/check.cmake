# The configure step refuses an nccl.h whose version is not the NCCL LibTorch was built with
# (cmake/oclNccl.cmake): c10d's NCCL options are sized by that header, so another version would
# corrupt memory at run time. Run by CTest on a CUDA LibTorch build (integration.nccl_check) as
#   cmake -DSOURCE_DIR=... -DWORK_DIR=... -DCMAKE_GENERATOR=... -DTorch_DIR=...
#         -DREAL_NCCL_DIR=... -P check.cmake
# It writes an nccl.h that claims NCCL 2.1.0 into WORK_DIR/include and configures ocl (library
# only) with it: the step must fail naming both versions. Then the same with the real header
# (REAL_NCCL_DIR) must pass, so the failure is the version's, not the set-up's.
cmake_minimum_required(VERSION 3.18)

foreach(var SOURCE_DIR WORK_DIR CMAKE_GENERATOR Torch_DIR REAL_NCCL_DIR)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "check.cmake: -D${var}=... is required")
  endif()
endforeach()
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}/include")

# The real header with its version lines replaced: everything else as LibTorch expects it.
file(READ "${REAL_NCCL_DIR}/nccl.h" header)
string(REGEX REPLACE "#define NCCL_MAJOR +[0-9]+" "#define NCCL_MAJOR 2" header "${header}")
string(REGEX REPLACE "#define NCCL_MINOR +[0-9]+" "#define NCCL_MINOR 1" header "${header}")
string(REGEX REPLACE "#define NCCL_PATCH +[0-9]+" "#define NCCL_PATCH 0" header "${header}")
file(WRITE "${WORK_DIR}/include/nccl.h" "${header}")

function(configure name include_dir)
  execute_process(
    COMMAND "${CMAKE_COMMAND}" -S "${SOURCE_DIR}" -B "${WORK_DIR}/${name}" -G "${CMAKE_GENERATOR}"
            "-DTorch_DIR=${Torch_DIR}" -DOCL_BUILD_TESTS=OFF -DOCL_BUILD_APPS=OFF -Wno-dev
            "-DOCL_NCCL_INCLUDE_DIR=${include_dir}"
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out TIMEOUT 300)
  set(rc "${rc}" PARENT_SCOPE)
  string(REGEX REPLACE "[ \n]+" " " flat "${out}")  # CMake wraps its error text
  set(out "${flat}" PARENT_SCOPE)
endfunction()

configure(wrong "${WORK_DIR}/include")
if(rc STREQUAL "0")
  message(FATAL_ERROR "nccl check: configuring with an nccl.h of NCCL 2.1.0 succeeded:\n${out}")
endif()
if(NOT out MATCHES "nccl.h is NCCL 2\\.1\\.0, but LibTorch was built with NCCL [0-9]+\\.[0-9]+\\.[0-9]+")
  message(FATAL_ERROR "nccl check: the configure step failed, but not naming both versions:\n${out}")
endif()
configure(right "${REAL_NCCL_DIR}")
if(NOT rc STREQUAL "0" OR NOT out MATCHES "ocl: CUDA LibTorch, with NCCL")
  message(FATAL_ERROR "nccl check: configuring with LibTorch's own nccl.h failed (${rc}):\n${out}")
endif()
message(STATUS "nccl check: a foreign nccl.h is refused naming both versions; LibTorch's is taken")
