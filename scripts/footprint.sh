#!/usr/bin/env bash
# Measures what the daemon costs where it runs: `m365 run` as the Pi package builds it (release,
# no demo), against one simulated Pro 2 (Mi-auth, 30 ms connection interval, an emulated NMEA
# receiver) served on the fake BlueZ, publishing to its own mosquitto at 1 Hz. Prints peak RSS,
# CPU time per published record, records delivered and the binary's size.
#
# Usage: scripts/footprint.sh [seconds]        (default 60; needs mosquitto and dbus-daemon)
# Environment: INTERVAL (default 1s), ENCODING (default json), CALLGRIND=1 runs the daemon under
# valgrind's callgrind instead and prints the instruction count per record.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${1:-60}"
INTERVAL="${INTERVAL:-1s}"
ENCODING="${ENCODING:-json}"
MOSQUITTO="${MOSQUITTO:-$(command -v mosquitto || echo /usr/sbin/mosquitto)}"

say() { printf 'footprint: %s\n' "$*" >&2; }

cargo build --quiet --release -p m365 --no-default-features
cp target/release/m365 target/release/m365-footprint
cargo build --quiet --release -p m365-sim
M365=target/release/m365-footprint
SIM=target/release/m365-sim

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

if [ "${CALLGRIND:-0}" = 1 ]; then
    valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out" \
        "$M365" --config "$work/martinete.toml" run 2>"$work/valgrind.log" &
else
    "$M365" --config "$work/martinete.toml" run &
fi
daemon=$!
sleep "$DURATION"
# CPU time (user + system, clock ticks) and peak RSS, read before stopping.
read -r utime stime < <(awk '{print $14, $15}' "/proc/$daemon/stat")
hwm_kb="$(awk '/VmHWM/ {print $2}' "/proc/$daemon/status")"
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
    total="$(awk '/^summary:/ {print $2}' "$work/callgrind.out")"
    printf 'instructions: %s (%s per record)\n' "$total" "$(( total / (records > 0 ? records : 1) ))"
    cp "$work/callgrind.out" target/footprint.callgrind.out
    printf 'profile: target/footprint.callgrind.out (callgrind_annotate it)\n'
else
    printf 'peak RSS: %s kB\n' "$hwm_kb"
    printf 'CPU: %s ms in all, %s ms per record\n' "$cpu_ms" \
        "$(awk -v c="$cpu_ms" -v r="$records" 'BEGIN { printf "%.2f", (r > 0 ? c / r : 0) }')"
fi
