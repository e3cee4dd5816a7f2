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
cargo build --release --target "$TARGET" -p m365 --no-default-features "$@"

binary="target/$TARGET/release/m365"
say "built $binary ($(stat -c %s "$binary") bytes)"
if command -v file >/dev/null 2>&1; then
    file "$binary" >&2
fi
