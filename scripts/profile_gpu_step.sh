#!/usr/bin/env bash
# Where ocl's pre-training step spends its time on one GPU, for when scripts/bench_gpu.sh
# shows it behind PyTorch eager: two readings in one call, each printed as a table.
#   1. ocl_bench's step time under variants that each change one thing from the benchmark's
#      ViT-L/16 step (batch, precision, mask ratio, depth, AdamW), beside the base: a step time
#      that scales with the batch is kernel-bound, one that does not is launch- or sync-bound.
#   2. Nsight Compute's kernel durations (ncu, one metric, clocks left alone) of one timed step
#      at depth 2, for ocl and for scripts/bench_gpu.py's PyTorch step, summed by kernel name:
#      which kernels ocl runs that PyTorch does not, or runs slower.
#
#   bash scripts/profile_gpu_step.sh                   build-gpu/ (OCL_BUILD_DIR), results in $OUT
#   PROFILE_NCU=0 bash scripts/profile_gpu_step.sh     the variants only
#
# Needs a CUDA build of ocl_bench, and for part 2 ncu on PATH (or under /opt/nvidia) and
# python3 with PyTorch. Writes variants.txt, ncu_ocl.csv, ncu_pytorch.csv and kernels.txt to
# OUT_DIR (default $OUT, else the current folder).
set -uo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
build=${OCL_BUILD_DIR:-build-gpu}
bench="$build/apps/ocl_bench"
python=${PYTHON:-python3}
out=${OUT_DIR:-${OUT:-.}}
mkdir -p "$out"
[[ -x "$bench" ]] || { echo "profile_gpu_step: $bench not built" >&2; exit 2; }

cfg=configs/vitl16.yaml
base=(--set train.device=cuda --set train.precision=bf16 --set train.batch_size=128
      --set optim.accum_iter=1 --set mask.ratio=0.4 --set optim.fused=auto
      --set data.synthetic_train_size=512)

variant() { # variant LABEL [--set ...]: one line of the table
  local label=$1 line
  shift
  line=$(timeout 120 "$bench" --config "$cfg" "${base[@]}" "$@" --steps "${STEPS:-10}" \
           --warmup 3 --loader-batches 1 --matmul-size 0 2>&1 | grep -a '^step_ms=' ||
         echo "failed")
  printf '%-34s %s\n' "$label" "$line"
}

{
  echo "== ocl_bench ViT-L/16 step variants ($(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1))"
  variant "base: bf16, batch 128, r 0.4"
  variant "batch 64" --set train.batch_size=64
  variant "batch 256" --set train.batch_size=256
  variant "fp32 (TF32 matmuls)" --set train.precision=fp32
  variant "mask ratio 0.8" --set mask.ratio=0.8
  variant "depth 12" --set model.depth=12
  variant "plain AdamW (optim.fused off)" --set optim.fused=off
} | tee "$out/variants.txt"

[[ "${PROFILE_NCU:-1}" == 1 ]] || exit 0
ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -n 1 ||
      ls /usr/local/cuda/bin/ncu 2>/dev/null)
[[ -n "$ncu" ]] || { echo "profile_gpu_step: no ncu: part 2 not run"; exit 0; }
ncu_run() { # ncu_run CSV COMMAND...: every kernel's duration, one metric, no clock control
  local csv=$1
  shift
  timeout "${PROFILE_NCU_LIMIT:-90}" "$ncu" --clock-control none --metrics gpu__time_duration.sum --csv \
    --log-file "$csv" "$@" >/dev/null 2>&1 || echo "profile_gpu_step: ncu on $* failed or timed out"
}
echo "== ncu: one warm-up and one timed step at depth 2"
ncu_run "$out/ncu_ocl.csv" "$bench" --config "$cfg" "${base[@]}" --set model.depth=2 --steps 1 \
  --warmup 1 --loader-batches 1 --matmul-size 0
ncu_run "$out/ncu_pytorch.csv" "$python" scripts/bench_gpu.py --img 224 --patch 16 --dim 1024 \
  --depth 2 --heads 16 --batch 128 --mask-ratio 0.4 --steps 1 --warmup 1 --compile off
"$python" - "$out/ncu_ocl.csv" "$out/ncu_pytorch.csv" <<'EOF' | tee "$out/kernels.txt"
import csv, sys, collections

def read(path):
    """Kernel name -> (count, total microseconds), from ncu's --csv log."""
    sums = collections.defaultdict(lambda: [0, 0.0])
    try:
        lines = open(path, errors="replace").read().splitlines()
    except OSError:
        return sums
    start = next((i for i, l in enumerate(lines) if l.startswith('"ID"')), None)
    if start is None:
        return sums
    for row in csv.DictReader(lines[start:]):
        if row.get("Metric Name") != "gpu__time_duration.sum":
            continue
        value = float(row["Metric Value"].replace(",", ""))
        unit = row.get("Metric Unit", "")
        scale = {"ns": 1e-3, "nsecond": 1e-3, "us": 1.0, "usecond": 1.0, "ms": 1e3,
                 "msecond": 1e3}
        if unit not in scale:
            sys.exit(f"profile_gpu_step: unknown time unit '{unit}' in {path}")
        us = value * scale[unit]
        name = row["Kernel Name"][:90]
        sums[name][0] += 1
        sums[name][1] += us
    return sums

ocl, pt = read(sys.argv[1]), read(sys.argv[2])
for label, s in (("ocl", ocl), ("pytorch", pt)):
    print(f"{label}: {sum(c for c, _ in s.values())} kernels, "
          f"{sum(t for _, t in s.values()) / 1e3:.1f} ms in all (whole process)")
print(f"\n{'kernel':92s} {'ocl n':>6s} {'ocl us':>8s} {'pt n':>6s} {'pt us':>8s}")
names = sorted(set(ocl) | set(pt), key=lambda n: -max(ocl.get(n, [0, 0])[1], pt.get(n, [0, 0])[1]))
for n in names[:45]:
    o, p = ocl.get(n, [0, 0.0]), pt.get(n, [0, 0.0])
    print(f"{n:92s} {o[0]:6d} {o[1]:8.1f} {p[0]:6d} {p[1]:8.1f}")
EOF
