#!/usr/bin/env bash
# The whole GPU path checked and measured in one call, on a machine with no package manager:
# the project's lent GPU machines (one H100 or H200, minutes at a time) or a user's cluster
# node. Needs python3 with PyTorch (its LibTorch is what ocl builds against), a C++20 compiler,
# CMake and Ninja, and the kit from scripts/make-gpu-kit.sh for everything else.
#
#   bash scripts/gpu-check.sh                        every stage; the kit from .gpu-kit/
#   bash scripts/gpu-check.sh --kit /tmp/ocl-gpu-kit.tar.xz --out /tmp/report
#   bash scripts/gpu-check.sh --only bench           one stage (others keep their last result)
#   bash scripts/gpu-check.sh --skip bench,timm      all but these
#   bash scripts/gpu-check.sh --rerun                run stages that passed before again too
#   bash scripts/gpu-check.sh --fresh                forget everything, rebuild from scratch
#   bash scripts/gpu-check.sh --budget 540           end within 540 s (the default: 9 minutes)
#
# A lent GPU machine gives 15 minutes in all, its start included, and one call at most 10: the
# visit is two calls (dev/gpu-visit.md has the plan and its timings):
#   1. bash scripts/gpu-check.sh --skip bench --budget 500     build, tests, the real run, timm
#   2. BENCH_MODELS=vitl16 BENCH_COMPILE=off bash scripts/gpu-check.sh --only bench --budget 240
#
# Stages, in order (a line of progress each; each has a time limit, STAGE_LIMIT_<NAME> seconds,
# cut to what is left of the budget; a stage that needs more than is left is deferred to the
# next call, so one call never outlasts the budget):
#   versions  compiler, CMake, Python, torch, CUDA, GPU, driver, glibc, cores
#   build     scripts/build-gpu.sh against python3's LibTorch with the kit as PREFIX, all cores:
#             the apps and the unit, reference and gpu tests; whether NCCL was found
#   test      ctest -L "unit|reference|gpu" -j <cores> (TEST_LABELS: another set, with the
#             build's test programs to match); on a GPU no gpu test may skip
#   pretrain  a real ocl_pretrain (ViT-B/16, 224², bf16 on a GPU; a small ViT on a CPU) on the
#             synthetic set through the loader: SIGTERM after the first checkpoint, --resume
#             auto to the end, then ocl_knn (features saved) and a few ocl_finetune steps
#   timm      the run's encoder.safetensors in timm.create_model(...) against ocl_knn's
#             features of the same input images (needs timm and safetensors in python3)
#   bench     scripts/bench_gpu.sh: ViT-B/16 r0.3 and ViT-L/16 r0.4 (BENCH_MODELS), ocl beside
#             PyTorch eager and torch.compile (BENCH_COMPILE=off drops it); without CUDA a smoke run of the same script on the CPU at the
#             quickstart size, so that the script, both sides and its table are proven before
#             a GPU's minutes go to them. Either way the table must come out whole.
# NCCL is exercised by the gpu test GpuNccl.* (one rank: the machine has one GPU).
#
# State lives in --work (default .gpu-check/ in the repository, which git ignores and the
# device machine keeps between calls): the build, the runs, and one status file per stage. A
# second call re-runs only stages that did not pass (the build is incremental), so a failing
# stage costs one rerun, not a rebuild. Without CUDA the GPU-only parts skip, saying so.
#
# Output (--out, default $OUT, else .gpu-check/out): report.md (the table, versions, bench
# table, failures' log tails) and logs.tar.gz (every stage's full log).
set -uo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
kit=""
work="$repo/.gpu-check"
out=""
only=""
skip=""
rerun=0
fresh=0
budget=540
all_stages=(versions build test pretrain timm bench)

usage() { sed -n '2,/^set -uo/p' "$0" | sed -e '/^set -uo/d' -e 's/^# \{0,1\}//'; exit "${1:-2}"; }
while (($#)); do
  case "$1" in
    --kit) kit=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --skip) skip=$2; shift 2 ;;
    --rerun) rerun=1; shift ;;
    --fresh) fresh=1; shift ;;
    --budget) budget=$2; shift 2 ;;
    -h | --help) usage 0 ;;
    *) echo "gpu-check: unknown argument '$1'" >&2; usage ;;
  esac
