#!/usr/bin/env bash
# Builds the native addon (native/, Node-API) for this machine into
# native/build/Release/lbd_native.node when it is missing or older than its sources: one compiler
# run (scripts/compile-native.sh), which needs g++ and npm's node-api-headers and node-addon-api,
# and no Node headers, node-gyp or libpcap-dev. The binary works with every Node major.
# lbd needs a binding for capture and forwarding, but this build is not the only one: the
# package's prebuilds/ (scripts/prebuild.sh) serve hosts without a compiler. So a failed build
# only warns when a prebuilt binding for this machine is there, and fails the build otherwise.
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
  prebuilt=prebuilds/linux-$arch/lbd_native.node
  if [ -f "$prebuilt" ]; then
    echo "build: WARNING: the native addon did not build: lbd will run with the prebuilt one ($prebuilt)" >&2
    exit 0
  fi
  echo "build: the native addon did not build and there is no prebuilt one ($prebuilt): lbd cannot capture without it" >&2
  exit 1
fi
