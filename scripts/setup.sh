#!/usr/bin/env bash
# setup.sh [--build-only]: installs whatever lbd's build, tests and demo need and is missing, then
# builds. Idempotent: `npm test` and `npm run demo` run it first, so either works on a fresh
# Debian 12 machine as root. --build-only installs only what building and the unit tests need
# (the host and build lists): CI's fast gate runs before the lab's packages are installed.
set -euo pipefail
cd "$(dirname "$0")/.."

# lbd supports the Node majors still maintained (22, 24, 26). An older one still builds and runs
# the tests today, but nothing promises it: say so, and how to get a supported one.
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 22 ]; then
  echo "setup: WARNING: Node $(node --version) is not supported (lbd needs 22 or newer); to use one from the npm registry:" >&2
  echo "setup:   PATH=\$(bash scripts/node-runtime.sh 24):\$PATH npm test" >&2
fi

# Debian packages: the lists of src/host/programs.json, the one declaration of every program lbd,
# the lab, the tests and the scripts run (README: "What it needs on a host").
if [ "${1:-}" = --build-only ]; then
  packages=$(node scripts/packages.mjs host build)
else
  packages=$(node scripts/packages.mjs host lab build)
fi
mapfile -t PACKAGES <<<"$packages"
bash scripts/apt-install.sh "${PACKAGES[@]}"

# npm dependencies (none has an install script: the native addon is built below).
if [ ! -d node_modules/typescript ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm ci" >&2
  npm ci --no-audit --no-fund >&2
fi

# The TypeScript build, then the native addon (scripts/build-native.sh).
echo "setup: building" >&2
npm run --silent build >&2
