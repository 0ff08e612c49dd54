"""Subscriptions served from the log: wildcard subscribers get what is published after their
SUBSCRIBE, in order, at QoS min(published, subscribed); a record produced by a Kafka client to
`commands` with key d1 reaches the subscriber of commands/d1 (rule commands/{device}); retained
messages go to new subscribers and an empty retained publish clears them; UNSUBSCRIBE stops
delivery; a shared subscription splits messages between its members."""

import queue
import time

from confluent_kafka import Producer

from mqtt_util import V311, V5, Device, mqtt_parser
from rilltest import check, check_eq, run, unique


def main():
    args = mqtt_parser(__doc__).parse_args()
    dev_id = unique("sd")
    pub = Device(args.mqtt, unique("pub"), protocol=V5)
    # Published before the subscription: not delivered (only what comes after SUBSCRIBE).
    pub.publish(f"devices/{dev_id}/telemetry", b"before", qos=1)

    for proto in (V311, V5):
        sub = Device(args.mqtt, unique("sub"), protocol=proto)
        granted = sub.subscribe("devices/+/telemetry", qos=1)
        print(f"SUBACK {granted}", flush=True)
        for i in range(10):
            pub.publish(f"devices/{dev_id}/telemetry", f"m{i}".encode(), qos=2 if i % 2 else 0)
        got = [sub.expect() for _ in range(10)]
        check_eq([m.payload for m in got], [f"m{i}".encode() for i in range(10)], "payloads in order")
        check_eq([m.qos for m in got], [1 if i % 2 else 0 for i in range(10)], "QoS = min(pub, sub)")
        check(all(m.topic == f"devices/{dev_id}/telemetry" for m in got), "topic")
        sub.nothing(0.5)
        sub.client.unsubscribe("devices/+/telemetry")
        sub.close()
    print("wildcard subscriptions delivered 10 messages in order for 3.1.1 and 5", flush=True)

    # Kafka producer -> MQTT subscriber via the rule's pattern filled from the key.
    cmd = Device(args.mqtt, unique("cmd"), protocol=V311)
    cmd.subscribe("commands/d1", qos=1)
    p = Producer({"bootstrap.servers": args.bootstrap})
    p.produce("commands", key=b"d1", value=b"reboot")
    p.produce("commands", key=b"d2", value=b"not-for-d1")
    check_eq(p.flush(15), 0, "unflushed Kafka records")
    m = cmd.expect()
    check_eq((m.topic, m.payload), ("commands/d1", b"reboot"), "Kafka record delivered over MQTT")
    cmd.nothing(0.5)
    cmd.close()
    print("a Kafka-produced record reached the MQTT subscriber of commands/d1", flush=True)

    # Retained messages.
    rt = unique("status")
    pub.publish(f"{rt}/a", b"online", qos=1, retain=True)
    pub.publish(f"{rt}/b", b"offline", qos=0, retain=True)
    pub.publish(f"{rt}/a", b"online-2", qos=1, retain=True)
    late = Device(args.mqtt, unique("late"), protocol=V311)
    late.subscribe(f"{rt}/#", qos=1)
    got = sorted((m.topic, m.payload, m.retain) for m in (late.expect(), late.expect()))
    check_eq(got, [(f"{rt}/a", b"online-2", True), (f"{rt}/b", b"offline", True)], "retained messages")
    late.nothing(0.5)
    late.close()
    pub.publish(f"{rt}/a", b"", qos=1, retain=True)
    later = Device(args.mqtt, unique("later"), protocol=V5)
    later.subscribe(f"{rt}/#", qos=1)
    m = later.expect()
    check_eq((m.topic, m.payload), (f"{rt}/b", b"offline"), "only the remaining retained message")
    later.nothing(0.5)
    later.close()
    print("retained messages delivered to new subscribers, cleared by an empty payload", flush=True)

    # Shared subscription: each message to exactly one member.
    grp = unique("g")
    members = [Device(args.mqtt, unique("member"), protocol=V5) for _ in range(2)]
    for mb in members:
        mb.subscribe(f"$share/{grp}/devices/{dev_id}/telemetry", qos=1)
    for i in range(40):
        pub.publish(f"devices/{dev_id}/telemetry", f"s{i}".encode(), qos=1)
    seen = []
    deadline = time.monotonic() + 20
    counts = [0, 0]
    while len(seen) < 40 and time.monotonic() < deadline:
        for idx, mb in enumerate(members):
            try:
                m = mb.messages.get(timeout=0.05)
            except queue.Empty:
                continue
            seen.append(m.payload)
            counts[idx] += 1
    check_eq(sorted(seen), sorted(f"s{i}".encode() for i in range(40)), "shared subscription messages")
    for mb in members:
        mb.nothing(0.3)
        mb.close()
    print(f"shared subscription split 40 messages as {counts}", flush=True)
    pub.close()


run(main)
