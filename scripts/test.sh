#!/usr/bin/env bash
# Installs the dependencies, builds ocl and runs its tests: the one command README shows.
#
#   bash scripts/test.sh              everything (unit, reference, integration; gpu skips on CPU)
#   bash scripts/test.sh -L unit      extra arguments go to ctest
#
# Build folder: $OCL_BUILD_DIR (default build/ in the repository). Warnings are errors.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
build=${OCL_BUILD_DIR:-build}
jobs=$(nproc 2>/dev/null || echo 2)

start=$SECONDS
stage() { # stage NAME CMD...: runs CMD, prints its elapsed seconds
  local name=$1 t0=$SECONDS rc=0
  shift
  echo "==> test.sh: $name"
  "$@" || rc=$?
  echo "==> test.sh: $name: $((SECONDS - t0)) s$( ((rc == 0)) || echo " (FAILED, exit $rc)")"
  return "$rc"
}

stage "install dependencies" bash scripts/install-deps.sh
# The same flags as README's first command, so that it reuses that command's build.
# OCL_TEST_SHARDS=N (CI): the unit and reference cases as N GoogleTest shards (cmake/OclAddTest.cmake).
stage "configure ($build)" cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DOCL_WERROR=ON \
  -DOCL_TEST_SHARDS="${OCL_TEST_SHARDS:-0}" -DOCL_WITH_CURL="${OCL_WITH_CURL:-AUTO}"
stage "build (-j$jobs)" cmake --build "$build" -j"$jobs"
stage "test" ctest --test-dir "$build" --output-on-failure -j"$jobs" "$@"
# A shard passes with its skipped cases inside: name them, as ctest does for a case of its own.
grep -ah '^\[  SKIPPED \] [A-Za-z]' "$build/Testing/Temporary/LastTest.log" 2>/dev/null |
  sed -E 's/ \([0-9]+ ms\)$//' | sort -u |
  sed 's/^/==> test.sh: skipped in a shard: /' || true
echo "==> test.sh: all stages passed in $((SECONDS - start)) s"
