#!/usr/bin/env bash
# Runs every cargo-fuzz target of one crate for a bounded time and fails on the first crash.
# Shared by the crates' own `fuzz/smoke.sh` entry points and by CI. Needs the nightly toolchain;
# installs cargo-fuzz when it is missing.
#
#   scripts/fuzz-smoke.sh crates/m365-proto/fuzz [DEFAULT_SECONDS]
#   SECONDS_PER_TARGET=300 scripts/fuzz-smoke.sh crates/m365-gps/fuzz
set -euo pipefail

if [ "$#" -lt 1 ]; then
    echo "usage: $0 FUZZ_DIR [DEFAULT_SECONDS_PER_TARGET]" >&2
    exit 2
fi
cd "$1/.."
per_target="${SECONDS_PER_TARGET:-${2:-15}}"
# The code under test is safe Rust: a smoke run looks for panics, which need no sanitizer, and
# builds and runs much faster without AddressSanitizer. FUZZ_SANITIZER=address for long runs.
sanitizer="${FUZZ_SANITIZER:-none}"
if ! rustup toolchain list | grep -q '^nightly'; then
    echo "smoke.sh: the nightly toolchain is required (rustup toolchain install nightly)" >&2
    exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "smoke.sh: installing cargo-fuzz" >&2
    cargo install --locked cargo-fuzz
fi

mapfile -t targets < <(cargo +nightly fuzz list)
if [ "${#targets[@]}" -eq 0 ]; then
    echo "smoke.sh: no fuzz targets found" >&2
    exit 2
fi

failed=()
for target in "${targets[@]}"; do
    echo "== fuzzing ${target} for ${per_target} s"
    if ! cargo +nightly fuzz run --sanitizer "${sanitizer}" "${target}" -- -max_total_time="${per_target}" -print_final_stats=1; then
        failed+=("${target}")
    fi
done

if [ "${#failed[@]}" -ne 0 ]; then
    echo "smoke.sh: crashes in: ${failed[*]} (inputs under fuzz/artifacts/)" >&2
    exit 1
fi
echo "smoke.sh: ${#targets[@]} targets ran ${per_target} s each without a crash"
