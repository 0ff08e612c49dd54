"""Workload for tests/tests/prometheus.rs: what the node's metrics are checked against.

--phase kafka: create a 2-partition topic, produce --records records (confluent-kafka, acks=all),
consume --consume of them in group --group and commit offsets --consume/2 on each partition, provoke one
TOPIC_ALREADY_EXISTS; prints RESULT {"produced": N, "committed": K}.

--phase mqtt: a 3.1.1 publisher and a 5 subscriber (paho); the publisher sends --qos1 QoS 1 and
--qos0 QoS 0 messages (one retained), the subscriber receives them all; prints READY and keeps
both connected until stdin closes; one MQTT 3.1 CONNECT is refused (the test reads the metrics meanwhile).
"""

import json
import socket
import sys

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from mqtt_util import V311, V5, Device
from rilltest import check, check_eq, parser, run, unique


def kafka_phase(args):
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    new = NewTopic(args.topic, num_partitions=2, replication_factor=1)
    admin.create_topics([new])[args.topic].result(15)
    # Again: TOPIC_ALREADY_EXISTS (36), counted under CreateTopics.
    try:
        admin.create_topics([new])[args.topic].result(15)
        check(False, "second CreateTopics succeeded")
    except Exception as e:  # noqa: BLE001 - the KafkaException of the future
        check("already exists" in str(e).lower() or "TOPIC_ALREADY_EXISTS" in str(e), str(e))
    delivered = []
    producer = Producer({"bootstrap.servers": args.bootstrap, "acks": "all", "linger.ms": 5})
    for i in range(args.records):
        producer.produce(args.topic, key=f"k{i}".encode(), value=f"v{i}".encode(),
                         partition=i % 2,
                         on_delivery=lambda err, msg: delivered.append(err is None))
    check_eq(producer.flush(30), 0, "messages left unflushed")
    check_eq(sum(delivered), args.records, "records acknowledged")
    consumer = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    })
    consumer.subscribe([args.topic])
    got = 0
    while got < args.consume:
        msg = consumer.poll(15)
        check(msg is not None, f"consumed only {got} of {args.consume}")
        check(msg.error() is None, f"consume error: {msg.error()}")
        got += 1
    # Commit half of --consume on each partition (explicit offsets: the lag is then exact
    # whichever partition the consumer happened to read first).
    half = args.consume // 2
    offsets = [TopicPartition(args.topic, p, half) for p in (0, 1)]
    consumer.commit(offsets=offsets, asynchronous=False)
    committed = consumer.committed(offsets, timeout=15)
    total = sum(tp.offset for tp in committed if tp.offset >= 0)
    check_eq(total, 2 * half, "committed offsets (sum over partitions)")
    consumer.close()
    print("RESULT " + json.dumps({"produced": args.records, "committed": total}), flush=True)


def mqtt_phase(args):
    sub = Device(args.mqtt, unique("msub"), protocol=V5)
    sub.subscribe("sensors/#", qos=1)
    pub = Device(args.mqtt, unique("mpub"), protocol=V311)
    for i in range(args.qos1):
        pub.publish("sensors/a/temp", f"t{i}".encode(), qos=1, retain=(i == 0))
    for i in range(args.qos0):
        pub.publish("sensors/a/hum", f"h{i}".encode(), qos=0)
    for _ in range(args.qos1 + args.qos0):
        sub.expect()
    # An MQTT 3.1 (protocol level 3) CONNECT: refused with return code 1.
    host, port = args.mqtt.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=15) as s:
        s.sendall(bytes([0x10, 15, 0, 6]) + b"MQIsdp" + bytes([3, 2, 0, 60, 0, 1]) + b"x")
        check_eq(s.recv(4), bytes([0x20, 2, 0, 1]), "CONNACK of a level 3 CONNECT")
    print("READY", flush=True)
    sys.stdin.read()
    pub.close()
    sub.close()


def main():
    p = parser(__doc__)
    p.add_argument("--phase", choices=["kafka", "mqtt"], required=True)
    p.add_argument("--mqtt")
    p.add_argument("--topic", default="orders")
    p.add_argument("--group", default="g1")
    p.add_argument("--records", type=int, default=300)
    p.add_argument("--consume", type=int, default=120)
    p.add_argument("--qos1", type=int, default=20)
    p.add_argument("--qos0", type=int, default=10)
    args = p.parse_args()
    if args.phase == "kafka":
        kafka_phase(args)
    else:
        mqtt_phase(args)


if __name__ == "__main__":
    run(main)
