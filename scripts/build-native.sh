#!/usr/bin/env bash
# Builds the native addon (native/, Node-API) for this machine into
# native/build/Release/lbd_native.node when it is missing or older than its sources: one compiler
# run (scripts/compile-native.sh), which needs g++ and npm's node-api-headers and node-addon-api,
# and no Node headers, node-gyp or libpcap-dev. The binary works with every Node major.
# lbd needs a binding for capture and forwarding, but this build is not the only one: the
# package's prebuilds/ (scripts/prebuild.sh) serve hosts without a compiler. So a failed build
# warns and exits 0; lbd then says at startup what it tried, and the native tests fail and say why.
set -uo pipefail
cd "$(dirname "$0")/.."
addon=native/build/Release/lbd_native.node
if [ -f "$addon" ] && [ -z "$(find native/src scripts/compile-native.sh -newer "$addon" 2>/dev/null)" ]; then
  exit 0
fi
echo "build: the native addon" >&2
case "$(uname -m)" in
  x86_64) arch=x64 ;;
  aarch64) arch=arm64 ;;
  *) arch=$(uname -m) ;;
esac
if ! bash scripts/compile-native.sh "$arch" "$addon"; then
  echo "build: WARNING: the native addon did not build: lbd runs only with a prebuilt one (prebuilds/linux-$arch/lbd_native.node)" >&2
fi
exit 0
