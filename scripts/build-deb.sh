#!/usr/bin/env bash
# build-deb.sh [--tarball lbd-X.tgz] [--out DIR]: builds the Debian package lbd_<version>-1_<arch>.deb
# (default into dist/deb/) from lbd's npm package (built and packed here unless given), for this
# machine's architecture; prints the .deb's path. Needs dpkg-deb, strip (binutils), npm.
#
# The package carries its own Node.js runtime (/usr/lib/lbd/node, the registry's node-linux-<arch>
# of the major lbd's CI calls main), because Debian 12's nodejs is 18, older than lbd supports, and
# no newer one is in Debian: a dependency could not be met. One runtime tested with this lbd, no
# third-party apt source on a balancer. lbd runs on it only (/usr/bin/lbd starts it by path), and
# so do the programs lbd starts in node (the announce keeper: process.execPath).
#
# Layout: /usr/bin/lbd (a wrapper), /usr/lib/lbd/node/bin/node, /usr/lib/lbd/lib/node_modules/lbd
# (the npm package: dist/src, prebuilt native binding, runtime dependencies), the unit in
# /lib/systemd/system (bookworm keeps units out of /usr/lib while its usrmerge moratorium lasts),
# /usr/lib/sysusers.d/lbd.conf, /etc/lbd/lb.yaml (a conffile: dpkg keeps the operator's edits),
# man pages lbd(8) and lb.yaml(5), bash completion, the JSON Schema in /usr/share/lbd.
# postinst creates the system user and group lbd (adduser) and leaves the service disabled: the
# example config names the lab's interfaces, so it is edited first, then `systemctl enable --now lbd`.
#
# Built with dpkg-deb alone (no debhelper: the tree is assembled here, files owned by root via
# --root-owner-group, so no fakeroot either).
set -euo pipefail
# Modes in the package must not depend on who builds it: user lbd reads /usr/lib/lbd.
umask 022
cd "$(dirname "$0")/.."
tarball=
out=dist/deb
while [ $# -gt 0 ]; do
  case "$1" in
    --tarball) tarball=$(realpath "$2"); shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "usage: build-deb.sh [--tarball lbd-X.tgz] [--out DIR]" >&2; exit 2 ;;
  esac
done

# The Node.js major of the runtime the package carries: the one .ci/run tests on (MAIN_NODE).
NODE_MAJOR=$(sed -n 's/^MAIN_NODE=//p' .ci/run)
arch=$(dpkg --print-architecture)
work=$(mktemp -d "${TMPDIR:-/tmp}/lbd-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT

if [ -z "$tarball" ]; then
  # What prepack does, with this architecture's binding only (all a package of this
  # architecture carries): no cross compiler needed.
  echo "build-deb: build, this architecture's prebuilt binding, npm pack" >&2
  case "$arch" in amd64) napi=x64 ;; arm64) napi=arm64 ;; *) napi=$arch ;; esac
  npm run --silent build
  bash scripts/prebuild.sh "$napi"
  npm pack --silent --ignore-scripts --pack-destination "$work" >/dev/null
  tarball=$(ls "$work"/lbd-*.tgz)
fi
# Everything packaged comes from the tarball (its version, unit, pages, schema), not the checkout.
version=$(tar -xzOf "$tarball" package/package.json | node -p "JSON.parse(require('fs').readFileSync(0, 'utf8')).version")
debversion=$version-1
stage=$work/lbd_${debversion}_$arch

