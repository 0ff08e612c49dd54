"""MQTT devices at an edge whose central is down, then the bridge.

publish: one device publishes COUNT QoS 1 messages (payload m-<i>) to devices/<device>/temp on
the edge's MQTT listener; each is acknowledged (PUBACK after the edge's durable append).
verify: TOPIC on central holds each of them exactly once, in publish order, with the MQTT topic
and the edge's rill.origin headers."""

import time

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

import rilltest
from mqtt_util import Device, headers
from rilltest import check, check_eq


def publish(a):
    dev = Device(a.mqtt, a.device)
    for i in range(a.count):
        dev.publish(f"devices/{a.device}/temp", f"m-{i}".encode(), qos=1)
    dev.close()
    print(f"published {a.count} QoS 1 messages", flush=True)


def verify(a):
    admin = AdminClient({"bootstrap.servers": a.bootstrap})

    def topic_md():
        t = admin.list_topics(a.topic, timeout=5).topics.get(a.topic)
        return t if t is not None and t.error is None else None

    md = rilltest.wait_for(f"topic {a.topic}", topic_md, timeout=a.timeout)
    c = Consumer({"bootstrap.servers": a.bootstrap, "group.id": rilltest.unique("bm"),
                  "enable.auto.commit": False, "fetch.wait.max.ms": 100})
    c.assign([TopicPartition(a.topic, p, 0) for p in sorted(md.partitions)])
    got = []
    deadline = time.monotonic() + a.timeout
    while len(got) < a.count:
        check(time.monotonic() < deadline, f"only {len(got)} of {a.count} records in {a.topic}")
        m = c.poll(0.2)
        if m is None or m.error():
            continue
        got.append(m)
    # Anything more would be a duplicate.
    quiet = time.monotonic() + 2
    while time.monotonic() < quiet:
        m = c.poll(0.2)
        check(m is None or m.error() is not None, f"extra record {m and m.value()}")
    c.close()
    check_eq([m.value() for m in got], [f"m-{i}".encode() for i in range(a.count)],
             "every message once, in publish order")
    h = headers(got[-1])
    check_eq(h.get("mqtt.topic"), f"devices/{a.device}/temp".encode(), "mqtt.topic header")
    origin = h.get("rill.origin", b"").decode()
    check(origin.startswith(f"{a.node}/mqtt/"), f"rill.origin {origin!r}")
    print(f"{a.count} MQTT messages mirrored exactly once, in order", flush=True)


def main():
    ap = rilltest.parser(__doc__)
    ap.add_argument("mode", choices=["publish", "verify"])
    ap.add_argument("--mqtt")
    ap.add_argument("--device", default="dev-1")
    ap.add_argument("--topic")
    ap.add_argument("--node")
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--timeout", type=float, default=120)
    a = ap.parse_args()
    publish(a) if a.mode == "publish" else verify(a)


rilltest.run(main)