done
for s in ${only//,/ } ${skip//,/ }; do
  [[ " ${all_stages[*]} " == *" $s "* ]] || { echo "gpu-check: unknown stage '$s' (${all_stages[*]})" >&2; exit 2; }
done
out=${out:-${OUT:-$work/out}}
((fresh)) && rm -rf "$work"
mkdir -p "$work/status" "$work/logs" "$out"
work=$(cd "$work" && pwd)
build="$work/build"
python=${PYTHON:-python3}
jobs=${JOBS:-$(nproc)}
t_start=$SECONDS

progress() { echo "gpu-check: $*"; }
have_cuda() { "$python" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; }

# ---------------------------------------------------------------------------------------------
# The kit: an archive or a folder; an archive is unpacked into the work folder once.
find_kit() {
  local k=$kit
  if [[ -z "$k" ]]; then
    for c in .gpu-kit/ocl-gpu-kit .gpu-kit/ocl-gpu-kit.tar.xz; do
      [[ -e "$c" ]] && { k=$c; break; }
    done
  fi
  [[ -n "$k" ]] || { echo ""; return 0; }
  if [[ -d "$k" ]]; then (cd "$k" && pwd); return 0; fi
  [[ -f "$k" ]] || { echo "gpu-check: no kit at $k" >&2; return 1; }
  local stamp="$work/kit/.from"
  local id; id="$(cd "$(dirname "$k")" && pwd)/$(basename "$k") $(stat -c '%s %Y' "$k")"
  if [[ "$(cat "$stamp" 2>/dev/null)" != "$id" ]]; then
    rm -rf "$work/kit"
    mkdir -p "$work/kit"
    tar -C "$work/kit" -xJf "$k" || { echo "gpu-check: cannot unpack $k" >&2; return 1; }
    echo "$id" >"$stamp"
  fi
  echo "$work/kit/ocl-gpu-kit"
}

# ---------------------------------------------------------------------------------------------
# Stages. Each writes its log to $log (set by run_stage) and returns 0 (pass), 1 (fail) or 3
# (skipped: nothing to check here), with a one-line result in $work/status/NAME.note.

stage_versions() {
  {
    echo "date:     $(date -u '+%F %T UTC')"
    echo "host:     $(uname -srm); $(nproc) cores; $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
    echo "os:       $(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME")"
    echo "glibc:    $(ldd --version 2>&1 | head -n 1)"
    echo "compiler: $(${CXX:-c++} --version 2>&1 | head -n 1)"
    echo "cmake:    $(cmake --version 2>&1 | head -n 1)"
    echo "ninja:    $(ninja --version 2>&1 || echo none)"
    echo "nvcc:     $(nvcc --version 2>/dev/null | tail -n 1 || echo none)"
    echo "python:   $("$python" --version 2>&1)"
    "$python" - <<'EOF' 2>&1
import torch
print(f"torch:    {torch.__version__} (CUDA {torch.version.cuda}, cxx11 ABI {torch.compiled_with_cxx11_abi()})")
print(f"libtorch: {torch.utils.cmake_prefix_path}")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"gpu:      {p.name}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs, "
          f"capability {p.major}.{p.minor}; {torch.cuda.device_count()} device(s)")
    v = torch.cuda.nccl.version()  # an int in older PyTorch, a tuple in newer
    print(f"nccl:     {'.'.join(map(str, v)) if isinstance(v, tuple) else v}")
else:
    print("gpu:      none (torch.cuda.is_available() is False)")
for name in ("timm", "safetensors"):
    try:
        print(f"{name + ':':9} {__import__(name).__version__}")
    except ImportError:
        print(f"{name + ':':9} not installed")
EOF
    if command -v nvidia-smi >/dev/null; then
      echo "driver:   $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -n 1)"
    fi
    echo "kit:      ${kit_dir:-none}"
    [[ -n "${kit_dir:-}" ]] && sed -n 's/^Needs: /          needs /p' "$kit_dir/KIT.txt"
  } | tee "$work/versions.txt"
  if ! "$python" -c 'import torch' 2>/dev/null; then
    echo "$python cannot import torch" | tee "$work/status/versions.note"
    # The build takes LibTorch from that PyTorch unless TORCH_DIR names one.
    [[ -n "${TORCH_DIR:-}" ]]
    return
  fi
  echo "$(grep '^gpu:' "$work/versions.txt" | cut -c11-); $(grep '^torch:' "$work/versions.txt" | cut -c11-)" \
    >"$work/status/versions.note"
}

