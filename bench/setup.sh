#!/usr/bin/env bash
# What the benchmark needs on top of scripts/setup.sh: HAProxy (the userspace-proxy scenario),
# gcc (the packet generator, bench/gen/gen.c, is compiled by the harness), nftables, wrk.
# Idempotent; installs missing Debian packages without starting their services.
set -euo pipefail
PACKAGES=(haproxy gcc libc6-dev nftables wrk)
cd "$(dirname "$0")/.."
bash scripts/apt-install.sh "${PACKAGES[@]}"
