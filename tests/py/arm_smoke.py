"""Smoke test of a node (run under qemu for ARM builds): `write` produces records with every codec
over Kafka (confluent-kafka, acks=all), reads them back, publishes MQTT QoS 1 messages (paho) that
land in the fallback topic `mqtt`, and reads those back; `verify` (after a restart) reads
everything back again. Contents are derived from --tag, so `verify` recomputes what `write` sent.
Prints `kafka=N mqtt=M` with the counts it checked."""

import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from mqtt_util import V311, Device
from rilltest import CODECS, check, check_eq, parser, run

PARTITIONS = 2


def kafka_records(tag, count):
    """(codec, key, value) in production order."""
    out = []
    for codec in CODECS:
        for i in range(count):
            value = f"{tag}|{codec}|{i}|".encode() + bytes(range(i % 7, 40 + i % 7))
            out.append((codec, f"k{i % 5}".encode(), value))
    return out


def mqtt_payloads(tag, count):
    return [f"{tag}|mqtt|{i}".encode() for i in range(count)]


def mqtt_topic(tag):
    return f"edge/{tag}/telemetry"


def read_all(bootstrap, topic, want, timeout):
    """Every record of `topic` from offset 0 of every partition, until `want` are seen and every
    partition reached its end."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "rill-arm-smoke",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    md = consumer.list_topics(topic, timeout=20)
    tmd = md.topics.get(topic)
    check(tmd is not None and tmd.error is None, f"topic {topic} missing: {tmd and tmd.error}")
    parts = sorted(tmd.partitions)
    consumer.assign([TopicPartition(topic, p, 0) for p in parts])
    got = {p: [] for p in parts}
    at_eof = set()
    deadline = time.monotonic() + timeout
    while sum(len(v) for v in got.values()) < want or len(at_eof) < len(parts):
        check(time.monotonic() < deadline,
              f"{topic}: timed out with {sum(len(v) for v in got.values())} of {want} records")
        m = consumer.poll(0.5)
        if m is None:
            continue
        if m.error():
            check(m.error().code() == KafkaError._PARTITION_EOF, f"{topic}: {m.error()}")
            at_eof.add(m.partition())
            continue
        at_eof.discard(m.partition())
        got[m.partition()].append(m)
    consumer.close()
    return got


def check_kafka(bootstrap, topic, tag, count, timeout):
    want = kafka_records(tag, count)
    got = read_all(bootstrap, topic, len(want), timeout)
    for p, msgs in got.items():
        check_eq([m.offset() for m in msgs], list(range(len(msgs))), f"{topic}[{p}] offsets")
    # Per key (one partition each), the order of production is kept.
    by_key = {}
    for msgs in got.values():
        for m in msgs:
            by_key.setdefault(m.key(), []).append(m.value())
    want_by_key = {}
    for _, key, value in want:
        want_by_key.setdefault(key, []).append(value)
    check_eq(sorted(by_key), sorted(want_by_key), f"{topic} keys")
    for key, values in want_by_key.items():
        check(by_key[key] == values, f"{topic}: records of key {key!r} differ from what was produced")
    return sum(len(v) for v in got.values())


def check_mqtt(bootstrap, tag, count, timeout):
    got = read_all(bootstrap, "mqtt", count, timeout)
    mine = [m.value() for msgs in got.values() for m in msgs if m.key() == mqtt_topic(tag).encode()]
    check_eq(mine, mqtt_payloads(tag, count), "MQTT messages in topic mqtt")
    return len(mine)


def write(args):
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    futures = admin.create_topics([NewTopic(args.topic, PARTITIONS, 1)], operation_timeout=30)
    futures[args.topic].result(60)
    records = kafka_records(args.tag, args.count)
    for codec in CODECS:
        producer = Producer({"bootstrap.servers": args.bootstrap, "acks": "all",
                             "compression.type": codec, "linger.ms": 5,
                             "enable.idempotence": True})
        failed = []
        for c, key, value in records:
            if c == codec:
                producer.produce(args.topic, key=key, value=value,
                                 on_delivery=lambda err, msg: err and failed.append(err))
        check_eq(producer.flush(args.timeout), 0, f"{codec}: records still queued after flush")
        check_eq(failed, [], f"{codec}: delivery errors")
        print(f"produced {args.count} records with {codec}", flush=True)
    kafka = check_kafka(args.bootstrap, args.topic, args.tag, args.count, args.timeout)
    dev = Device(args.mqtt, f"arm-smoke-{args.tag}", protocol=V311)
    for payload in mqtt_payloads(args.tag, args.count):
        dev.publish(mqtt_topic(args.tag), payload, qos=1, timeout=args.timeout)
    dev.close()
    print(f"published {args.count} MQTT QoS 1 messages, all PUBACKed", flush=True)
    mqtt = check_mqtt(args.bootstrap, args.tag, args.count, args.timeout)
    print(f"kafka={kafka} mqtt={mqtt}", flush=True)


def verify(args):
    kafka = check_kafka(args.bootstrap, args.topic, args.tag, args.count, args.timeout)
    mqtt = check_mqtt(args.bootstrap, args.tag, args.count, args.timeout)
    print(f"kafka={kafka} mqtt={mqtt}", flush=True)


def main():
    p = parser(__doc__)
    p.add_argument("phase", choices=["write", "verify"])
    p.add_argument("--mqtt", help="HOST:PORT of the MQTT listener (write)")
    p.add_argument("--topic", required=True)
    p.add_argument("--tag", required=True)
    p.add_argument("--count", type=int, default=20, help="records per codec, and MQTT messages")
    p.add_argument("--timeout", type=float, default=60, help="seconds per wait (emulation is slow)")
    args = p.parse_args()
    if args.phase == "write":
        check(args.mqtt, "write needs --mqtt")
        write(args)
    else:
        verify(args)


run(main)
