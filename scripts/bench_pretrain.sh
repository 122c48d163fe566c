#!/usr/bin/env bash
# Pre-training throughput: the C++ step (ocl_bench) beside the same step in PyTorch Python
# (Debian's python3-torch, the same LibTorch version on the host), same sizes and threads, in
# one run; plus the data loader alone. A benchmark, not a test: it prints, it asserts nothing.
#
#   bash scripts/bench_pretrain.sh                         ViT-S/16, batch 32, all cores
#   bash scripts/bench_pretrain.sh configs/vitb16.yaml --set train.batch_size=16
#   STEPS=20 WARMUP=3 THREADS=1 bash scripts/bench_pretrain.sh
#
# Needs a build with apps (build/apps/ocl_bench; $OCL_BUILD_DIR to use another folder).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
config=${1:-configs/vits16.yaml}
shift || true
build=${OCL_BUILD_DIR:-build}
threads=${THREADS:-$(nproc)}
steps=${STEPS:-10}
warmup=${WARMUP:-2}
bench="$build/apps/ocl_bench"
[[ -x "$bench" ]] || { echo "bench_pretrain: $bench not built (cmake --build $build --target ocl_bench)" >&2; exit 2; }

sets=(--set train.device=cpu --set train.precision=fp32 --set "train.threads=$threads"
      --set train.batch_size=32 --set data.synthetic_train_size=2048 "$@")
cpp=$("$bench" --config "$config" "${sets[@]}" --steps "$steps" --warmup "$warmup")
echo "$cpp" | sed 's/^/c++    : /'
get() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1; }
img=$(get "$cpp" img) patch=$(get "$cpp" patch) dim=$(get "$cpp" D) depth=$(get "$cpp" depth)
heads=$(get "$cpp" heads) batch=$(get "$cpp" batch)
mask=$(grep -E '^\s*ratio:' <("$build/apps/ocl_pretrain" --config "$config" "${sets[@]}" --print-config) | head -n 1 | awk '{print $2}')
py=$(/usr/bin/python3 scripts/bench_pretrain.py --img "$img" --patch "$patch" --dim "$dim" --depth "$depth" \
       --heads "$heads" --batch "$batch" --mask-ratio "$mask" --threads "$threads" --steps "$steps" --warmup "$warmup")
echo "$py" | sed 's/^/python : /'
c_ms=$(get "$cpp" step_ms) p_ms=$(get "$py" step_ms) c_img=$(get "$cpp" img_per_s) p_img=$(get "$py" img_per_s)
loader=$(get "$cpp" loader_img_per_s)
echo
printf '%-28s %12s %12s\n' "" "C++ (ocl)" "PyTorch"
printf '%-28s %12s %12s\n' "step time (ms)" "$c_ms" "$p_ms"
printf '%-28s %12s %12s\n' "training img/s" "$c_img" "$p_img"
printf '%-28s %12s\n' "achieved TFLOP/s" "$(get "$cpp" achieved_tflops)"
printf '%-28s %12s\n' "loader alone img/s" "$loader"
awk -v c="$c_ms" -v p="$p_ms" 'BEGIN { printf "speed-up of the C++ step: %.2fx\n", p / c }'
awk -v l="$loader" -v c="$c_img" 'BEGIN { printf "loader / training step:   %.1fx (the loader must keep ahead: > 1)\n", l / c }'
