"""What clients send that the node keeps outside partition logs, for the encryption-at-rest test.
Phases (the node is stopped and its data directory searched in between):
  write   - MQTT 5: a retained message (payload, content type, user property, correlation data);
            a persistent session (expiry 3600 s) subscribed at QoS 1 that leaves, then --count
            QoS 1 messages queued for it; Kafka (kafka-python): a group commits an offset with a
            metadata string. Every value contains --marker; topic, client and group names do not.
  verify  - after a restart: a new subscriber gets the retained message with its properties, the
            session is present and gets exactly the queued messages, the group's committed offset
            and metadata read back.
"""

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from mqtt_util import V5, Device, mqtt_parser
from rilltest import check, check_eq, run

RETAINED_TOPIC = "at-rest/retained"
QUEUE_TOPIC = "at-rest/queue"
SUBSCRIBER = "at-rest-subscriber"
KAFKA_TOPIC = "at-rest-offsets"
GROUP = "at-rest-group"


def values(marker, count):
    return {
        "retained": f"retained-{marker}".encode(),
        "content_type": f"ct-{marker}",
        "user_property": f"up-{marker}",
        "correlation": f"cd-{marker}".encode(),
        "queued": [f"queued-{marker}-{i}".encode() for i in range(count)],
        "metadata": f"offset-metadata-{marker}",
    }


def write(args, v):
    pub = Device(args.mqtt, "at-rest-publisher", protocol=V5)
    props = Properties(PacketTypes.PUBLISH)
    props.ContentType = v["content_type"]
    props.UserProperty = [("note", v["user_property"])]
    props.CorrelationData = v["correlation"]
    pub.publish(RETAINED_TOPIC, v["retained"], qos=1, retain=True, properties=props)
    sub = Device(args.mqtt, SUBSCRIBER, protocol=V5, clean=True, session_expiry=3600)
    sub.subscribe(QUEUE_TOPIC, qos=1)
    sub.close()
    for payload in v["queued"]:
        pub.publish(QUEUE_TOPIC, payload, qos=1)
    pub.close()
    print(f"retained message and {len(v['queued'])} queued QoS 1 messages published", flush=True)

    producer = KafkaProducer(bootstrap_servers=args.bootstrap)
    for i in range(3):
        producer.send(KAFKA_TOPIC, value=f"record-{i}".encode(), partition=0).get(timeout=30)
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=args.bootstrap, group_id=GROUP,
                             enable_auto_commit=False)
    tp = TopicPartition(KAFKA_TOPIC, 0)
    consumer.assign([tp])
    consumer.commit({tp: OffsetAndMetadata(2, v["metadata"], -1)})
    got = consumer.committed(tp, metadata=True)
    check_eq((got.offset, got.metadata), (2, v["metadata"]), "committed offset and metadata")
    consumer.close()
    print("offset committed with metadata", flush=True)


def verify(args, v):
    reader = Device(args.mqtt, "at-rest-reader", protocol=V5)
    reader.subscribe(RETAINED_TOPIC, qos=1)
    m = reader.expect()
    check_eq(m.payload, v["retained"], "retained payload")
    check(m.retain, "retained flag")
    check_eq(getattr(m.properties, "ContentType", None), v["content_type"], "content type")
    check_eq(getattr(m.properties, "UserProperty", None), [("note", v["user_property"])], "user property")
    check_eq(getattr(m.properties, "CorrelationData", None), v["correlation"], "correlation data")
    reader.close()
    sub = Device(args.mqtt, SUBSCRIBER, protocol=V5, clean=False, session_expiry=3600, connect=False)
    flags, _, _ = sub.connect()
    check(flags.session_present, "session not present after the restart")
    got = [sub.expect().payload for _ in v["queued"]]
    check_eq(got, v["queued"], "queued messages")
    sub.close()
    consumer = KafkaConsumer(bootstrap_servers=args.bootstrap, group_id=GROUP,
                             enable_auto_commit=False)
    c = consumer.committed(TopicPartition(KAFKA_TOPIC, 0), metadata=True)
    check(c is not None, "no committed offset after the restart")
    check_eq((c.offset, c.metadata), (2, v["metadata"]), "committed offset and metadata")
    consumer.close()
    print("retained message, queued messages and offset metadata read back", flush=True)


def main():
    p = mqtt_parser(__doc__)
    p.add_argument("--phase", required=True, choices=["write", "verify"])
    p.add_argument("--marker", required=True)
    p.add_argument("--count", type=int, default=5)
    args = p.parse_args()
    v = values(args.marker, args.count)
    if args.phase == "write":
        write(args, v)
    else:
        verify(args, v)


run(main)
