#!/usr/bin/env bash
# node-runtime.sh MAJOR: prints the bin directory of a Node.js MAJOR runtime for this machine's
# architecture, fetching it once from the npm registry (the node-linux-<arch> packages carry the
# official binaries and headers) into a cache. CI uses it to build and test lbd on every supported
# Node; a developer can use it the same way:  PATH=$(bash scripts/node-runtime.sh 24):$PATH npm test
set -euo pipefail
major=${1:?usage: node-runtime.sh MAJOR (22, 24, 26)}
case "$(uname -m)" in
  x86_64) arch=x64 ;;
  aarch64) arch=arm64 ;;
  *) echo "node-runtime: no registry runtime for $(uname -m)" >&2; exit 1 ;;
esac
cache=${LBD_NODE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lbd/node}
dir=$cache/$arch-$major
if [ ! -x "$dir/bin/node" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  echo "node-runtime: fetching node-linux-$arch@$major from the npm registry" >&2
  (cd "$tmp" && npm pack --silent "node-linux-$arch@$major" >/dev/null)
  tar -xzf "$tmp"/node-linux-"$arch"-*.tgz -C "$tmp"
  mkdir -p "$cache"
  rm -rf "$dir"
  mv "$tmp/package" "$dir"
fi
"$dir/bin/node" -e "if (!process.version.startsWith('v$major.')) { console.error('node-runtime: $dir holds ' + process.version); process.exit(1); }"
echo "$dir/bin"
