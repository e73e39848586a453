#!/usr/bin/env bash
# What the benchmark needs: the bench list of src/host/programs.json (HAProxy for the
# userspace-proxy scenario, gcc and libc6-dev for the packet generator bench/gen/gen.c, which the
# harness compiles, git), with the host and lab lists it runs on (nftables, wrk, the lab's tools),
# which scripts/setup.sh normally installed already.
# Idempotent; installs missing Debian packages without starting their services.
set -euo pipefail
cd "$(dirname "$0")/.."
packages=$(node scripts/packages.mjs host lab bench)
mapfile -t PACKAGES <<<"$packages"
bash scripts/apt-install.sh "${PACKAGES[@]}"
