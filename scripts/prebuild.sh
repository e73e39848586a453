#!/usr/bin/env bash
# Builds the binaries the package ships, so that a host needs no compiler:
#   prebuilds/linux-x64/lbd_native.node and prebuilds/linux-arm64/lbd_native.node
# one per architecture, each good for every Node major (Node-API) and any glibc from 2.17 on.
# They are built, not committed (.gitignore); `npm pack` runs this first (prepack).
# Debian packages: g++ for this machine's architecture, the cross compiler for the other
# (g++-aarch64-linux-gnu on x86_64, g++-x86-64-linux-gnu on arm64); readelf comes with them
# (binutils). compile-native.sh checks each binary's machine type and entry point.
# `prebuild.sh ARCH...` builds only those: test/package/npm-pack.test.ts, on a machine without
# the cross compiler, packs with this machine's binary alone; a release is packed with both.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || set -- x64 arm64
for arch in "$@"; do
  out=prebuilds/linux-$arch/lbd_native.node
  if [ -f "$out" ] && [ -z "$(find native/src scripts/compile-native.sh -newer "$out" 2>/dev/null)" ]; then
    echo "prebuild: $out is up to date" >&2
    continue
  fi
  bash scripts/compile-native.sh "$arch" "$out"
done
for arch in "$@"; do
  out=prebuilds/linux-$arch/lbd_native.node
  if command -v file >/dev/null; then file "$out"; else readelf -h "$out" | grep -E 'Class|Machine'; fi
done
