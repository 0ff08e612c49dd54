"""MQTT over WebSocket with paho (transport="websockets"), MQTT 3.1.1 and 5: QoS 0/1/2 publishes
through the WebSocket listener are stored (read back with confluent-kafka) and delivered to a
WebSocket subscriber and a TCP one; with --wss-addr the same over TLS (a test CA)."""

from mqtt_util import V311, V5, Device, mqtt_parser, read_log, result
from rilltest import check, run, unique


def roundtrip(args, name, addr, protocol, ca=None, path="/mqtt"):
    dev = unique(name)
    topic = f"devices/{dev}/telemetry"
    sub = Device(addr, unique("sub"), protocol=protocol, transport="websockets", ws_path=path,
                 ca=ca)
    tcp_sub = Device(args.mqtt, unique("tcpsub"), protocol=V5)
    granted = sub.subscribe(f"devices/{dev}/#", qos=2)
    tcp_sub.subscribe(f"devices/{dev}/#", qos=2)
    pub = Device(addr, dev, protocol=protocol, transport="websockets", ws_path=path, ca=ca)
    payloads = [f"{name}-q{q}".encode() for q in (0, 1, 2)]
    for q, payload in enumerate(payloads):
        pub.publish(topic, payload, qos=q)
    got = {}
    for _ in payloads:
        m = sub.expect()
        got[m.payload.decode()] = m.qos
    tcp_got = sorted(tcp_sub.expect().payload.decode() for _ in payloads)
    # The log holds exactly the three messages of this device, in order.
    recs = []
    for r in read_log(args.bootstrap, "telemetry", args.expect_total(3)):
        if r.key() == dev.encode():
            recs.append(r.value().decode())
    pub.close()
    sub.close()
    tcp_sub.close()
    result(name, delivered=got, tcp=tcp_got, stored=recs, granted=[int(g.value) for g in granted])


class Totals:
    """Records in `telemetry` so far (each roundtrip adds three)."""

    def __init__(self):
        self.n = 0

    def __call__(self, more):
        self.n += more
        return self.n


def main():
    p = mqtt_parser(__doc__)
    p.add_argument("--ws-addr", required=True)
    p.add_argument("--wss-addr")
    p.add_argument("--ca")
    args = p.parse_args()
    args.expect_total = Totals()
    roundtrip(args, "ws_v311", args.ws_addr, V311)
    roundtrip(args, "ws_v5", args.ws_addr, V5, path="/any/path")
    if args.wss_addr:
        check(args.ca is not None, "--wss-addr needs --ca")
        roundtrip(args, "wss_v5", args.wss_addr, V5, ca=args.ca)


run(main)
