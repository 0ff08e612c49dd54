"""Every message rill-devices listed as PUBACKed (`--acked-file`: `DEVICE SEQ` a line) is in the
log topic after the restart: its raw payload starts with `DEVICE:SEQ:`. Reads the topic to its
end with confluent-kafka and prints `verified ACKED acknowledged messages among STORED stored`."""

import time

from confluent_kafka import Consumer, KafkaError, TopicPartition

from rilltest import check, parser, run


def stored_messages(bootstrap, topic, timeout):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "rill-memory-budget",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    md = consumer.list_topics(topic, timeout=10)
    tmd = md.topics.get(topic)
    check(tmd is not None and tmd.error is None, f"log topic {topic} does not exist: {tmd and tmd.error}")
    consumer.assign([TopicPartition(topic, p, 0) for p in tmd.partitions])
    seen, eof = set(), set()
    deadline = time.monotonic() + timeout
    while len(eof) < len(tmd.partitions):
        check(time.monotonic() < deadline, f"{topic} not read to its end within {timeout} s")
        for m in consumer.consume(num_messages=10000, timeout=0.5):
            if m.error():
                check(m.error().code() == KafkaError._PARTITION_EOF, f"consumer error: {m.error()}")
                eof.add(m.partition())
                continue
            device, seq, _ = m.value().split(b":", 2)
            seen.add((device.decode(), int(seq)))
    consumer.close()
    return seen


def main():
    p = parser(__doc__)
    p.add_argument("--topic", required=True)
    p.add_argument("--acked", required=True)
    args = p.parse_args()
    acked = set()
    with open(args.acked) as f:
        for line in f:
            device, seq = line.split()
            acked.add((device, int(seq)))
    check(acked, "no acknowledged messages to look for")
    stored = stored_messages(args.bootstrap, args.topic, timeout=90)
    missing = sorted(acked - stored)
    check(not missing, f"{len(missing)} of {len(acked)} PUBACKed messages missing after the restart, e.g. {missing[:5]}")
    print(f"verified {len(acked)} acknowledged messages among {len(stored)} stored", flush=True)


run(main)