stage_build() {
  local allow_cpu=0
  have_cuda || allow_cpu=1
  [[ -n "$kit_dir" ]] || echo "gpu-check: no kit (--kit, or .gpu-kit/): dependencies from the system"
  # What the later stages run, and no more: the integration tests are CI's (they take a third
  # of a full build and never run here).
  local targets="ocl_pretrain ocl_knn ocl_finetune ocl_linprobe ocl_bench ocl_reference_tests ocl_gpu_tests"
  [[ "${TEST_LABELS:-unit|reference|gpu}" != *unit* ]] || targets+=" ocl_unit_tests"
  local nccl_off=""
  build_with() { # build_with EXTRA_CMAKE_ARGS
    TARGETS=$targets ALLOW_CPU=$allow_cpu PREFIX=$kit_dir BUILD=$build JOBS=$jobs \
      PYTHON=$python CMAKE_ARGS="-DOCL_WERROR=OFF $1 ${CMAKE_ARGS:-}" bash scripts/build-gpu.sh
  }
  if ! build_with ""; then
    # No NCCL headers that fit this LibTorch: the rest of the visit still runs, without NCCL
    # (the gpu test GpuNccl.* then skips, which fails the test stage on a GPU and says why).
    grep -aqe '-DOCL_WITH_NCCL=OFF' "$log" || return 1
    echo "gpu-check: the NCCL check stopped the configure step: building without NCCL"
    nccl_off=" (NCCL check failed: see logs/build.log)"
    build_with "-DOCL_WITH_NCCL=OFF" || return 1
  fi
  local nccl
  nccl=$(grep -ao 'ocl: CUDA LibTorch, with[a-z ]*NCCL[0-9. ]*\|ocl: CPU LibTorch' "$log" | tail -n 1 | sed 's/^.*ocl: //')
  echo "${nccl:-LibTorch kind not reported}${nccl_off}; $(grep -c '' <(ls "$build"/apps/ocl_* 2>/dev/null)) apps" \
    >"$work/status/build.note"
}

stage_test() {
  [[ -x "$build/apps/ocl_pretrain" ]] || { echo "no build in $build: run the build stage"; return 1; }
  local rc=0
  ctest --test-dir "$build" -L "${TEST_LABELS:-unit|reference|gpu}" -j "$jobs" --output-on-failure \
    --timeout 600 || rc=1
  local summary skipped
  summary=$(grep -a 'tests passed' "$log" | tail -n 1)
  skipped=$(ctest --test-dir "$build" -L gpu -N 2>/dev/null | grep -c 'Test *#')
  if have_cuda; then
    # On a GPU, a skipped gpu test is a failure: it is what the machine is here for.
    local gpu_skips
    gpu_skips=$(awk '/The following tests did not run:/ { on = 1; next } on && /Skipped/ { print $3 }' "$log" | grep -c '^gpu\.' || true)
    if ((gpu_skips > 0)); then
      echo "gpu-check: $gpu_skips gpu test(s) skipped on a CUDA machine"
      rc=1
    fi
  fi
  echo "${summary:-no ctest summary}; $skipped gpu tests listed" >"$work/status/test.note"
  return "$rc"
}

# Waits (up to $2 seconds) for a file to exist.
wait_for() { local i; for ((i = 0; i < $2 * 10; i++)); do [[ -e "$1" ]] && return 0; sleep 0.1; done; return 1; }

