#!/usr/bin/env python3
"""The workload behind the web console test (tests/tests/console.rs): creates --topic with three
partitions and produces 10 JSON records to each (key, headers) plus one binary (not UTF-8)
record to partition 2; joins --group with one confluent-kafka consumer, consumes everything and commits the
offsets 4, 7 and 11; connects an MQTT 5 client (paho) that subscribes to `sensors/+/temp` and
publishes a retained `sensors/s1/temp`. Prints `READY {json}` with what it did, then keeps the
consumer and the MQTT client connected (polling, no more commits) until standard input closes."""

import json
import sys
import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import mqtt_util as mu
import rilltest as rt

COMMITS = {0: 4, 1: 7, 2: 11}
BINARY = bytes(range(0xD8, 0x100))  # 40 bytes, not UTF-8


def main():
    p = rt.parser(__doc__)
    p.add_argument("--mqtt", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--group", required=True)
    args = p.parse_args()

    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    for f in admin.create_topics([NewTopic(args.topic, num_partitions=3, replication_factor=1)]).values():
        f.result(timeout=30)
    producer = Producer({"bootstrap.servers": args.bootstrap, "linger.ms": 5})
    for part in range(3):
        for i in range(10):
            value = json.dumps({"n": i, "temp": 20.5 + part}).encode()
            producer.produce(args.topic, key=f"device-{part}-{i}".encode(), value=value, partition=part,
                             headers=[("source", b"console-test"), ("seq", str(i).encode())])
    producer.produce(args.topic, key=b"blob", value=BINARY, partition=2)
    rt.check_eq(producer.flush(30), 0, "records left unsent")

    consumer = Consumer({"bootstrap.servers": args.bootstrap, "group.id": args.group,
                         "client.id": "console-consumer", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", "session.timeout.ms": 6000})
    consumer.subscribe([args.topic])
    seen = 0
    end = time.monotonic() + 60
    while seen < 31:
        rt.check(time.monotonic() < end, f"consumed only {seen} of 31 records")
        m = consumer.poll(1.0)
        if m is None or m.error():
            continue
        seen += 1
    offsets = [TopicPartition(args.topic, part, off) for part, off in COMMITS.items()]
    for tp in consumer.commit(offsets=offsets, asynchronous=False):
        rt.check(tp.error is None, f"commit {tp}: {tp.error}")

    device = mu.Device(args.mqtt, "console-sensor", protocol=mu.V5)
    device.subscribe("sensors/+/temp", qos=1)
    device.publish("sensors/s1/temp", b"21.5", qos=1, retain=True)

    print("READY " + json.dumps({"commits": COMMITS, "consumed": seen}), flush=True)
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    while not stop.is_set():
        consumer.poll(0.5)
    consumer.close()
    device.close()


if __name__ == "__main__":
    rt.run(main)
