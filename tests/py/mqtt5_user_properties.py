"""MQTT 5 user properties with a repeated name (§3.3.2.3.7: a name may appear more than once,
and the server keeps their order when it forwards the message), all three ways:
- MQTT -> MQTT: a paho MQTT 5 publish with ("k","a"), ("site","x"), ("k","b") reaches a paho
  subscriber with all three, in order;
- MQTT -> Kafka: a confluent-kafka consumer of the log sees them as three headers, in order;
- Kafka -> MQTT: a confluent-kafka producer's record with repeated headers reaches a paho
  MQTT 5 subscriber as repeated user properties, in order.
Prints RESULT lines the Rust test checks."""

from confluent_kafka import Producer
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from mqtt_util import V5, Device, mqtt_parser, read_log, result
from rilltest import check, run, unique

PROPS = [("k", "a"), ("site", "x"), ("k", "b")]


def user_props(m):
    return [list(x) for x in getattr(m.properties, "UserProperty", [])]


def main():
    args = mqtt_parser(__doc__).parse_args()
    base = unique("uprops")
    sub = Device(args.mqtt, unique("sub"), protocol=V5)
    sub.subscribe(f"{base}/#", qos=1)
    pub = Device(args.mqtt, unique("pub"), protocol=V5)

    p = Properties(PacketTypes.PUBLISH)
    p.UserProperty = PROPS
    pub.publish(f"{base}/mqtt", b"m1", qos=1, properties=p)
    m = sub.expect()
    check(m.topic == f"{base}/mqtt", f"unexpected message on {m.topic}")
    result("mqtt_to_mqtt", user_properties=user_props(m))

    # The record in the log (default mapping: log topic `mqtt`).
    records = [r for r in read_log(args.bootstrap, "mqtt", 1, timeout=30)]
    mine = [r for r in records
            if dict(r.headers() or []).get("mqtt.topic") == f"{base}/mqtt".encode()]
    check(len(mine) == 1, f"{len(mine)} records of {base}/mqtt in the log")
    kafka_headers = [[k, v.decode()] for k, v in (mine[0].headers() or [])
                     if not k.startswith("mqtt.")]
    result("mqtt_to_kafka", headers=kafka_headers)

    # A Kafka producer's repeated headers.
    producer = Producer({"bootstrap.servers": args.bootstrap})
    producer.produce("mqtt", key=f"{base}/kafka", value=b"k1",
                     headers=[("mqtt.topic", f"{base}/kafka".encode()), ("tag", b"1"),
                              ("other", b"o"), ("tag", b"2")])
    check(producer.flush(15) == 0, "Kafka produce not acknowledged")
    m = sub.expect()
    check(m.topic == f"{base}/kafka", f"unexpected message on {m.topic}")
    result("kafka_to_mqtt", user_properties=user_props(m))
    pub.close()
    sub.close()


run(main)
