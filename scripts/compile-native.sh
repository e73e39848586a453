#!/usr/bin/env bash
# compile-native.sh ARCH OUT: compiles the native addon (native/src) for linux-ARCH (x64, arm64)
# into OUT with one compiler run, then checks the result. Fails (exit 1) when anything is wrong;
# scripts/build-native.sh (the local build) and scripts/prebuild.sh (the shipped binaries) call it.
#
# Why it needs so little: a Node-API addon does not link against node (napi_* and libuv's uv_*
# resolve at load time, from whichever Node loads it: one binary for every Node major), so the
# headers are npm's node-api-headers and node-addon-api, not one Node version's; libpcap is
# dlopen()ed at run time through our own declarations (native/src/libpcap.h), so no libpcap-dev
# and no libpcap of the target. The C/C++ runtime stays dynamic (node itself links libstdc++;
# what the addon uses of it dates from GCC 5), and dlopen & co. are bound to their oldest glibc
# versions (native/src/libpcap.cc), so a binary built on Debian 12 loads on older systems too. The compiler: g++ for this machine's architecture (CXX overrides),
# else the Debian cross compiler (g++-aarch64-linux-gnu, g++-x86-64-linux-gnu).
set -euo pipefail
cd "$(dirname "$0")/.."
arch=${1:?usage: compile-native.sh x64|arm64 OUT}
out=${2:?usage: compile-native.sh x64|arm64 OUT}

case "$(uname -m)" in
  x86_64) host=x64 ;;
  aarch64) host=arm64 ;;
  *) host=$(uname -m) ;;
esac
case "$arch" in
  x64) triplet=x86_64-linux-gnu machine='X86-64' ;;
  arm64) triplet=aarch64-linux-gnu machine='AArch64' ;;
  *) echo "compile-native: unknown architecture $arch (x64, arm64)" >&2; exit 1 ;;
esac
if [ "$arch" = "$host" ]; then cxx=${CXX:-g++}; else cxx=$triplet-g++; fi
if ! command -v "$cxx" >/dev/null; then
  pkg=g++
  [ "$arch" = "$host" ] || pkg=g++-${triplet//_/-}
  echo "compile-native: $cxx not found: apt-get install $pkg" >&2
  exit 1
fi

# The headers: npm packages, found as node resolves them.
napi=$(node -p "require('node-api-headers').include_dir" 2>/dev/null) || napi=
addonapi=$(node -p "require('node-addon-api').include_dir" 2>/dev/null) || addonapi=
if [ ! -f "$napi/node_api.h" ] || [ ! -f "$addonapi/napi.h" ]; then
  echo "compile-native: node-api-headers or node-addon-api missing from node_modules: npm ci" >&2
  exit 1
fi

mkdir -p "$(dirname "$out")"
tmp=$out.tmp.$$
trap 'rm -f "$tmp"' EXIT
# The flags node-gyp would use for an addon (C++17, no exceptions or RTTI, PIC, hidden symbols
# but the module's entry point), and the shared object may leave napi_*/uv_* undefined, which
# is the default for -shared.
"$cxx" -std=gnu++17 -O2 -g0 -fPIC -pthread \
  -fvisibility=hidden -fvisibility-inlines-hidden -fno-exceptions -fno-rtti \
  -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers \
  -DNAPI_VERSION=8 -DNAPI_DISABLE_CPP_EXCEPTIONS -DNODE_ADDON_API_DISABLE_DEPRECATED -DBUILDING_NODE_EXTENSION \
  -I"$napi" -I"$addonapi" \
  -shared -Wl,-soname,lbd_native.node \
  -o "$tmp" native/src/*.cc -Wl,--no-as-needed -l:libdl.so.2

# The checks: the architecture, the entry point Node looks for, and nothing left undefined but
# what Node and the C/C++ runtime provide (a typo would otherwise only show when a host loads it).
header=$(readelf -h "$tmp")
if ! grep -q "Machine:.*$machine" <<<"$header" || ! grep -q 'Type:.*DYN' <<<"$header"; then
  echo "compile-native: $out is not a $arch shared object:" >&2
  grep -E 'Machine|Type' <<<"$header" >&2
  exit 1
fi
syms=$(readelf -W --dyn-syms "$tmp")
if ! awk '$7 != "UND" && $8 == "napi_register_module_v1" { found = 1 } END { exit !found }' <<<"$syms"; then
  echo "compile-native: $out does not export napi_register_module_v1" >&2
  exit 1
fi
stray=$(awk '$7 == "UND" && $5 == "GLOBAL" && $8 !~ /^(napi_|node_api_|uv_)/ && $8 !~ /@(GLIBC|GLIBCXX|CXXABI|GCC)_/ { print $8 }' <<<"$syms")
if [ -n "$stray" ]; then
  echo "compile-native: $out needs symbols neither Node nor the C/C++ runtime provide: $stray" >&2
  exit 1
fi
mv "$tmp" "$out"
glibc=$(readelf -W -V "$out" | grep -o 'GLIBC_[0-9.]*[0-9]' | sort -uV | tail -1)
echo "compile-native: $out (linux-$arch, needs ${glibc:-no versioned glibc})" >&2
