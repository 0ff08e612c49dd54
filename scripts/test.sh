#!/usr/bin/env bash
# Runs every test of the workspace: unit, property, crash and black-box tests, including the
# real-client suite (confluent-kafka, kafka-python, paho-mqtt from PyPI in ./.venv, installed here).
set -euo pipefail
cd "$(dirname "$0")/.."

# 1. Python clients for the real-client tests, in a venv inside the repo. Reinstalled whenever
#    tests/requirements.txt changes (its hash is kept in the venv).
want_hash=$(sha256sum tests/requirements.txt | cut -d' ' -f1)
if [ "$(cat .venv/.requirements.sha256 2>/dev/null)" != "$want_hash" ] ||
    ! .venv/bin/python -c 'import confluent_kafka, kafka, paho.mqtt' 2>/dev/null; then
    if ! .venv/bin/python -c 'import sys' 2>/dev/null; then
        rm -rf .venv
        python3 -m venv .venv
    fi
    .venv/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
    echo "$want_hash" >.venv/.requirements.sha256
fi

# 2. kcat, when the machine can install it (optional: its tests skip without it).
if ! command -v kcat >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (timeout 300 apt-get install -y -qq kcat >/dev/null 2>&1 ||
        (timeout 300 apt-get update -qq >/dev/null 2>&1 && timeout 300 apt-get install -y -qq kcat >/dev/null 2>&1)) ||
        echo "note: kcat could not be installed; kcat tests will be skipped"
fi

# 3. Build the binaries the black-box tests start, then run everything.
cargo build --workspace --bins
cargo test --workspace --no-fail-fast
