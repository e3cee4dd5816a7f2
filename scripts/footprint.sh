#!/usr/bin/env bash
# Measures what the daemon costs where it runs: `m365 run` as the Pi package builds it (release,
# no demo), against one simulated Pro 2 (Mi-auth, 30 ms connection interval, an emulated NMEA
# receiver) served on the fake BlueZ, publishing to its own mosquitto at 1 Hz. Prints peak RSS,
# CPU time per published record, records delivered and the binary's size.
#
# Usage: scripts/footprint.sh [seconds]        (default 60; needs mosquitto and dbus-daemon)
# The binary is built as .cargo/config.toml builds the Pi's (same code generation and link
# flags), for this machine, in target/footprint.
# Environment: M365_BINARY (measure this build instead of building one), INTERVAL (default 1s), ENCODING (default json), WARMUP (default 10: seconds after
# start-up, pairing and login before CPU per record is counted), CALLGRIND=1 runs the daemon
# under valgrind's callgrind instead and prints the instruction count per record, MASSIF=1 under
# valgrind's massif and keeps its heap profile (ms_print it).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${1:-60}"
WARMUP="${WARMUP:-10}"
INTERVAL="${INTERVAL:-1s}"
ENCODING="${ENCODING:-json}"
MOSQUITTO="${MOSQUITTO:-$(command -v mosquitto || echo /usr/sbin/mosquitto)}"

say() { printf 'footprint: %s\n' "$*" >&2; }

# The Pi build's code generation, link flags and linker (.cargo/config.toml, aarch64), here for
# x86-64. A target directory of its own, so the different flags do not rebuild the usual one.
export CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C force-unwind-tables=no \
-C symbol-mangling-version=v0 -C link-arg=-Wl,--icf=all -C link-arg=-Wl,-z,pack-relative-relocs"
export CFLAGS_x86_64_unknown_linux_gnu="-fno-asynchronous-unwind-tables -fno-unwind-tables"
export CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER="$PWD/scripts/pi-linker.sh" LINK_CC=cc LINK_NM=nm
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/footprint}"
# HOT_FUNCTIONS=1: a callgrind profile of the whole run, start-up included, written out as the
# list of functions executed (packaging/hot-functions.txt; scripts/pi-linker.sh).
if [ "${HOT_FUNCTIONS:-0}" = 1 ]; then
    # The very build that is measured, relinked with its symbol table kept (crates/m365/build.rs
    # relinks when PI_LINKER_KEEP_SYMBOLS changes), so the profile names exactly the functions the
    # linker will place. The next plain run relinks it stripped, with the new list.
    export CALLGRIND=1 VALGRIND_OPTS="${VALGRIND_OPTS:-} --demangle=no" PI_LINKER_KEEP_SYMBOLS=1
elif [ "${CALLGRIND:-0}" = 1 ] || [ "${MASSIF:-0}" = 1 ]; then
    # The same build with symbols and line tables, so the profile names functions and lines.
    export CARGO_PROFILE_RELEASE_STRIP=false CARGO_PROFILE_RELEASE_DEBUG=line-tables-only
    export CARGO_TARGET_DIR=target/profiling
fi
out="$CARGO_TARGET_DIR/release"
if [ -n "${M365_BINARY:-}" ]; then
    # Another build of the daemon to measure, e.g. an older one for comparison.
    cp "$M365_BINARY" "$out/m365-footprint" 2>/dev/null || {
        mkdir -p "$out"
        cp "$M365_BINARY" "$out/m365-footprint"
    }
else
    cargo build --quiet --release -p m365 --no-default-features
    cp "$out/m365" "$out/m365-footprint"
fi
cargo build --quiet --release -p m365-sim
M365="$out/m365-footprint"
SIM="$out/m365-sim"

work="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# The broker: the first free loopback port mosquitto manages to bind.
for port in $(seq 18830 18930); do
    printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nuser root\n' "$port" \
        >"$work/mosquitto.conf"
    "$MOSQUITTO" -c "$work/mosquitto.conf" 2>"$work/mosquitto.log" &
    broker=$!
    for _ in $(seq 50); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
        kill -0 "$broker" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$broker" 2>/dev/null; then pids+=("$broker"); break; fi
done
kill -0 "${pids[0]}" 2>/dev/null || { say "mosquitto did not start"; exit 1; }

# The simulated scooter with its GPS, on a private bus.
mkfifo "$work/sim.out"
"$SIM" serve --model pro2 --gps nmea --state "$work/state" --auto-press-ms 300 \
    --conn-interval-ms 30 >"$work/sim.out" 2>"$work/sim.log" &
pids+=("$!")
exec 4<"$work/sim.out"
while read -r line <&4; do
    case "$line" in
    DBUS_SYSTEM_BUS_ADDRESS=*) export DBUS_SYSTEM_BUS_ADDRESS="${line#*=}" ;;
    M365_SIM_GPS=*) gps="${line#*=}" ;;
    M365_SIM_SCOOTER=*) mac="$(echo "${line#*=}" | cut -d' ' -f1)" ;;
    READY) break ;;
    esac
done
# Keep draining the simulator's output so it never blocks.
cat <&4 >/dev/null &
pids+=("$!")

cat >"$work/martinete.toml" <<EOF
[scooter]
mac = "$mac"
token_file_path = "$work/.mi-token"

[telemetry]
interval = "$INTERVAL"

[gps]
source = "serial"
kind = "nmea"
device = "$gps"

[mqtt]
broker = "tcp://127.0.0.1:$port"
encoding = "$ENCODING"

[spool]
path = "$work/spool.sqlite"

[log]
level = "warn"
EOF

"$M365" --config "$work/martinete.toml" register "$mac" >/dev/null

