#!/usr/bin/env bash
# Footprint of a node under MQTT QoS 1 load (docs/benchmarks.md, "Footprint"): resident memory
# at idle, with N connections, and under load; and write amplification, the bytes the node's
# process caused to be written to storage per byte of PUBACKed payload.
#
#   scripts/footprint.sh [--binary PATH] [--devices-bin PATH] [--devices N] [--rate MSG_PER_S]
#                        [--duration S] [--payload-bytes B] [--flush always|MS]
#                        [--budget BYTES]
#
# Defaults: target/ci-cross/rill (build it with `cargo build -p rill-gateway --bin rill
# --profile ci-cross --no-default-features --features edge`), target/debug/rill-devices,
# 1000 devices, 10000 msg/s in total, 20 s, 100-byte raw payloads, the node's default flush and
# memory budget (`--budget` sets `[node] memory_budget_bytes`; docs/operations.md).
#
# Phases (one node, a fresh data directory under target/, on disk: write_bytes is 0 on tmpfs):
#   1. idle: the node started, nothing connected, after 3 s;
#   2. connections: N devices connected, each publishing one message every 10 s (QoS 1);
#   3. load: N devices publishing QoS 1 at RATE msg/s in total for S seconds.
# RSS is VmRSS of /proc/PID/status, sampled every 0.2 s; a phase's figure is its maximum.
# Write amplification is the node's /proc/PID/io write_bytes over phase 3 divided by
# acked * B (payload bytes PUBACKed; topic names, MQTT framing and record headers count as
# overhead). write_bytes counts a page each time the process dirties it (4 KiB), so a small
# append after an fsync costs a page: the granularity flash sees.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=target/ci-cross/rill
devices_bin=target/debug/rill-devices
devices=1000
rate=10000
duration=20
payload=100
flush=
budget=
while [ $# -gt 0 ]; do
    case "$1" in
    --binary) bin=$2; shift 2 ;;
    --devices-bin) devices_bin=$2; shift 2 ;;
    --devices) devices=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --payload-bytes) payload=$2; shift 2 ;;
    --flush) flush=$2; shift 2 ;;
    --budget) budget=$2; shift 2 ;;
    -h | --help)
        sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "footprint: unknown argument $1 (try --help)" >&2
        exit 2
        ;;
    esac
done
for b in "$bin" "$devices_bin"; do
    [ -x "$b" ] || { echo "footprint: $b is missing (see --help)" >&2; exit 1; }
done

work=$(mktemp -d "$PWD/target/footprint.XXXXXX")
node_pid=
cleanup() {
    [ -z "$node_pid" ] || kill "$node_pid" 2>/dev/null || true
    [ -z "$node_pid" ] || wait "$node_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/key"
chmod 600 "$work/key"
conf=$work/node.toml
: >"$conf"
case "$flush" in
"") ;;
always) printf '[storage]\nflush = "always"\n' >"$conf" ;;
*) printf '[storage]\nflush = { interval_ms = %s }\n' "$flush" >"$conf" ;;
esac
[ -z "$budget" ] || printf '[node]\nmemory_budget_bytes = %s\n' "$budget" >>"$conf"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
mqtt=127.0.0.1:$(port)
"$bin" serve --config "$conf" --data-dir "$work/data" --key-file "$work/key" \
    --kafka-listen "127.0.0.1:$(port)" --mqtt-listen "$mqtt" --http-listen "127.0.0.1:$(port)" \
    >"$work/node.log" 2>&1 &
node_pid=$!
for _ in $(seq 300); do
    grep -q listening "$work/node.log" && break
    kill -0 "$node_pid" 2>/dev/null || { cat "$work/node.log" >&2; exit 1; }
    sleep 0.1
done
grep -q listening "$work/node.log" || { echo "footprint: the node did not start" >&2; exit 1; }

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$node_pid/status"; }
write_bytes() { awk '/^write_bytes:/ {print $2}' "/proc/$node_pid/io"; }
# Runs the devices with "$@", sampling RSS; prints "max_rss_kib summary_json".
sampled() {
    "$devices_bin" --broker "$mqtt" --json "$@" >"$work/devices.json" &
    local dev=$! max=0 r
    while kill -0 "$dev" 2>/dev/null; do
        r=$(rss_kib)
        [ "$r" -le "$max" ] || max=$r
        sleep 0.2
    done
    wait "$dev" || true
    echo "$max $(tail -1 "$work/devices.json")"
}
json() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$2" "$1"; }

sleep 3
idle=$(rss_kib)

read -r conn_rss conn_json < <(sampled -n "$devices" --rate 0.1 --duration 15 --qos 1 \
    --format raw --payload-bytes "$payload")

per_device=$(python3 -c "print($rate / $devices)")
before=$(write_bytes)
read -r load_rss load_json < <(sampled -n "$devices" --rate "$per_device" --duration "$duration" \
    --qos 1 --format raw --payload-bytes "$payload")
after=$(write_bytes)
acked=$(json acked "$load_json")
reached=$(json rate "$load_json")
written=$((after - before))

echo "footprint: binary $bin ($(stat -c %s "$bin") bytes), flush ${flush:-default}, $devices devices, $payload-byte payloads"
echo "| phase | RSS (max) | notes |"
echo "|---|---:|---|"
printf '| idle | %.1f MiB | no connections |\n' "$(python3 -c "print($idle/1024)")"
printf '| %s connections | %.1f MiB | %s connected, %s acked at %.1f msg/s |\n' "$devices" \
    "$(python3 -c "print($conn_rss/1024)")" "$(json connected "$conn_json")" \
    "$(json acked "$conn_json")" "$(json rate "$conn_json")"
printf '| load, %s msg/s asked | %.1f MiB | %s acked at %.0f msg/s reached, ack p99 %s ms |\n' \
    "$rate" "$(python3 -c "print($load_rss/1024)")" "$acked" "$reached" "$(json ack_p99_ms "$load_json")"
if [ "$acked" -gt 0 ]; then
    printf 'write amplification: %s bytes written / %s payload bytes = %.2f\n' "$written" \
        "$((acked * payload))" "$(python3 -c "print($written / ($acked * $payload))")"
fi
