"""confluent-kafka (librdkafka): produce with every codec and acks 0/1/all, consume from the
beginning and from a timestamp; keys, values, headers and timestamps come back exactly and offsets
are dense per partition."""

import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition, TIMESTAMP_CREATE_TIME
from confluent_kafka.admin import AdminClient, NewTopic

from rilltest import ACKS, CODECS, CheckFailed, check, check_eq, make_records, parser, run, unique

PARTITIONS = 3
COUNT = 45


def produce(bootstrap, topic, codec, acks, records):
    producer = Producer({
        "bootstrap.servers": bootstrap,
        "compression.type": codec,
        "acks": acks,
        "linger.ms": 5,
        "enable.idempotence": False,
    })
    reports = [None] * len(records)

    def on_delivery(i):
        def cb(err, msg):
            reports[i] = (err, msg.partition(), msg.offset())
        return cb

    for i, r in enumerate(records):
        producer.produce(topic, value=r["value"], key=r["key"], headers=r["headers"],
                         timestamp=r["ts"], on_delivery=on_delivery(i))
        producer.poll(0)
    remaining = producer.flush(30)
    check_eq(remaining, 0, f"{topic}: messages still in the producer queue after flush")
    for i, rep in enumerate(reports):
        check(rep is not None, f"{topic}: no delivery report for record {i}")
        err, part, off = rep
        check(err is None, f"{topic} (codec={codec} acks={acks}): record {i} failed: {err}")
        if acks != "0":
            check(off >= 0, f"{topic}: acks={acks} delivery report without an offset for record {i}")
    return reports


def consume(bootstrap, topic, start_offsets, expect_counts):
    """assign() with explicit offsets (no group commits); read until each partition reaches EOF."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "rill-tests-assign-only",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "error",
    })
    consumer.assign([TopicPartition(topic, p, o) for p, o in start_offsets.items()])
    got = {p: [] for p in start_offsets}
    at_eof = set()
    deadline = time.monotonic() + 10
    while len(at_eof) < len(start_offsets) or any(len(got[p]) < expect_counts[p] for p in got):
        check(time.monotonic() < deadline,
              f"{topic}: consume timed out; got {[len(v) for v in got.values()]} records, want {expect_counts}")
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                if len(got[msg.partition()]) >= expect_counts[msg.partition()]:
                    at_eof.add(msg.partition())
                continue
            check(False, f"{topic}: consumer error {msg.error()}")
        got[msg.partition()].append(msg)
    consumer.close()
    return got


def verify_topic(bootstrap, topic, codec, acks, records, reports):
    by_partition = {p: [] for p in range(PARTITIONS)}
    for i, (_, part, off) in enumerate(reports):
        by_partition[part].append((i, off))
    counts = {p: len(v) for p, v in by_partition.items()}
    got = consume(bootstrap, topic, {p: 0 for p in range(PARTITIONS)}, counts)
    for p in range(PARTITIONS):
        msgs = got[p]
        check_eq(len(msgs), counts[p], f"{topic}/{p} (codec={codec} acks={acks}) record count")
        check_eq([m.offset() for m in msgs], list(range(len(msgs))), f"{topic}/{p} offsets (dense from 0)")
        for (i, off), m in zip(by_partition[p], msgs):
            r = records[i]
            what = f"{topic}/{p}@{m.offset()} (record {i}, codec={codec} acks={acks})"
            if acks != "0":
                check_eq(m.offset(), off, f"{what} offset vs delivery report")
            check_eq(m.key(), r["key"], f"{what} key")
            check_eq(m.value(), r["value"], f"{what} value")
            check_eq(m.headers() or [], r["headers"], f"{what} headers")
            check_eq(m.timestamp(), (TIMESTAMP_CREATE_TIME, r["ts"]), f"{what} timestamp")
    return got


def verify_from_timestamp(bootstrap, topic, got):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "rill-tests-assign-only",
                         "enable.auto.commit": False})
    for p, msgs in got.items():
        if len(msgs) < 3:
            continue
        pivot = msgs[len(msgs) // 2]
        ts = pivot.timestamp()[1]
        # Exactly the pivot's timestamp, and one ms after the previous record's.
        prev_ts = msgs[len(msgs) // 2 - 1].timestamp()[1]
        for query in (ts, prev_ts + 1):
            [res] = consumer.offsets_for_times([TopicPartition(topic, p, query)], timeout=10)
            check(res.error is None, f"{topic}/{p}: offsets_for_times({query}) error {res.error}")
            check_eq(res.offset, pivot.offset(), f"{topic}/{p}: offsets_for_times({query})")
        # Past the last record: no offset (-1, OFFSET_END).
        last_ts = msgs[-1].timestamp()[1]
        [res] = consumer.offsets_for_times([TopicPartition(topic, p, last_ts + 1)], timeout=10)
        check(res.offset in (-1, len(msgs)), f"{topic}/{p}: offsets_for_times past the end gave {res.offset}")
        # Reading from the looked-up offset starts at the pivot record.
        consumer.assign([TopicPartition(topic, p, pivot.offset())])
        m = None
        deadline = time.monotonic() + 15
        while m is None:
            check(time.monotonic() < deadline, f"{topic}/{p}: nothing consumed from the timestamp offset")
            m = consumer.poll(0.5)
            if m is not None and m.error():
                check(False, f"{topic}/{p}: {m.error()}")
        check_eq((m.offset(), m.value()), (pivot.offset(), pivot.value()), f"{topic}/{p}: first record from timestamp")
        consumer.unassign()
    consumer.close()


def main():
    p = parser(__doc__)
    p.add_argument("--codecs", default=",".join(CODECS))
    p.add_argument("--acks", default=",".join(ACKS))
    p.add_argument("--marker", default="cfmarker")
    args = p.parse_args()
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    combos = [(c, a) for c in args.codecs.split(",") for a in args.acks.split(",")]
    topics = {unique(f"cf-{c}-acks{a}"): (c, a) for c, a in combos}
    futures = admin.create_topics([NewTopic(t, num_partitions=PARTITIONS, replication_factor=1) for t in topics],
                                  operation_timeout=30)
    for t, f in futures.items():
        f.result(30)
    base_ts = int(time.time() * 1000) - 3_600_000
    failures = []
    for topic, (codec, acks) in topics.items():
        # Every combination runs; failures are collected so one report shows all of them.
        try:
            records = make_records(topic, COUNT, args.marker, base_ts)
            reports = produce(args.bootstrap, topic, codec, acks, records)
            got = verify_topic(args.bootstrap, topic, codec, acks, records, reports)
            verify_from_timestamp(args.bootstrap, topic, got)
            print(f"ok: {topic} codec={codec} acks={acks}: {COUNT} records round-tripped", flush=True)
        except CheckFailed as e:
            print(f"failed: codec={codec} acks={acks}: {e}", flush=True)
            failures.append(f"codec={codec} acks={acks}: {e}")
    check(not failures, f"{len(failures)} of {len(topics)} combinations failed:\n  " + "\n  ".join(failures))


if __name__ == "__main__":
    run(main)
