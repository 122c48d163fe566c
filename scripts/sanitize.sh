#!/usr/bin/env bash
# Builds ocl with AddressSanitizer and UndefinedBehaviorSanitizer (OCL_SANITIZE=ON; GCC, as the
# main build) and runs the unit and reference suites under them. Any sanitizer report fails its
# test: undefined behaviour stops the program (-fno-sanitize-recover), and ASan's reports,
# leaks included, end it with an error.
#
#   bash scripts/sanitize.sh              unit + reference
#   bash scripts/sanitize.sh -R Packed    extra arguments go to ctest (after -L "unit|reference")
#
# Build folder: $OCL_SANITIZE_BUILD_DIR (default build-asan/ in the repository). Only the two
# suites' executables are built (the integration suites would take as long again).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
build=${OCL_SANITIZE_BUILD_DIR:-build-asan}
jobs=$(nproc 2>/dev/null || echo 2)
start=$SECONDS

bash scripts/install-deps.sh
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOCL_SANITIZE=ON \
  -DOCL_WERROR=ON -DOCL_BUILD_APPS=OFF
cmake --build "$build" -j"$jobs" --target ocl_unit_tests ocl_reference_tests
echo "==> sanitize.sh: build: $((SECONDS - start)) s"
t0=$SECONDS
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:strict_string_checks=1:check_initialization_order=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
ctest --test-dir "$build" --output-on-failure -j"$jobs" -L "unit|reference" "$@"
echo "==> sanitize.sh: unit + reference under ASan + UBSan passed in $((SECONDS - t0)) s" \
  "(total $((SECONDS - start)) s)"
