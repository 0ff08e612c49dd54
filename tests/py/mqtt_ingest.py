"""MQTT 3.1.1 and 5 publishes at QoS 0, 1 and 2 land in the mapped log topic with the device id as
key and the MQTT topic in the `mqtt.topic` header (read back with confluent-kafka); unmapped
topics go to the fallback topic `mqtt`; MQTT 5 user properties become record headers. Expects the
rule devices/{device}/telemetry <-> telemetry (key = device)."""

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from mqtt_util import V311, V5, Device, headers, mqtt_parser, read_log
from rilltest import check, check_eq, run, unique

PER_QOS = 20


def main():
    args = mqtt_parser(__doc__).parse_args()
    sent = {}
    for proto, name in [(V311, "v311"), (V5, "v5")]:
        for qos in (0, 1, 2):
            device = unique(f"d-{name}-q{qos}")
            dev = Device(args.mqtt, device, protocol=proto)
            topic = f"devices/{device}/telemetry"
            for i in range(PER_QOS):
                dev.publish(topic, f"{device}:{i}".encode(), qos=qos)
            dev.close()
            sent[device] = [f"{device}:{i}".encode() for i in range(PER_QOS)]
            print(f"{name} QoS {qos}: {PER_QOS} publishes acknowledged by {device}", flush=True)
    # MQTT 5 properties travel as headers.
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = ("site", "north")
    props.ContentType = "application/json"
    dev = Device(args.mqtt, unique("props"), protocol=V5)
    pdev = unique("pdev")
    dev.publish(f"devices/{pdev}/telemetry", b'{"t":1}', qos=1, properties=props)
    dev.publish("unmapped/x/y", b"fallback", qos=1)
    dev.close()

    total = sum(len(v) for v in sent.values()) + 1
    recs = read_log(args.bootstrap, "telemetry", total)
    by_key = {}
    for m in recs:
        by_key.setdefault(m.key().decode(), []).append(m)
    for device, payloads in sent.items():
        got = by_key.get(device, [])
        # QoS 0 over loopback into a live node is not lost either; order is kept per device.
        check_eq([m.value() for m in got], payloads, f"records of {device}")
        for m in got:
            check_eq(headers(m).get("mqtt.topic"), f"devices/{device}/telemetry".encode(), "mqtt.topic header")
    (pm,) = by_key[pdev]
    h = headers(pm)
    check_eq(h.get("site"), b"north", "user property header")
    check_eq(h.get("mqtt.content_type"), b"application/json", "content type header")
    fb = read_log(args.bootstrap, "mqtt", 1)
    check_eq(fb[0].key(), b"unmapped/x/y", "fallback key")
    check_eq(fb[0].value(), b"fallback", "fallback value")
    print(f"read back {total} records from telemetry and the fallback record from mqtt", flush=True)


run(main)
