#!/usr/bin/env bash
# Builds ocl against a CUDA LibTorch in one command: the LibTorch inside the Python PyTorch on
# PATH (python3 -c 'import torch; print(torch.utils.cmake_prefix_path)'), or one given by
# TORCH_DIR. The other dependencies come from the system (scripts/install-deps.sh), or from a
# prefix folder (PREFIX, searched first) on a machine without a package manager: the GPU kit
# that scripts/make-gpu-kit.sh makes on Debian 12, unpacked anywhere. NCCL is used when the
# LibTorch has it (CMake checks by compiling against c10d's NCCL process group).
#
#   bash scripts/build-gpu.sh                          build-gpu/ with pip's CUDA LibTorch
#   PREFIX=$PWD/ocl-gpu-kit bash scripts/build-gpu.sh  dependencies from the unpacked kit
#   TORCH_DIR=/opt/libtorch bash scripts/build-gpu.sh  a LibTorch unpacked from pytorch.org
#   PREFIX=/opt/ocl-deps BUILD=/scratch/ocl bash scripts/build-gpu.sh
#   TESTS=gpu bash scripts/build-gpu.sh                then run the gpu-labelled tests
#   ALLOW_CPU=1 bash scripts/build-gpu.sh              accept a CPU PyTorch (the same build
#                                                      path on a machine without a GPU)
#   JOBS=16 CMAKE_ARGS="-DOCL_WITH_IMGCODECS=OFF" ...  parallel jobs, extra CMake arguments
#   TARGETS="ocl_pretrain ocl_unit_tests" ...          build only these targets
#   NCCL_INCLUDE_DIR=/opt/nccl/include ...             nccl.h of the NCCL LibTorch was built with
#
# A CUDA LibTorch's CMake files enable CUDA as a language, so nvcc must be found: CUDACXX, else
# nvcc on PATH, else /usr/local/cuda/bin/nvcc, else the nvidia-cuda-nvcc wheel beside PyTorch.
# NCCL's headers (cmake/oclNccl.cmake checks that their version is LibTorch's): NCCL_INCLUDE_DIR,
# else the nvidia-nccl wheel beside PyTorch, else the system's (Debian: libnccl-dev).
#
# With a PREFIX holding lib/x86_64-linux-gnu (the kit), the programs get an RPATH to it that
# also covers the kit libraries' own dependencies (DT_RPATH, not RUNPATH), so they run with no
# LD_LIBRARY_PATH.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BUILD:-$repo/build-gpu}
python=${PYTHON:-python3}
die() { echo "build-gpu: $*" >&2; exit 1; }

if [[ -n "${TORCH_DIR:-}" ]]; then
  torch_prefix=$TORCH_DIR
  abi=""
else
  command -v "$python" >/dev/null || die "no $python: set TORCH_DIR to a LibTorch folder"
  torch_prefix=$("$python" -c 'import torch; print(torch.utils.cmake_prefix_path)') ||
    die "$python cannot import torch: install PyTorch or set TORCH_DIR"
  if [[ "${ALLOW_CPU:-0}" != 1 ]]; then
    "$python" -c 'import torch, sys; sys.exit(0 if torch.version.cuda else 1)' ||
      die "the PyTorch of $python is a CPU build (torch.version.cuda is None); ALLOW_CPU=1 builds with it anyway"
  fi
  abi=$("$python" -c 'import torch; print(int(torch.compiled_with_cxx11_abi()))')
fi
[[ -d "$torch_prefix" ]] || die "no LibTorch CMake folder at $torch_prefix"

# A LibTorch built with the old C++ ABI (_GLIBCXX_USE_CXX11_ABI=0, older PyTorch wheels) cannot
# link with libraries built with the new one (every Debian package): the dependencies must then
# come from a PREFIX built with -D_GLIBCXX_USE_CXX11_ABI=0.
flags=()
if [[ "$abi" == "0" ]]; then
  [[ -n "${PREFIX:-}" ]] || die "this LibTorch uses the pre-C++11 ABI; its dependencies (yaml-cpp, spdlog, fmt, OpenCV, GoogleTest) must be built the same way: give them as PREFIX, or use a LibTorch with the C++11 ABI (TORCH_DIR)"
  flags+=("-DCMAKE_CXX_FLAGS=-D_GLIBCXX_USE_CXX11_ABI=0")
fi

