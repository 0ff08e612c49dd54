"""Wait until TOPIC (on the target) holds COUNT records and check the bridge's guarantees:
no duplicates, per target partition the rill.origin offsets strictly increasing, each record's
value/key/headers/timestamp as produced (bridge_produce.py), origin naming NODE/SOURCE."""

import time

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

import rilltest
from rilltest import check, check_eq


def main():
    ap = rilltest.parser(__doc__)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--node", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--prefix", default="v")
    ap.add_argument("--only-alarms", action="store_true")
    ap.add_argument("--base-ts", type=int, default=1_700_000_000_000, help="as bridge_produce.py")
    ap.add_argument("--timeout", type=float, default=120)
    a = ap.parse_args()
    admin = AdminClient({"bootstrap.servers": a.bootstrap})
    md = rilltest.wait_for(f"topic {a.topic}", lambda: (
        admin.list_topics(a.topic, timeout=5).topics.get(a.topic)
        if admin.list_topics(a.topic, timeout=5).topics.get(a.topic) is not None
        and admin.list_topics(a.topic, timeout=5).topics[a.topic].error is None else None),
        timeout=a.timeout)
    parts = sorted(md.partitions)
    c = Consumer({"bootstrap.servers": a.bootstrap, "group.id": rilltest.unique("bv"),
                  "enable.auto.commit": False, "fetch.wait.max.ms": 100})
    c.assign([TopicPartition(a.topic, p, 0) for p in parts])
    recs = []
    deadline = time.monotonic() + a.timeout
    quiet_until = None
    while True:
        m = c.poll(0.2)
        if m is not None:
            check(m.error() is None, f"consume error {m.error()}")
            recs.append(m)
            continue
        if len(recs) >= a.count:
            # Linger a little to catch duplicates arriving late.
            if quiet_until is None:
                quiet_until = time.monotonic() + 2
            elif time.monotonic() > quiet_until:
                break
        check(time.monotonic() < deadline, f"timed out with {len(recs)}/{a.count} records")
    c.close()
    values = [m.value().decode() for m in recs]
    check_eq(len(values), len(set(values)), "no duplicate values")
    check_eq(len(values), a.count, "record count")
    last = {}
    for m in recs:
        h = dict(m.headers() or [])
        origin = h.get("rill.origin")
        check(origin is not None, "rill.origin header present")
        node, topic, sp, off = origin.decode().rsplit("/", 3)
        check_eq((node, topic), (a.node, a.source), "origin node/topic")
        key = (m.partition(), int(sp))
        check(int(off) > last.get(key, -1), f"origin offsets increase in partition {key}")
        last[key] = int(off)
        i = int(m.value().decode()[len(a.prefix):])
        check_eq(m.key(), f"k{i % 13}".encode(), "key kept")
        check_eq(h.get("idx"), str(i).encode(), "header kept")
        check_eq(m.timestamp()[1], a.base_ts + i, "timestamp kept")
        if a.only_alarms:
            check_eq(h.get("class"), b"alarm", "filter")
    print(f"verified {len(values)} records on {a.topic}")


if __name__ == "__main__":
    rilltest.run(main)
