#!/usr/bin/env python3
"""A consumer group on a three-node cluster while its coordinator is SIGKILLed (issue 12).

One process, one monotonic clock: a producer thread writes --count records (acks=all,
idempotent) to --topic, the first --burst at once, then --rate a second; three confluent-kafka consumers in one group (threads) process them (--work-ms each),
committing synchronously after every record (the committed offset is the processed offset + 1).
Every assignment and revocation, every processed record and every commit outcome is logged with
time.monotonic().

Coordination with the Rust test through files in --dir:
- the script writes `coordinator` (the group's coordinator node id, from DescribeConsumerGroups)
  once every consumer has partitions and some records were processed,
- the test SIGKILLs that node and writes `killed`,
- the script then records the new coordinator, replaces one consumer by a fresh one (a rebalance:
  every partition is assigned anew and resumes from the offsets committed at the new coordinator),
- when every produced record was processed (or --timeout passed) it writes `history.json`.

The checks are made by the Rust test (tests/tests/cluster_groups.rs) on history.json.
"""

import faulthandler
import json
import os
import sys
import threading
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

import rilltest as rt


class Log:
    def __init__(self):
        self.lock = threading.Lock()
        self.events = []

    def add(self, **event):
        event["t"] = time.monotonic()
        with self.lock:
            self.events.append(event)


def produce(args, acked, stop):
    p = Producer(
        {
            "bootstrap.servers": args.bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "message.timeout.ms": 60000,
        }
    )

    def done(err, msg):
        if err is None:
            acked.append((msg.partition(), msg.offset(), msg.value().decode()))

    interval = 1.0 / args.rate
    for i in range(args.count):
        if stop.is_set():
            break
        p.produce(args.topic, value=f"r{i}".encode(), key=f"k{i}".encode(), on_delivery=done)
        p.poll(0)
        # The first --burst records at once: the consumers have a backlog when the coordinator
        # is killed (records fetched and being committed while the followers stall).
        if i >= args.burst:
            time.sleep(interval)
    p.flush(60)


def consume(args, name, log, stop, counts):
    c = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "client.id": name,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 30000,
            "heartbeat.interval.ms": 1000,
        }
    )

    def assigned(consumer, parts):
        log.add(kind="assign", consumer=name, member=consumer.memberid(),
                partitions=[p.partition for p in parts])

    def revoked(consumer, parts):
        log.add(kind="revoke", consumer=name, partitions=[p.partition for p in parts])

    def lost(consumer, parts):
        log.add(kind="lost", consumer=name, partitions=[p.partition for p in parts])

    c.subscribe([args.topic], on_assign=assigned, on_revoke=revoked, on_lost=lost)
    try:
        while not stop.is_set():
            m = c.poll(0.2)
            if m is None:
                continue
            if m.error():
                log.add(kind="error", consumer=name, error=str(m.error()))
                continue
            log.add(kind="process", consumer=name, partition=m.partition(), offset=m.offset(),
                    value=m.value().decode())
            counts[name] = counts.get(name, 0) + 1
            time.sleep(args.work_ms / 1000.0)
            tp = TopicPartition(args.topic, m.partition(), m.offset() + 1)
            started = time.monotonic()
            try:
                res = c.commit(offsets=[tp], asynchronous=False)
                err = [r for r in res if r.error is not None]
                if err:
                    raise KafkaException(err[0].error)
                log.add(kind="commit", consumer=name, partition=m.partition(),
                        offset=m.offset() + 1, started=started)
            except KafkaException as e:
                log.add(kind="commit_failed", consumer=name, partition=m.partition(),
                        offset=m.offset() + 1, error=str(e))
    finally:
        # Revocation is logged by the close (a clean LeaveGroup).
        c.close()
        log.add(kind="closed", consumer=name)


def coordinator_of(args):
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    try:
        d = admin.describe_consumer_groups([args.group])[args.group].result(timeout=10)
        return d.coordinator.id, [m.client_id for m in d.members]
    except Exception as e:  # noqa: BLE001 - retried by the caller
        print(f"describe_consumer_groups: {e}", flush=True)
        return None, []


