# NCCL for ocl's multi-GPU runs (dist.backend: nccl), included for a CUDA LibTorch only.
#
# c10d's NCCL process group (ProcessGroupNCCL.hpp) includes <nccl.h>, which is in neither
# LibTorch's include folder nor the CUDA toolkit, and it must be the NCCL LibTorch was built
# with: ProcessGroupNCCL::Options::create() is inline, so the options object (its ncclConfig_t
# grows with NCCL releases) is sized here and filled by libtorch_cuda. So this module
#   1. finds nccl.h (OCL_NCCL_INCLUDE_DIR; else $NCCL_INCLUDE_DIR, $NCCL_ROOT/include, the CUDA
#      toolkit's and the system's include folders),
#   2. reads its version and asks LibTorch which NCCL it was built with (a program that prints
#      torch::cuda::nccl::version(), the figure torch.cuda.nccl.version() shows), and stops
#      unless the two agree,
#   3. compiles and links a use of ProcessGroupNCCL as C++20 (what ocl compiles as, and what
#      LibTorch >= 2.13's headers demand),
# and then sets OCL_TORCH_HAS_NCCL and ocl's own macro OCL_WITH_C10D_NCCL. LibTorch's CMake
# targets define USE_C10D_NCCL for every consumer of a CUDA build whatever is installed, so
# ocl's code guards its NCCL parts with OCL_WITH_C10D_NCCL, never with USE_C10D_NCCL.
#
# With OCL_WITH_NCCL=ON (the default) a CUDA LibTorch gets NCCL or the configure step stops
# with what is missing; -DOCL_WITH_NCCL=OFF builds without it (multi-GPU runs then use Gloo).
set(OCL_NCCL_INCLUDE_DIR "" CACHE PATH
    "Folder holding nccl.h of the NCCL that LibTorch was built with (Debian: /usr/include from libnccl-dev; pip: site-packages/nvidia/nccl/include)")

if(NOT OCL_NCCL_INCLUDE_DIR)
  unset(OCL_NCCL_HEADER CACHE)
  find_path(OCL_NCCL_HEADER nccl.h
    HINTS ENV NCCL_INCLUDE_DIR "$ENV{NCCL_ROOT}/include" ${CUDAToolkit_INCLUDE_DIRS}
          ${CUDA_INCLUDE_DIRS}
    PATHS /usr/include /usr/local/cuda/include
    NO_CACHE)
  set(_ocl_nccl_dir "${OCL_NCCL_HEADER}")
else()
  set(_ocl_nccl_dir "${OCL_NCCL_INCLUDE_DIR}")
endif()
string(REGEX REPLACE "/+$" "" _ocl_nccl_dir "${_ocl_nccl_dir}")
set(_ocl_nccl_off "or configure with -DOCL_WITH_NCCL=OFF (multi-GPU runs then use dist.backend: gloo)")
if(NOT _ocl_nccl_dir OR NOT EXISTS "${_ocl_nccl_dir}/nccl.h")
  message(FATAL_ERROR
    "ocl: this LibTorch is a CUDA build, and its NCCL process group needs nccl.h, which was not "
    "found (looked in OCL_NCCL_INCLUDE_DIR, $NCCL_INCLUDE_DIR, $NCCL_ROOT/include, the CUDA "
    "toolkit's include folder, /usr/include). Install the headers of the NCCL LibTorch was built with "
    "(Debian: libnccl-dev; pip: the nvidia-nccl-cu* wheel) and give their folder as "
    "-DOCL_NCCL_INCLUDE_DIR=..., ${_ocl_nccl_off}")
endif()

# 2. The header's version against LibTorch's.
file(STRINGS "${_ocl_nccl_dir}/nccl.h" _ocl_nccl_defs REGEX "^#define NCCL_(MAJOR|MINOR|PATCH) ")
foreach(_part MAJOR MINOR PATCH)
  string(REGEX MATCH "NCCL_${_part} +([0-9]+)" _m "${_ocl_nccl_defs}")
  set(_ocl_nccl_${_part} "${CMAKE_MATCH_1}")
endforeach()
set(_ocl_nccl_header_version "${_ocl_nccl_MAJOR}.${_ocl_nccl_MINOR}.${_ocl_nccl_PATCH}")

# The probes link LibTorch's library files: try_compile does not carry the usage requirements
# of the interface targets LibTorch's CMake files chain together (torch -> torch_cuda_library).
set(_ocl_torch_files "")
foreach(_target torch_cuda torch_cpu torch c10_cuda c10)
  if(TARGET ${_target})
    get_target_property(_configs ${_target} IMPORTED_CONFIGURATIONS)
    set(_suffixes "")
    foreach(_config IN LISTS _configs)
      string(TOUPPER "_${_config}" _suffix)
      list(APPEND _suffixes "${_suffix}")
    endforeach()
    foreach(_config IN LISTS _suffixes ITEMS "")
      get_target_property(_file ${_target} IMPORTED_LOCATION${_config})
      if(_file)
        list(APPEND _ocl_torch_files "${_file}")
        break()
      endif()
    endforeach()
  endif()
