"""MQTT packets by hand, for checks that need exact control of the wire (what a client library
hides: withholding acks, exceeding limits, reading reason codes and properties as sent)."""

import socket
import struct

from mqtt_util import host_port
from rilltest import check

CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 2, 3, 4, 5, 6, 7
SUBACK, PINGRESP, DISCONNECT = 9, 13, 14


def s(b):
    if isinstance(b, str):
        b = b.encode()
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


def props(*items):
    """A property block from (id, encoded value) pairs."""
    body = b"".join(bytes([i]) + v for i, v in items)
    return varint(len(body)) + body


def u16(n):
    return struct.pack("!H", n)


def u32(n):
    return struct.pack("!I", n)


def connect(client_id, level=5, keepalive=60, properties=b"\x00"):
    """CONNECT with clean start; `properties` is a block made by props() (MQTT 5)."""
    body = s(b"MQTT") + bytes([level, 0x02]) + u16(keepalive)
    if level == 5:
        body += properties
    return packet(0x10, body + s(client_id))


def publish(topic, payload, qos=0, pkid=1, level=5, dup=False):
    body = s(topic)
    if qos:
        body += u16(pkid)
    if level == 5:
        body += b"\x00"
    return packet(0x30 | (qos << 1) | (0x08 if dup else 0), body + payload)


def subscribe(topic, qos=1, pkid=1, sub_id=None):
    p = props((0x0B, varint(sub_id))) if sub_id else b"\x00"
    return packet(0x82, u16(pkid) + p + s(topic) + bytes([qos]))


def ack(kind, pkid, level=5):
    """PUBACK / PUBREC / PUBREL / PUBCOMP with reason Success."""
    first = {PUBACK: 0x40, PUBREC: 0x50, PUBREL: 0x62, PUBCOMP: 0x70}[kind]
    return packet(first, u16(pkid))


def read_props(body, pos):
    """Parses a property block at body[pos:]: ({id: [values]}, next position)."""
    n, shift, length = 0, 0, 0
    while True:
        b = body[pos + n]
        length |= (b & 0x7F) << shift
        n += 1
        shift += 7
        if not b & 0x80:
            break
    pos += n
    end = pos + length
    out = {}
    while pos < end:
        pid = body[pos]
        pos += 1
        if pid in (0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A):  # byte
            val, pos = body[pos], pos + 1
        elif pid in (0x13, 0x21, 0x22, 0x23):  # two-byte integer
            val, pos = struct.unpack("!H", body[pos:pos + 2])[0], pos + 2
        elif pid in (0x02, 0x11, 0x18, 0x27):  # four-byte integer
            val, pos = struct.unpack("!I", body[pos:pos + 4])[0], pos + 4
        elif pid == 0x0B:  # variable byte integer
            val, shift = 0, 0
            while True:
                b = body[pos]
                pos += 1
                val |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
        elif pid == 0x26:  # string pair
            k = struct.unpack("!H", body[pos:pos + 2])[0]
            key = body[pos + 2:pos + 2 + k].decode()
            pos += 2 + k
            v = struct.unpack("!H", body[pos:pos + 2])[0]
            val = (key, body[pos + 2:pos + 2 + v].decode())
            pos += 2 + v
        else:  # string or binary data
            k = struct.unpack("!H", body[pos:pos + 2])[0]
            val = body[pos + 2:pos + 2 + k]
            pos += 2 + k
        out.setdefault(pid, []).append(val)
    return out, end


class Wire:
    """A raw MQTT connection."""

    def __init__(self, addr, timeout=10):
        self.sock = socket.create_connection(host_port(addr), timeout=timeout)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def read(self, timeout=10):
        """The next packet as (type, flags, body), or None when the connection is closed."""
        self.sock.settimeout(timeout)
        while True:
            if len(self.buf) >= 2:
                length, shift, i = 0, 0, 1
                while i < len(self.buf):
                    b = self.buf[i]
                    length |= (b & 0x7F) << shift
                    shift += 7
                    i += 1
                    if not b & 0x80:
                        break
                else:
                    i = None
                if i is not None and not self.buf[i - 1] & 0x80 and len(self.buf) >= i + length:
                    first, body = self.buf[0], self.buf[i:i + length]
                    self.buf = self.buf[i + length:]
                    return first >> 4, first & 0x0F, body
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            self.buf += chunk

    def quiet(self, wait):
        """Whether no packet arrives within `wait` seconds."""
        try:
            p = self.read(timeout=wait)
        except socket.timeout:
            return True
        check(False, f"unexpected packet {p!r}")

    def expect(self, kind, timeout=10):
        p = self.read(timeout)
        check(p is not None, f"connection closed while waiting for packet type {kind}")
        check(p[0] == kind, f"expected packet type {kind}, got {p!r}")
        return p

    def connect(self, client_id, level=5, keepalive=60, properties=b"\x00"):
        """CONNECT; returns the CONNACK properties (MQTT 5)."""
        self.send(connect(client_id, level, keepalive, properties))
        _, _, body = self.expect(CONNACK)
        check(body[1] == 0, f"CONNACK refused: {body!r}")
        return read_props(body, 2)[0] if level == 5 else {}

    def close(self):
        self.sock.close()


def parse_publish(flags, body, level=5):
    """(topic, pkid, properties, payload) of a PUBLISH."""
    n = struct.unpack("!H", body[:2])[0]
    topic = body[2:2 + n]
    pos = 2 + n
    pkid = None
    if (flags >> 1) & 3:
        pkid = struct.unpack("!H", body[pos:pos + 2])[0]
        pos += 2
    p = {}
    if level == 5:
        p, pos = read_props(body, pos)
    return topic, pkid, p, body[pos:]


def pkid_of(body):
    """The packet id of a PUBACK / PUBREC / PUBREL / PUBCOMP body."""
    return struct.unpack("!H", body[:2])[0]


def parse_disconnect(body):
    """(reason code, reason string or None) of an MQTT 5 DISCONNECT."""
    if not body:
        return 0, None
    p = read_props(body, 1)[0] if len(body) > 1 else {}
    rs = p.get(0x1F, [None])[0]
    return body[0], rs.decode() if rs is not None else None
