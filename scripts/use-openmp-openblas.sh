#!/usr/bin/env bash
# Points libblas.so.3, liblapack.so.3 and libopenblas.so.0 at OpenBLAS's OpenMP build, when it
# is installed, also where the pthread build is installed beside it. Idempotent; needs root.
# scripts/install-deps.sh runs it on the host, scripts/trixie-root.sh inside its roots.
#
# Why: Debian's LibTorch multiplies through libblas.so.3, whichever OpenBLAS the alternatives
# name, and they prefer the pthread build (priority 100 against 95). That build keeps a thread
# pool of its own beside LibTorch's OpenMP threads, and on a 2-core machine the two pools took
# the cores from each other: ocl_bench stepped the quickstart model in 828-830 ms with it and in
# 322-446 ms with the OpenMP build, ViT-S/16 in 2,627-2,694 against 1,045-1,327 ms (docs/building.md,
# Building).
set -euo pipefail

for dir in /usr/lib/*/openblas-openmp; do
  [[ -e "$dir/libblas.so.3" ]] || continue
  libdir=$(dirname "$dir")
  arch=$(basename "$libdir")
  for name in libblas.so.3 liblapack.so.3 libopenblas.so.0; do
    if [[ "$(readlink -f "$libdir/$name")" != "$(readlink -f "$dir/$name")" ]]; then
      echo "use-openmp-openblas: $name now from OpenBLAS's OpenMP build ($dir)"
      update-alternatives --quiet --set "$name-$arch" "$dir/$name"
    fi
  done
done