endforeach()
if(C10_CUDA_LIBRARY)
  list(APPEND _ocl_torch_files "${C10_CUDA_LIBRARY}")
endif()
list(APPEND _ocl_torch_files ${TORCH_LIBRARIES})
list(FILTER _ocl_torch_files EXCLUDE REGEX "^torch$|^torch_library$|_library$")
list(REMOVE_DUPLICATES _ocl_torch_files)

set(_ocl_nccl_probe "${CMAKE_BINARY_DIR}/CMakeFiles/ocl_nccl_version.cpp")
file(WRITE "${_ocl_nccl_probe}" [[
// Prints the NCCL version LibTorch was built with (torch/csrc/cuda/nccl.h: major << 32 |
// minor << 16 | patch), declared here so that the probe needs no CUDA headers.
#include <cstdint>
#include <cstdio>
namespace torch::cuda::nccl {
std::uint64_t version();
}
int main() {
  const std::uint64_t v = torch::cuda::nccl::version();
  std::printf("%llu.%llu.%llu\n", (unsigned long long)(v >> 32),
              (unsigned long long)((v >> 16) & 0xffff), (unsigned long long)(v & 0xffff));
  return 0;
}
]])
try_run(_ocl_nccl_run _ocl_nccl_compiled "${CMAKE_BINARY_DIR}/CMakeFiles/ocl_nccl_probe"
  "${_ocl_nccl_probe}"
  CMAKE_FLAGS "-DCMAKE_CXX_STANDARD=20"
  LINK_LIBRARIES ${_ocl_torch_files}
  COMPILE_OUTPUT_VARIABLE _ocl_nccl_compile_log
  RUN_OUTPUT_VARIABLE _ocl_nccl_torch_version)
string(STRIP "${_ocl_nccl_torch_version}" _ocl_nccl_torch_version)
if(NOT _ocl_nccl_compiled)
  message(FATAL_ERROR
    "ocl: could not build a program that asks LibTorch for its NCCL version "
    "(torch::cuda::nccl::version()); the compiler said:\n${_ocl_nccl_compile_log}\n"
    "${_ocl_nccl_off}")
endif()
if(NOT _ocl_nccl_run EQUAL 0)
  message(FATAL_ERROR
    "ocl: the program that asks LibTorch for its NCCL version did not run "
    "(${_ocl_nccl_run}: ${_ocl_nccl_torch_version}); LibTorch's CUDA libraries must load on "
    "the machine that configures (LD_LIBRARY_PATH), ${_ocl_nccl_off}")
endif()
if(NOT _ocl_nccl_torch_version STREQUAL _ocl_nccl_header_version)
  message(FATAL_ERROR
    "ocl: ${_ocl_nccl_dir}/nccl.h is NCCL ${_ocl_nccl_header_version}, but LibTorch was built "
    "with NCCL ${_ocl_nccl_torch_version}. c10d's NCCL options are sized by the header, so a "
    "different one corrupts memory: give the headers of NCCL ${_ocl_nccl_torch_version} as "
    "-DOCL_NCCL_INCLUDE_DIR=..., ${_ocl_nccl_off}")
endif()

# 3. A use of the process group compiles and links, as C++20.
include(CheckCXXSourceCompiles)
set(CMAKE_REQUIRED_LIBRARIES ${_ocl_torch_files})
set(CMAKE_REQUIRED_DEFINITIONS -DUSE_C10D_NCCL -DUSE_C10D_GLOO -DUSE_DISTRIBUTED)
set(CMAKE_REQUIRED_INCLUDES ${TORCH_INCLUDE_DIRS} ${CUDAToolkit_INCLUDE_DIRS} "${_ocl_nccl_dir}")
set(CMAKE_REQUIRED_FLAGS "${TORCH_CXX_FLAGS}")
# C++20, honoured by the check (policy CMP0067), in a function scope so that no project-wide
# CMAKE_CXX_STANDARD is left behind.
function(_ocl_check_process_group_nccl)
  set(CMAKE_CXX_STANDARD 20)
  check_cxx_source_compiles([[
  #include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
  int main() { return c10d::ProcessGroupNCCL::Options::create() ? 0 : 1; }
  ]] OCL_TORCH_HAS_NCCL)
endfunction()
_ocl_check_process_group_nccl()
unset(CMAKE_REQUIRED_LIBRARIES)
unset(CMAKE_REQUIRED_DEFINITIONS)
unset(CMAKE_REQUIRED_INCLUDES)
unset(CMAKE_REQUIRED_FLAGS)
if(NOT OCL_TORCH_HAS_NCCL)
  unset(OCL_TORCH_HAS_NCCL CACHE)  # checked again at the next configure
  message(FATAL_ERROR
    "ocl: a use of c10d::ProcessGroupNCCL with ${_ocl_nccl_dir}/nccl.h did not compile or link "
    "(CMakeFiles/CMakeConfigureLog.yaml or CMakeError.log has the compiler's words), "
    "${_ocl_nccl_off}")
endif()

set(OCL_NCCL_VERSION "${_ocl_nccl_header_version}")
set(OCL_NCCL_INCLUDE "${_ocl_nccl_dir}")
