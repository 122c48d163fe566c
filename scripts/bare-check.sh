#!/usr/bin/env bash
# The GPU kit and the GPU check proven on a CPU machine (CI's bare-test stage): makes the kit on
# this Debian 12 machine (scripts/make-gpu-kit.sh, into .gpu-kit/), makes the bare root
# (scripts/bare-root.sh: a compiler, CMake, Ninja, Debian's CPU LibTorch and PyTorch, none of
# ocl's other dependencies), and runs scripts/gpu-check.sh inside it with the kit: the build from
# the kit alone, the unit and reference tests, a short CPU ocl_pretrain stopped by SIGTERM and
# resumed, ocl_knn and ocl_finetune from its checkpoint, the benchmark's smoke run; the reference
# and gpu tests (the unit tests run in CI's host and CUDA stages); the GPU-only stages skip.
# Then checks that the root has none of ocl's -dev packages and that CMake found every
# dependency in the kit.
#
#   bash scripts/bare-check.sh           needs root (debootstrap, chroot), Debian's archive
#
# The check's work folder is /var/tmp/ocl-bare-check inside the root, started afresh each time;
# its report is printed at the end (report.md there).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
t0=$SECONDS
say() { echo "bare-check: $*"; }

mkdir -p .gpu-kit
if ! bash scripts/make-gpu-kit.sh .gpu-kit/ocl-gpu-kit.tar.xz; then
  say "retrying after apt-get update"
  apt-get update -qq
  bash scripts/make-gpu-kit.sh .gpu-kit/ocl-gpu-kit.tar.xz
fi
say "kit made after $((SECONDS - t0)) s"
bash scripts/bare-root.sh ensure
say "bare root ready after $((SECONDS - t0)) s"

# Inside the root, cwd /src (this clone).
inside='
set -eu
work=/var/tmp/ocl-bare-check
for p in libyaml-cpp-dev libspdlog-dev libfmt-dev libcli11-dev nlohmann-json3-dev libgtest-dev \
         libjpeg62-turbo-dev libjpeg-dev libspng-dev libpng-dev libopencv-core-dev \
         libopencv-imgproc-dev libopencv-imgcodecs-dev libopencv-dev; do
  if dpkg-query -W -f="\${Status}" "$p" 2>/dev/null | grep -q "install ok installed"; then
    echo "bare-check: the bare root has $p installed: it would not prove the kit" >&2
    exit 1
  fi
done
rc=0
# The unit tests run on the host and in the CUDA build (the host-test and cuda-test stages of
# CI); here the kit is proven by the reference and gpu tests and the apps: half the build.
TEST_LABELS="reference|gpu" TORCH_DIR=/usr STAGE_LIMIT_BUILD=${STAGE_LIMIT_BUILD:-2400} STAGE_LIMIT_TEST=${STAGE_LIMIT_TEST:-1800} \
  STAGE_LIMIT_PRETRAIN=${STAGE_LIMIT_PRETRAIN:-900} \
  bash scripts/gpu-check.sh --kit .gpu-kit/ocl-gpu-kit.tar.xz --work "$work" --fresh \
    --budget 4000 || rc=$?
cache=$work/build/CMakeCache.txt
kit=$work/kit/ocl-gpu-kit
if [ -f "$cache" ]; then
  for v in yaml-cpp_DIR spdlog_DIR fmt_DIR CLI11_DIR nlohmann_json_DIR GTest_DIR \
           JPEG_INCLUDE_DIR JPEG_LIBRARY_RELEASE ZLIB_INCLUDE_DIR OCL_SPNG_LIBRARY \
           OCL_OPENCV_INCLUDE_DIR OCL_OPENCV_core_LIBRARY OCL_OPENCV_imgproc_LIBRARY; do
    value=$(sed -n "s/^$v:[A-Z]*=//p" "$cache")
    case "$value" in
      "$kit"/*) ;;
      *) echo "bare-check: $v is \"$value\", not in the kit ($kit)" >&2; rc=1 ;;
    esac
  done
  grep -q "^OCL_OPENCV_imgcodecs_LIBRARY:.*NOTFOUND" "$cache" ||
    { echo "bare-check: OpenCV imgcodecs was found: the kit must not carry it" >&2; rc=1; }
fi
# The RPATH of the programs puts the kit before the system, so the BLAS that Debian LibTorch
# multiplies with is the one in the kit: it must be OpenBLAS (the reference BLAS trains six
# times slower).
app=$work/build/apps/ocl_pretrain
if [ -x "$app" ]; then
  blas=$(ldd "$app" | sed -n "s/^[[:space:]]*libblas[.]so[.]3 => \([^ ]*\) .*/\1/p")
  case "$(readlink -f "$blas")" in
    "$kit"/*openblas*) echo "bare-check: ocl_pretrain multiplies with $(readlink -f "$blas")" ;;
    *) echo "bare-check: ocl_pretrain loads libblas.so.3 from \"$blas\": not the OpenBLAS in the kit" >&2
       rc=1 ;;
  esac
fi
exit $rc
'
rc=0
STAGE_LIMIT_BUILD=${STAGE_LIMIT_BUILD:-2400} OCL_TRIXIE_PASSENV="STAGE_LIMIT_BUILD STAGE_LIMIT_TEST STAGE_LIMIT_PRETRAIN" \
  bash scripts/bare-root.sh run "$repo" sh -c "$inside" || rc=$?
say "$( ((rc == 0)) && echo passed || echo FAILED) after $((SECONDS - t0)) s"
exit "$rc"
