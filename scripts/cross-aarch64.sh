#!/usr/bin/env bash
# Cross-compiles the m365 binary for 64-bit Raspberry Pi OS (aarch64) on an x86-64 Debian or
# Ubuntu machine, installing what is missing:
#   1. the C cross compiler (for ring, bundled SQLite and vendored libdbus), with apt as root,
#   2. the Rust standard library for aarch64, with rustup.
# Then runs `cargo build --release --target aarch64-unknown-linux-gnu -p m365 --no-default-features`; the linker and
# C compiler names come from .cargo/config.toml.
#
# Usage: scripts/cross-aarch64.sh [extra cargo build arguments]
# Output: target/aarch64-unknown-linux-gnu/release/m365
set -euo pipefail

TARGET=aarch64-unknown-linux-gnu
cd "$(dirname "$0")/.."

say() { printf 'cross-aarch64: %s\n' "$*" >&2; }

# 1. The C cross compiler and the aarch64 C library headers.
if ! command -v aarch64-linux-gnu-gcc >/dev/null 2>&1; then
    packages="gcc-aarch64-linux-gnu libc6-dev-arm64-cross"
    if [ "$(id -u)" -ne 0 ]; then
        say "missing the C cross compiler; install it with: sudo apt-get install -y $packages"
        exit 1
    fi
    say "installing $packages"
    apt-get update -q
    # shellcheck disable=SC2086 # the list is meant to split into words
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $packages
fi

# 2. The Rust standard library for the target.
if ! rustup target list --installed | grep -qx "$TARGET"; then
    say "adding the $TARGET standard library"
    rustup target add "$TARGET"
fi

# The Pi build leaves the demo out (its simulator, broker and live view are not for the Pi).
report="$PWD/target/$TARGET/release/m365.hot-functions"
rm -f "$report"
PI_LINKER_REPORT="$report" cargo build --release --target "$TARGET" -p m365 --no-default-features "$@"

binary="target/$TARGET/release/m365"
say "built $binary ($(stat -c %s "$binary") bytes)"
# How many of packaging/hot-functions.txt the linker found and placed together (when it linked).
if [ -f "$report" ]; then
    say "hot functions placed together: $(cat "$report")"
fi
if command -v file >/dev/null 2>&1; then
    file "$binary" >&2
fi

# The shared libraries it loads on the Pi: the C library and libgcc_s, nothing else (the GPS
# distances use the libm crate so that libm.so stays unloaded: 0.3 MB less resident).
needed="$(aarch64-linux-gnu-readelf -d "$binary" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort | tr '\n' ' ')"
say "needs: $needed"
if [ "$needed" != "libc.so.6 libgcc_s.so.1 " ]; then
    say "the binary needs more than libc.so.6 and libgcc_s.so.1: $needed"
    exit 1
fi

# Where qemu's user-mode emulator is installed, a first run of the built binary.
if command -v qemu-aarch64 >/dev/null 2>&1 && [ -d /usr/aarch64-linux-gnu ]; then
    qemu-aarch64 -L /usr/aarch64-linux-gnu "$binary" --version >&2
    qemu-aarch64 -L /usr/aarch64-linux-gnu "$binary" config check packaging/martinete.toml >/dev/null
fi
