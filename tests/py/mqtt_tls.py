"""MQTT over TLS: a paho client verifying the node's certificate (signed by --ca) publishes QoS 1
and subscribes; the plain listener keeps working alongside."""

import paho.mqtt.client as mqtt

from mqtt_util import V5, Device, host_port, mqtt_parser, read_log
from rilltest import check, check_eq, run, unique


def main():
    p = mqtt_parser(__doc__)
    p.add_argument("--tls-addr", required=True)
    p.add_argument("--ca", required=True)
    args = p.parse_args()
    dev = unique("tls")
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=dev, protocol=mqtt.MQTTv311)
    c.tls_set(ca_certs=args.ca)
    got = []
    c.on_message = lambda cl, u, m: got.append(m.payload)
    host, port = host_port(args.tls_addr)
    c.connect(host, port, keepalive=30)
    c.loop_start()
    c.subscribe(f"devices/{dev}/#", qos=1)
    info = c.publish(f"devices/{dev}/telemetry", b"over-tls", qos=1)
    info.wait_for_publish(15)
    check(info.is_published(), "TLS publish not acknowledged")
    plain = Device(args.mqtt, unique("plain"), protocol=V5)
    plain.publish(f"devices/{dev}/telemetry", b"over-tcp", qos=1)
    plain.close()
    recs = [r.value() for r in read_log(args.bootstrap, "telemetry", 2) if r.key() == dev.encode()]
    check_eq(recs, [b"over-tls", b"over-tcp"], "records from both listeners")
    c.disconnect()
    c.loop_stop()
    print("TLS and plain listeners both store publishes", flush=True)


run(main)
