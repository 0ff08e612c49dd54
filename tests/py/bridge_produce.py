"""Produce COUNT records to TOPIC (created with PARTITIONS) for the bridge tests: value
"<prefix><i>", key "k<i % 13>", header idx=<i>, every third record header class=alarm,
timestamp BASE_TS + i."""

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

import rilltest
from rilltest import check


def main():
    ap = rilltest.parser(__doc__)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--partitions", type=int, default=2)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--prefix", default="v")
    ap.add_argument("--base-ts", type=int, default=1_700_000_000_000,
                    help="timestamp of record 0 (a recent one keeps retention.ms away)")
    a = ap.parse_args()
    admin = AdminClient({"bootstrap.servers": a.bootstrap})
    fs = admin.create_topics([NewTopic(a.topic, num_partitions=a.partitions, replication_factor=1)])
    for f in fs.values():
        try:
            f.result(15)
        except Exception as e:  # noqa: BLE001 - exists already is fine
            check("already exists" in str(e).lower() or "TOPIC_ALREADY_EXISTS" in str(e), str(e))
    p = Producer({"bootstrap.servers": a.bootstrap, "linger.ms": 5, "enable.idempotence": True})
    errors = []
    for i in range(a.count):
        headers = [("idx", str(i).encode())]
        if i % 3 == 0:
            headers.append(("class", b"alarm"))
        p.produce(a.topic, key=f"k{i % 13}".encode(), value=f"{a.prefix}{i}".encode(),
                  headers=headers, timestamp=a.base_ts + i,
                  on_delivery=lambda err, m: errors.append(err) if err else None)
        if i % 1000 == 0:
            p.poll(0)
    check(p.flush(60) == 0, "undelivered records")
    check(not errors, f"errors: {errors[:3]}")
    print(f"produced {a.count} to {a.topic}")


if __name__ == "__main__":
    rilltest.run(main)
