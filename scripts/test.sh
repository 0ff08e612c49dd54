#!/usr/bin/env bash
# Runs every test of the workspace: unit, property, crash and black-box tests, including the
# real-client suite (confluent-kafka, kafka-python, paho-mqtt from PyPI in ./.venv, installed here)
# and the ARM builds under qemu-user (scripts/cross-build.sh, run here in CI).
set -euo pipefail
cd "$(dirname "$0")/.."

# 1. Python clients for the real-client tests, in a venv inside the repo. Reinstalled whenever
#    tests/requirements.txt changes (its hash is kept in the venv).
want_hash=$(sha256sum tests/requirements.txt | cut -d' ' -f1)
if [ "$(cat .venv/.requirements.sha256 2>/dev/null)" != "$want_hash" ] ||
    ! .venv/bin/python -c 'import confluent_kafka, kafka, paho.mqtt, websockets' 2>/dev/null; then
    if ! .venv/bin/python -c 'import sys' 2>/dev/null; then
        rm -rf .venv
        python3 -m venv .venv
    fi
    .venv/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
    echo "$want_hash" >.venv/.requirements.sha256
fi

# 2. kcat, when the machine can install it (its tests skip without it, except deb_package and
#    container_image, which require it with CI=true).
if ! command -v kcat >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (timeout 300 apt-get install -y -qq kcat >/dev/null 2>&1 ||
        (timeout 300 apt-get update -qq >/dev/null 2>&1 && timeout 300 apt-get install -y -qq kcat >/dev/null 2>&1)) ||
        echo "note: kcat could not be installed; kcat tests will be skipped (deb_package and container_image fail with CI=true)"
fi

# 2b. Prometheus (Debian package `prometheus`, which also ships promtool) for the real-scrape
#     test tests/tests/prometheus.rs, when root can apt-get. With CI=true that test fails without it.
if ! command -v prometheus >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (timeout 300 apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1 ||
        (timeout 300 apt-get update -qq >/dev/null 2>&1 &&
            timeout 300 apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1)) ||
        echo "note: prometheus could not be installed; the prometheus test will be skipped (fails with CI=true)"
    # The package starts a system instance on :9090; the test runs its own in a temp dir.
    (systemctl stop prometheus >/dev/null 2>&1 || service prometheus stop >/dev/null 2>&1) || true
fi

# 2c. mosquitto_sub for the $SYS tests (tests/tests/mqtt_sys.rs; required with CI=true).
#     Node and npm come with the machine; tests/tests/mqtt_ws.rs installs MQTT.js (npm `mqtt`)
#     into its target temp dir itself.
if ! command -v mosquitto_sub >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (timeout 300 apt-get install -y -qq mosquitto-clients >/dev/null 2>&1 ||
        (timeout 300 apt-get update -qq >/dev/null 2>&1 && timeout 300 apt-get install -y -qq mosquitto-clients >/dev/null 2>&1)) ||
        echo "note: mosquitto-clients could not be installed; the \$SYS mosquitto_sub tests will fail in CI"
fi

# 2d. Headless Chromium for the web console test (tests/tests/console.rs, which installs
#     playwright-core from npm into its target temp dir and drives /usr/bin/chromium; with
#     CI=true it fails without chromium). chromium-driver brings /usr/bin/chromedriver for
#     WebDriver clients.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (timeout 600 apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null 2>&1 ||
        (timeout 300 apt-get update -qq >/dev/null 2>&1 &&
            timeout 600 apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null 2>&1)) ||
        echo "note: chromium could not be installed; the console browser test will fail in CI"
fi

# 2e. The .deb test (tests/tests/deb_package.rs, root only; required with CI=true): dpkg-deb and
#     readelf build the package (scripts/build-deb.sh), adduser is its dependency (postinst),
#     setpriv runs the unit's ExecStart as `rill`, systemd-analyze (Debian `systemd`; not started,
#     only its analyzer is used) checks the installed units.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    deb_pkgs=()
    command -v adduser >/dev/null 2>&1 || deb_pkgs+=(adduser)
    command -v setpriv >/dev/null 2>&1 || deb_pkgs+=(util-linux)
    command -v readelf >/dev/null 2>&1 || deb_pkgs+=(binutils)
    command -v systemd-analyze >/dev/null 2>&1 || deb_pkgs+=(systemd)
    if [ ${#deb_pkgs[@]} -gt 0 ]; then
        (timeout 300 apt-get install -y -qq --no-install-recommends "${deb_pkgs[@]}" >/dev/null 2>&1 ||
            (timeout 300 apt-get update -qq >/dev/null 2>&1 &&
                timeout 300 apt-get install -y -qq --no-install-recommends "${deb_pkgs[@]}" >/dev/null 2>&1)) ||
            echo "note: ${deb_pkgs[*]} could not be installed; the .deb test fails with CI=true"
    fi
fi

# 2f. iptables for the cluster fault suite's network partition case (tests/tests/cluster_faults.rs,
#     root only: it drops packets between the nodes' loopback aliases; required with CI=true).
if ! command -v iptables >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (timeout 300 apt-get install -y -qq --no-install-recommends iptables >/dev/null 2>&1 ||
        (timeout 300 apt-get update -qq >/dev/null 2>&1 &&
            timeout 300 apt-get install -y -qq --no-install-recommends iptables >/dev/null 2>&1)) ||
        echo "note: iptables could not be installed; the network partition case fails with CI=true"
fi

# 3. The ARM binaries and qemu for the emulated smoke test (tests/tests/arm_smoke.rs), in CI
#    and wherever root can apt-get (elsewhere that test skips). cross-build.sh installs the Rust
#    targets and cross toolchains itself and prints its time. Only aarch64 by default, to keep
#    within CI's budget for cross builds; RILL_ARM_TARGETS="aarch64-unknown-linux-gnu
#    armv7-unknown-linux-gnueabihf" adds armv7 (arm_smoke requires, with CI=true, exactly the
#    targets listed there).
is_root_with_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }
if [ "${CI:-}" = true ] || is_root_with_apt; then
    if ! command -v qemu-aarch64-static >/dev/null 2>&1 && is_root_with_apt; then
        timeout 300 apt-get install -y -qq qemu-user-static >/dev/null 2>&1 ||
            (timeout 300 apt-get update -qq >/dev/null 2>&1 &&
                timeout 300 apt-get install -y -qq qemu-user-static >/dev/null 2>&1) ||
            echo "note: qemu-user-static could not be installed"
    fi
    export RILL_ARM_TARGETS=${RILL_ARM_TARGETS:-aarch64-unknown-linux-gnu}
    cross_args=()
    for t in $RILL_ARM_TARGETS; do cross_args+=(--target "$t"); done
    cross_start=$(date +%s)
    scripts/cross-build.sh --profile ci-cross "${cross_args[@]}"
    echo "cross builds (ci-cross): $(($(date +%s) - cross_start)) s"
fi

# 3b. The static musl binary (Debian musl-tools, installed by cross-build.sh) and buildah for the
#     container image test (tests/tests/container_image.rs; required with CI=true). Profile `dev`,
#     the cheapest full build, to keep within CI's budget; the shipped image uses `--profile edge`.
if [ "${CI:-}" = true ] || is_root_with_apt; then
    if ! command -v buildah >/dev/null 2>&1 && is_root_with_apt; then
        (timeout 300 apt-get install -y -qq --no-install-recommends buildah >/dev/null 2>&1 ||
            (timeout 300 apt-get update -qq >/dev/null 2>&1 &&
                timeout 300 apt-get install -y -qq --no-install-recommends buildah >/dev/null 2>&1)) ||
            echo "note: buildah could not be installed; the container image test fails with CI=true"
    fi
    static_start=$(date +%s)
    scripts/cross-build.sh --profile dev --target x86_64-unknown-linux-musl
    echo "static musl build (dev): $(($(date +%s) - static_start)) s"
fi

# 4. Build once (binaries the black-box tests start, and every test binary), then run each suite
#    and print its time. A failing suite does not stop the others; the exit code says if any failed.
#    First the failpoint build of `rill` (cargo feature `failpoints`, debug only), kept as
#    target/debug/rill-failpoints for the fault tests (tests/tests/power_cut.rs, key_rotation.rs and the cluster
#    fault suite); the normal build then puts the plain `rill` back.
cargo build -p rill-gateway --bin rill --features failpoints
cp target/debug/rill target/debug/rill-failpoints
#    With RILL_TEST_OTLP=1 also the OTLP build (cargo feature `otlp`) as target/debug/rill-otlp,
#    and tests/tests/otlp.rs runs its ignored produce-span test. Not by default: the exporter
#    changes the features of shared crates, so this is a second build of nearly every crate
#    (704 s on the shared 2-core development machine).
if [ "${RILL_TEST_OTLP:-}" = 1 ]; then
    cargo build -p rill-gateway --bin rill --features otlp
    cp target/debug/rill target/debug/rill-otlp
fi
cargo build --workspace --bins
cargo test --workspace --no-run --quiet

declare -a suite_names=() suite_secs=() suite_status=()
failed=0
run_suite() { # NAME CMD...
    local name=$1 start end rc
    shift
    echo "=== suite ${name}: $*"
    start=$(date +%s)
    if "$@"; then rc=0; else rc=$?; failed=1; fi
    end=$(date +%s)
    suite_names+=("$name")
    suite_secs+=($((end - start)))
    suite_status+=("$([ "$rc" = 0 ] && echo ok || echo "FAILED($rc)")")
    echo "=== suite ${name}: $((end - start)) s, $([ "$rc" = 0 ] && echo ok || echo FAILED)"
}

run_suite layers scripts/check-layers.sh
run_suite unit cargo test --workspace --exclude rill-tests --no-fail-fast
for t in tests/tests/*.rs; do
    name=$(basename "$t" .rs)
    run_suite "$name" cargo test -p rill-tests --test "$name" --no-fail-fast
done
if [ "${RILL_TEST_OTLP:-}" = 1 ]; then
    run_suite otlp-export cargo test -p rill-tests --test otlp --no-fail-fast -- --ignored
fi

echo
echo "suite times:"
total=0
for i in "${!suite_names[@]}"; do
    printf '  %-22s %5s s  %s\n' "${suite_names[$i]}" "${suite_secs[$i]}" "${suite_status[$i]}"
    total=$((total + suite_secs[i]))
done
printf '  %-22s %5s s\n' total "$total"
exit "$failed"