def main():
    p = rt.parser(__doc__)
    p.add_argument("--topic", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--count", type=int, default=1500)
    p.add_argument("--rate", type=float, default=100.0)
    p.add_argument("--burst", type=int, default=0, help="records produced at once first")
    p.add_argument("--work-ms", type=float, default=0.0, help="processing time per record")
    p.add_argument("--timeout", type=float, default=100.0)
    args = p.parse_args()
    # A hang shows every thread's stack (the test kills the script later).
    faulthandler.dump_traceback_later(args.timeout + 30, exit=True, file=sys.stdout)

    log = Log()
    acked = []
    counts = {}
    stop_producer = threading.Event()
    # Daemon threads: a failed check ends the script at once.
    producer = threading.Thread(target=produce, args=(args, acked, stop_producer), daemon=True)
    producer.start()
    stops = {}
    threads = {}

    def start(name):
        stops[name] = threading.Event()
        threads[name] = threading.Thread(
            target=consume, args=(args, name, log, stops[name], counts), daemon=True
        )
        threads[name].start()

    for name in ("c1", "c2", "c3"):
        start(name)

    def assigned_everyone():
        owned = {}
        for e in log.events:
            if e["kind"] == "assign":
                owned[e["consumer"]] = e["partitions"]
            elif e["kind"] in ("revoke", "lost"):
                owned[e["consumer"]] = []
        return all(owned.get(n) for n in ("c1", "c2", "c3")) and sum(counts.values()) >= 100

    rt.wait_for("three consumers with partitions and 100 records processed", assigned_everyone,
                timeout=60, interval=0.2)
    before, members = rt.wait_for("the group's coordinator",
                                  lambda: (lambda r: r if r[0] is not None and len(r[1]) == 3 else None)(coordinator_of(args)),
                                  timeout=30, interval=0.5)
    print(f"coordinator before the kill: node {before}, members {sorted(members)}", flush=True)
    log.add(kind="coordinator", node=before)
    with open(os.path.join(args.dir, "coordinator.tmp"), "w") as f:
        f.write(str(before))
    os.rename(os.path.join(args.dir, "coordinator.tmp"), os.path.join(args.dir, "coordinator"))

    print("waiting for the kill", flush=True)
    rt.wait_for("the test to kill the coordinator",
                lambda: os.path.exists(os.path.join(args.dir, "killed")), timeout=30, interval=0.05)
    log.add(kind="killed", node=before)
    after, _ = rt.wait_for("a new coordinator",
                           lambda: (lambda r: r if r[0] is not None and r[0] != before else None)(coordinator_of(args)),
                           timeout=40, interval=0.5)
    print(f"coordinator after the kill: node {after}", flush=True)
    log.add(kind="coordinator", node=after)
    # Commits must go on at the new coordinator before the group is rebalanced.
    print("waiting for commits at the new coordinator", flush=True)
    mark = len(log.events)
    rt.wait_for("commits at the new coordinator",
                lambda: any(e["kind"] == "commit" for e in log.events[mark:]), timeout=30, interval=0.1)
    # A rebalance now: every partition is assigned again and starts at the committed offsets the
    # new coordinator loaded from __consumer_offsets.
    print("replacing c1 by c4", flush=True)
    log.add(kind="replace", consumer="c1")
    stops["c1"].set()
    threads["c1"].join()
    start("c4")

    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        producer.join(timeout=0.2)
        if producer.is_alive():
            continue
        done = {(p, o) for p, o, _ in acked}
        seen = {(e["partition"], e["offset"]) for e in list(log.events) if e["kind"] == "process"}
        if done <= seen:
            break
    print("stopping", flush=True)
    stop_producer.set()
    producer.join()
    for name, ev in stops.items():
        ev.set()
    for t in threads.values():
        t.join()

    history = {
        "acked": acked,
        "events": log.events,
        "coordinator_before": before,
        "coordinator_after": after,
    }
    with open(os.path.join(args.dir, "history.json"), "w") as f:
        json.dump(history, f)
    processed = sum(1 for e in log.events if e["kind"] == "process")
    commits = sum(1 for e in log.events if e["kind"] == "commit")
    failed = sum(1 for e in log.events if e["kind"] == "commit_failed")
    print(f"acked {len(acked)}, processed {processed}, commits {commits}, failed commits {failed}",
          flush=True)


if __name__ == "__main__":
    rt.run(main)
