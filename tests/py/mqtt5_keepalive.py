"""Server Keep Alive (MQTT 5 §3.2.2.3.14) against a node with server_keep_alive_secs = 2: an
MQTT 5 client asking for 60 s is told 2 s in CONNACK, and a silent one is disconnected with
0x8D after 1.5 times that; a 3.1.1 client (which cannot be told) keeps its own 60 s.
Prints RESULT lines the Rust test checks."""

import time

import mqtt_wire as w
from mqtt_util import V5, Device, mqtt_parser, result
from rilltest import check, run, unique


def main():
    args = mqtt_parser(__doc__).parse_args()
    d = Device(args.mqtt, unique("ka"), protocol=V5, keepalive=60, connect=False)
    _, _, cp = d.connect()
    d.close()
    result("connack", server_keep_alive=getattr(cp, "ServerKeepAlive", None))

    v5 = w.Wire(args.mqtt, timeout=15)
    p = v5.connect(unique("silent5"), keepalive=60)
    v4 = w.Wire(args.mqtt, timeout=15)
    v4.connect(unique("silent4"), level=4, keepalive=60)
    start = time.monotonic()
    p5 = v5.read(timeout=15)
    waited = time.monotonic() - start
    check(p5 is not None and p5[0] == w.DISCONNECT, f"silent MQTT 5 client not disconnected: {p5!r}")
    code, text = w.parse_disconnect(p5[2])
    v5.close()
    # The 3.1.1 connection outlives the MQTT 5 one's 3 s by far and still answers.
    v4.quiet(1.5)
    v4.send(bytes([0xC0, 0]))
    v4.expect(w.PINGRESP)
    v4.close()
    result("silent", server_keep_alive=p.get(0x13, [None])[0], disconnect=code, reason=text,
           waited_s=round(waited, 1), v311_alive=True)


run(main)
