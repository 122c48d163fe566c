#!/usr/bin/env bash
# The colour-shortcut study of docs/shortcuts.md: the quickstart (configs/quickstart.yaml, 8
# epochs of a 4-block ViT on 4,096 synthetic 32x32 images) on the default synthetic set and on
# its hard-colour variant (data.synthetic_colours=random), seven ways each:
#   paper                OCL as the paper runs it (crop and flip only)
#   patch                the paper's recipe with model.input_norm=patch (each patch of each
#                        channel standardised before the patch embedding)
#   byol, simclr         data.photometric=byol / simclr, one image for both token groups
#   byol-independent,    the same with mask.group_views=independent: each group reads its own
#   simclr-independent   colour draw of the crop
#   simclr-independent-lit  and its own illumination gradient (data.illumination=96)
# and prints one table: kNN top-1 of the random encoder (the monitor before training), after
# training, the last epoch's contrastive accuracy and how often the shortcut alarm fired.
#
#   bash scripts/shortcut_study.sh [OUT_DIR] [extra --set overrides...]
# OUT_DIR defaults to runs/shortcut-study; each run writes OUT_DIR/<set>-<variant>/ and is
# skipped when its metrics.jsonl already holds the final kNN record (so a rerun completes one
# that was cut short; delete the folder to redo it). About 4-5 minutes per run on 2 cores.
# Another seed (data set, initialisation and draws): bash scripts/shortcut_study.sh DIR train.seed=1
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/shortcut-study}
shift || true
bin=build/apps/ocl_pretrain
[[ -x $bin ]] || { echo "shortcut_study: build $bin first (cmake --build build --target ocl_pretrain)" >&2; exit 1; }
mkdir -p "$out"

declare -A sets=([default]="data.synthetic_colours=palette" [hard]="data.synthetic_colours=random")
declare -A variants=(
  [paper]="data.photometric=none mask.group_views=shared"
  [patch]="data.photometric=none mask.group_views=shared model.input_norm=patch"
  [byol]="data.photometric=byol mask.group_views=shared"
  [byol-independent]="data.photometric=byol mask.group_views=independent"
  [simclr]="data.photometric=simclr mask.group_views=shared"
  [simclr-independent]="data.photometric=simclr mask.group_views=independent"
  [simclr-independent-lit]="data.photometric=simclr mask.group_views=independent data.illumination=96")
order=(paper patch byol byol-independent simclr simclr-independent simclr-independent-lit)

epochs=$(sed -n 's/^  epochs: *\([0-9]*\).*/\1/p' configs/quickstart.yaml | head -1)
for set in hard default; do
  for variant in "${order[@]}"; do
    dir=$out/$set-$variant
    if [[ -f $dir/metrics.jsonl ]] &&
       grep -q "\"type\":\"knn\".*\"epoch\":$epochs[,}]" "$dir/metrics.jsonl"; then
      echo "shortcut_study: $dir is complete, kept"
      continue
    fi
    args=()
    for kv in ${sets[$set]} ${variants[$variant]} "train.output_dir=$dir" "log.progress=lines" "$@"; do
      args+=(--set "$kv")
    done
    echo "shortcut_study: $set / $variant -> $dir"
    start=$(date +%s)
    "$bin" --config configs/quickstart.yaml "${args[@]}" --overwrite > "$dir.log" 2>&1 ||
      { echo "shortcut_study: the run failed, see $dir.log" >&2; tail -5 "$dir.log" >&2; exit 1; }
    echo "  done in $(( $(date +%s) - start )) s"
  done
done

/usr/bin/python3 - "$out" <<'EOF'
import json, os, sys
out = sys.argv[1]
print()
print("| data set | variant | kNN top-1, random encoder | kNN top-1, trained | contrastive acc. (last epoch) | shortcut alarms |")
print("|---|---|---|---|---|---|")
for s in ("default", "hard"):
    for v in ("paper", "patch", "byol", "byol-independent", "simclr", "simclr-independent",
              "simclr-independent-lit"):
        path = os.path.join(out, f"{s}-{v}", "metrics.jsonl")
        recs = [json.loads(l) for l in open(path) if l.strip()]
        knn = [r for r in recs if r.get("type") == "knn"]
        ep = [r for r in recs if r.get("type") == "epoch"]
        alarms = sum(1 for r in recs if r.get("type") == "shortcut" and r.get("alarm"))
        print(f"| {s} | {v} | {knn[0]['knn_top1']:.2f} | {knn[-1]['knn_top1']:.2f} | "
              f"{ep[-1]['accuracy']:.3f} | {alarms} |")
EOF
