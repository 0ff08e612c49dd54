"""Log compaction seen by confluent-kafka: a topic with cleanup.policy=compact and tiny segments
gets several values per key; once the node's cleaner has run, a consumer reading from offset 0
sees every key's latest value at its original offset, superseded values gone, tombstoned keys
kept as tombstones, and only records that were really produced at those offsets. A record
without a key is refused with INVALID_RECORD."""

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from rilltest import check, check_eq, parser, run, unique, wait_for

KEYS = 8
ROUNDS = 15


def produce_all(producer, topic, records):
    """Produce (key, value) pairs one by one (one batch each); returns offset -> (key, value)."""
    offsets = {}
    errors = []

    def report(err, msg):
        if err is not None:
            errors.append(err)
        else:
            offsets[msg.offset()] = (msg.key(), msg.value())

    for key, value in records:
        producer.produce(topic, key=key, value=value, on_delivery=report)
        producer.flush(15)
    check(not errors, f"delivery errors: {errors}")
    check_eq(len(offsets), len(records), "delivered records")
    return offsets


def consume_all(bootstrap, topic):
    """Every record of partition 0 from offset 0 up to the high watermark, as (offset, key, value)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("cmp"),
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        _, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        c.assign([TopicPartition(topic, 0, 0)])
        out = []
        last = -1
        while last < high - 1:
            msg = c.poll(10)
            check(msg is not None, f"no record after offset {last} (high watermark {high})")
            check(msg.error() is None, f"consume error: {msg.error()}")
            out.append((msg.offset(), msg.key(), msg.value()))
            last = msg.offset()
        return out
    finally:
        c.close()


def main():
    args = parser(__doc__).parse_args()
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    topic = unique("compacted")
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1, config={
        "cleanup.policy": "compact", "segment.bytes": "600",
        "min.cleanable.dirty.ratio": "0.01", "delete.retention.ms": "3600000"})])[topic].result(15)
    producer = Producer({"bootstrap.servers": args.bootstrap, "linger.ms": 0,
                         "enable.idempotence": False})

    records = [(f"key-{k}".encode(), f"value-{k}-{r}".encode())
               for r in range(ROUNDS) for k in range(KEYS)]
    records.append((b"key-0", None))  # tombstone for key-0
    # Filler so that the records above end up in closed segments (the active one is never cleaned).
    records += [(f"filler-{i}".encode(), b"f") for i in range(20)]
    produced = produce_all(producer, topic, records)
    total = len(produced)
    print(f"produced {total} records to {topic}", flush=True)

    # A record without a key is refused on a compacted topic.
    errors = []
    producer.produce(topic, value=b"no key", on_delivery=lambda err, msg: errors.append(err))
    producer.flush(15)
    check(errors and errors[0] is not None, f"keyless record accepted: {errors}")
    check_eq(errors[0].code(), KafkaError.INVALID_RECORD, "keyless record error")

    latest = {}
    for off in sorted(produced):
        key, value = produced[off]
        latest[key] = (off, value)

    def compacted():
        got = consume_all(args.bootstrap, topic)
        return got if len(got) < total // 2 else None

    got = wait_for("compaction of the log start", compacted, timeout=60, interval=0.5)
    print(f"after compaction: {len(got)} of {total} records", flush=True)
    offsets = [o for o, _, _ in got]
    check(offsets == sorted(set(offsets)), "offsets strictly increasing")
    for off, key, value in got:
        check_eq((key, value), produced.get(off), f"record at offset {off}")
    seen = {key: (off, value) for off, key, value in got}
    for key, (off, value) in latest.items():
        check_eq(seen.get(key), (off, value), f"latest record of {key!r}")
    check(seen[b"key-0"][1] is None, "tombstone of key-0 kept")
    per_key = {}
    for _, key, _ in got:
        per_key[key] = per_key.get(key, 0) + 1
    check(all(n < ROUNDS for n in per_key.values()), f"superseded values remain: {per_key}")


if __name__ == "__main__":
    run(main)
