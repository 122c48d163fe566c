#!/usr/bin/env bash
# A Debian 13 root with Debian's CUDA build of LibTorch 2.6 (contrib's libtorch-cuda-dev: CUDA
# 12.4, NCCL 2.22, Gloo with CUDA), for compiling, linking and testing ocl's CUDA-only code on a
# machine without a GPU. The same commands as scripts/trixie-root.sh (ensure, run, info,
# remove), which makes and enters it:
#
#   bash scripts/cuda-root.sh ensure
#   bash scripts/cuda-root.sh run "$PWD" sh -c 'cmake -S . -B /var/tmp/b -G Ninja && ...'
#
#   OCL_CUDA_ROOT  where (default /var/cache/ocl/cuda-root)
#
# Besides ocl's own dependencies (those of the Debian 13 root) it holds the CUDA toolkit
# (non-free's nvidia-cuda-toolkit: nvcc, which LibTorch's CMake files enable as a language, and
# the CUDA headers c10/cuda includes), NCCL's headers from the same libnccl2 LibTorch links
# (libnccl-dev), and the driver's libcuda1, which LibTorch's CUDA libraries load: with no GPU
# and no kernel module it reports no device, so every test takes the CPU path as it would on a
# GPU-less node.
#
# cuDNN: libtorch-cuda-2.6 depends on nvidia-cudnn, an installer that downloads cuDNN from
# NVIDIA while it is installed, which this network does not reach. The root gets a placeholder
# package of that name instead (scripts/cudnn-placeholder.sh, run before apt): it satisfies the
# dependency and ships cuDNN 9's front library (libcudnn.so.9) taken from this machine's own
# NVIDIA cuDNN 9, which LibTorch's CUDA library is linked against. cuDNN only serves
# convolutions on a GPU, which nothing here reaches. The placeholder lives in this root only:
# it is never part of a build a user runs on a GPU (docs/building.md, "Debian 13's CUDA LibTorch").
set -euo pipefail
scripts=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export OCL_TRIXIE_ROOT=${OCL_CUDA_ROOT:-/var/cache/ocl/cuda-root}
export OCL_TRIXIE_SUITE=trixie
export OCL_TRIXIE_TORCH=2.6
export OCL_TRIXIE_COMPONENTS=main,contrib,non-free
export OCL_TRIXIE_TORCH_PACKAGE=libtorch-cuda-dev
export OCL_TRIXIE_PREINSTALL=$scripts/cudnn-placeholder.sh
# Keep in step with scripts/trixie-root.sh's list: libtorch-cuda-dev and libgloo-cuda-dev
# replace (and conflict with) libtorch-dev and libgloo-dev.
export OCL_TRIXIE_PACKAGES="g++ cmake ninja-build
  libtorch-cuda-dev libnccl-dev nvidia-cuda-toolkit libcuda1
  libopenblas0-openmp
  libgloo-cuda-dev
  libyaml-cpp-dev libspdlog-dev libfmt-dev libcli11-dev
  libopencv-core-dev libopencv-imgproc-dev libopencv-imgcodecs-dev
  libgtest-dev
  nlohmann-json3-dev
  zlib1g-dev libjpeg62-turbo-dev libspng-dev libcurl4-openssl-dev
  python3-protobuf python3-crcmod"
exec bash "$scripts/trixie-root.sh" "$@"
