#!/usr/bin/env python3
"""librdkafka with group.protocol=consumer (KIP-848, server-side assignment): three consumers in
one group share a 6-partition topic with disjoint assignments computed by the node, every record
is consumed with manual commits, a consumer that leaves hands its partitions to the others, and
ConsumerGroupDescribe shows the group.

Usage: groups_kip848.py --bootstrap H:P --assignor uniform|range
"""

import threading

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

import rilltest as rt

PARTITIONS = 6
PER_PARTITION = 40


class Member:
    def __init__(self, args, group, topic, i):
        self.assigned, self.seen, self.errors = set(), [], []
        self.stop = threading.Event()
        self.c = Consumer({
            "bootstrap.servers": args.bootstrap,
            "group.id": group,
            "group.protocol": "consumer",
            "group.remote.assignor": args.assignor,
            "client.id": f"kip848-{i}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        })
        self.c.subscribe([topic], on_assign=self.on_assign, on_revoke=self.on_revoke)
        self.t = threading.Thread(target=self.loop)
        self.t.start()

    def on_assign(self, _c, parts):
        self.assigned |= {p.partition for p in parts}

    def on_revoke(self, _c, parts):
        self.assigned -= {p.partition for p in parts}

    def loop(self):
        while not self.stop.is_set():
            m = self.c.poll(0.05)
            if m is None:
                continue
            if m.error():
                self.errors.append(str(m.error()))
                continue
            self.seen.append((m.partition(), m.offset()))
            try:
                self.c.commit(message=m, asynchronous=False)
            except KafkaException as e:
                self.errors.append(str(e))
        self.c.close()

    def close(self):
        self.stop.set()
        self.t.join(timeout=30)


def main():
    p = rt.parser(__doc__)
    p.add_argument("--assignor", default="uniform")
    args = p.parse_args()
    topic, group = rt.unique("kip848"), rt.unique("g848")
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    for f in admin.create_topics([NewTopic(topic, PARTITIONS, 1)]).values():
        f.result(timeout=30)
    prod = Producer({"bootstrap.servers": args.bootstrap})
    for part in range(PARTITIONS):
        for i in range(PER_PARTITION):
            prod.produce(topic, value=f"{part}-{i}".encode(), partition=part)
    rt.check_eq(prod.flush(30), 0, "unflushed")

    members = [Member(args, group, topic, i) for i in range(3)]
    try:
        def balanced():
            sets = [m.assigned for m in members]
            return all(len(s) == 2 for s in sets) and set().union(*sets) == set(range(PARTITIONS))

        rt.wait_for("three members with two partitions each", balanced, timeout=60)
        everything = {(p, o) for p in range(PARTITIONS) for o in range(PER_PARTITION)}
        rt.wait_for("every record", lambda: everything <= {x for m in members for x in m.seen}, timeout=60)

        d = admin.describe_consumer_groups([group])[group].result(timeout=10)
        print(f"described: state={d.state} members={len(d.members)} type={getattr(d, 'type', '?')}")
        rt.check_eq(len(d.members), 3, "described members")

        leaving = members.pop(0)
        gone = set(leaving.assigned)
        leaving.close()
        rt.wait_for(
            "the leaver's partitions taken over",
            lambda: set().union(*(m.assigned for m in members)) == set(range(PARTITIONS))
            and not (members[0].assigned & members[1].assigned),
            timeout=60,
        )
        print(f"partitions {sorted(gone)} moved to the remaining members")
        prod.produce(topic, value=b"late", partition=min(gone))
        prod.flush(10)
        rt.wait_for("the late record", lambda: any((min(gone), PER_PARTITION) in m.seen for m in members), timeout=30)
        all_seen = [x for m in members + [leaving] for x in m.seen]
        dups = len(all_seen) - len(set(all_seen))
        rt.check_eq(dups, 0, "records delivered twice with per-record commits and clean handovers")
        for m in members + [leaving]:
            rt.check(not m.errors, f"consumer errors: {m.errors}")
    finally:
        for m in members:
            m.close()


if __name__ == "__main__":
    rt.run(main)
