#!/usr/bin/env bash
# GPU pre-training throughput (issue 6): for ViT-B/16 at mask ratio 0.3 and ViT-L/16 at 0.4, the
# C++ step (ocl_bench on CUDA, bf16 autocast, SDPA, fused AdamW, a synthetic batch already on
# the device) beside the same step in PyTorch Python (scripts/bench_gpu.py, eager and
# torch.compile), in one run: img/s, achieved TFLOP/s from the counted FLOPs, the bf16 matmul
# rate measured in the same run and the fraction of it reached, peak memory, the largest batch
# that fits, the loader alone, and the C++/PyTorch ratio. A benchmark, not a test.
#
#   bash scripts/bench_gpu.sh                      both models, batch 128 per GPU
#   BATCH=256 STEPS=30 bash scripts/bench_gpu.sh   another batch, more steps
#   MODELS=vitl16 MAX_BATCH=0 bash scripts/bench_gpu.sh     ViT-L only, no largest-batch search
#   PYTHON=/opt/venv/bin/python bash scripts/bench_gpu.sh   the PyTorch to compare with
#   COMPILE=off bash scripts/bench_gpu.sh          no torch.compile column (its compilation of
#                                                  ViT-L takes minutes of a GPU visit); on:
#                                                  fail when torch.compile cannot run; auto
#                                                  (default): time it where it works
#   DEVICE=cpu MODELS=quickstart BATCH=16 STEPS=2 WARMUP=1 MAX_BATCH=0 bash scripts/bench_gpu.sh
#                                                  a smoke run of the whole comparison without a
#                                                  GPU (fp32; its figures are no GPU claim)
#   MICRO=0 bash scripts/bench_gpu.sh              without ocl_bench --micro's lines (the block's GEMM
#                                                  shapes, attention per SDPA backend, the fused
#                                                  operations against their composites)
#   VARIANTS="fused:model.fused=on" bash scripts/bench_gpu.sh
#                                                  more ocl rows in the same run, one per
#                                                  NAME:KEY=VALUE[,KEY=VALUE...] (overrides of
#                                                  the base step), each against PyTorch eager
#   bash scripts/bench_gpu.sh --set data.dataset=packed --set data.path=/data/in1k-packed
#                                                  extra overrides for ocl_bench (the loader line
#                                                  then times the real data: see --data)
#
# Needs a CUDA build with apps ($OCL_BUILD_DIR, default build-gpu, else build) and a Python with
# CUDA PyTorch ($PYTHON, default python3). Exits non-zero if either side fails.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
build=${OCL_BUILD_DIR:-$([[ -x build-gpu/apps/ocl_bench ]] && echo build-gpu || echo build)}
bench="$build/apps/ocl_bench"
python=${PYTHON:-python3}
batch=${BATCH:-128}
steps=${STEPS:-20}
warmup=${WARMUP:-5}
max_batch=${MAX_BATCH:-1}
models=${MODELS:-"vitb16 vitl16"}
device=${DEVICE:-cuda}
compile=${COMPILE:-auto}
case "$compile" in
  auto | on | off) ;;
  *) echo "bench_gpu: COMPILE must be auto, on or off, got '$compile'" >&2; exit 2 ;;
esac
case "$device" in
  cuda) dev_sets=(--set train.device=cuda --set train.precision=bf16) py_dev=(--compile "$compile")
        matmul=8192 ;;
  cpu) dev_sets=(--set train.device=cpu --set train.precision=fp32)
       py_dev=(--device cpu --no-bf16 --compile off) matmul=512 ;;
  *) echo "bench_gpu: DEVICE must be cuda or cpu, got '$device'" >&2; exit 2 ;;
esac
[[ -x "$bench" ]] || { echo "bench_gpu: $bench not built (cmake --build $build --target ocl_bench)" >&2; exit 2; }

get() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "-"; else printf "%.2f", a / b }'; }

