"""Wait until TOPIC holds exactly COUNT records (all partitions) and stays there for a while
(a mirror cycle would keep adding records)."""

import time

from confluent_kafka import Consumer, TopicPartition

import rilltest
from rilltest import check


def total(bootstrap, topic):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": rilltest.unique("cnt")})
    md = c.list_topics(topic, timeout=5).topics.get(topic)
    n = 0
    if md is not None and md.error is None:
        for p in md.partitions:
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=5)
            n += hi - lo
    c.close()
    return n


def main():
    ap = rilltest.parser(__doc__)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--count", type=int, required=True)
    a = ap.parse_args()
    rilltest.wait_for(f"{a.count} records", lambda: total(a.bootstrap, a.topic) >= a.count, timeout=60)
    time.sleep(3)
    n = total(a.bootstrap, a.topic)
    check(n == a.count, f"{a.topic} holds {n} records, want exactly {a.count}")
    print(f"{a.topic}: {n} records")


if __name__ == "__main__":
    rilltest.run(main)
