#!/usr/bin/env bash
# Builds and runs ocl's libFuzzer targets (fuzz/): every reader of untrusted bytes, under
# AddressSanitizer and UndefinedBehaviorSanitizer, with clang.
#
#   bash scripts/fuzz.sh TARGET SECONDS [LIBFUZZER_FLAG...]   one target for SECONDS
#   bash scripts/fuzz.sh all SECONDS [LIBFUZZER_FLAG...]      each target for SECONDS, one a core
#                                                             at a time ($OCL_FUZZ_JOBS: how many)
#   bash scripts/fuzz.sh --list                               the targets
#   bash scripts/fuzz.sh --seeds                              rewrite fuzz/corpus/ (ocl_fuzz_seeds)
#
# Build folder: $OCL_FUZZ_BUILD_DIR (default build-fuzz/ in the repository); corpora, findings
# and logs go to $OCL_FUZZ_WORK_DIR (default: the build folder). Each target starts
# from its seeds (fuzz/corpus/TARGET) and past findings (fuzz/regressions/TARGET), and keeps
# what it discovers in BUILD/corpus/TARGET, so a later run goes on from there. A finding (crash,
# sanitizer report, broken invariant, timeout, out of memory) is saved under BUILD/findings/TARGET/
# and the script exits 1 naming it; once fixed, copy it to fuzz/regressions/TARGET/ (the unit
# tests replay that folder). Each target's line in the summary gives its executions and seconds.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
build=${OCL_FUZZ_BUILD_DIR:-$repo/build-fuzz}
[[ "$build" == /* ]] || build=$repo/$build
work_root=${OCL_FUZZ_WORK_DIR:-$build}
[[ "$work_root" == /* ]] || work_root=$repo/$work_root
jobs=$(nproc 2>/dev/null || echo 2)
targets=(safetensors pack jpeg_region image cifar config state_json tar)

usage() {
  sed -n '5,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

configure_and_build() { # configure_and_build TARGET...
  bash scripts/install-deps.sh --fuzz
  if [[ ! -f "$build/build.ninja" ]]; then
    CXX=clang++ cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOCL_FUZZ=ON \
      -DOCL_BUILD_TESTS=OFF -DOCL_BUILD_APPS=OFF
  fi
  cmake --build "$build" -j"$jobs" --target "$@"
}

# run_target NAME SECONDS FLAGS...: one libFuzzer run; prints the summary line; 0 if no finding.
run_target() {
  local name=$1 seconds=$2
  shift 2
  local work="$work_root/corpus/$name" findings="$work_root/findings/$name"
  local tmp="$work_root/tmp/$name" log="$work_root/logs/$name.log"
  mkdir -p "$work" "$findings" "$work_root/logs"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  local seeds=("fuzz/corpus/$name")
  [[ -d "fuzz/regressions/$name" ]] && seeds+=("fuzz/regressions/$name")
  local before
  before=$(find "$findings" -type f | sort)
  echo "fuzz: $name for $seconds s (log: ${log#"$repo"/})"
  local rc=0
  # OpenCV's imgcodecs reads its own pixel limit (2^30 by default) from the environment when
  # it loads: the same 4 Mpx as the targets' data::set_max_image_pixels, so that a BMP or TIFF
  # header claiming a huge picture is refused rather than taking 3 GB of the fuzzer's memory.
  TMPDIR=$tmp OPENCV_IO_MAX_IMAGE_PIXELS=4194304 \
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
    "$build/fuzz/ocl_fuzz_$name" "$work" "${seeds[@]}" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$findings/" "$@" >"$log" 2>&1 || rc=$?
  rm -rf "$tmp"
  local runs secs
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -n 1)
  local new
  new=$(comm -13 <(echo "$before") <(find "$findings" -type f | sort))
  if ((rc != 0)) || [[ -n "$new" ]]; then
    printf 'fuzz: %-12s FINDING after %s executions (exit %d)\n' "$name" "${runs:-?}" "$rc"
    grep -E "==[0-9]+== ?ERROR|SUMMARY:|runtime error:|invariant broken|Assertion|what\(\):" \
      "$log" | head -n 5 |
      sed 's/^/fuzz:   /'
    [[ -z "$new" ]] || echo "$new" | head -n 3 | sed "s|^|fuzz:   input: |"
    echo "fuzz:   reproduce: $build/fuzz/ocl_fuzz_$name INPUT (then copy INPUT to" \
      "fuzz/regressions/$name/ with the fix)"
    return 1
  fi
  printf 'fuzz: %-12s %10s executions in %4s s  (%s/s), no finding; corpus %s files\n' \
    "$name" "${runs:-?}" "${secs:-?}" "$(( ${runs:-0} / (${secs:-1} > 0 ? ${secs:-1} : 1) ))" \
    "$(find "$work" -type f | wc -l)"
}

[[ $# -ge 1 ]] || usage
case "$1" in
  --list)
    printf '%s\n' "${targets[@]}"
    exit 0
    ;;
  --seeds)
    configure_and_build ocl_fuzz_seeds
    rm -rf fuzz/corpus
    "$build/fuzz/ocl_fuzz_seeds" fuzz/corpus configs
    exit 0
    ;;
esac
[[ $# -ge 2 && "$2" =~ ^[0-9]+$ && "$2" -ge 1 ]] || usage
selected=("$1")
if [[ "$1" == all ]]; then
  selected=("${targets[@]}")
elif [[ ! " ${targets[*]} " == *" $1 "* ]]; then
  echo "fuzz: unknown target '$1' (known: ${targets[*]} all)" >&2
  exit 2
fi
seconds=$2
shift 2

configure_and_build "${selected[@]/#/ocl_fuzz_}"
# One target a core at a time: each run is single-threaded and timed by the wall clock, so
# running them side by side gives each the same executions as a run alone, in half the time.
failed=0
parallel=${OCL_FUZZ_JOBS:-$jobs}
pids=()
outs=()
for name in "${selected[@]}"; do
  if ((${#pids[@]} >= parallel)); then
    wait "${pids[0]}" || failed=1
    cat "${outs[0]}"
    rm -f "${outs[0]}"
    pids=("${pids[@]:1}")
    outs=("${outs[@]:1}")
  fi
  out=$(mktemp)
  run_target "$name" "$seconds" "$@" >"$out" 2>&1 &
  pids+=("$!")
  outs+=("$out")
done
for i in "${!pids[@]}"; do
  wait "${pids[i]}" || failed=1
  cat "${outs[i]}"
  rm -f "${outs[i]}"
done
exit "$failed"