stage_pretrain() {
  local bin="$build/apps" run="$work/runs/pretrain" cfg sets=()
  [[ -x "$bin/ocl_pretrain" ]] || { echo "no build in $build: run the build stage"; return 1; }
  rm -rf "$work/runs"
  if have_cuda; then
    cfg=configs/vitb16.yaml
    sets=(--set data.dataset=synthetic --set data.synthetic_train_size=12800
          --set data.synthetic_val_size=2048 --set "data.workers=$((jobs > 2 ? jobs - 2 : 1))"
          --set train.device=cuda --set train.precision=bf16 --set train.batch_size=128
          --set optim.accum_iter=1 --set train.epochs=4 --set "train.steps_per_epoch=${PRETRAIN_STEPS:-60}"
          --set optim.warmup_epochs=1 --set train.save_every=1 --set train.keep_last=2
          --set eval.knn_every=0 --set log.every=10 --set log.progress=lines)
  else
    cfg=configs/quickstart.yaml
    sets=(--set data.synthetic_train_size=1024 --set data.synthetic_val_size=256
          --set train.batch_size=64 --set train.epochs=3 --set "train.steps_per_epoch=${PRETRAIN_STEPS:-12}"
          --set train.save_every=1 --set train.keep_last=2 --set eval.knn_every=0
          --set log.every=2 --set log.progress=lines)
  fi
  sets+=(--set "train.output_dir=$run")
  echo "== ocl_pretrain --config $cfg ${sets[*]}"
  "$bin/ocl_pretrain" --config "$cfg" "${sets[@]}" &
  local pid=$!
  if ! wait_for "$run/checkpoint-last" 600; then
    kill "$pid" 2>/dev/null; wait "$pid"; echo "no checkpoint appeared"; return 1
  fi
  sleep "${PRETRAIN_TERM_AFTER:-0.5}"
  echo "== SIGTERM to ocl_pretrain (pid $pid) after its first checkpoint"
  kill -TERM "$pid"
  local rc=0
  wait "$pid" || rc=$?
  ((rc == 0)) || { echo "ocl_pretrain exited $rc after SIGTERM (expected 0 with a checkpoint)"; return 1; }
  grep -aq "stopped" "$log" ||
    { echo "the run ended before the signal arrived: raise PRETRAIN_STEPS"; return 1; }
  local stopped_at
  stopped_at=$(readlink "$run/checkpoint-last")
  echo "== stopped at $stopped_at; resuming"
  "$bin/ocl_pretrain" --config "$cfg" "${sets[@]}" --resume auto || { echo "resume failed"; return 1; }
  grep -q "resumed from" "$run/train.log" 2>/dev/null || grep -rq "resumed from" "$log" ||
    { echo "the second run did not say it resumed"; return 1; }
  local ckpts; ckpts=$(ls -d "$run"/checkpoint-0* 2>/dev/null | wc -l)
  ((ckpts >= 2)) || { echo "expected two checkpoints kept, found $ckpts"; return 1; }

  # fp32 without TF32, so that the timm stage can compare features tightly.
  echo "== ocl_knn on the final checkpoint (fp32)"
  "$bin/ocl_knn" --config "$cfg" "${sets[@]}" --set train.precision=fp32 --set train.tf32=false \
    --weights "$run/checkpoint-last" --train-size 1024 --val-size 256 \
    --save-features "$work/runs/features.safetensors" --save-inputs 16 ||
    { echo "ocl_knn failed"; return 1; }
  echo "== ocl_finetune: a few steps from the checkpoint"
  "$bin/ocl_finetune" --config "$cfg" "${sets[@]}" --weights "$run/checkpoint-last" \
    --set finetune.epochs=1 --set finetune.batch_size=32 --set finetune.model_ema=false \
    --set "finetune.output_dir=$work/runs/finetune" --stop-after-steps 5 ||
    { echo "ocl_finetune failed"; return 1; }
  local knn; knn=$(grep -a 'kNN k' "$log" | tail -n 1)
  echo "SIGTERM at $stopped_at, resumed to the end, $ckpts checkpoints kept; ${knn:-no kNN line}; finetune 5 steps" \
    >"$work/status/pretrain.note"
}

stage_timm() {
  local ckpt="$work/runs/pretrain/checkpoint-last" features="$work/runs/features.safetensors"
  "$python" -c 'import timm, safetensors' 2>/dev/null || {
    echo "timm or safetensors is not installed in $python"
    echo "timm or safetensors not installed" >"$work/status/timm.note"
    return 3
  }
  [[ -f "$features" && -e "$ckpt" ]] || { echo "no run to compare: run the pretrain stage"; return 1; }
  local arch=vit_base_patch16_224
  have_cuda || arch=custom:32,4,128,4,4  # configs/quickstart.yaml's ViT
  "$python" scripts/timm_check.py --encoder "$ckpt/encoder.safetensors" --features "$features" \
    --arch "$arch" | tee "$work/timm.txt" || return 1
  tail -n 1 "$work/timm.txt" >"$work/status/timm.note"
}

