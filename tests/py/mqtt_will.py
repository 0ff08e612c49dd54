"""Will messages: published when a client vanishes without DISCONNECT (also to the log), not
published after a clean DISCONNECT; keepalive is enforced (1.5x) so a silent client's will
fires too."""

import socket
import struct

from mqtt_util import V311, V5, Device, host_port, mqtt_parser, read_log
from rilltest import check_eq, run, unique


def raw_connect(addr, client_id, keepalive, will_topic, will_payload):
    """A 3.1.1 CONNECT with a will, over a raw socket that then stays silent."""
    def s(b):
        return struct.pack("!H", len(b)) + b
    flags = 0x02 | 0x04 | (1 << 3)  # clean session, will flag, will QoS 1
    body = s(b"MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive)
    body += s(client_id.encode()) + s(will_topic.encode()) + s(will_payload)
    sock = socket.create_connection(host_port(addr), timeout=10)
    sock.sendall(bytes([0x10, len(body)]) + body)
    check_eq(sock.recv(4), b"\x20\x02\x00\x00", "CONNACK")
    return sock


def main():
    args = mqtt_parser(__doc__).parse_args()
    base = unique("wills")
    watcher = Device(args.mqtt, unique("watcher"), protocol=V5)
    watcher.subscribe(f"{base}/#", qos=1)

    for proto, name in [(V311, "v311"), (V5, "v5")]:
        topic = f"{base}/{name}/status"
        dev = Device(args.mqtt, unique(f"will-{name}"), protocol=proto, will=(topic, b"gone", 1, False))
        dev.drop()
        m = watcher.expect()
        check_eq((m.topic, m.payload), (topic, b"gone"), f"{name} will after abrupt disconnect")
        print(f"{name}: will published after the connection dropped", flush=True)

    clean = Device(args.mqtt, unique("clean"), protocol=V311, will=(f"{base}/clean", b"never", 1, False))
    clean.close()
    watcher.nothing(1.0)
    print("no will after a clean DISCONNECT", flush=True)

    sock = raw_connect(args.mqtt, unique("silent"), 1, f"{base}/silent", b"timed-out")
    m = watcher.expect(timeout=10)
    check_eq((m.topic, m.payload), (f"{base}/silent", b"timed-out"), "will after keepalive expiry")
    sock.close()
    print("keepalive expiry closed the silent client and published its will", flush=True)
    watcher.close()
    recs = [r for r in read_log(args.bootstrap, "mqtt", 3) if r.key().decode().startswith(base)]
    check_eq(len(recs), 3, "wills stored in the log")


run(main)