for model in $models; do
  case "$model" in
    vitb16) ratio_mask=0.3 ;;
    vitl16) ratio_mask=0.4 ;;
    quickstart) ratio_mask=0.3 ;;  # the smoke run's size
    *) echo "bench_gpu: unknown model '$model' (vitb16 | vitl16 | quickstart)" >&2; exit 2 ;;
  esac
  config="configs/$model.yaml"
  # One micro-batch a step, as bench_gpu.py's step (the configs' recipes accumulate several).
  sets=("${dev_sets[@]}" --set "train.batch_size=$batch" --set optim.accum_iter=1
        --set "mask.ratio=$ratio_mask" --set optim.fused=auto
        --set "data.synthetic_train_size=$((batch * 4))" "$@")
  extra=()
  [[ "$max_batch" == 1 ]] && extra+=(--max-batch)
  echo "== $model (mask ratio $ratio_mask, batch $batch per GPU)"
  if [[ "${MICRO:-1}" != 0 ]]; then
    "$bench" --micro --config "$config" "${sets[@]}" | sed 's/^/micro  : /'
  fi
  cpp=$("$bench" --config "$config" "${sets[@]}" --steps "$steps" --warmup "$warmup" \
          --loader-batches 20 --matmul-size "$matmul" "${extra[@]}")
  echo "$cpp" | sed 's/^/c++    : /'
  img=$(get "$cpp" img) patch=$(get "$cpp" patch) dim=$(get "$cpp" D) depth=$(get "$cpp" depth)
  heads=$(get "$cpp" heads)
  py=$("$python" scripts/bench_gpu.py --img "$img" --patch "$patch" --dim "$dim" --depth "$depth" \
         --heads "$heads" --batch "$batch" --mask-ratio "$ratio_mask" --steps "$steps" \
         --warmup "$warmup" "${py_dev[@]}")
  echo "$py" | sed 's/^/python : /'
  eager=$(echo "$py" | grep '^mode=eager' || true)
  compiled=$(echo "$py" | grep '^mode=compile' || true)
  c_img=$(get "$cpp" img_per_s) e_img=$(get "$eager" img_per_s) k_img=$(get "$compiled" img_per_s)
  echo
  printf '%-30s %12s %12s %12s\n' "" "C++ (ocl)" "PyTorch" "torch.compile"
  printf '%-30s %12s %12s %12s\n' "step time (ms)" "$(get "$cpp" step_ms)" "$(get "$eager" step_ms)" "$(get "$compiled" step_ms)"
  printf '%-30s %12s %12s %12s\n' "training img/s" "$c_img" "$e_img" "${k_img:--}"
  printf '%-30s %12s %12s %12s\n' "peak memory (GiB)" "$(get "$cpp" peak_mem_gib)" "$(get "$eager" peak_mem_gib)" "$(get "$compiled" peak_mem_gib)"
  printf '%-30s %12s\n' "achieved TFLOP/s" "$(get "$cpp" achieved_tflops)"
  printf '%-30s %12s\n' "$(get "$cpp" matmul_dtype) matmul TFLOP/s (${matmul}²)" "$(get "$cpp" matmul_tflops)"
  printf '%-30s %12s\n' "fraction of the matmul rate" "$(get "$cpp" fraction_of_matmul)"
  printf '%-30s %12s\n' "largest batch that fits" "$(echo "$cpp" | sed -n 's/^max_batch=\{0,1\}//p')"
  printf '%-30s %12s\n' "loader alone img/s" "$(get "$cpp" loader_img_per_s)"
  echo "C++ / PyTorch eager:   $(ratio "$c_img" "$e_img")x"
  echo "C++ / torch.compile:   $(ratio "$c_img" "$k_img")x"
  for variant in ${VARIANTS:-}; do
    name=${variant%%:*}
    vsets=()
    IFS=, read -r -a kvs <<<"${variant#*:}"
    for kv in "${kvs[@]}"; do vsets+=(--set "$kv"); done
    v=$("$bench" --config "$config" "${sets[@]}" "${vsets[@]}" --steps "$steps" \
          --warmup "$warmup" --loader-batches 0 --matmul-size 0)
    echo "$v" | sed "s/^/c++ $name: /"
    v_img=$(get "$v" img_per_s)
    printf 'C++ %-16s %9s ms %9s img/s %7s GiB  %sx eager  %sx compile  %sx base\n' "$name" \
      "$(get "$v" step_ms)" "$v_img" "$(get "$v" peak_mem_gib)" "$(ratio "$v_img" "$e_img")" \
      "$(ratio "$v_img" "$k_img")" "$(ratio "$v_img" "$c_img")"
  done
  echo
done
