#!/usr/bin/env bash
# build-fuzz.sh: builds the native fast path's fuzz target (native/fuzz/fastpath_fuzz.cc with
# native/src/fastpath.cc, no Node) with clang's libFuzzer, AddressSanitizer and
# UndefinedBehaviorSanitizer into native/build/fuzz/fastpath_fuzz, when it is missing or older than
# its sources. First scripts/fuzz-native-gen.mjs writes native/build/fuzz/gen/ from the compiled
# TypeScript (dist/, so `npm run build` first): the region's layout and the TCP transition table
# the target includes (fuzz_state.h), the seed corpus (seeds/) and a dictionary.
# Needs clang++ and its fuzzer/sanitizer runtimes: the Debian packages clang and libclang-rt-14-dev
# (src/host/programs.json, list build: scripts/setup.sh installs them). Prints the binary's path.
set -euo pipefail
cd "$(dirname "$0")/.."
out=native/build/fuzz
bin=$out/fastpath_fuzz
if ! command -v clang++ >/dev/null; then
  echo "build-fuzz: clang++ not found: install the Debian packages clang and libclang-rt-14-dev (bash scripts/setup.sh does)" >&2
  exit 1
fi
node scripts/fuzz-native-gen.mjs "$out/gen"
sources=(native/fuzz/fastpath_fuzz.cc native/src/fastpath.cc native/src/fastpath.h native/src/contract.h "$out/gen/fuzz_state.h" scripts/build-fuzz.sh)
if [ -x "$bin" ] && [ -z "$(find "${sources[@]}" -newer "$bin" 2>/dev/null)" ]; then
  echo "$bin"
  exit 0
fi
echo "build-fuzz: $(clang++ --version | head -1): $bin" >&2
tmp=$bin.tmp.$$
trap 'rm -f "$tmp"' EXIT
# As the addon is built (C++17, no exceptions or RTTI), plus the fuzzer and the sanitizers; a
# UBSan finding aborts like an ASan one (-fno-sanitize-recover), so libFuzzer keeps it as a crash.
if ! clang++ -std=gnu++17 -g -O1 -fno-omit-frame-pointer -fno-exceptions \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -Wall -Wextra -Wno-unused-parameter \
  -Inative/src -I"$out/gen" \
  -o "$tmp" native/fuzz/fastpath_fuzz.cc native/src/fastpath.cc; then
  echo "build-fuzz: the build failed (a link error about libclang_rt.fuzzer or asan: the Debian package libclang-rt-14-dev is missing)" >&2
  exit 1
fi
mv "$tmp" "$bin"
echo "$bin"