prefix_path=$torch_prefix
if [[ -n "${PREFIX:-}" ]]; then
  [[ -d "$PREFIX" ]] || die "PREFIX=$PREFIX is not a folder"
  PREFIX=$(cd "$PREFIX" && pwd)
  prefix_path="$PREFIX;$torch_prefix"
  kit_lib=$PREFIX/lib/x86_64-linux-gnu
  if [[ -d "$kit_lib" ]]; then
    # DT_RPATH (--disable-new-dtags) is searched for the kit libraries' own dependencies too
    # (OpenCV's TBB, spdlog's fmt); DT_RUNPATH would be searched for the programs' direct ones
    # only. -rpath-link lets the linker resolve those second-level libraries.
    link="-Wl,--disable-new-dtags -Wl,-rpath-link,$kit_lib"
    # The kit keeps Debian's lib/x86_64-linux-gnu layout, which CMake searches only when it
    # knows the library architecture (it learns it from a Debian or Ubuntu compiler, not from
    # conda's): said explicitly.
    flags+=("-DCMAKE_BUILD_RPATH=$kit_lib" "-DCMAKE_INSTALL_RPATH=$kit_lib"
            "-DCMAKE_EXE_LINKER_FLAGS=$link" "-DCMAKE_SHARED_LINKER_FLAGS=$link"
            "-DCMAKE_LIBRARY_ARCHITECTURE=x86_64-linux-gnu")
  fi
fi
# Whether this LibTorch is a CUDA build (its CMake files then need nvcc, and ocl needs nccl.h).
torch_cuda=0
if [[ -n "${TORCH_DIR:-}" ]]; then
  for d in "$TORCH_DIR/lib" "$TORCH_DIR/lib/x86_64-linux-gnu" "$TORCH_DIR/../.."; do
    compgen -G "$d/libtorch_cuda.so*" >/dev/null && torch_cuda=1
  done
else
  "$python" -c 'import torch, sys; sys.exit(0 if torch.version.cuda else 1)' && torch_cuda=1
fi
# The folder of the nvidia-* wheel $1 beside PyTorch (pip's CUDA libraries), or nothing.
wheel_dir() {
  [[ -z "${TORCH_DIR:-}" ]] || return 0
  "$python" -c 'import importlib, sys
try:
    print(list(importlib.import_module("nvidia." + sys.argv[1]).__path__)[0])
except Exception:
    pass' "$1" 2>/dev/null || true
}
if ((torch_cuda)); then
  nvcc=${CUDACXX:-}
  [[ -n "$nvcc" ]] || nvcc=$(command -v nvcc || true)
  [[ -n "$nvcc" || ! -x /usr/local/cuda/bin/nvcc ]] || nvcc=/usr/local/cuda/bin/nvcc
  if [[ -z "$nvcc" ]]; then
    d=$(wheel_dir cuda_nvcc)
    [[ -z "$d" || ! -x "$d/bin/nvcc" ]] || nvcc=$d/bin/nvcc
  fi
  [[ -n "$nvcc" && -x "$nvcc" ]] ||
    die "this LibTorch is a CUDA build, whose CMake files need nvcc (CUDA's compiler), and none was found: install the CUDA toolkit, or set CUDACXX to nvcc"
  flags+=("-DCMAKE_CUDA_COMPILER=$nvcc")
  nccl_inc=${NCCL_INCLUDE_DIR:-}
  if [[ -z "$nccl_inc" ]]; then
    d=$(wheel_dir nccl)
    [[ -z "$d" || ! -f "$d/include/nccl.h" ]] || nccl_inc=$d/include
  fi
  [[ -z "$nccl_inc" ]] || flags+=("-DOCL_NCCL_INCLUDE_DIR=$nccl_inc")
  echo "build-gpu: CUDA LibTorch; nvcc $nvcc; nccl.h from ${nccl_inc:-the system (or none: see the configure step)}"
fi
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)

echo "build-gpu: LibTorch from $torch_prefix${PREFIX:+, dependencies from $PREFIX first}; build in $build"
cmake -S "$repo" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
  "-DCMAKE_PREFIX_PATH=$prefix_path" "${flags[@]}" ${CMAKE_ARGS:-}
targets=()
for t in ${TARGETS:-}; do targets+=(--target "$t"); done
cmake --build "$build" -j "${JOBS:-$(nproc)}" "${targets[@]}"
if [[ -n "${TESTS:-}" ]]; then
  ctest --test-dir "$build" -L "$TESTS" --output-on-failure
fi
