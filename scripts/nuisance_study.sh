#!/usr/bin/env bash
# The nuisance study of docs/shortcuts.md: the quickstart budget (8 epochs of a 4-block ViT on
# 4,096 synthetic 32x32 images) on the default synthetic set, on each per-image nuisance alone and
# on all of them together, three recipes each:
#   paper    configs/quickstart.yaml (OCL as the paper runs it: crop and flip only)
#   patch    the same with model.input_norm=patch
#   robust   configs/quickstart_robust.yaml (patch standardisation, and each token group with a
#            lighting ramp and pixel noise of its own)
# The data conditions (data.synthetic_* keys; each nuisance is drawn per image):
#   default  shared palettes, nothing else
#   colours  synthetic_colours=random (a background gradient between two random colours, random hues)
#   noise    synthetic_noise=32 (Gaussian pixel noise of sigma U[0, 32] levels)
#   gradient synthetic_gradient=96 (a lighting ramp of U[-96, 96] levels per channel)
#   strokes  synthetic_strokes=3 (three long clutter strokes)
#   all      all four together
# It prints one table: kNN top-1 of the random encoder (the paper run's monitor before training),
# of each recipe after training, each recipe's last-epoch contrastive accuracy and how often its
# shortcut alarm fired.
#
#   bash scripts/nuisance_study.sh [OUT_DIR] [SEED...]
# OUT_DIR defaults to runs/nuisance-study, the seeds to 0 and 1 (train.seed: the data set's
# draw, the initialisation and every augmentation). Each run writes OUT_DIR/s<seed>-<condition>-
# <recipe>/ and is skipped when its metrics.jsonl holds the final kNN record (a rerun completes
# what was cut short). Environment: CONDITIONS and RECIPES (space-separated) pick a subset; TABLE=1
# prints the table of what is there without running anything. About 3-5 minutes a run on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/nuisance-study}
shift || true
seeds=("$@")
[[ ${#seeds[@]} -gt 0 ]] || seeds=(0 1)
bin=build/apps/ocl_pretrain
conditions=(${CONDITIONS:-all colours noise gradient strokes default})
recipes=(${RECIPES:-paper patch robust})
declare -A data=(
  [default]=""
  [colours]="data.synthetic_colours=random"
  [noise]="data.synthetic_noise=32"
  [gradient]="data.synthetic_gradient=96"
  [strokes]="data.synthetic_strokes=3"
  [all]="data.synthetic_colours=random data.synthetic_noise=32 data.synthetic_gradient=96 data.synthetic_strokes=3")
declare -A config=([paper]=configs/quickstart.yaml [patch]=configs/quickstart.yaml
                   [robust]=configs/quickstart_robust.yaml)
declare -A extra=([paper]="" [patch]="model.input_norm=patch" [robust]="")
epochs=$(sed -n 's/^  epochs: *\([0-9]*\).*/\1/p' configs/quickstart.yaml | head -1)

if [[ ${TABLE:-0} != 1 ]]; then
  [[ -x $bin ]] || { echo "nuisance_study: build $bin first (cmake --build build --target ocl_pretrain)" >&2; exit 1; }
  mkdir -p "$out"
  for seed in "${seeds[@]}"; do
    for condition in "${conditions[@]}"; do
      [[ -v data[$condition] ]] || { echo "nuisance_study: no condition '$condition'" >&2; exit 2; }
      for recipe in "${recipes[@]}"; do
        [[ -v config[$recipe] ]] || { echo "nuisance_study: no recipe '$recipe'" >&2; exit 2; }
        dir=$out/s$seed-$condition-$recipe
        if [[ -f $dir/metrics.jsonl ]] &&
           grep -q "\"type\":\"knn\".*\"epoch\":$epochs[,}]" "$dir/metrics.jsonl"; then
          echo "nuisance_study: $dir is complete, kept"
          continue
        fi
        args=()
        for kv in ${data[$condition]} ${extra[$recipe]} "train.seed=$seed" "train.output_dir=$dir" \
                  "log.progress=lines"; do
          args+=(--set "$kv")
        done
        echo "nuisance_study: seed $seed / $condition / $recipe -> $dir"
        start=$(date +%s)
        "$bin" --config "${config[$recipe]}" "${args[@]}" --overwrite > "$dir.log" 2>&1 ||
          { echo "nuisance_study: the run failed, see $dir.log" >&2; tail -5 "$dir.log" >&2; exit 1; }
        echo "  done in $(( $(date +%s) - start )) s"
      done
    done
  done
fi

/usr/bin/python3 - "$out" "${seeds[*]}" "${conditions[*]}" "${recipes[*]}" <<'PY'
import json, os, sys
out, seeds, conditions, recipes = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), sys.argv[4].split()

def read(seed, condition, recipe):
    path = os.path.join(out, f"s{seed}-{condition}-{recipe}", "metrics.jsonl")
    if not os.path.exists(path):
        return None
    recs = [json.loads(l) for l in open(path) if l.strip()]
    knn = [r for r in recs if r.get("type") == "knn"]
    ep = [r for r in recs if r.get("type") == "epoch"]
    if len(knn) < 2 or not ep:
        return None
    alarms = sum(1 for r in recs if r.get("type") == "shortcut" and r.get("alarm"))
    return knn[0]["knn_top1"], knn[-1]["knn_top1"], ep[-1]["accuracy"], alarms

head = "| data | seed | random encoder |" + "".join(f" {r} |" for r in recipes)
print()
print("kNN top-1 (%) after training; in brackets: last-epoch contrastive accuracy, shortcut alarms")
print(head)
print("|---|---|---|" + "---|" * len(recipes))
for condition in conditions:
    for seed in seeds:
        cells, random = [], None
        for recipe in recipes:
            r = read(seed, condition, recipe)
            if r is None:
                cells.append("–")
                continue
            if recipe == "paper":
                random = r[0]
            cells.append(f"{r[1]:.2f} ({r[2]:.3f}, {r[3]})")
        rnd = f"{random:.2f}" if random is not None else "–"
        print(f"| {condition} | {seed} | {rnd} |" + "".join(f" {c} |" for c in cells))
PY
