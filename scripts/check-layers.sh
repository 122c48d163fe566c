#!/usr/bin/env bash
# Checks that #include directives point down the project's layers only (CONTRIBUTING.md):
#   apps → engine → {distributed, data, optim, ssl} → nn → ops → io / compat
# A layer's sources (src/<layer>/, include/ocl/<layer>/) may include their own layer and the
# ones listed for it below; anything else is printed and the script exits 1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

declare -A allowed=(
  [io]="io"
  [ops]="ops io"
  [nn]="nn ops io"
  [ssl]="ssl nn ops io"
  [optim]="optim nn ops io"
  [data]="data io"
  [distributed]="distributed io"
  [engine]="engine distributed data optim ssl nn ops io"
)
bad=0
for layer in "${!allowed[@]}"; do
  while IFS=: read -r file line text; do
    target=$(sed -n 's|.*#include ["<]ocl/\([a-z_]*\)/.*|\1|p' <<<"$text")
    [[ -z "$target" ]] && continue  # ocl/compat.h, ocl/ocl.h: the foundation
    if [[ " ${allowed[$layer]} " != *" $target "* ]]; then
      echo "check-layers: $file:$line: $layer includes ocl/$target/ (allowed: ${allowed[$layer]})"
      bad=1
    fi
  done < <(grep -rn '#include ["<]ocl/' "src/$layer" "include/ocl/$layer" 2>/dev/null || true)
done
((bad == 0)) && echo "check-layers: every include points down (${#allowed[@]} layers)"
exit "$bad"
