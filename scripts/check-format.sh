#!/usr/bin/env bash
# Checks that the C++ sources follow .clang-format; with --fix, formats them in place.
#
#   bash scripts/check-format.sh          exit 1 and list the files that need formatting
#   bash scripts/check-format.sh --fix    format every file in place
#
# Files: *.h *.hpp *.cpp under include/ src/ apps/ tests/ (tracked and untracked-not-ignored
# files in a git checkout, else everything found). clang-format: $CLANG_FORMAT, else
# clang-format on PATH (installed with apt when missing).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

fix=0
case "${1:-}" in
  "") ;;
  --fix) fix=1 ;;
  -h | --help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "check-format: unknown argument '$1' (expected --fix)" >&2; exit 2 ;;
esac

cf=${CLANG_FORMAT:-clang-format}
if ! command -v "$cf" >/dev/null; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "check-format: installing clang-format" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || true
    apt-get install -y -qq --no-install-recommends clang-format
  fi
  command -v "$cf" >/dev/null || { echo "check-format: $cf not found" >&2; exit 2; }
fi

dirs=(include src apps tests fuzz)
files=()
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  while IFS= read -r -d '' f; do
    [[ -f "$f" ]] && files+=("$f")
  done < <(git ls-files -z --cached --others --exclude-standard -- \
             "${dirs[@]/%//*.h}" "${dirs[@]/%//*.hpp}" "${dirs[@]/%//*.cpp}" | sort -zu)
else
  existing=()
  for d in "${dirs[@]}"; do [[ -d "$d" ]] && existing+=("$d"); done
  if ((${#existing[@]})); then
    while IFS= read -r -d '' f; do files+=("$f"); done < <(
      find "${existing[@]}" -type f \( -name '*.h' -o -name '*.hpp' -o -name '*.cpp' \) -print0 | sort -z)
  fi
fi

if ((${#files[@]} == 0)); then
  echo "check-format: no files to check"
  exit 0
fi

if ((fix)); then
  "$cf" -i --style=file "${files[@]}"
  echo "check-format: formatted ${#files[@]} files with $("$cf" --version)"
  exit 0
fi

bad=()
for f in "${files[@]}"; do
  if ! "$cf" --dry-run -Werror --style=file "$f" >/dev/null 2>&1; then bad+=("$f"); fi
done

if ((${#bad[@]})); then
  echo "check-format: ${#bad[@]} of ${#files[@]} files need formatting ($("$cf" --version)):"
  printf '  %s\n' "${bad[@]}"
  echo "check-format: see the changes with: $cf --dry-run --style=file FILE" \
       "; fix them all with: bash scripts/check-format.sh --fix"
  exit 1
fi
echo "check-format: ${#files[@]} files OK"
