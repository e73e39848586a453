#!/usr/bin/env bash
# format-native.sh [--check]: clang-format over the native addon's sources and its fuzz target (style:
# native/.clang-format).
# --check lists the files that are not formatted and exits 1, without changing them.
set -euo pipefail
cd "$(dirname "$0")/.."
files=(native/src/*.cc native/src/*.h native/fuzz/*.cc)
if [ "${1:-}" = --check ]; then
  clang-format --dry-run --Werror "${files[@]}"
else
  clang-format -i "${files[@]}"
fi
