"""The workload of the SASL cluster console test (tests/tests/cluster_console.rs): with
confluent-kafka authenticated by SASL/SCRAM (SASL_PLAINTEXT), creates --topic (three partitions,
replication factor 3), produces 10 records to each partition, joins --group with one consumer,
consumes all 30 records, commits the offsets of COMMITS and leaves the group. Reports what it
committed as `RESULT committed {json}`."""

import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from mqtt_util import result
import rilltest as rt

RECORDS = 10
COMMITS = {0: 4, 1: 10, 2: 7}


def main():
    p = rt.parser(__doc__)
    p.add_argument("--topic", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--mechanism", default="SCRAM-SHA-256")
    p.add_argument("--username", required=True)
    p.add_argument("--password", required=True)
    args = p.parse_args()
    conf = {
        "bootstrap.servers": args.bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": args.mechanism,
        "sasl.username": args.username,
        "sasl.password": args.password,
    }

    admin = AdminClient(conf)
    for f in admin.create_topics(
        [NewTopic(args.topic, num_partitions=3, replication_factor=3)]
    ).values():
        f.result(timeout=30)
    producer = Producer({**conf, "linger.ms": 5, "acks": "all"})
    for part in range(3):
        for i in range(RECORDS):
            producer.produce(args.topic, value=f"r{i}".encode(), partition=part)
    rt.check_eq(producer.flush(30), 0, "records left unsent")

    consumer = Consumer({**conf, "group.id": args.group, "client.id": "sasl-console-consumer",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "session.timeout.ms": 6000})
    consumer.subscribe([args.topic])
    seen = 0
    end = time.monotonic() + 60
    while seen < 3 * RECORDS:
        rt.check(time.monotonic() < end, f"consumed only {seen} of {3 * RECORDS} records")
        m = consumer.poll(1.0)
        if m is None:
            continue
        rt.check(m.error() is None, f"consume: {m.error()}")
        seen += 1
    offsets = [TopicPartition(args.topic, part, off) for part, off in COMMITS.items()]
    for tp in consumer.commit(offsets=offsets, asynchronous=False):
        rt.check(tp.error is None, f"commit {tp}: {tp.error}")
    # What the group's coordinator now holds, read back by the same authenticated client.
    stored = {tp.partition: tp.offset
              for tp in consumer.committed([TopicPartition(args.topic, p) for p in COMMITS], 30)}
    consumer.close()
    result("committed", consumed=seen, offsets={str(k): v for k, v in sorted(stored.items())})


rt.run(main)
