"""Commands sent centrally reach MQTT devices at the edge (a pull mirror): a confluent-kafka
producer writes COUNT commands to the central topic `commands` (key = device id dev-0..dev-9,
no MQTT headers); the device dev-7, subscribed at the edge to commands/dev-7 (QoS 1), receives
exactly its commands, once each and in order; an operator console subscribed to commands/#
(MQTT 5) receives every command once, in order per device, with the rill.origin user property
naming the central partition and offset."""

import queue
import time

from confluent_kafka import Producer

from mqtt_util import V311, V5, Device, mqtt_parser
from rilltest import check, check_eq, run

DEVICES = 10


def drain(dev, want, timeout):
    """Messages until `want` arrived, then whatever else comes within 2 s (duplicates)."""
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < want:
        left = deadline - time.monotonic()
        check(left > 0, f"only {len(got)} of {want} messages within {timeout} s")
        try:
            got.append(dev.messages.get(timeout=min(left, 1.0)))
        except queue.Empty:
            pass
    end = time.monotonic() + 2
    while time.monotonic() < end:
        try:
            got.append(dev.messages.get(timeout=0.2))
        except queue.Empty:
            pass
    return got


def main():
    ap = mqtt_parser(__doc__)
    ap.add_argument("--central", required=True, help="HOST:PORT of the central node")
    ap.add_argument("--count", type=int, default=300)
    ap.add_argument("--timeout", type=float, default=90)
    a = ap.parse_args()

    dev7 = Device(a.mqtt, "dev-7", protocol=V311)
    dev7.subscribe("commands/dev-7", qos=1)
    ops = Device(a.mqtt, "ops-console", protocol=V5)
    ops.subscribe("commands/#", qos=1)

    p = Producer({"bootstrap.servers": a.central, "enable.idempotence": True, "linger.ms": 5})
    errors = []
    for i in range(a.count):
        p.produce("commands", key=f"dev-{i % DEVICES}".encode(), value=f"cmd-{i}".encode(),
                  on_delivery=lambda err, m: errors.append(err) if err else None)
    check_eq(p.flush(60), 0, "undelivered commands")
    check(not errors, f"produce errors: {errors[:3]}")
    print(f"produced {a.count} commands at central", flush=True)

    mine = [f"cmd-{i}".encode() for i in range(a.count) if i % DEVICES == 7]
    got = drain(dev7, len(mine), a.timeout)
    check_eq([m.payload for m in got], mine, "dev-7's commands, once each, in order")
    check(all(m.topic == "commands/dev-7" for m in got), "MQTT topic commands/dev-7")
    check(all(m.qos == 1 for m in got), "QoS 1")
    print(f"dev-7 received its {len(mine)} commands exactly once, in order", flush=True)

    got = drain(ops, a.count, a.timeout)
    check_eq(len(got), a.count, "commands/# got every command once")
    per_dev = {}
    for m in got:
        dev = m.topic.split("/", 1)[1]
        per_dev.setdefault(dev, []).append(int(m.payload.decode().split("-")[1]))
        props = dict(getattr(m.properties, "UserProperty", []) or [])
        origin = props.get("rill.origin", "")
        alias, topic, part, off = origin.rsplit("/", 3)
        check_eq((alias, topic), ("central", "commands"), "rill.origin names the central topic")
        check(part.isdigit() and off.isdigit(), f"origin partition/offset: {origin}")
    for dev, seq in per_dev.items():
        check_eq(seq, sorted(seq), f"order of {dev}'s commands")
        check(all(int(s) % DEVICES == int(dev.split("-")[1]) for s in seq), f"{dev} got only its own")
    check_eq(len(per_dev), DEVICES, "devices seen")
    print("commands/# received every command once, in order per device, with rill.origin", flush=True)
    dev7.close()
    ops.close()


run(main)