echo "build-deb: the application and its runtime dependencies" >&2
mkdir -p "$stage/usr/lib/lbd"
# --omit=dev: runtime dependencies only; --ignore-scripts: nothing compiles on the way (the
# native binding is prebuilt, in the tarball's prebuilds/).
npm install --global --prefix "$stage/usr/lib/lbd" --omit=dev --ignore-scripts --no-audit --no-fund --prefer-offline --silent "$tarball"
# npm's links (/usr/bin/lbd is the wrapper below; the pages go to /usr/share/man)
rm -rf "$stage/usr/lib/lbd/bin" "$stage/usr/lib/lbd/share"
app=$stage/usr/lib/lbd/lib/node_modules/lbd
# Only this architecture's prebuilt binding: the other one is dead weight (and lintian's
# binary-from-other-architecture).
case "$arch" in amd64) keep=linux-x64 ;; arm64) keep=linux-arm64 ;; *) keep=linux-$arch ;; esac
for d in "$app"/prebuilds/*; do [ "$(basename "$d")" = "$keep" ] || rm -rf "$d"; done
[ -f "$app/prebuilds/$keep/lbd_native.node" ] || { echo "build-deb: no prebuilt binding for $keep in $tarball" >&2; exit 1; }
# A shared object is not a program, and carries no symbols it does not need.
strip --strip-unneeded "$app/prebuilds/$keep/lbd_native.node"
chmod 644 "$app/prebuilds/$keep/lbd_native.node"
# What the dependencies ship for their own development and web sites, not for running.
find "$app/node_modules" \( -name .npmignore -o -name .gitattributes -o -name '.eslintrc*' -o -name '*.html' \) -type f -delete
find "$app/node_modules" -depth \( -name test -o -name tests -o -name .github -o -name .husky -o -name docs -o -name benchmarks -o -name .bin \) -type d -exec rm -rf {} +
find "$app/node_modules" -name '*.sh' -type f -delete
# No script here runs by its #! line: /usr/bin/lbd starts bin/lbd on the package's Node.js, and
# the dependencies' own command-line tools are not lbd's. A "#!/usr/bin/env node" would name a
# node in PATH (Debian's is too old), so the line becomes a comment and the file a plain module.
grep -rlZ -m1 '^#!/usr/bin/env node' "$app" | while IFS= read -r -d '' script; do
  head -n1 "$script" | grep -q '^#!/usr/bin/env node' || continue
  sed -i '1s|^#!/usr/bin/env node.*|// (run on the Node.js of the lbd package, /usr/lib/lbd/node)|' "$script"
  chmod 644 "$script"
done

echo "build-deb: Node.js $NODE_MAJOR runtime" >&2
nodebin=$(bash scripts/node-runtime.sh "$NODE_MAJOR")
install -D -m 755 "$nodebin/node" "$stage/usr/lib/lbd/node/bin/node"
# The registry's binary keeps its symbol tables: stripped, as Debian's own nodejs is.
strip --strip-unneeded "$stage/usr/lib/lbd/node/bin/node"
install -D -m 644 "$nodebin/../LICENSE" "$stage/usr/share/doc/lbd/node-LICENSE"
node_version=$("$nodebin/node" --version)

# /usr/bin/lbd: the runtime by path, found from the wrapper's own place (so that an extracted
# tree runs too), never whatever node is first in PATH.
install -d "$stage/usr/bin"
cat > "$stage/usr/bin/lbd" <<'EOF'
#!/bin/sh
# lbd, on the Node.js runtime the package carries.
lib=$(dirname "$(readlink -f "$0")")/../lib/lbd
exec "$lib/node/bin/node" "$lib/lib/node_modules/lbd/bin/lbd" "$@"
EOF
chmod 755 "$stage/usr/bin/lbd"

echo "build-deb: unit, config, manual, completion, schema" >&2
cd "$app"
install -D -m 644 contrib/systemd/lbd.service "$stage/lib/systemd/system/lbd.service"
install -D -m 644 contrib/systemd/lbd.sysusers.conf "$stage/usr/lib/sysusers.d/lbd.conf"
install -D -m 644 examples/lb.yaml "$stage/etc/lbd/lb.yaml"
# The schema line points where the package puts the schema.
schema_line='1s|^# yaml-language-server: \$schema=.*|# yaml-language-server: $schema=/usr/share/lbd/lb.yaml.schema.json|'
sed -i "$schema_line" "$stage/etc/lbd/lb.yaml"
install -D -m 644 schema/lb.yaml.schema.json "$stage/usr/share/lbd/lb.yaml.schema.json"
install -D -m 644 contrib/bash-completion/lbd "$stage/usr/share/bash-completion/completions/lbd"
for page in dist/man/lbd.8 dist/man/lb.yaml.5; do
  section=${page##*.}
  install -D -m 644 "$page" "$stage/usr/share/man/man$section/$(basename "$page")"
  gzip -9n "$stage/usr/share/man/man$section/$(basename "$page")"
done
install -d "$stage/usr/share/doc/lbd/examples"
install -m 644 examples/lb.yaml "$stage/usr/share/doc/lbd/examples/lb.yaml"
sed -i "$schema_line" "$stage/usr/share/doc/lbd/examples/lb.yaml"
install -m 644 contrib/grafana/lbd-dashboard.json "$stage/usr/share/doc/lbd/examples/lbd-dashboard.json"
install -d "$stage/usr/share/doc/lbd/examples/bird"
install -m 644 contrib/bird/*.conf "$stage/usr/share/doc/lbd/examples/bird/"
gzip -9nc README.md > "$stage/usr/share/doc/lbd/README.md.gz"
when=$(git -C "$OLDPWD" log -1 --format=%ct 2>/dev/null || date +%s)
printf 'lbd (%s) unstable; urgency=medium\n\n  * Release %s, on Node.js %s.\n\n -- lbd developers <lbd@lbd.invalid>  %s\n' \
  "$debversion" "$version" "$node_version" "$(date -R -d "@$when")" | gzip -9n > "$stage/usr/share/doc/lbd/changelog.Debian.gz"
year=$(date -d "@$when" +%Y)
# The runtime dependencies' licenses, as each declares it.
deps=$(cd "$app/node_modules" && for p in $(find . -name package.json -mindepth 2 -maxdepth 3 | sort); do
  node -e 'const p = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); if (p.name && p.version) console.log(p.name + " " + p.version + ": " + (p.license || "see its package"))' "$p"
done)
cat > "$stage/usr/share/doc/lbd/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: lbd

Files: *
Copyright: $year lbd developers
License: MIT

Files: usr/lib/lbd/lib/node_modules/lbd/node_modules/*
Copyright: the authors of each package, as its package.json and LICENSE name them
License: various
 The Node.js packages lbd runs on, each under the license it declares:
$(echo "$deps" | sed 's/^/ /')

Files: usr/lib/lbd/node/*
Copyright: Node.js contributors. All rights reserved.
License: MIT-and-others
 The Node.js runtime: MIT, with the licenses of the libraries it contains as
 /usr/share/doc/lbd/node-LICENSE lists them.

License: MIT
 Permission is hereby granted, free of charge, to any person obtaining a copy
 of this software and associated documentation files (the "Software"), to deal
 in the Software without restriction, including without limitation the rights
 to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
 copies of the Software, and to permit persons to whom the Software is
 furnished to do so, subject to the following conditions:
 .
 The above copyright notice and this permission notice shall be included in all
 copies or substantial portions of the Software.
 .
 THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
 IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
 FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
 AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
 LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
 OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
 SOFTWARE.
EOF
# What lintian reports that this package does on purpose (the README's install section lists them).
install -d "$stage/usr/share/lintian/overrides"
cat > "$stage/usr/share/lintian/overrides/lbd" <<'EOF'
# The Node.js runtime lbd carries (Debian 12's nodejs is too old), as the Node.js project builds
# it: with its own zlib, and not position-independent.
lbd: embedded-library zlib [usr/lib/lbd/node/bin/node]
lbd: hardening-no-pie [usr/lib/lbd/node/bin/node]
# Not uploaded to Debian: no bug to close.
lbd: initial-upload-closes-no-bugs [usr/share/doc/lbd/changelog.Debian.gz:1]
EOF

echo "build-deb: control and maintainer scripts" >&2
install -d "$stage/DEBIAN"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat > "$stage/DEBIAN/control" <<EOF
Package: lbd
Version: $debversion
Architecture: $arch
Maintainer: lbd developers <lbd@lbd.invalid>
Installed-Size: $size
Depends: adduser, init-system-helpers (>= 1.52), nftables, iproute2, ethtool, libpcap0.8, libc6 (>= 2.28), libstdc++6 (>= 7), libgcc-s1
Suggests: bird2, iptables
Section: net
Priority: optional
Homepage: https://lbd.invalid/
Description: userspace L4 Direct Routing load balancer (IPVS -g semantics)
 lbd balances TCP and UDP services over real servers with IPVS's schedulers
 (rr, wrr, lc, wlc, sh, mh and more) and forwards by Direct Routing: it
 rewrites the destination MAC and the real servers answer the clients
 directly. Health checks, Prometheus metrics, ipvsadm-shaped tooling,
 connections kept across restarts, VIPs announced through BIRD.
 .
 The package carries its own Node.js runtime in /usr/lib/lbd.
EOF
echo /etc/lbd/lb.yaml > "$stage/DEBIAN/conffiles"
cat > "$stage/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
  # The service's user and group (also declared for systemd-sysusers in /usr/lib/sysusers.d).
  if ! getent group lbd >/dev/null; then
    addgroup --system --quiet lbd
  fi
  if ! getent passwd lbd >/dev/null; then
    adduser --system --quiet --ingroup lbd --no-create-home --home /nonexistent lbd
  fi
  # The config may hold what operators keep private: readable by root and the service only
  # (unless the admin said otherwise with dpkg-statoverride, or removed it, or made it a link).
  if [ -f /etc/lbd/lb.yaml ] && [ ! -L /etc/lbd/lb.yaml ] && ! dpkg-statoverride --list /etc/lbd/lb.yaml >/dev/null 2>&1; then
    chown root:lbd /etc/lbd/lb.yaml
    chmod 640 /etc/lbd/lb.yaml
  fi
  # Not enabled nor started: the example config names the lab's interfaces. Edit it, then
  # systemctl enable --now lbd.
  if [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null || true
    # Remember the unit's enablement for purge, as debhelper does.
    deb-systemd-helper update-state lbd.service >/dev/null || true
    # An upgrade restarts a running lbd: the next one adopts the connection table.
    deb-systemd-invoke try-restart lbd.service >/dev/null || true
  fi
fi
exit 0
EOF
cat > "$stage/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = remove ]; then
  if [ -d /run/systemd/system ]; then
    deb-systemd-invoke stop lbd.service >/dev/null || true
  fi
  # Nothing of lbd left on the host: its nftables tables, its state file.
  lbd stop --clean --config /etc/lbd/lb.yaml >/dev/null 2>&1 || true
fi
exit 0
EOF
cat > "$stage/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
  systemctl --system daemon-reload >/dev/null || true
fi
if [ "$1" = purge ]; then
  rm -rf /run/lbd
  if command -v deb-systemd-helper >/dev/null; then
    deb-systemd-helper purge lbd.service >/dev/null || true
  fi
fi
exit 0
EOF
chmod 755 "$stage/DEBIAN/postinst" "$stage/DEBIAN/prerm" "$stage/DEBIAN/postrm"
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) > "$stage/DEBIAN/md5sums"
chmod -R u+rwX,go+rX,go-w "$stage"
cd "$OLDPWD"

mkdir -p "$out"
deb=$out/lbd_${debversion}_$arch.deb
# gzip: xz would take a minute on two cores for the Node runtime, for a few MB less.
dpkg-deb --root-owner-group -Zgzip --build "$stage" "$deb" >/dev/null
echo "$(realpath "$deb")"
