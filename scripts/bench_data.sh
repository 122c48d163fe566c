#!/usr/bin/env bash
# Data-loading throughput, side by side in one run: ocl's pre-training loader (decode →
# RandomResizedCrop 224 → flip → uint8 batches; ocl_bench --data) on an ImageFolder of JPEGs
# decoded whole (data.decode full) and only in the crop's region (region), on the same images
# packed as JPEG and as raw pixels (ocl_pack), as WebDataset tar shards (ocl_pack --format
# webdataset, the packed JPEG's encoding; with the time the shards' index takes to build and to
# read from its cache), and torchvision's ImageFolder + DataLoader doing
# the same work (scripts/bench_data_torchvision.py), with 1 worker and with one per core. Then
# the same on a smaller set of images twice the size (~1000x750), where crops of 448 pixels and
# more let the decoder work at half scale (data.decode reduced). A benchmark, not a test: it
# prints, it asserts nothing.
#
#   bash scripts/bench_data.sh                   1,200 generated photo-like JPEGs (~500x375, q90)
#   COUNT=5000 BATCHES=40 LARGE_COUNT=600 bash scripts/bench_data.sh
#   FOLDER=/data/imagenet bash scripts/bench_data.sh       (an existing ImageFolder root)
#
# Generated data and packs go to $WORK (default /var/tmp/ocl-bench-data) and are reused.
# Needs build/apps/ocl_bench and ocl_pack ($OCL_BUILD_DIR for another build folder); installs
# Debian's python3-torchvision when it is missing (as root).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
build=${OCL_BUILD_DIR:-build}
work=${WORK:-/var/tmp/ocl-bench-data}
count=${COUNT:-1200}
large_count=${LARGE_COUNT:-400}
batches=${BATCHES:-20}
cores=$(nproc)
folder=${FOLDER:-$work/folder}
for app in ocl_bench ocl_pack; do
  [[ -x "$build/apps/$app" ]] || { echo "bench_data: $build/apps/$app not built" >&2; exit 2; }
done
if ! /usr/bin/python3 -c 'import torchvision' 2>/dev/null; then
  echo "bench_data: installing python3-torchvision" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-torchvision >/dev/null
fi
if [[ ! -d "$folder/train" ]]; then
  /usr/bin/python3 scripts/make_bench_images.py "$folder" --count "$count" --val 64
fi
large=$work/folder-large
if [[ ! -d "$large/train" ]]; then
  /usr/bin/python3 scripts/make_bench_images.py "$large" --count "$large_count" --val 16 --scale 2 --seed 1
fi
for enc in jpeg raw; do
  if [[ ! -f "$work/pack-$enc/train/index.ocl" ]]; then
    "$build/apps/ocl_pack" --source "$folder" --output "$work/pack-$enc" --encoding "$enc" --split train >/dev/null
  fi
done

if [[ ! -f "$work/wds/train-000000.tar" ]]; then
  "$build/apps/ocl_pack" --source "$folder" --output "$work/wds" --format webdataset --split train >/dev/null
fi
wds_shards=$(ls "$work"/wds/train-*.tar | wc -l)
wds="$work/wds/train-{000000..$(printf '%06d' $((wds_shards - 1)))}.tar"

# Every row reads from the page cache: the files are read once first, so the first row does
# not pay for the disk and the rest do not get it for free.
find "$folder" "$large" "$work/pack-jpeg" "$work/pack-raw" "$work/wds" -type f -exec cat {} + >/dev/null

get() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1; }
ocl() { # ocl DATASET PATH WORKERS DECODE → img/s
  local out
  out=$("$build/apps/ocl_bench" --data --config configs/vitb16.yaml --loader-batches "${BATCHES:-$batches}" \
    --set "data.dataset=$1" --set "data.path=$2" --set "data.workers=$3" --set "data.decode=$4" \
    --set train.threads=1 --set train.device=cpu --set train.batch_size=64 \
    --set data.crop_scale_min=0.2 2>/dev/null)
  get "$out" loader_img_per_s
}
tv() { # tv ROOT WORKERS → img/s
  get "$(/usr/bin/python3 scripts/bench_data_torchvision.py "$1/train" --workers "$2" --batches "$batches" 2>/dev/null)" torchvision_img_per_s
}

# The index of one shard of a few thousand samples (the train folder's JPEGs three times over,
# written by Python's tarfile, each with its .cls), built from the tar headers: the time the
# data set reports for it (WebDataset::describe), on a first opening and with its index removed.
big_shard=$work/wds-index/big-000000.tar
if [[ ! -f "$big_shard" ]]; then
  mkdir -p "$work/wds-index"
  /usr/bin/python3 - "$folder/train" "$big_shard" <<'PY'
