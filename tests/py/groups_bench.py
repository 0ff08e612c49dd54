#!/usr/bin/env python3
"""Benchmark (not a test): time to a stable assignment when 10 confluent-kafka consumers join a
group on a 10-partition topic, and when one of them leaves; synchronous offset commit throughput.
Prints median and p99 over --runs runs. Results are recorded in docs/benchmarks.md."""

import statistics
import threading
import time

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import rilltest as rt

MEMBERS = 10


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


class Member:
    def __init__(self, bootstrap, group, topic, i):
        self.assigned = set()
        self.stop = threading.Event()
        self.c = Consumer({
            "bootstrap.servers": bootstrap, "group.id": group, "client.id": f"bench-{i}",
            "session.timeout.ms": 6000, "heartbeat.interval.ms": 200,
            "partition.assignment.strategy": "range", "enable.auto.commit": False,
        })
        self.c.subscribe([topic], on_assign=self.on_assign, on_revoke=self.on_revoke)
        self.t = threading.Thread(target=self.loop)
        self.t.start()

    def on_assign(self, _c, parts):
        self.assigned = {p.partition for p in parts}

    def on_revoke(self, _c, _parts):
        self.assigned = set()

    def loop(self):
        while not self.stop.is_set():
            self.c.poll(0.05)
        self.c.close()

    def close(self):
        self.stop.set()
        self.t.join()


def main():
    p = rt.parser(__doc__)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--commit-seconds", type=float, default=5.0)
    args = p.parse_args()
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    topic = rt.unique("bench")
    for f in admin.create_topics([NewTopic(topic, MEMBERS, 1)]).values():
        f.result(timeout=30)

    joins, leaves = [], []
    for run in range(args.runs):
        group = rt.unique("bench-g")
        start = time.monotonic()
        members = [Member(args.bootstrap, group, topic, i) for i in range(MEMBERS)]
        rt.wait_for("10 members with one partition each",
                    lambda: all(len(m.assigned) == 1 for m in members), timeout=60, interval=0.005)
        joins.append(time.monotonic() - start)
        start = time.monotonic()
        members[0].close()
        rest = members[1:]
        rt.wait_for("9 members covering 10 partitions",
                    lambda: set().union(*(m.assigned for m in rest)) == set(range(MEMBERS)),
                    timeout=60, interval=0.005)
        leaves.append(time.monotonic() - start)
        for m in rest:
            m.close()
        print(f"run {run}: join {joins[-1]:.3f}s leave {leaves[-1]:.3f}s", flush=True)

    def commit_rate(committers):
        counts = [0] * committers

        def run(i):
            c = Consumer({"bootstrap.servers": args.bootstrap, "group.id": rt.unique("bench-c"),
                          "enable.auto.commit": False})
            start = time.monotonic()
            while time.monotonic() - start < args.commit_seconds:
                c.commit(offsets=[TopicPartition(topic, i % MEMBERS, counts[i])], asynchronous=False)
                counts[i] += 1
            c.close()

        threads = [threading.Thread(target=run, args=(i,)) for i in range(committers)]
        start = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return sum(counts) / (time.monotonic() - start)

    single, eight = commit_rate(1), commit_rate(8)
    print(f"10 consumers join -> stable: median {statistics.median(joins):.3f}s p99 {pct(joins, 99):.3f}s")
    print(f"1 of 10 leaves -> stable:    median {statistics.median(leaves):.3f}s p99 {pct(leaves, 99):.3f}s")
    print(f"synchronous offset commits, 1 committer:  {single:.0f}/s")
    print(f"synchronous offset commits, 8 committers: {eight:.0f}/s (group commit)")


if __name__ == "__main__":
    rt.run(main)
