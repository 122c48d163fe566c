#!/usr/bin/env bash
# ocl built against a CUDA LibTorch and tested, on a machine without a GPU (CI's cuda-test
# stage): in the root of scripts/cuda-root.sh (Debian 13, contrib's libtorch-cuda-dev 2.6 with
# CUDA 12.4 and NCCL 2.22), configure with -DOCL_WERROR=ON, build every target (library, apps,
# unit / reference / integration / gpu tests, the find_package(ocl) check) and run the whole
# suite. With no GPU, LibTorch reports no CUDA device: every test takes the CPU path, the gpu
# tests skip saying so, and Communicator.NcclIsCompiledInExactlyWhereLibTorchIsACudaBuild proves
# the NCCL process group is compiled in. The configure step must report NCCL and ocl_bench's
# CUDA statistics, or the check fails.
#
#   bash scripts/cuda-check.sh                 make the root if needed, build, test
#   bash scripts/cuda-check.sh -L unit         extra arguments go to ctest
#
#   OCL_CUDA_BUILD_DIR  the build folder inside the root (default /var/tmp/ocl-cuda-build),
#                       reused for the same clone, started afresh for another
# Needs root privileges (chroot), and Debian's archive the first time (the root).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
build=${OCL_CUDA_BUILD_DIR:-/var/tmp/ocl-cuda-build}
jobs=$(nproc 2>/dev/null || echo 2)

bash scripts/cuda-root.sh ensure

# Inside the root, cwd /src (this clone). $1: build folder, $2: the clone's host path, $3: jobs;
# the rest go to ctest. The build is scripts/build-gpu.sh's, as docs/building.md tells a user
# of Debian's CUDA LibTorch to run it (TORCH_DIR=/usr), with -Werror.
inside='
set -euo pipefail
build=$1 source_id=$2 jobs=$3
shift 3
t=$(date +%s)
since() { echo $(( $(date +%s) - t )); }
if [[ -d "$build" && "$(cat "$build/.ocl-source" 2>/dev/null)" != "$source_id" ]]; then
  echo "cuda-check: $build was used by another tree: starting afresh"
  rm -rf "$build"
fi
mkdir -p "$build"
echo "$source_id" >"$build/.ocl-source"
echo "cuda-check: $(g++ --version | head -n 1); $(cmake --version | head -n 1); libtorch-cuda-dev $(dpkg-query -W -f="\${Version}" libtorch-cuda-dev); $(nvcc --version | tail -n 1)"
TORCH_DIR=/usr BUILD="$build" JOBS="$jobs" CMAKE_ARGS="-DOCL_WERROR=ON -Wno-dev" \
  bash scripts/build-gpu.sh >"$build/build-gpu.log" 2>&1 || { tail -n 80 "$build/build-gpu.log"; exit 1; }
grep -a "^build-gpu:\|^-- ocl:" "$build/build-gpu.log"
grep -aq "^-- ocl: CUDA LibTorch, with NCCL" "$build/build-gpu.log" ||
  { echo "cuda-check: the configure step did not find NCCL (ocl: CUDA LibTorch, with NCCL ...)"; exit 1; }
grep -aq "^-- ocl: ocl_bench with CUDA" "$build/build-gpu.log" ||
  { echo "cuda-check: ocl_bench is not built with its CUDA statistics (OCL_BENCH_CUDA)"; exit 1; }
echo "cuda-check: configure and build: $(since) s ($(grep -ac "^\[" "$build/build-gpu.log") build steps)"; t=$(date +%s)
ctest --test-dir "$build" --output-on-failure -j"$jobs" "$@"
echo "cuda-check: test: $(since) s"
'
bash scripts/cuda-root.sh run "$repo" bash -c "$inside" bash "$build" "$repo" "$jobs" "$@"
