#!/usr/bin/env bash
# Builds the manual pages lbd(8) and lb.yaml(5) into dist/man/ (roff), from docs/man/*.scd.in with
# their generated parts (scripts/man.mjs: the commands from the CLI's usage texts, the keys from
# the config field table), rendered by scdoc (Debian package scdoc, the build list of
# src/host/programs.json). Needs the TypeScript build: run after tsc (npm run build does).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v scdoc >/dev/null 2>&1; then
  echo "build: scdoc not found: install Debian package scdoc to build the manual pages (it is in the build list of src/host/programs.json)" >&2
  exit 1
fi
node scripts/man.mjs dist/man
for page in lbd.8 lb.yaml.5; do
  scdoc <"dist/man/$page.scd" >"dist/man/$page.tmp"
  mv "dist/man/$page.tmp" "dist/man/$page"
done
echo "build: dist/man/lbd.8 dist/man/lb.yaml.5" >&2
