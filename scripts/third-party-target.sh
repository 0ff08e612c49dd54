#!/usr/bin/env bash
# Mirror an edge Rill node into a third-party Kafka-compatible broker (tansu, SQLite) and check
# that every record arrives exactly once, in order per partition, with its rill.origin header,
# also after the edge is SIGKILLed and restarted (the resume position is read back from tansu).
#
# Not run in CI: installing tansu (`cargo install tansu --features dynostore,libsql`) takes ~20
# minutes on 2 cores. Exits non-zero on any failure.
#
#   scripts/third-party-target.sh            # installs tansu if needed, builds rill (debug)
#   TANSU_BIN=/path/to/tansu RILL_BIN=target/release/rill scripts/third-party-target.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${RILL_TEST_PYTHON:-$ROOT/.venv/bin/python}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
RILL=${RILL_BIN:-$TARGET_DIR/debug/rill}

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

"$PY" -c 'import confluent_kafka' 2>/dev/null ||
    fail "$PY lacks confluent-kafka (run scripts/test.sh once, or set RILL_TEST_PYTHON)"

TANSU=${TANSU_BIN:-$(command -v tansu || echo "$HOME/.cargo/bin/tansu")}
if [ ! -x "$TANSU" ]; then
    echo "installing tansu (~20 minutes) ..."
    cargo install tansu --features dynostore,libsql
    TANSU=$HOME/.cargo/bin/tansu
fi
if [ -z "${RILL_BIN:-}" ]; then
    cargo build -p rill-gateway --bin rill
fi

WORK=$(mktemp -d -t rill-third-party-XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ "${KEEP_WORK:-0}" = 1 ]; then echo "logs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

free_port() {
    "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Wait (at most 60 s) until something listens on 127.0.0.1:$1.
wait_port() {
    for _ in $(seq 600); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    return 1
}

PORT=$(free_port)
# SQLite storage: tansu 0.6.0's memory:// engine numbers offsets per batch (a 100-record batch
# leaves a high watermark of 1, and a fetch inside a batch returns nothing), which no Kafka client
# can consume correctly. The path is relative to tansu's working directory.
(cd "$WORK" && exec "$TANSU" broker --listener-url "tcp://127.0.0.1:$PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$PORT" \
    --storage-engine sqlite://tansu.db) >"$WORK/tansu.log" 2>&1 &
PIDS+=($!)
wait_port "$PORT" || { cat "$WORK/tansu.log" >&2; fail "tansu did not listen on $PORT"; }
echo "tansu on 127.0.0.1:$PORT"

# Start the edge (same data directory every time); sets EDGE_PID and EDGE (its Kafka address).
start_edge() {
    local log=$WORK/edge-$1.log
    NO_COLOR=1 RUST_LOG=info "$RILL" serve --data-dir "$WORK/edge" --key-file "$WORK/edge.key" \
        --kafka-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --mqtt-listen 127.0.0.1:0 \
        --node-name edge-01 --mirror-to "127.0.0.1:$PORT" 2>"$log" &
    EDGE_PID=$!
    PIDS+=("$EDGE_PID")
    EDGE=
    for _ in $(seq 600); do
        EDGE=$(grep -o 'listening kafka=[^ ]*' "$log" | head -1 | cut -d= -f2 || true)
        [ -n "$EDGE" ] && break
        sleep 0.1
    done
    [ -n "$EDGE" ] || { cat "$log" >&2; fail "the edge did not start"; }
    echo "edge-01 (pid $EDGE_PID) on $EDGE, mirroring to tansu"
}

py() { "$PY" "tests/py/$1" "${@:2}"; }

# Records stamped now: bridge_produce.py's default (2023) would sit past retention.ms at the edge.
TS=$(date +%s%3N)
start_edge 1
# 1. Records produced at the edge reach tansu once, in order, with their origin.
py bridge_produce.py --base-ts "$TS" --bootstrap "$EDGE" --topic sensors --partitions 3 --count 3000
py bridge_verify.py --base-ts "$TS" --bootstrap "127.0.0.1:$PORT" --topic edge-01.sensors --count 3000 \
    --node edge-01 --source sensors || fail "first drain into tansu"

# 2. SIGKILL the edge right after producing a second topic (usually mid-drain) and restart it: the
#    bridge resumes from what tansu holds (the rill.origin headers at its tail), so nothing is
#    duplicated or lost, also in `sensors`.
py bridge_produce.py --base-ts "$TS" --bootstrap "$EDGE" --topic metrics --partitions 2 --count 20000
kill -KILL "$EDGE_PID"
wait "$EDGE_PID" 2>/dev/null || true
start_edge 2
py bridge_verify.py --base-ts "$TS" --bootstrap "127.0.0.1:$PORT" --topic edge-01.metrics --count 20000 \
    --node edge-01 --source metrics || fail "drain across an edge SIGKILL"
py bridge_verify.py --base-ts "$TS" --bootstrap "127.0.0.1:$PORT" --topic edge-01.sensors --count 3000 \
    --node edge-01 --source sensors || fail "sensors changed after the restart"

echo "OK: mirrored into tansu exactly once (23000 records, one edge SIGKILL)"
