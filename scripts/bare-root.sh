#!/usr/bin/env bash
# A bare Debian 12 root for proving the GPU kit on a CPU machine: a compiler, CMake, Ninja,
# Debian's LibTorch and Python PyTorch (1.13, CPU), and none of ocl's other dependencies: no
# yaml-cpp, spdlog, fmt, CLI11, nlohmann-json, GoogleTest, libjpeg-turbo, libspng or OpenCV
# headers (what a GPU machine or a conda/module cluster node looks like). The same commands as
# scripts/trixie-root.sh (ensure, run, info, remove), which makes and enters it:
#
#   bash scripts/bare-root.sh ensure
#   bash scripts/bare-root.sh run "$PWD" bash scripts/gpu-check.sh --kit .gpu-kit/ocl-gpu-kit.tar.xz
#
#   OCL_BARE_ROOT  where (default /var/cache/ocl/bare-root)
# libtorch-dev pulls in glog, gflags, protobuf and Python headers (and zlib's through them):
# LibTorch's own dependencies, none of ocl's (the kit's zlib comes first on CMake's path).
set -euo pipefail
export OCL_TRIXIE_ROOT=${OCL_BARE_ROOT:-/var/cache/ocl/bare-root}
export OCL_TRIXIE_SUITE=bookworm
export OCL_TRIXIE_TORCH=1.13
export OCL_TRIXIE_PACKAGES="g++ cmake ninja-build xz-utils libtorch-dev libgloo-dev libopenblas0-openmp python3-torch"
exec bash "$(dirname "${BASH_SOURCE[0]}")/trixie-root.sh" "$@"
