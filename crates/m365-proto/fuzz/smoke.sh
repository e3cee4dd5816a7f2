#!/usr/bin/env bash
# Runs every fuzz target of m365-proto for a bounded time (default 15 s each) and fails on the
# first crash; see scripts/fuzz-smoke.sh.
#
#   crates/m365-proto/fuzz/smoke.sh
#   SECONDS_PER_TARGET=300 crates/m365-proto/fuzz/smoke.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
exec "$here/../../../scripts/fuzz-smoke.sh" "$here" 15
