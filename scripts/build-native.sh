#!/usr/bin/env bash
# Builds the native fast path (native/, a Node-API addon, npm's node-gyp) when it is missing or
# older than its sources. lbd runs without it (dataplane: auto falls back to the TypeScript data
# plane and says why), so a failed build warns and exits 0; the native tests then fail and say why.
set -uo pipefail
cd "$(dirname "$0")/.."
addon=native/build/Release/lbd_native.node
if [ -f "$addon" ] && [ -z "$(find native/src native/binding.gyp -newer "$addon" 2>/dev/null)" ]; then
  exit 0
fi
echo "build: the native fast path" >&2
# Use the headers installed with node when there are some (no download from nodejs.org).
nodeprefix=$(dirname "$(dirname "$(command -v node)")")
if [ -z "${npm_config_nodedir:-}" ] && [ -f "$nodeprefix/include/node/node_api.h" ]; then
  export npm_config_nodedir="$nodeprefix"
fi
# npm puts its bundled node-gyp on PATH for package scripts; run directly, find it next to npm.
gyp=$(command -v node-gyp || true)
if [ -z "$gyp" ]; then
  npmroot=$(dirname "$(readlink -f "$(command -v npm)")")/..
  gyp="$npmroot/node_modules/node-gyp/bin/node-gyp.js"
fi
if ! "$gyp" rebuild -C native >&2; then
  echo "build: WARNING: the native fast path did not build: lbd will run the TypeScript data plane" >&2
fi
exit 0
