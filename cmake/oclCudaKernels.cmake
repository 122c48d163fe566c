# ocl::ops' CUDA kernels (src/ops/kernels.cu, with cuBLASLt), compiled by nvcc where LibTorch is a
# CUDA build.
# Elsewhere the ops layer has its composites and the kernels' host emulation only.
# OCL_CUDA_KERNELS: AUTO (where nvcc is found), ON (stop the configure step without nvcc), OFF.
# The kernels' GPUs are LibTorch's choice, as for its own extensions: TORCH_CUDA_ARCH_LIST (a
# CMake or environment variable, "8.0;9.0"), else the GPU of the building machine, else
# LibTorch's list of every architecture it supports (slow to compile).
set(OCL_CUDA_KERNELS AUTO CACHE STRING "Build ocl::ops' CUDA kernels: AUTO, ON, OFF")
set_property(CACHE OCL_CUDA_KERNELS PROPERTY STRINGS AUTO ON OFF)
set(OCL_CUDA_KERNELS_USED OFF)
if(OCL_TORCH_CUDA AND NOT OCL_CUDA_KERNELS STREQUAL "OFF")
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    enable_language(CUDA)
    set(OCL_CUDA_KERNELS_USED ON)
    # nvcc may compile host code with another GCC than the C++ compiler (Debian's CUDA 12.4
    # takes g++-13 beside Debian 13's g++-14); that GCC's runtime folder, which CMake adds to
    # every link holding CUDA objects, would put its older libstdc++ before the one the C++ code
    # needs. Kept: the CUDA folders, and GCC folders the C++ compiler links from itself.
    set(ocl_cuda_link_dirs)
    foreach(dir IN LISTS CMAKE_CUDA_IMPLICIT_LINK_DIRECTORIES)
      if(NOT dir MATCHES "/gcc/" OR dir IN_LIST CMAKE_CXX_IMPLICIT_LINK_DIRECTORIES)
        list(APPEND ocl_cuda_link_dirs "${dir}")
      endif()
    endforeach()
    set(CMAKE_CUDA_IMPLICIT_LINK_DIRECTORIES "${ocl_cuda_link_dirs}")
  elseif(OCL_CUDA_KERNELS STREQUAL "ON")
    message(FATAL_ERROR "ocl: OCL_CUDA_KERNELS=ON, but no CUDA compiler (nvcc) was found: set "
                        "CMAKE_CUDA_COMPILER, or OCL_CUDA_KERNELS=AUTO to build without them")
  endif()
elseif(OCL_CUDA_KERNELS STREQUAL "ON")
  message(FATAL_ERROR "ocl: OCL_CUDA_KERNELS=ON needs a CUDA LibTorch")
endif()

if(OCL_CUDA_KERNELS_USED)
  # An object library of its own: nvcc takes none of the C++ targets' warning flags or their
  # precompiled header; its objects become part of libocl.
  add_library(ocl_cuda_kernels OBJECT src/ops/kernels.cu)
  set_target_properties(ocl_cuda_kernels PROPERTIES CUDA_STANDARD 17 CUDA_STANDARD_REQUIRED ON
                        POSITION_INDEPENDENT_CODE ON)
  target_link_libraries(ocl_cuda_kernels PRIVATE torch)
  target_compile_options(ocl_cuda_kernels PRIVATE
    $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra,-Wno-unused-parameter>)
  if(OCL_WERROR)
    target_compile_options(ocl_cuda_kernels PRIVATE
      $<$<COMPILE_LANGUAGE:CUDA>:--Werror=all-warnings -Xcompiler=-Werror>)
  endif()
  target_sources(ocl PRIVATE $<TARGET_OBJECTS:ocl_cuda_kernels>)
  # kernels.cu calls cuBLASLt (a weight gradient's GEMM with the bias gradient in its epilogue),
  # a library LibTorch links itself but does not pass on.
  if(NOT TARGET CUDA::cublasLt)
    find_package(CUDAToolkit REQUIRED)
  endif()
  target_link_libraries(ocl PRIVATE CUDA::cublasLt)
  string(REGEX MATCHALL "code=sm_[0-9a-z]+" ocl_cuda_codes "${CMAKE_CUDA_FLAGS}")
  string(REPLACE "code=sm_" "" ocl_cuda_codes "${ocl_cuda_codes}")
  message(STATUS "ocl: CUDA kernels (ocl::ops) for sm ${ocl_cuda_codes}, "
                 "${CMAKE_CUDA_COMPILER_ID} ${CMAKE_CUDA_COMPILER_VERSION}")
else()
  target_sources(ocl PRIVATE src/ops/no_cuda_kernels.cpp)
  if(OCL_TORCH_CUDA)
    message(STATUS "ocl: no CUDA compiler: ocl::ops takes its composites on the GPU too")
  endif()
endif()
