"""Shared subscription redelivery: member A (a raw 3.1.1 client that never acknowledges) holds
QoS 1 messages of $share/g/...; when A disconnects, member B gets every one of them; B then gets
new messages too."""

import socket
import struct
import time

from mqtt_util import V311, Device, host_port, mqtt_parser
from rilltest import check, check_eq, run, unique


def s(b):
    return struct.pack("!H", len(b)) + b


def read_packets(sock, want, timeout=10):
    """Reads `want` PUBLISH packets (no acks sent); returns their payloads."""
    sock.settimeout(timeout)
    buf = b""
    out = []
    while len(out) < want:
        chunk = sock.recv(65536)
        check(chunk, "member A connection closed")
        buf += chunk
        while len(buf) >= 2:
            n, mult, i = 0, 1, 1
            while True:
                b = buf[i]
                n += (b & 0x7F) * mult
                mult *= 128
                i += 1
                if not b & 0x80:
                    break
            if len(buf) < i + n:
                break
            pkt, buf = buf[: i + n], buf[i + n:]
            if pkt[0] >> 4 == 3:
                body = pkt[i:]
                tlen = struct.unpack("!H", body[:2])[0]
                qos = (pkt[0] >> 1) & 3
                payload = body[2 + tlen + (2 if qos else 0):]
                out.append(payload)
    return out


def main():
    args = mqtt_parser(__doc__).parse_args()
    dev = unique("shr")
    topic = f"devices/{dev}/telemetry"
    group = unique("g")
    shared = f"$share/{group}/{topic}"

    a = socket.create_connection(host_port(args.mqtt), timeout=10)
    body = s(b"MQTT") + bytes([4, 0x02]) + struct.pack("!H", 60) + s(unique("memberA").encode())
    a.sendall(bytes([0x10, len(body)]) + body)
    check_eq(a.recv(4), b"\x20\x02\x00\x00", "CONNACK")
    sub = struct.pack("!H", 1) + s(shared.encode()) + b"\x01"
    a.sendall(bytes([0x82, len(sub)]) + sub)
    check_eq(a.recv(5), b"\x90\x03\x00\x01\x01", "SUBACK")

    pub = Device(args.mqtt, unique("pub"), protocol=V311)
    for i in range(10):
        pub.publish(topic, f"x{i}".encode(), qos=1)
    held = read_packets(a, 10)
    check_eq(held, [f"x{i}".encode() for i in range(10)], "messages held unacknowledged by A")

    b = Device(args.mqtt, unique("memberB"), protocol=V311)
    b.subscribe(shared, qos=1)
    b.nothing(0.5)  # A still holds them
    a.close()
    got = sorted(b.expect().payload for _ in range(10))
    check_eq(got, sorted(f"x{i}".encode() for i in range(10)), "redelivered to B")
    pub.publish(topic, b"after", qos=1)
    check_eq(b.expect().payload, b"after", "new message to the remaining member")
    b.nothing(0.5)
    b.close()
    pub.close()
    print("A's unacknowledged messages were redelivered to B after A left", flush=True)


run(main)
