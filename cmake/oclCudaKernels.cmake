# ocl::ops' CUDA kernels (src/ops/kernels.cu), compiled by nvcc where LibTorch is a CUDA build.
# Elsewhere the ops layer has its composites and the kernels' host emulation only.
# OCL_CUDA_KERNELS: AUTO (where nvcc is found), ON (stop the configure step without nvcc), OFF.
# The kernels' GPUs: CMAKE_CUDA_ARCHITECTURES (default 80;90: A100 and H100).
set(OCL_CUDA_KERNELS AUTO CACHE STRING "Build ocl::ops' CUDA kernels: AUTO, ON, OFF")
set_property(CACHE OCL_CUDA_KERNELS PROPERTY STRINGS AUTO ON OFF)
set(OCL_CUDA_KERNELS_USED OFF)
if(OCL_TORCH_CUDA AND NOT OCL_CUDA_KERNELS STREQUAL "OFF")
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES 80 90)
    endif()
    enable_language(CUDA)
    set(OCL_CUDA_KERNELS_USED ON)
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
  set_property(SOURCE src/ops/host_kernels.cpp APPEND PROPERTY
    COMPILE_DEFINITIONS OCL_WITH_CUDA_KERNELS)
  message(STATUS "ocl: CUDA kernels (ocl::ops) for sm ${CMAKE_CUDA_ARCHITECTURES}, "
                 "${CMAKE_CUDA_COMPILER_ID} ${CMAKE_CUDA_COMPILER_VERSION}")
elseif(OCL_TORCH_CUDA)
  message(STATUS "ocl: no CUDA compiler: ocl::ops takes its composites on the GPU too")
endif()
