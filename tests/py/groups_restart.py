#!/usr/bin/env python3
"""Committed offsets survive a node restart (the test kills and restarts the node between phases).

--phase produce-and-consume: create a 6-partition topic, produce, consume part of it with manual
  commits, write the committed offsets to --state and exit.
--phase resume: after the restart, a consumer in the same group starts exactly at the committed
  offsets and reads the rest; the offsets committed before the restart are still there.
"""

import json

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import rilltest as rt

PARTITIONS = 6
PER_PARTITION = 40


def consumer(bootstrap, group):
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
        }
    )


def first_phase(args):
    topic, group = rt.unique("restart"), rt.unique("g-restart")
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    for f in admin.create_topics([NewTopic(topic, PARTITIONS, 1)]).values():
        f.result(timeout=30)
    p = Producer({"bootstrap.servers": args.bootstrap, "acks": "all"})
    for part in range(PARTITIONS):
        for i in range(PER_PARTITION):
            p.produce(topic, value=f"{part}-{i}".encode(), partition=part)
    rt.check_eq(p.flush(30), 0, "unflushed records")

    c = consumer(args.bootstrap, group)
    c.subscribe([topic])
    consumed = 0
    # Consume a bit more than half, committing each record with its metadata.
    target = PARTITIONS * PER_PARTITION // 2 + 7
    while consumed < target:
        m = c.poll(1.0)
        if m is None or m.error():
            continue
        epoch = m.leader_epoch()
        tp = TopicPartition(
            topic,
            m.partition(),
            m.offset() + 1,
            metadata=f"md-{m.partition()}-{m.offset()}",
            leader_epoch=epoch if epoch is not None and epoch >= 0 else 0,
        )
        c.commit(offsets=[tp], asynchronous=False)
        consumed += 1
    committed = c.committed([TopicPartition(topic, part) for part in range(PARTITIONS)], timeout=10)
    state = {
        "topic": topic,
        "group": group,
        "committed": {str(tp.partition): tp.offset for tp in committed},
        "metadata": {str(tp.partition): tp.metadata for tp in committed},
        "epoch": {str(tp.partition): tp.leader_epoch for tp in committed},
    }
    # Leave without a clean close, like a crashed consumer.
    with open(args.state, "w") as f:
        json.dump(state, f)
    print(f"committed before restart: {state['committed']}")


def resume(args):
    with open(args.state) as f:
        state = json.load(f)
    topic, group = state["topic"], state["group"]
    c = consumer(args.bootstrap, group)
    parts = [TopicPartition(topic, part) for part in range(PARTITIONS)]
    got = {tp.partition: (tp.offset, tp.metadata, tp.leader_epoch) for tp in c.committed(parts, timeout=30)}
    for part in range(PARTITIONS):
        want = state["committed"][str(part)]
        rt.check_eq(got[part][0], want, f"committed offset of partition {part} after restart")
        if want > 0:
            rt.check_eq(got[part][1], state["metadata"][str(part)], f"metadata of partition {part}")
            rt.check_eq(got[part][2], state["epoch"][str(part)], f"leader epoch of partition {part}")
            rt.check(got[part][2] is not None and got[part][2] >= 0, f"leader epoch of partition {part} kept")
    c.subscribe([topic])
    first, seen = {}, set()
    total = sum(PER_PARTITION - max(v, 0) for v in state["committed"].values())

    def drain():
        m = c.poll(0.5)
        if m is not None and not m.error():
            first.setdefault(m.partition(), m.offset())
            seen.add((m.partition(), m.offset()))
            c.commit(message=m, asynchronous=False)
        return len(seen) >= total

    rt.wait_for("the rest of the topic", drain, timeout=60, interval=0)
    for part, off in first.items():
        rt.check_eq(off, max(state["committed"][str(part)], 0), f"first offset read on partition {part}")
    want = {(p, o) for p in range(PARTITIONS) for o in range(max(state["committed"][str(p)], 0), PER_PARTITION)}
    rt.check_eq(seen, want, "records read after the restart")
    c.close()


def main():
    p = rt.parser(__doc__)
    p.add_argument("--phase", required=True, choices=["produce-and-consume", "resume"])
    p.add_argument("--state", required=True)
    args = p.parse_args()
    if args.phase == "resume":
        resume(args)
    else:
        first_phase(args)


if __name__ == "__main__":
    rt.run(main)
