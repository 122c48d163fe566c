#!/usr/bin/env bash
# ocl built against a CUDA LibTorch and tested, on a machine without a GPU (CI's cuda-test
# stage): in the root of scripts/cuda-root.sh (Debian 13, contrib's libtorch-cuda-dev 2.6 with
# CUDA 12.4 and NCCL 2.22), configure with -DOCL_WERROR=ON, build the library with its CUDA
# kernels, every app and the test programs run here, and run them. With no GPU, LibTorch reports no CUDA device: every test takes the CPU path, the gpu
# tests skip saying so, and Communicator.NcclIsCompiledInExactlyWhereLibTorchIsACudaBuild proves
# the NCCL process group is compiled in. The configure step must report NCCL and ocl_bench's
# CUDA statistics and ocl::ops' CUDA kernels, or the check fails.
#
# The tests run here are those whose code differs between LibTorch 1.13 and 2.x, or that only a
# CUDA build has: unit, reference and gpu, the multi-process tests (c10d: Backend vs
# ProcessGroup, Gloo's collectives) and the NCCL header check. The end-to-end runs of the apps
# (pre-training, evaluation, packing, the multi-node cluster) call the same library code and
# run in the host stage only: they take more than half of this suite's time and test nothing
# that is version-specific beyond what the unit tests cover (compat.h's paths: SDPA, fused
# AdamW, autocast, zero-grad).
#
#   bash scripts/cuda-check.sh                 make the root if needed, build, test
#   bash scripts/cuda-check.sh -L unit         extra arguments replace the test selection
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
# The kernels for sm 90 only here (LibTorch would build every architecture it knows on a machine
# without a GPU): one proves them, for a sixth of the nvcc time.
# What the selected tests need, and every app and the library (their CUDA-only code: the
# kernels, the statistics of ocl_bench); the end-to-end test programs are built and run on the host.
TARGETS="ocl ocl_pretrain ocl_finetune ocl_linprobe ocl_knn ocl_bench ocl_pack ocl_preview ocl_unit_tests ocl_reference_tests ocl_gpu_tests ocl_distributed_tests ocl_test_diverging_rank" \
TORCH_DIR=/usr BUILD="$build" JOBS="$jobs" \
  CMAKE_ARGS="-DOCL_WERROR=ON -DOCL_CUDA_KERNELS=ON -DTORCH_CUDA_ARCH_LIST=9.0 -DOCL_TEST_SHARDS=${OCL_TEST_SHARDS:-0} -Wno-dev" \
  bash scripts/build-gpu.sh >"$build/build-gpu.log" 2>&1 || { tail -n 80 "$build/build-gpu.log"; exit 1; }
grep -a "^build-gpu:\|^-- ocl:" "$build/build-gpu.log"
grep -aq "^-- ocl: CUDA LibTorch, with NCCL" "$build/build-gpu.log" ||
  { echo "cuda-check: the configure step did not find NCCL (ocl: CUDA LibTorch, with NCCL ...)"; exit 1; }
grep -aq "^-- ocl: CUDA kernels (ocl::ops)" "$build/build-gpu.log" ||
  { echo "cuda-check: ocl::ops CUDA kernels were not built (ocl: CUDA kernels (ocl::ops) ...)"; exit 1; }
grep -aq "^-- ocl: ocl_bench with CUDA" "$build/build-gpu.log" ||
  { echo "cuda-check: ocl_bench is not built with its CUDA statistics (OCL_BENCH_CUDA)"; exit 1; }
echo "cuda-check: configure and build: $(since) s ($(grep -ac "^\[" "$build/build-gpu.log") build steps)"; t=$(date +%s)
ctest --test-dir "$build" --output-on-failure -j"$jobs" "$@"
grep -ah "^\[  SKIPPED \] [A-Za-z]" "$build/Testing/Temporary/LastTest.log" | sed -E "s/ \([0-9]+ ms\)\$//" |
  sort -u | sed "s/^/cuda-check: skipped in a shard: /" || true
echo "cuda-check: test: $(since) s"
'
selection=("$@")
((${#selection[@]})) ||
  selection=(-R '^(unit|reference|gpu)[.]|^integration[.](Distributed[.]|nccl_header)')
bash scripts/cuda-root.sh run "$repo" bash -c "$inside" bash "$build" "$repo" "$jobs" \
  "${selection[@]}"
