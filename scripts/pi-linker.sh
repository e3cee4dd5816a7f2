#!/bin/sh
# The Pi build's linker: the C compiler driving the LLD that ships with the Rust toolchain, with
# the functions `m365 run` executes placed together, so the daemon keeps fewer pages of its
# binary in memory.
#
# - LLD instead of the system's GNU ld: it folds identical functions (`--icf=all`) and packs
#   relative relocations (`-z pack-relative-relocs`, which GNU ld 2.40 does not do for aarch64);
#   both flags are in .cargo/config.toml.
# - packaging/hot-functions.txt names, without crate hashes, the functions a profile of
#   `m365 run` saw executed (regenerate it with `HOT_FUNCTIONS=1 scripts/footprint.sh`). This
#   script finds them among the objects being linked and hands LLD a `--symbol-ordering-file`,
#   so they sit side by side: the kernel maps a binary's pages 64 KiB at a time around each one
#   touched, and scattered hot code makes nearly all of the binary resident. Names the list has
#   and the build does not (other code, another architecture) are skipped silently; a stale list
#   only costs memory, never correctness.
#
# It is the `linker` of aarch64-unknown-linux-gnu in .cargo/config.toml: rustc calls it with the
# arguments it would give the C compiler. It works on an x86-64 machine cross-compiling and on a
# Pi building natively (where aarch64-linux-gnu-gcc is the native compiler). scripts/footprint.sh
# uses it for its x86-64 stand-in of the Pi build, with LINK_CC=cc and LINK_NM=nm.
set -eu

cc="${LINK_CC:-${CC_aarch64_unknown_linux_gnu:-aarch64-linux-gnu-gcc}}"
nm="${LINK_NM:-aarch64-linux-gnu-nm}"
hot_list="${M365_HOT_FUNCTIONS:-$(dirname "$0")/../packaging/hot-functions.txt}"

# The LLD of the toolchain that is linking (rustup names it in RUSTUP_TOOLCHAIN for the
# processes it starts).
sysroot="$(rustc --print sysroot)"
host="$(rustc -vV | sed -n 's/^host: //p')"
lld_dir="$sysroot/lib/rustlib/$host/bin/gcc-ld"
if [ ! -x "$lld_dir/ld.lld" ]; then
    echo "pi-linker: no LLD in the Rust toolchain at $lld_dir (rustup installs it with rustc)" >&2
    exit 1
fi

# PI_LINKER_KEEP_SYMBOLS=1 keeps the symbol table rustc would have stripped: the very same binary
# (the symbols are not loaded), but one a profiler can name functions in (HOT_FUNCTIONS=1
# scripts/footprint.sh).
if [ -n "${PI_LINKER_KEEP_SYMBOLS:-}" ]; then
    for arg in "$@"; do
        shift
        case "$arg" in
        -s | -Wl,--strip-all | -Wl,--strip-debug) ;;
        *) set -- "$@" "$arg" ;;
        esac
    done
fi

if [ ! -r "$hot_list" ] || ! command -v "$nm" >/dev/null 2>&1; then
    exec "$cc" -B"$lld_dir" -fuse-ld=lld "$@"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# Every symbol of the objects and archives being linked, mangled and demangled, in the same
# order (nm -p does not sort), paired line by line. LTO-promoted local names carry a
# `.llvm.<number>` suffix that differs between builds: it is dropped before comparing.
for arg in "$@"; do
    case "$arg" in
    *.o | *.a | *.rlib) [ -f "$arg" ] || continue ;;
    *) continue ;;
    esac
    "$nm" -p --defined-only --format=just-symbols "$arg" 2>/dev/null >"$work/mangled" || true
    "$nm" -p --defined-only --format=just-symbols --demangle "$arg" 2>/dev/null \
        >"$work/demangled" || true
    paste "$work/mangled" "$work/demangled" >>"$work/symbols"
done
touch "$work/symbols"
awk -F '\t' '
    NR == FNR { if ($0 !~ /^#/ && $0 != "") hot[$0] = 1; next }
    { name = $2; sub(/\.llvm\.[0-9]+$/, "", name) }
    (name in hot) && !($1 in seen) { seen[$1] = 1; print $1 }
' "$hot_list" "$work/symbols" >"$work/order"

# PI_LINKER_REPORT names a file to tell how many functions of the list were found and placed.
if [ -n "${PI_LINKER_REPORT:-}" ]; then
    printf '%s symbols for the %s names listed\n' "$(wc -l <"$work/order")" \
        "$(grep -vc '^#' "$hot_list")" >"$PI_LINKER_REPORT"
fi
# Not exec: the trap removes the work directory once LLD is done.
"$cc" -B"$lld_dir" -fuse-ld=lld -Wl,--symbol-ordering-file="$work/order" \
    -Wl,--no-warn-symbol-ordering "$@"
