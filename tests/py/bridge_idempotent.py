"""Idempotent producers against a node: confluent-kafka (enable.idempotence) and kafka-python
(enable_idempotence) produce through InitProducerId and sequence numbers; --verify reads the topic
back and checks every value arrived exactly once, in order.

Usage: --phase produce --client confluent|kafka-python --start N --count M
       --phase verify --expect-values "c0..c99,k0..k49" (prefixes with ranges)
"""

from confluent_kafka import Consumer, Producer, TopicPartition

import rilltest
from rilltest import check, check_eq


def produce_confluent(bootstrap, topic, prefix, start, count):
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                  "linger.ms": 5, "batch.num.messages": 7})
    errors = []

    def cb(err, msg):
        if err is not None:
            errors.append(str(err))

    for i in range(start, start + count):
        p.produce(topic, value=f"{prefix}{i}".encode(), partition=0, on_delivery=cb)
        p.poll(0)
    left = p.flush(30)
    check_eq(left, 0, "undelivered confluent messages")
    check(not errors, f"delivery errors: {errors[:3]}")


def produce_kafka_python(bootstrap, topic, prefix, start, count):
    from kafka import KafkaProducer
    p = KafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all",
                      linger_ms=5, batch_size=200)
    futs = [p.send(topic, value=f"{prefix}{i}".encode(), partition=0)
            for i in range(start, start + count)]
    p.flush(30)
    for f in futs:
        f.get(timeout=30)
    check(p._transaction_manager is not None and p._transaction_manager.producer_id_and_epoch.producer_id >= 0,
          "kafka-python did not obtain a producer id")
    p.close()


def verify(bootstrap, topic, expected):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": rilltest.unique("v"),
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    got = []
    idle = 0
    while len(got) < len(expected) + 5 and idle < 20:
        m = c.poll(0.25)
        if m is None:
            idle += 1 if len(got) >= len(expected) else 0
            continue
        check(m.error() is None, f"consume error {m.error()}")
        got.append(m.value().decode())
    c.close()
    check_eq(len(got), len(expected), "record count (exactly once)")
    check_eq(got, expected, "values in order")


def main():
    ap = rilltest.parser(__doc__)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--phase", choices=["produce", "verify"], required=True)
    ap.add_argument("--client", default="confluent")
    ap.add_argument("--prefix", default="v")
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--expect", default="", help="prefix:start:count,...")
    a = ap.parse_args()
    if a.phase == "produce":
        if a.client == "confluent":
            produce_confluent(a.bootstrap, a.topic, a.prefix, a.start, a.count)
        else:
            produce_kafka_python(a.bootstrap, a.topic, a.prefix, a.start, a.count)
        print(f"produced {a.count} with {a.client}")
    else:
        expected = []
        for part in a.expect.split(","):
            pre, s, n = part.split(":")
            expected += [f"{pre}{i}" for i in range(int(s), int(s) + int(n))]
        verify(a.bootstrap, a.topic, expected)
        print(f"verified {len(expected)} records exactly once")


if __name__ == "__main__":
    rilltest.run(main)
