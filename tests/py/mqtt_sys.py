"""$SYS topics with paho: a `$SYS/#` subscriber gets the current values at once (retained) and
changed ones each interval (live, with its subscription identifier); `#` and `+/broker/#` see
none of them; publishes to `$SYS/...` are refused (MQTT 5: 0x87) or dropped (3.1.1); nothing
of `$SYS` is in the log."""

import time

from confluent_kafka import Consumer, KafkaError, TopicPartition
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from mqtt_util import V311, V5, Device, headers, mqtt_parser, result
from rilltest import check, run, unique


def values_until(dev, cond, timeout=15):
    """Messages of `dev` as {topic: (payload, retain, sub ids)} until cond(values) holds."""
    seen = {}
    deadline = time.monotonic() + timeout
    while not cond(seen):
        check(time.monotonic() < deadline, f"$SYS values never satisfied the check: {seen}")
        m = dev.expect(timeout=max(0.1, deadline - time.monotonic()))
        ids = getattr(m.properties, "SubscriptionIdentifier", None) if m.properties else None
        seen[m.topic] = (m.payload.decode(), bool(m.retain), ids)
    return seen


def log_topics_without_sys(bootstrap):
    """Every record of every log topic: (count, how many carry a `$SYS` mqtt.topic)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("sys"),
                  "enable.auto.commit": False, "enable.partition.eof": True})
    md = c.list_topics(timeout=10)
    parts = [TopicPartition(t, p, 0) for t, tm in md.topics.items() if not t.startswith("__")
             for p in tm.partitions]
    c.assign(parts)
    total, sys_records, eof = 0, 0, set()
    deadline = time.monotonic() + 20
    while len(eof) < len(parts) and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                eof.add((m.topic(), m.partition()))
            continue
        total += 1
        topic = headers(m).get("mqtt.topic", b"")
        if topic.startswith(b"$SYS") or b"hacked" in (m.value() or b""):
            sys_records += 1
    c.close()
    check(len(eof) == len(parts), "log topics not read to the end")
    return total, sys_records


def main():
    args = mqtt_parser(__doc__).parse_args()
    sys_sub = Device(args.mqtt, unique("sys"), protocol=V5)
    props = Properties(PacketTypes.SUBSCRIBE)
    props.SubscriptionIdentifier = 5
    granted = sys_sub.subscribe("$SYS/#", qos=1, properties=props)
    first = values_until(sys_sub, lambda v: "$SYS/broker/version" in v and
                         "$SYS/broker/uptime" in v and "$SYS/broker/clients/connected" in v)
    result("first", version=first["$SYS/broker/version"][0],
           retained=all(r for (_, r, _) in first.values()),
           ids=first["$SYS/broker/version"][2], granted=[int(g.value) for g in granted])

    wild = Device(args.mqtt, unique("wild"), protocol=V5)
    wild.subscribe("#", qos=0)
    wild.subscribe("+/broker/#", qos=0)
    dev = unique("dev")
    device = Device(args.mqtt, dev, protocol=V5)
    for i in range(3):
        device.publish(f"devices/{dev}/telemetry", f"m{i}".encode(), qos=1)
    # The wildcard subscriber gets the device's messages, never a $SYS one.
    wild_topics = set()
    deadline = time.monotonic() + 3.5
    while time.monotonic() < deadline:
        try:
            m = wild.messages.get(timeout=0.2)
        except Exception:  # noqa: BLE001 - queue.Empty
            continue
        wild_topics.add(m.topic)

    # Read-only: MQTT 5 gets 0x87, 3.1.1 its ack (the message is dropped).
    info = device.client.publish("$SYS/broker/uptime", b"hacked", qos=1)
    info.wait_for_publish(10)
    v5_reason = device.pub_reasons.get(info.mid)
    old = Device(args.mqtt, unique("old"), protocol=V311)
    info = old.client.publish("$SYS/broker/uptime", b"hacked", qos=1)
    info.wait_for_publish(10)
    v311_acked = info.is_published()
    info = old.client.publish("$SYS/broker/version", b"hacked", qos=2)
    info.wait_for_publish(10)
    v311_qos2_done = info.is_published()

    # Live updates: the counters moved (4 publishes received at least), not retained.
    later = values_until(sys_sub, lambda v: int(
        v.get("$SYS/broker/publish/messages/received", ("0",))[0]) >= 5 and
        int(v.get("$SYS/broker/clients/connected", ("0",))[0]) >= 4)
    uptime = later.get("$SYS/broker/uptime") or values_until(
        sys_sub, lambda v: "$SYS/broker/uptime" in v)["$SYS/broker/uptime"]
    hacked = [t for t, (p, _, _) in {**first, **later}.items() if p == "hacked"]
    live = later["$SYS/broker/publish/messages/received"]
    result("later", connected=int(later["$SYS/broker/clients/connected"][0]),
           received=int(live[0]), retained=live[1], ids=live[2], uptime=uptime[0],
           bytes_received=int(later.get("$SYS/broker/bytes/received", ("0",))[0]),
           hacked=hacked)
    result("wildcards", topics=sorted(wild_topics))
    result("read_only", v5_reason=v5_reason.value if v5_reason else None,
           v311_acked=v311_acked, v311_qos2_done=v311_qos2_done)
    for d in (sys_sub, wild, device, old):
        d.close()
    total, sys_records = log_topics_without_sys(args.bootstrap)
    result("log", total=total, sys_records=sys_records)


run(main)
