"""kafka-python: produce with every codec and acks 0/1/all, consume from the beginning and from a
timestamp (offsets_for_times); keys, values, headers and timestamps come back exactly and offsets are
dense per partition."""

import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from rilltest import ACKS, CODECS, CheckFailed, check, check_eq, make_records, parser, run, unique

PARTITIONS = 3
COUNT = 45


def produce(bootstrap, topic, codec, acks, records):
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks=int(acks) if acks != "all" else "all",
        compression_type=None if codec == "none" else codec,
        linger_ms=5,
        enable_idempotence=False,
    )
    futures = [
        producer.send(topic, value=r["value"], key=r["key"], headers=[(k, v) for k, v in r["headers"] if v is not None],
                      timestamp_ms=r["ts"])
        for r in records
    ]
    producer.flush(30)
    metas = [f.get(timeout=30) for f in futures]
    if acks == "0":
        # kafka-python 2.3.3 leaves an acks=0 Produce request in its connection's send buffer
        # until some other request goes out on that connection, and close() drops it (against any
        # broker; see docs/kafka-protocol.md). A metadata request for a topic it has not seen
        # pushes the buffered bytes out.
        producer.partitions_for(unique("kp-acks0-nudge"))
    producer.close(10)
    for i, m in enumerate(metas):
        if acks != "0":
            check(m.offset >= 0, f"{topic}: acks={acks} no offset for record {i}")
    return metas


def consumer_for(bootstrap):
    return KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                         auto_offset_reset="earliest")


def consume_all(bootstrap, topic, expect):
    consumer = consumer_for(bootstrap)
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    got = {p: [] for p in range(PARTITIONS)}
    deadline = time.monotonic() + 10
    while any(len(got[p]) < expect[p] for p in got):
        check(time.monotonic() < deadline, f"{topic}: consume timed out with {[len(v) for v in got.values()]}, want {expect}")
        for tp, msgs in consumer.poll(timeout_ms=500).items():
            got[tp.partition].extend(msgs)
    end = consumer.end_offsets(tps)
    for tp in tps:
        check_eq(end[tp], expect[tp.partition], f"{topic}/{tp.partition} end offset")
    consumer.close()
    return got


def main():
    p = parser(__doc__)
    p.add_argument("--codecs", default=",".join(CODECS))
    p.add_argument("--acks", default=",".join(ACKS))
    p.add_argument("--marker", default="kpmarker")
    args = p.parse_args()
    admin = KafkaAdminClient(bootstrap_servers=args.bootstrap)
    combos = [(c, a) for c in args.codecs.split(",") for a in args.acks.split(",")]
    topics = {unique(f"kp-{c}-acks{a}"): (c, a) for c, a in combos}
    admin.create_topics([NewTopic(t, num_partitions=PARTITIONS, replication_factor=1) for t in topics])
    admin.close()
    base_ts = int(time.time() * 1000) - 7_200_000
    failures = []
    for topic, (codec, acks) in topics.items():
        # Every combination runs; failures are collected so one report shows all of them.
        try:
            records = make_records(topic, COUNT, args.marker, base_ts)
            metas = produce(args.bootstrap, topic, codec, acks, records)
            by_partition = {p: [] for p in range(PARTITIONS)}
            for i, m in enumerate(metas):
                by_partition[m.partition].append((i, m.offset))
            got = consume_all(args.bootstrap, topic, {p: len(v) for p, v in by_partition.items()})
            for part in range(PARTITIONS):
                msgs = got[part]
                check_eq([m.offset for m in msgs], list(range(len(msgs))), f"{topic}/{part} offsets (dense from 0)")
                for (i, off), m in zip(by_partition[part], msgs):
                    r = records[i]
                    what = f"{topic}/{part}@{m.offset} (record {i}, codec={codec} acks={acks})"
                    if acks != "0":
                        check_eq(m.offset, off, f"{what} offset vs produce result")
                    check_eq(m.key, r["key"], f"{what} key")
                    check_eq(m.value, r["value"], f"{what} value")
                    check_eq(list(m.headers), [(k, v) for k, v in r["headers"] if v is not None], f"{what} headers")
                    check_eq((m.timestamp, m.timestamp_type), (r["ts"], 0), f"{what} timestamp (CreateTime)")
            # offsets_for_times: the pivot's timestamp and one ms after its predecessor's both find it.
            consumer = consumer_for(args.bootstrap)
            for part, msgs in got.items():
                if len(msgs) < 3:
                    continue
                pivot, prev = msgs[len(msgs) // 2], msgs[len(msgs) // 2 - 1]
                tp = TopicPartition(topic, part)
                for query in (pivot.timestamp, prev.timestamp + 1):
                    res = consumer.offsets_for_times({tp: query})[tp]
                    check(res is not None, f"{topic}/{part}: offsets_for_times({query}) found nothing")
                    check_eq(res.offset, pivot.offset, f"{topic}/{part}: offsets_for_times({query})")
                past = consumer.offsets_for_times({tp: msgs[-1].timestamp + 1})[tp]
                check(past is None, f"{topic}/{part}: offsets_for_times past the last record gave {past}")
                consumer.assign([tp])
                consumer.seek(tp, pivot.offset)
                first = None
                deadline = time.monotonic() + 15
                while first is None:
                    check(time.monotonic() < deadline, f"{topic}/{part}: nothing consumed from the timestamp offset")
                    for _, ms in consumer.poll(timeout_ms=500).items():
                        first = first or ms[0]
                check_eq((first.offset, first.value), (pivot.offset, pivot.value), f"{topic}/{part}: first record from timestamp")
            consumer.close()
            print(f"ok: {topic} codec={codec} acks={acks}: {COUNT} records round-tripped", flush=True)
        except CheckFailed as e:
            print(f"failed: codec={codec} acks={acks}: {e}", flush=True)
            failures.append(f"codec={codec} acks={acks}: {e}")
    check(not failures, f"{len(failures)} of {len(topics)} combinations failed:\n  " + "\n  ".join(failures))


if __name__ == "__main__":
    run(main)