# Count what reaches the broker.
mosquitto_sub -h 127.0.0.1 -p "$port" -t 'm365/+/telemetry' -q 1 -v >"$work/received" &
pids+=("$!")

if [ "${MASSIF:-0}" = 1 ]; then
    valgrind --tool=massif --massif-out-file="$work/massif.out" \
        "$M365" --config "$work/martinete.toml" run 2>"$work/valgrind.log" &
elif [ "${CALLGRIND:-0}" = 1 ]; then
    valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out" \
        "$M365" --config "$work/martinete.toml" run 2>"$work/valgrind.log" &
else
    "$M365" --config "$work/martinete.toml" run &
fi
daemon=$!
# On-CPU time of all the daemon's threads, in nanoseconds (scheduler statistics).
cpu_ns() { cat /proc/"$daemon"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { print s + 0 }'; }
sleep "$WARMUP"
cpu_warm="$(cpu_ns)"
records_warm="$(wc -l <"$work/received")"
# Under callgrind, count only the steady state: zero the counters after the warm-up.
if [ "${CALLGRIND:-0}" = 1 ] && [ "${HOT_FUNCTIONS:-0}" != 1 ]; then
    callgrind_control --zero "$daemon" >/dev/null
fi
sleep "$((DURATION - WARMUP))"
cpu_end="$(cpu_ns)"
records_end="$(wc -l <"$work/received")"
# CPU time (user + system, clock ticks) and peak RSS, read before stopping.
read -r utime stime < <(awk '{print $14, $15}' "/proc/$daemon/stat")
hwm_kb="$(awk '/VmHWM/ {print $2}' "/proc/$daemon/status")"
threads="$(ls /proc/"$daemon"/task | wc -l)"
rss_split="$(awk '/^(Rss|Anonymous|Private_Clean|Shared_Clean):/ {printf "%s %s kB, ", $1, $2}' "/proc/$daemon/smaps_rollup")"
# Resident kB per mapped file (the binary, each shared library) and for anonymous memory.
rss_by_mapping="$(awk '
    /^[0-9a-f]+-[0-9a-f]+ / { name = ($6 == "" ? "[anonymous]" : $6); sub(".*/", "", name) }
    /^Rss:/ { rss[name] += $2 }
    END { for (n in rss) if (rss[n] > 0) printf "%s %s kB, ", n, rss[n] }' "/proc/$daemon/smaps")"
kill -INT "$daemon"
wait "$daemon" || true
sleep 1
records="$(wc -l <"$work/received")"
ticks="$(getconf CLK_TCK)"
cpu_ms=$(( (utime + stime) * 1000 / ticks ))

printf 'binary (x86-64, release, no demo): %s bytes\n' "$(stat -c %s "$M365")"
printf 'duration: %ss at %s, encoding %s\n' "$DURATION" "$INTERVAL" "$ENCODING"
printf 'records delivered: %s\n' "$records"
if [ "${CALLGRIND:-0}" = 1 ]; then
    # The last part written (at exit) holds what ran since the counters were zeroed.
    out_file="$(ls -t "$work"/callgrind.out* | head -1)"
    total="$(awk '/^(summary|totals):/ {print $2}' "$out_file" | tail -1)"
    steady=$((records_end - records_warm))
    printf 'instructions after %ss: %s (%s per record, %s records)\n' "$WARMUP" "$total" \
        "$(( total / (steady > 0 ? steady : 1) ))" "$steady"
    cp "$out_file" target/footprint.callgrind.out
    printf 'profile: target/footprint.callgrind.out (callgrind_annotate it)\n'
    if [ "${HOT_FUNCTIONS:-0}" = 1 ]; then
        # The executed functions' names as the profile has them (mangled), turned into the
        # demangled names without crate hashes that the linker script matches on any target.
        grep -oE '^c?fn=\([0-9]+\) .+' "$out_file" | sed -E 's/^c?fn=\([0-9]+\) //' \
            | sort -u >"$work/executed"
        nm -p --defined-only --format=just-symbols "$M365" >"$work/mangled"
        nm -p --defined-only --format=just-symbols --demangle "$M365" >"$work/demangled"
        hot=packaging/hot-functions.txt
        {
            printf '# The functions `m365 run` executed in `HOT_FUNCTIONS=1 scripts/footprint.sh`: the\n'
            printf '# Pi linker (scripts/pi-linker.sh) places them side by side. Generated; do not edit.\n'
            paste "$work/mangled" "$work/demangled" | awk -F '\t' '
                NR == FNR { executed[$0] = 1; next }
                ($1 in executed) { name = $2; sub(/\.llvm\.[0-9]+$/, "", name); print name }
            ' "$work/executed" - | LC_ALL=C sort -u
        } >"$hot"
        printf 'hot functions: %s names in %s\n' "$(grep -vc '^#' "$hot")" "$hot"
    fi
elif [ "${MASSIF:-0}" = 1 ]; then
    cp "$work/massif.out" target/footprint.massif.out
    printf 'heap profile: target/footprint.massif.out (ms_print it)\n'
else
    printf 'peak RSS: %s kB, threads: %s\n' "$hwm_kb" "$threads"
    printf 'RSS at the end: %s\n' "${rss_split%, }"
    printf 'RSS by mapping: %s\n' "${rss_by_mapping%, }"
    printf 'CPU: %s ms in all (start-up, pairing check and login included)\n' "$cpu_ms"
    printf 'CPU per record after %ss: %s ms (%s records)\n' "$WARMUP" \
        "$(awk -v a="$cpu_warm" -v b="$cpu_end" -v r="$((records_end - records_warm))" \
            'BEGIN { printf "%.3f", (r > 0 ? (b - a) / 1e6 / r : 0) }')" "$((records_end - records_warm))"
fi
