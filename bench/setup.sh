#!/usr/bin/env bash
# What the benchmark needs on top of scripts/setup.sh: HAProxy (the userspace-proxy scenario),
# gcc (the packet generator, bench/gen/gen.c, is compiled by the harness), nftables, wrk.
# Idempotent; installs missing Debian packages without starting their services.
set -euo pipefail
PACKAGES=(haproxy gcc libc6-dev nftables wrk)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" != 0 ]; then
    echo "bench setup: missing Debian packages: ${missing[*]} — run as root or: apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "bench setup: installing ${missing[*]}" >&2
  # no haproxy service left running in the root namespace: the bench starts its own instance
  policy=/usr/sbin/policy-rc.d
  created_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created_policy=1
  fi
  trap 'if [ "$created_policy" = 1 ]; then rm -f "$policy"; fi' EXIT
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi
