"""Shared helpers of the real-client test scripts (run by the Rust tests in tests/tests/).

Every script takes --bootstrap HOST:PORT, prints what it checks, and exits non-zero with a
clear "FAIL: ..." line when a check fails.
"""

import argparse
import os
import sys
import time
import traceback
import uuid

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
ACKS = ["0", "1", "all"]


class CheckFailed(AssertionError):
    pass


def check(cond, message):
    """Fail the script with `message` unless `cond` holds."""
    if not cond:
        raise CheckFailed(message)


def check_eq(got, want, what):
    check(got == want, f"{what}: got {got!r}, want {want!r}")


def parser(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--bootstrap", required=True, help="HOST:PORT of the node")
    return p


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def run(main):
    """Run main(); turn check failures and exceptions into a FAIL line and exit code 1."""
    try:
        main()
    except CheckFailed as e:
        print(f"FAIL: {e}", flush=True)
        sys.exit(1)
    except Exception:  # noqa: BLE001 - any error fails the test, with its traceback
        traceback.print_exc()
        print("FAIL: unexpected exception (traceback above)", flush=True)
        sys.exit(1)
    print("OK", flush=True)


def wait_for(what, cond, timeout=20.0, interval=0.05):
    """Poll cond() until it returns a truthy value; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise CheckFailed(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def make_records(topic, count, marker, base_ts):
    """Records with distinct keys/values/headers/timestamps; some keys and header values are null,
    values carry random binary bytes and the marker (for the plaintext check)."""
    out = []
    for i in range(count):
        key = None if i % 5 == 4 else f"key-{i % 7}".encode()
        value = f"{marker}|{topic}|{i}|".encode() + os.urandom(6) + bytes([0, 255, i % 256])
        headers = [("idx", str(i).encode()), ("dup", b"a"), ("dup", b"b")]
        if i % 3 == 0:
            headers.append(("nullh", None))
        out.append({"key": key, "value": value, "headers": headers, "ts": base_ts + i * 1000})
    return out
