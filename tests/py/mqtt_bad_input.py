"""Bad input closes only the offending connection (with a DISCONNECT reason code on MQTT 5):
publish before CONNECT, malformed remaining length, oversized packet, wildcard in a publish topic,
invalid UTF-8 topic, unsupported protocol level, a second CONNECT, garbage. A well-behaved client
keeps publishing with acks throughout, and its messages are all stored."""

import socket
import struct

from mqtt_util import V5, Device, host_port, mqtt_parser, read_log
from rilltest import check, check_eq, run, unique


def s(b):
    return struct.pack("!H", len(b)) + b


def varint(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def packet(first, body):
    return bytes([first]) + varint(len(body)) + body


def connect(level, client_id):
    body = s(b"MQTT") + bytes([level, 0x02]) + struct.pack("!H", 60)
    if level == 5:
        body += b"\x00"  # no properties
    return packet(0x10, body + s(client_id.encode()))


def publish(level, topic, payload, qos=0):
    body = s(topic)
    if qos:
        body += struct.pack("!H", 1)
    if level == 5:
        body += b"\x00"
    return packet(0x30 | (qos << 1), body + payload)


def session(addr, level=None):
    sock = socket.create_connection(host_port(addr), timeout=10)
    if level is not None:
        sock.sendall(connect(level, unique("bad")))
        ack = sock.recv(64)
        check(ack[:1] == b"\x20" and ack[3:4] == b"\x00", f"CONNACK refused: {ack!r}")
    return sock


def read_until_closed(sock):
    data = b""
    while True:
        try:
            chunk = sock.recv(4096)
        except (ConnectionResetError, socket.timeout):
            return data
        if not chunk:
            return data
        data += chunk


def main():
    args = mqtt_parser(__doc__).parse_args()
    good_id = unique("good")
    good = Device(args.mqtt, good_id, protocol=V5)
    n = [0]

    def good_publish():
        good.publish(f"devices/{good_id}/telemetry", f"ok{n[0]}".encode(), qos=1)
        n[0] += 1

    cases = [
        ("publish before CONNECT", None, publish(4, b"a/b", b"x"), None),
        ("malformed remaining length", 4, b"\x30\xff\xff\xff\xff\x01", None),
        ("oversized packet (v3.1.1)", 4, b"\x30" + varint(8 * 1024 * 1024) + b"x" * 1000, None),
        ("oversized packet (v5)", 5, b"\x30" + varint(8 * 1024 * 1024) + b"x" * 1000, 0x95),
        ("wildcard in publish topic (v3.1.1)", 4, publish(4, b"a/+/c", b"x", qos=1), None),
        ("wildcard in publish topic (v5)", 5, publish(5, b"a/#", b"x", qos=1), 0x90),
        ("invalid UTF-8 topic (v5)", 5, publish(5, b"a/\xff\xfe", b"x", qos=1), None),
        ("invalid UTF-8 topic (v3.1.1)", 4, publish(4, b"a/\xc3\x28", b"x"), None),
        ("second CONNECT (v5)", 5, connect(5, "again"), 0x82),
        ("garbage", None, b"\x00\x01\x02\x03garbage", None),
        ("QoS 3 publish (v3.1.1)", 4, b"\x36\x05\x00\x01a\x00\x01", None),
    ]
    for name, level, payload, reason in cases:
        good_publish()
        sock = session(args.mqtt, level)
        try:
            sock.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass
        rest = read_until_closed(sock)
        sock.close()
        if reason is not None:
            check(rest[:1] == b"\xe0" and len(rest) >= 3 and len(rest) == 2 + rest[1] and rest[2] == reason,
                  f"{name}: expected DISCONNECT with reason {reason:#x}, got {rest!r}")
        elif level == 5:
            check(rest == b"" or rest[:1] == b"\xe0", f"{name}: unexpected reply {rest!r}")
        else:
            check_eq(rest, b"", f"{name}: reply before close")
        print(f"{name}: connection closed{'' if reason is None else f' with reason {reason:#x}'}", flush=True)
        good_publish()

    # Unsupported protocol level: CONNACK 0x01 then close.
    sock = socket.create_connection(host_port(args.mqtt), timeout=10)
    sock.sendall(connect(3, "old"))
    check_eq(read_until_closed(sock)[:4], b"\x20\x02\x00\x01", "CONNACK for protocol level 3")
    sock.close()
    good_publish()
    good.close()

    recs = read_log(args.bootstrap, "telemetry", n[0])
    check_eq([r.value() for r in recs], [f"ok{i}".encode() for i in range(n[0])],
             "the good client's messages")
    print(f"the good client published {n[0]} messages with acks throughout", flush=True)


run(main)
