#!/usr/bin/env bash
# Runs every fuzz target of m365-ingest for a bounded time (default 15 s each) and fails on
# the first crash; see scripts/fuzz-smoke.sh. Seeds the corpora first: the checked-in seeds/
# and the example configuration packaging/ingest.toml.
#
#   crates/m365-ingest/fuzz/smoke.sh
#   SECONDS_PER_TARGET=300 crates/m365-ingest/fuzz/smoke.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
# One build directory for the fuzz projects of m365, m365-pipeline and m365-ingest: about half
# of their sanitised dependencies are the same build (SQLite, ring, serde, ...), compiled once.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target/fuzz}"
for seeds in "$here"/seeds/*/; do
    target="$(basename "$seeds")"
    mkdir -p "$here/corpus/$target"
    cp "$seeds"* "$here/corpus/$target/"
done
cp "$root/packaging/ingest.toml" "$here/corpus/ingest_config/ingest.toml"
exec "$root/scripts/fuzz-smoke.sh" "$here" 15
