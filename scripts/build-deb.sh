#!/usr/bin/env bash
# Builds the arm64 Debian package of m365 for Raspberry Pi OS (64-bit), from an x86-64 machine:
# cross-compiles with scripts/cross-aarch64.sh, packages with cargo-deb (installed with
# `cargo install` when missing; metadata in crates/m365/Cargo.toml), then checks the result.
#
# Usage: scripts/build-deb.sh
# Output: target/aarch64-unknown-linux-gnu/debian/m365_<version>-1_arm64.deb
set -euo pipefail

TARGET=aarch64-unknown-linux-gnu
cd "$(dirname "$0")/.."

say() { printf 'build-deb: %s\n' "$*" >&2; }

if ! cargo deb --version >/dev/null 2>&1; then
    say "installing cargo-deb"
    cargo install --locked cargo-deb
fi

scripts/cross-aarch64.sh

deb="$(cargo deb -p m365 --target "$TARGET" --no-build --no-strip --output "target/$TARGET/debian/")"
# cargo deb prints the path of the package it wrote.
deb="$(printf '%s\n' "$deb" | tail -n 1)"
say "built $deb"

# Check what a Pi will get: the architecture, the files, the conffile and the maintainer script.
fail() { say "check failed: $*"; exit 1; }
[ "$(dpkg-deb --field "$deb" Architecture)" = arm64 ] || fail "architecture is not arm64"
contents="$(dpkg-deb --contents "$deb")"
for path in ./usr/bin/m365 ./etc/m365/martinete.toml ./usr/lib/systemd/system/m365.service \
    ./usr/share/doc/m365/raspberry-pi.md; do
    grep -q " $path\$" <<<"$contents" || fail "$path missing"
done
control="$(mktemp -d)"
trap 'rm -rf "$control"' EXIT
dpkg-deb --control "$deb" "$control"
grep -qx /etc/m365/martinete.toml "$control/conffiles" || fail "martinete.toml is not a conffile"
grep -q "adduser --system" "$control/postinst" || fail "postinst does not create the m365 user"
dpkg-deb --info "$deb" >&2
say "ok: $deb ($(stat -c %s "$deb") bytes)"