# Whether bench_gpu.sh's table in $1 is whole: the step time and img/s rows hold a number on
# both the C++ and the PyTorch side for every model, and every model has its ratio.
bench_table_whole() {
  local f=$1 row models
  models=$(grep -ac '^== ' "$f")
  ((models > 0)) || { echo "bench: no model in the output"; return 1; }
  for row in "step time (ms)" "training img/s"; do
    awk -v row="$row" -v want="$models" '
      substr($0, 1, length(row)) == row {
        n = split(substr($0, 31), f, " ")
        if (n >= 2 && f[1] ~ /^[0-9.]+$/ && f[2] ~ /^[0-9.]+$/) ok++
      }
      END { exit ok == want ? 0 : 1 }' "$f" ||
      { echo "bench: the '$row' row lacks a C++ or PyTorch figure"; return 1; }
  done
  [[ $(grep -acE '^C\+\+ / PyTorch eager: +[0-9.]+x$' "$f") == "$models" ]] ||
    { echo "bench: a model lacks its C++ / PyTorch eager ratio"; return 1; }
}

stage_bench() {
  local smoke=()  # without CUDA: the CPU at the quickstart size (later assignments win in env)
  have_cuda || smoke=(DEVICE=cpu MODELS=quickstart BATCH=16 STEPS=2 WARMUP=1 MAX_BATCH=0)
  ((${#smoke[@]} == 0)) || echo "no CUDA device: the comparison on the CPU (a smoke run)"
  env OCL_BUILD_DIR="$build" PYTHON="$python" STEPS="${BENCH_STEPS:-20}" \
    MAX_BATCH="${BENCH_MAX_BATCH:-0}" MODELS="$BENCH_MODELS" \
    COMPILE="${BENCH_COMPILE:-auto}" "${smoke[@]}" bash scripts/bench_gpu.sh |
    tee "$work/bench.txt" || return 1
  bench_table_whole "$work/bench.txt" || return 1
  if ((${#smoke[@]})); then
    echo "CPU smoke run, no GPU figure: the table is whole" >"$work/status/bench.note"
  else
    grep -a 'C++ / PyTorch eager' "$work/bench.txt" | paste -sd' ' >"$work/status/bench.note"
  fi
}

# ---------------------------------------------------------------------------------------------

declare -A limit=([versions]=60 [build]=420 [test]=300 [pretrain]=300 [timm]=120 [bench]=420)
# The least time worth starting a stage with: a stage started with less would only time out and
# leave nothing. Measured on an H100 with 16 cores (2026-12-06, dev/gpu-visit.md): a fresh build
# of all but the unit tests 92 s (the unit tests add to it); the reference and gpu tests 14 s;
# the real run 39 s; timm 18 s; the benchmark 25 s a model in eager mode. torch.compile is still
# an estimate: 120-240 s more a model. Each least keeps a margin over what was measured.
declare -A least=([versions]=10 [build]=150 [test]=60 [pretrain]=60 [timm]=30 [bench]=45)
if [[ -f "$work/build/build.ninja" || -f "$work/build/Makefile" ]]; then least[build]=30; fi
BENCH_MODELS=${BENCH_MODELS:-vitb16 vitl16}
bench_count=$(wc -w <<<"$BENCH_MODELS")
if [[ "${BENCH_COMPILE:-auto}" == off ]]; then
  least[bench]=$((45 * bench_count))
else
  least[bench]=$((330 * bench_count))
fi
have_cuda || least[bench]=60  # the CPU smoke run: one small model, eager only

selected() {
  local s=$1
  if [[ -n "$only" ]]; then [[ ",$only," == *",$s,"* ]]; return; fi
  [[ ",$skip," != *",$s,"* ]]
}

run_stage() {
  local name=$1 t0=$SECONDS rc=0 lim
  lim=${limit[$name]}
  local var="STAGE_LIMIT_${name^^}"
  lim=${!var:-$lim}
  log="$work/logs/$name.log"
  if ! selected "$name"; then
    if [[ ! -f "$work/status/$name" ]]; then
      echo "skipped 0" >"$work/status/$name"
      echo "by flag" >"$work/status/$name.note"
    fi
    progress "$name: skipped by flag"
    return 0
  fi
  if ((!rerun)) && [[ "$(cut -d' ' -f1 "$work/status/$name" 2>/dev/null)" == passed ]] && [[ "$name" != build && "$name" != versions ]]; then
    progress "$name: passed in an earlier call (--rerun to run it again)"
    return 0
  fi
  local left=$((budget - (SECONDS - t_start) - 15))  # 15 s for the report
  if ((left < ${least[$name]})); then
    echo "deferred 0" >"$work/status/$name"
    echo "${left} s of the budget left: run again to continue" >"$work/status/$name.note"
    progress "$name: deferred to the next call (${left} s of the ${budget} s budget left)"
    return 0
  fi
  ((lim > left)) && lim=$left
  progress "$name: running (limit ${lim} s, log $log)"
  rm -f "$work/status/$name.note"
  # The stage runs in a subshell under a time limit; its output goes to its log only.
  ( export -f "stage_$name" wait_for have_cuda progress bench_table_whole
    export work build python jobs kit_dir log TEST_LABELS BENCH_MODELS
    timeout --kill-after=10 "$lim" bash -c "set -o pipefail; stage_$name" ) >"$log" 2>&1 || rc=$?
  local secs=$((SECONDS - t0)) result
  case "$rc" in
    0) result=passed ;;
    3) result=skipped ;;
    124 | 137) result=timeout ;;
    *) result=FAILED ;;
  esac
  echo "$result $secs" >"$work/status/$name"
  progress "$name: $result in $secs s$([[ -f "$work/status/$name.note" ]] && echo ": $(cat "$work/status/$name.note")")"
  [[ "$result" == passed || "$result" == skipped ]]
}

kit_dir=$(find_kit) || exit 1
progress "$(date -u '+%T') work $work, out $out, kit ${kit_dir:-none}, $jobs jobs"
failed=0
for s in "${all_stages[@]}"; do
  run_stage "$s" || failed=1
  # Nothing after a failed build can run.
  if [[ "$s" == build && "$(cut -d' ' -f1 "$work/status/build" 2>/dev/null)" != passed ]] && selected build; then
    progress "the build failed: later stages not run"
    break
  fi
done

# ---------------------------------------------------------------------------------------------
# The report.
{
  echo "# ocl GPU check"
  echo
  echo "| stage | result | seconds | note |"
  echo "|---|---|---|---|"
  for s in "${all_stages[@]}"; do
    read -r result secs <"$work/status/$s" 2>/dev/null || { result="not run"; secs=""; }
    echo "| $s | $result | $secs | $(cat "$work/status/$s.note" 2>/dev/null) |"
  done
  echo
  echo "Total this call: $((SECONDS - t_start)) s."
  echo
  echo '## Versions'
  echo '```'
  cat "$work/versions.txt" 2>/dev/null
  echo '```'
  if [[ -f "$work/bench.txt" ]]; then
    echo '## Benchmark (scripts/bench_gpu.sh)'
    echo '```'
    cat "$work/bench.txt"
    echo '```'
  fi
  if [[ -f "$work/timm.txt" ]]; then
    echo '## timm cross-check'
    echo '```'
    cat "$work/timm.txt"
    echo '```'
  fi
  for s in "${all_stages[@]}"; do
    read -r result _ <"$work/status/$s" 2>/dev/null || continue
    if [[ "$result" == FAILED || "$result" == timeout ]]; then
      echo "## $s: $result (last 60 lines of logs/$s.log)"
      echo '```'
      tail -n 60 "$work/logs/$s.log"
      echo '```'
    fi
  done
} >"$out/report.md"
tar -C "$work" -czf "$out/logs.tar.gz" logs
sed -n '1,/^Total/p' "$out/report.md"
progress "report: $out/report.md; logs: $out/logs.tar.gz"
exit "$failed"
