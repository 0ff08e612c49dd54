#!/usr/bin/env bash
# The long version of the cluster fault tests (issue 11), outside CI: the leader of a busy
# partition SIGKILLed KILLS times in a row (default 20) under an idempotent acks=all producer,
# then the fault suite (power cut of every node, isolated leader, and their broken-build runs)
# ROUNDS times (default 3). Needs what scripts/test.sh installs (.venv, the failpoint build).
# Usage: scripts/cluster-soak.sh [KILLS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
kills=${1:-20}
rounds=${2:-3}
cargo build -p rill-gateway --bin rill --features failpoints
cp target/debug/rill target/debug/rill-failpoints
cargo build --workspace --bins
start=$(date +%s)
RILL_LEADER_KILLS=$kills cargo test -p rill-tests --test cluster_replication -- --nocapture
echo "leader kills ($kills): $(($(date +%s) - start)) s"
for r in $(seq 1 "$rounds"); do
    start=$(date +%s)
    cargo test -p rill-tests --test cluster_faults -- --nocapture --test-threads 1 --include-ignored
    echo "fault suite round $r: $(($(date +%s) - start)) s"
done
