#!/usr/bin/env bash
# Installs whatever lbd's build, tests and demo need and is missing, then builds. Idempotent:
# `npm test` and `npm run demo` run it first, so either works on a fresh Debian 12 machine as root.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: libpcap (cap loads the unversioned libpcap.so, from -dev), the lab's real
# servers (apache2) and tools, nftables for the host guard, promtool (prometheus) for the
# metrics format check and the Prometheus e2e test, iptables for the REDIRECT real-server variant;
# g++, make and python3 for node-gyp (the native fast path, native/).
PACKAGES=(libpcap-dev apache2 curl wrk nftables ethtool iproute2 tcpdump procps prometheus iptables g++ make python3)
bash scripts/apt-install.sh "${PACKAGES[@]}"

# npm dependencies, with the native builds of cap and raw-socket.
if [ ! -f node_modules/cap/build/Release/cap.node ] || [ ! -d node_modules/typescript ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm ci" >&2
  npm ci --no-audit --no-fund --foreground-scripts >&2
fi

# The TypeScript build, then the native fast path (scripts/build-native.sh; lbd runs without it).
echo "setup: building" >&2
npm run --silent build >&2
