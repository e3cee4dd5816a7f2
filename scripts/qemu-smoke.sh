#!/usr/bin/env bash
# Runs the Pi build itself, end to end, on an x86-64 machine: the aarch64 `m365` as packaged
# (built by scripts/cross-aarch64.sh) under qemu's user-mode emulator pairs with a simulated
# scooter on the fake BlueZ, logs in, reads the emulated GPS receiver and publishes to mosquitto,
# through scripts/footprint.sh. Fails unless most samples reach the broker. It checks what the
# tests cannot: the binary as linked for the Pi (LLD, folded functions, packed relocations, the
# hot-function order, no unwind tables) works.
#
# Usage: scripts/qemu-smoke.sh [seconds]      (default 40; needs qemu-aarch64, mosquitto,
#                                              dbus-daemon and the aarch64 C library of
#                                              libc6-arm64-cross in /usr/aarch64-linux-gnu)
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${1:-40}"
say() { printf 'qemu-smoke: %s\n' "$*" >&2; }

binary="$PWD/target/aarch64-unknown-linux-gnu/release/m365"
[ -x "$binary" ] || { say "no $binary: run scripts/cross-aarch64.sh first"; exit 1; }
command -v qemu-aarch64 >/dev/null || { say "qemu-aarch64 is missing (Debian package qemu-user)"; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
printf '#!/bin/sh\nexec qemu-aarch64 -L /usr/aarch64-linux-gnu %s "$@"\n' "$binary" >"$work/m365"
chmod +x "$work/m365"

# The emulated daemon starts slowly: leave it 15 s before counting.
M365_BINARY="$work/m365" WARMUP=15 scripts/footprint.sh "$DURATION" | tee "$work/report"
delivered="$(sed -n 's/^records delivered: //p' "$work/report")"
if [ -z "$delivered" ] || [ "$delivered" -lt $((DURATION / 2)) ]; then
    say "the aarch64 build delivered ${delivered:-no} records in ${DURATION}s at 1 Hz"
    exit 1
fi
say "ok: the aarch64 build delivered $delivered records in ${DURATION}s"