import io, os, sys, tarfile
root, out = sys.argv[1], sys.argv[2]
files = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f.endswith(".jpg"))
with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
    for copy in range(3):
        for i, path in enumerate(files):
            key = "%d_%06d" % (copy, i)
            tar.add(path, arcname=key + ".jpg")
            label = b"%d" % (i % 10)
            info = tarfile.TarInfo(key + ".cls")
            info.size = len(label)
            tar.addfile(info, io.BytesIO(label))
PY
fi
index_time() {
  rm -f "$big_shard.ocl-index"
  "$build/apps/ocl_bench" --data --config configs/vitb16.yaml --loader-batches 1 \
    --set data.dataset=webdataset --set "data.path=$big_shard" --set data.workers=1 \
    --set train.threads=1 --set train.device=cpu --set train.batch_size=64 2>/dev/null |
    sed -n 's/.*shards indexed in \([0-9.]*\) s.*/\1/p'
}
big_samples=$(( $(find "$folder/train" -name '*.jpg' | wc -l) * 3 ))
big_mb=$(du -m "$big_shard" | cut -f1)
wds_index_1=$(index_time)
wds_index_2=$(index_time)

declare -A r
for w in 1 "$cores"; do
  r[tv,$w]=$(tv "$folder" "$w")
  r[full,$w]=$(ocl imagefolder "$folder" "$w" full)
  r[region,$w]=$(ocl imagefolder "$folder" "$w" region)
  r[jpeg,$w]=$(ocl packed "$work/pack-jpeg" "$w" region)
  r[raw,$w]=$(ocl packed "$work/pack-raw" "$w" region)
  r[wds,$w]=$(ocl webdataset "$wds" "$w" region)
  r[ltv,$w]=$(tv "$large" "$w")
  r[lfull,$w]=$(ocl imagefolder "$large" "$w" full)
  r[lregion,$w]=$(ocl imagefolder "$large" "$w" region)
  r[lreduced,$w]=$(ocl imagefolder "$large" "$w" reduced)
done
images=$(find "$folder/train" -name '*.jpg' | wc -l)
raw_bytes=$(du -sb "$work/pack-raw/train" | awk '{print $1}')
jpeg_kb=$(du -sb "$folder/train" | awk -v n="$images" '{printf "%.0f", $1 / n / 1024}')

echo "data: $images JPEGs in $folder/train ($jpeg_kb KB on average); batch 64, RandomResizedCrop 224 (scale 0.2-1, bicubic) + flip; $cores cores"
printf '%-40s %14s %14s %12s\n' "pipeline (img/s)" "1 worker" "$cores workers" "vs torchvision"
row() { # row NAME KEY BASELINE
  printf '%-40s %14s %14s' "$1" "${r[$2,1]}" "${r[$2,$cores]}"
  awk -v a="${r[$2,1]}" -v b="${r[$3,1]}" 'BEGIN { printf " %11.2fx\n", a / b }'
}
row "torchvision ImageFolder + DataLoader" tv tv
row "ocl ImageFolder, whole-image decode" full tv
row "ocl ImageFolder, crop-region decode" region tv
row "ocl packed JPEG (q90, short 256)" jpeg tv
row "ocl packed raw (short 256)" raw tv
row "ocl WebDataset shards (q90, short 256)" wds tv
echo "WebDataset index of one shard of $big_samples samples ($big_mb MB): built in $wds_index_1 s, again $wds_index_2 s"
awk -v i="${r[raw,$cores]}" -v b="$raw_bytes" -v n="$images" \
  'BEGIN { printf "packed raw with %s workers reads %.2f GB/s of pixels (%.0f KB an image)\n", "'"$cores"'", i * b / n / 1e9, b / n / 1024 }'
large_images=$(find "$large/train" -name '*.jpg' | wc -l)
large_kb=$(du -sb "$large/train" | awk -v n="$large_images" '{printf "%.0f", $1 / n / 1024}')
echo
echo "data: $large_images JPEGs of about 1000x750 in $large/train ($large_kb KB on average), the rest as above"
printf '%-40s %14s %14s %12s\n' "pipeline (img/s)" "1 worker" "$cores workers" "vs torchvision"
row "torchvision ImageFolder + DataLoader" ltv ltv
row "ocl ImageFolder, whole-image decode" lfull ltv
row "ocl ImageFolder, crop-region decode" lregion ltv
row "ocl ImageFolder, region + reduced scale" lreduced ltv
