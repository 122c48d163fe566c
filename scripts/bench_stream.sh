#!/usr/bin/env bash
# Streamed WebDataset shards against the same shards read in place: ocl's pre-training loader
# (ocl_bench --data: decode → RandomResizedCrop 224 → flip → uint8 batches) over ocl_pack's
# shards of generated photo-like JPEGs, through their index (data.read index), as local streams
# (data.read stream), through `pipe:cat` and from a loopback HTTP server
# (tests/unit/shard_server.py, libcurl), one worker each, every row run twice. A benchmark, not
# a test: it prints, it asserts nothing.
#
#   bash scripts/bench_stream.sh                    1,200 images (~500x375, q90), 40 batches of 64
#   COUNT=3000 BATCHES=80 WORKERS=2 bash scripts/bench_stream.sh
#
# Generated images and shards go to $WORK (default /var/tmp/ocl-bench-stream) and are reused.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
build=${OCL_BUILD_DIR:-build}
work=${WORK:-/var/tmp/ocl-bench-stream}
count=${COUNT:-1200}
batches=${BATCHES:-40}
workers=${WORKERS:-1}
for app in ocl_bench ocl_pack; do
  [[ -x "$build/apps/$app" ]] || { echo "bench_stream: $build/apps/$app not built" >&2; exit 2; }
done
[[ -d "$work/folder/train" ]] ||
  /usr/bin/python3 scripts/make_bench_images.py "$work/folder" --count "$count" --val 16
# Shards of about 8 MB: several per worker, as in a real run.
[[ -f "$work/wds/train-000000.tar" ]] ||
  "$build/apps/ocl_pack" --source "$work/folder" --output "$work/wds" --format webdataset \
    --split train --shard-mb 8 >/dev/null
shards=$(ls "$work"/wds/train-*.tar | wc -l)
range="{000000..$(printf '%06d' $((shards - 1)))}"
find "$work/wds" -type f -exec cat {} + >/dev/null  # every row reads from the page cache

rm -f "$work/port"
/usr/bin/python3 tests/unit/shard_server.py "$work/wds" "$work/port" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do [[ -f "$work/port" ]] && break; sleep 0.1; done
url="http://127.0.0.1:$(cat "$work/port")/ok/train-$range.tar"

run() { # run PATH READ → img/s
  "$build/apps/ocl_bench" --data --config configs/vitb16.yaml --loader-batches "$batches" \
    --set data.dataset=webdataset --set "data.path=$1" --set "data.read=$2" --set eval.knn_every=0 \
    --set "data.workers=$workers" --set data.decode=region --set train.threads=1 \
    --set train.device=cpu --set train.batch_size=64 2>/dev/null |
    sed -n 's/.*loader_img_per_s=\([0-9.]*\).*/\1/p'
}
echo "data: $(find "$work/folder/train" -name '*.jpg' | wc -l) JPEGs in $shards shards ($(du -sm "$work/wds" | cut -f1) MB); batch 64, RandomResizedCrop 224 + flip; $workers worker(s)"
printf '%-44s %10s %10s\n' "reading (img/s)" "run 1" "run 2"
printf '%-44s %10s %10s\n' "in place through the index (read: index)" "$(run "$work/wds/train-$range.tar" index)" "$(run "$work/wds/train-$range.tar" index)"
printf '%-44s %10s %10s\n' "local streams (read: stream)" "$(run "$work/wds/train-$range.tar" stream)" "$(run "$work/wds/train-$range.tar" stream)"
printf '%-44s %10s %10s\n' "a pipe: command (pipe:cat)" "$(run "pipe:cat $work/wds/train-$range.tar" stream)" "$(run "pipe:cat $work/wds/train-$range.tar" stream)"
printf '%-44s %10s %10s\n' "loopback HTTP (libcurl)" "$(run "$url" stream)" "$(run "$url" stream)"
