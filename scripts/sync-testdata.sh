#!/usr/bin/env bash
# Copies new reference data from the shared folder next to the repository (../shared/testdata,
# or $M365_SHARED_DIR/testdata) into the repository's testdata/. Files the repository already
# has are left alone when identical; files that differ are listed and kept as they are unless
# --overwrite is given. Afterwards, add a line for each new file to testdata/PROVENANCE.md.
#
# Usage: scripts/sync-testdata.sh [--overwrite] [--dry-run]
set -euo pipefail

cd "$(dirname "$0")/.."

say() { printf 'sync-testdata: %s\n' "$*" >&2; }

overwrite=false
dry_run=false
for arg in "$@"; do
    case "$arg" in
        --overwrite) overwrite=true ;;
        --dry-run) dry_run=true ;;
        -h | --help)
            sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            say "unknown argument: $arg"
            exit 2
            ;;
    esac
done

shared="${M365_SHARED_DIR:-../shared}/testdata"
repo=testdata
if [ ! -d "$shared" ]; then
    say "no shared test data at $shared: nothing to copy"
    exit 0
fi

copied=0
differing=0
while IFS= read -r -d '' file; do
    relative="${file#"$shared"/}"
    target="$repo/$relative"
    if [ -e "$target" ]; then
        if cmp -s "$file" "$target"; then
            continue
        fi
        if ! "$overwrite"; then
            say "differs (kept; --overwrite to replace): $relative"
            differing=$((differing + 1))
            continue
        fi
        say "replacing $relative"
    else
        say "new: $relative"
    fi
    if ! "$dry_run"; then
        mkdir -p "$(dirname "$target")"
        # -p: keep the modification time; the bytes are copied exactly.
        cp -p "$file" "$target"
    fi
    copied=$((copied + 1))
done < <(find "$shared" -type f -print0 | sort -z)

if "$dry_run"; then
    say "$copied file(s) would be copied"
else
    say "$copied file(s) copied into $repo/"
fi
if [ "$copied" -gt 0 ]; then
    say "describe the new files in $repo/PROVENANCE.md (source and licence)"
fi
[ "$differing" -eq 0 ]
