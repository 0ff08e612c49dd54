"""The history checker of the fault tests (issue 11): `produce` writes records with an idempotent
acks=all confluent-kafka producer while the test breaks the cluster, and records every delivery
report; `verify` reads every partition from the start and checks the history:

- every acknowledged record is read back exactly once, at the offset it was acknowledged at,
- per partition, the records of this run appear in the order they were produced (sequence numbers
  increase), so nothing is reordered and no retry appears twice,
- no offset ever holds two different records (what a consumer saw during the run, `--seen`, must
  still be there, unchanged: nothing a consumer saw vanished),
- writes whose outcome the producer never learned are indeterminate: they may or may not be
  there (at most once), never a failure.

A delivery report with an error is a definite failure of that write only if the error is not
retriable; such records must not be there. `produce` prints `acked N failed M` (after `fatal:
...` if the producer hit a fatal error, where it stops) and writes a JSON file; `verify` prints `verified N acked, I indeterminate present` and fails with the first
violation."""

import json
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from rilltest import check, parser, run


def produce(args):
    conf = {"bootstrap.servers": args.bootstrap, "acks": "all", "enable.idempotence": True,
            "linger.ms": 5, "message.timeout.ms": args.delivery_timeout_ms,
            "request.timeout.ms": min(args.delivery_timeout_ms, 10000),
            "retry.backoff.ms": 100, "topic.metadata.refresh.interval.ms": 1000}
    producer = Producer(conf)
    acked, failed = [], []

    def report(err, msg):
        seq = int(msg.value().decode().split(":")[1])
        if err is None:
            acked.append({"seq": seq, "partition": msg.partition(), "offset": msg.offset(),
                          "value": msg.value().decode(), "at": time.time()})
        else:
            failed.append({"seq": seq, "error": str(err), "retriable": err.retriable(),
                           "fatal": err.fatal()})

    start = time.monotonic()
    sent = 0
    fatal = None
    interval = 1.0 / args.rate if args.rate > 0 else 0
    try:
        while sent < args.count:
            value = f"{args.run}:{sent}:{'x' * args.size}"
            try:
                producer.produce(args.topic, value=value.encode(), key=str(sent % 97).encode(),
                                 on_delivery=report)
                sent += 1
            except BufferError:
                producer.poll(0.1)
                continue
            producer.poll(0)
            if interval:
                next_at = start + sent * interval
                delay = next_at - time.monotonic()
                if delay > 0:
                    producer.poll(delay)
    except (KafkaException, KafkaError) as e:
        # A fatal producer error (e.g. the broker lost sequence numbers it had acknowledged):
        # stop producing, keep the history so far for the checker.
        fatal = str(e)
    try:
        left = producer.flush(args.delivery_timeout_ms / 1000 + 10)
    except (KafkaException, KafkaError) as e:
        fatal = fatal or str(e)
        left = len(producer)
    with open(args.out, "w") as f:
        json.dump({"run": args.run, "sent": sent, "acked": acked, "failed": failed,
                   "unknown": left, "fatal": fatal}, f)
    if fatal:
        print(f"fatal: {fatal}", flush=True)
    print(f"acked {len(acked)} failed {len(failed)} unknown {left}", flush=True)


def read_all(bootstrap, topic, timeout_s):
    """Every record of every partition of `topic`, as {partition: [(offset, value), ...]}."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "cluster-history-verify",
                         "enable.auto.commit": False, "enable.partition.eof": True,
                         "isolation.level": "read_committed"})
    md = consumer.list_topics(topic, timeout=15)
    check(topic in md.topics and md.topics[topic].error is None,
          f"topic {topic} not in metadata: {md.topics.get(topic)}")
    partitions = sorted(md.topics[topic].partitions)
    # Read up to each partition's high watermark as the leader reports it now.
    ends = {}
    for p in partitions:
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=15)
        ends[p] = high
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    out = {p: [] for p in partitions}
    done = {p for p in partitions if ends[p] == 0}
    deadline = time.monotonic() + timeout_s
    while len(done) < len(partitions):
        check(time.monotonic() < deadline,
              f"reading back timed out: {sum(len(v) for v in out.values())} records read, "
              f"ends {ends}")
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            check(msg.error().code() == KafkaError._PARTITION_EOF,
                  f"consumer error: {msg.error()}")
            if msg.offset() >= ends[msg.partition()]:
                done.add(msg.partition())
            continue
        out[msg.partition()].append((msg.offset(), msg.value().decode()))
        if msg.offset() + 1 >= ends[msg.partition()]:
            done.add(msg.partition())
    consumer.close()
    return out


def verify(args):
    with open(args.history) as f:
        history = json.load(f)
    run_id = history["run"]
    records = read_all(args.bootstrap, args.topic, args.timeout)
    by_offset = {}
    seqs_seen = {}
    for p, recs in records.items():
        last_seq = -1
        for offset, value in recs:
            check((p, offset) not in by_offset, f"offset {p}/{offset} read twice")
            by_offset[(p, offset)] = value
            parts = value.split(":")
            if parts[0] != run_id:
                continue
            seq = int(parts[1])
            check(seq not in seqs_seen,
                  f"record {seq} appears twice: at {seqs_seen.get(seq)} and {p}/{offset}")
            seqs_seen[seq] = (p, offset)
            check(seq > last_seq, f"partition {p}: record {seq} at offset {offset} after {last_seq}")
            last_seq = seq
    for a in history["acked"]:
        where = (a["partition"], a["offset"])
        check(where in by_offset,
              f"acknowledged record {a['seq']} at {where} is missing (lost)")
        check(by_offset[where] == a["value"],
              f"offset {where} holds another record than the one acknowledged there "
              f"(record {a['seq']})")
    definite = {f["seq"] for f in history["failed"] if f["fatal"]}
    for seq in definite:
        check(seq not in seqs_seen, f"record {seq} failed fatally but is there at {seqs_seen[seq]}")
    if args.seen:
        with open(args.seen) as f:
            seen = json.load(f)
        for s in seen:
            where = (s["partition"], s["offset"])
            check(by_offset.get(where) == s["value"],
                  f"a consumer saw {s['value'][:40]!r} at {where} during the run; now it is "
                  f"{by_offset.get(where, 'gone')[:40]!r}")
    acked = {a["seq"] for a in history["acked"]}
    indeterminate = len(set(seqs_seen) - acked)
    print(f"verified {len(acked)} acked, {indeterminate} indeterminate present", flush=True)


def main():
    p = parser(__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    pr = sub.add_parser("produce")
    pr.add_argument("--topic", required=True)
    pr.add_argument("--count", type=int, default=2000)
    pr.add_argument("--rate", type=float, default=200.0, help="records per second (0: flat out)")
    pr.add_argument("--size", type=int, default=100)
    pr.add_argument("--run", required=True, help="a marker unique to this run")
    pr.add_argument("--delivery-timeout-ms", type=int, default=60000)
    pr.add_argument("--out", required=True)
    ve = sub.add_parser("verify")
    ve.add_argument("--topic", required=True)
    ve.add_argument("--history", required=True)
    ve.add_argument("--seen", help="JSON list of records a consumer saw during the run")
    ve.add_argument("--timeout", type=float, default=60.0)
    args = p.parse_args()
    if args.cmd == "produce":
        produce(args)
    else:
        verify(args)


if __name__ == "__main__":
    run(main)
