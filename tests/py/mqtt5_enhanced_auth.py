"""MQTT 5 enhanced authentication (AUTH packets, SCRAM-SHA-256) on the wire: a device added with
`rill device add` authenticates at CONNECT (AUTH 0x18 exchange, server-final in CONNACK, which
the client verifies), re-authenticates (AUTH 0x19 ... AUTH 0x00), publishes as itself; a wrong
password gets CONNACK 0x87, an unknown method 0x8C, AUTH without enhanced auth DISCONNECT 0x82,
a failed re-authentication DISCONNECT 0x87. SCRAM client: RFC 5802 on hashlib/hmac."""

import base64
import hashlib
import hmac
import os

from mqtt_util import Device, V5
from mqtt_wire import CONNACK, PUBACK, Wire, connect, packet, props, publish, read_props, s
from mqtt_util import mqtt_parser, result
from rilltest import check, run, unique

AUTH = 15
METHOD = "SCRAM-SHA-256"


class Scram:
    def __init__(self, user, password):
        self.user, self.password = user, password.encode()
        self.nonce = base64.b64encode(os.urandom(18)).decode()
        self.bare = f"n={user},r={self.nonce}"

    def first(self):
        return ("n,," + self.bare).encode()

    def final(self, server_first):
        attrs = dict(kv.split("=", 1) for kv in server_first.decode().split(","))
        check(attrs["r"].startswith(self.nonce), "server nonce does not extend ours")
        salted = hashlib.pbkdf2_hmac("sha256", self.password, base64.b64decode(attrs["s"]),
                                     int(attrs["i"]))
        client_key = hmac.new(salted, b"Client Key", "sha256").digest()
        stored = hashlib.sha256(client_key).digest()
        without = "c=biws,r=" + attrs["r"]
        self.auth_message = f"{self.bare},{server_first.decode()},{without}".encode()
        sig = hmac.new(stored, self.auth_message, "sha256").digest()
        proof = bytes(a ^ b for a, b in zip(client_key, sig))
        self.server_key = hmac.new(salted, b"Server Key", "sha256").digest()
        return (without + ",p=" + base64.b64encode(proof).decode()).encode()

    def verify(self, server_final):
        want = hmac.new(self.server_key, self.auth_message, "sha256").digest()
        return server_final == b"v=" + base64.b64encode(want)


def auth_props(method, data):
    return props((0x15, s(method)), (0x16, s(data)))


def auth(code, method, data):
    return packet(0xF0, bytes([code]) + auth_props(method, data))


def read_auth(w):
    kind, _, body = w.read()
    return kind, body


def scram_connect(addr, client_id, user, password, method=METHOD):
    """CONNECT with SCRAM; returns (wire, connack code, connack props, scram)."""
    w = Wire(addr)
    sc = Scram(user, password)
    w.send(connect(client_id, properties=auth_props(method, sc.first())))
    kind, _, body = w.read()
    if kind == CONNACK:
        return w, body[1], read_props(body, 2)[0], sc
    check(kind == AUTH and body[0] == 0x18, f"expected AUTH 0x18, got {kind} {body!r}")
    p = read_props(body, 1)[0]
    check(p[0x15] == [method.encode()], f"AUTH method {p}")
    w.send(auth(0x18, method, sc.final(p[0x16][0])))
    kind, _, body = w.read()
    check(kind == CONNACK, f"expected CONNACK, got {kind}")
    return w, body[1], read_props(body, 2)[0], sc


def main():
    p = mqtt_parser(__doc__)
    p.add_argument("--device", required=True)
    p.add_argument("--password", required=True)
    args = p.parse_args()
    dev, pw = args.device, args.password

    w, code, cprops, sc = scram_connect(args.mqtt, dev, dev, pw)
    server_final = cprops.get(0x16, [b""])[0]
    result("connect", code=code, method=cprops.get(0x15, [b""])[0].decode(),
           server_verified=sc.verify(server_final))
    # Publishes as itself (the ACL is the device's).
    w.send(publish(f"devices/{dev}/telemetry", b"scram", qos=1, pkid=1))
    _, _, body = w.expect(PUBACK)
    puback = body[2] if len(body) > 2 else 0
    # Re-authentication.
    sc2 = Scram(dev, pw)
    w.send(auth(0x19, METHOD, sc2.first()))
    kind, body = read_auth(w)
    check(kind == AUTH and body[0] == 0x18, f"re-auth: expected AUTH 0x18, got {kind} {body!r}")
    w.send(auth(0x18, METHOD, sc2.final(read_props(body, 1)[0][0x16][0])))
    kind, body = read_auth(w)
    rp = read_props(body, 1)[0] if kind == AUTH else {}
    result("reauth", kind=kind, code=body[0] if body else None,
           server_verified=sc2.verify(rp.get(0x16, [b""])[0]))
    # Still serving after re-authentication.
    w.send(publish(f"devices/{dev}/telemetry", b"after-reauth", qos=1, pkid=2))
    w.expect(PUBACK)
    # A failed re-authentication (wrong password) ends the connection with 0x87.
    sc3 = Scram(dev, "wrong")
    w.send(auth(0x19, METHOD, sc3.first()))
    kind, body = read_auth(w)
    w.send(auth(0x18, METHOD, sc3.final(read_props(body, 1)[0][0x16][0])))
    kind, _, body = w.read()
    result("bad_reauth", kind=kind, code=body[0] if body else None)
    w.close()

    w, code, _, _ = scram_connect(args.mqtt, unique("x"), dev, "wrong")
    result("wrong_password", code=code)
    w.close()
    w, code, _, _ = scram_connect(args.mqtt, unique("x"), "nobody", "pw")
    result("unknown_user", code=code)
    w.close()
    w, code, cprops, _ = scram_connect(args.mqtt, unique("x"), dev, pw, method="SCRAM-SHA-1")
    result("unknown_method", code=code, reason=cprops.get(0x1F, [b""])[0].decode())
    w.close()
    # AUTH on a connection that logged in with a password: Protocol Error.
    plain = Wire(args.mqtt)
    body = s(b"MQTT") + bytes([5, 0xC2]) + b"\x00\x3c" + b"\x00" + s(unique("pw")) + s(dev) + s(pw)
    plain.send(packet(0x10, body))
    _, _, cb = plain.expect(CONNACK)
    plain.send(auth(0x19, METHOD, Scram(dev, pw).first()))
    kind, _, body = plain.read()
    result("auth_without_enhanced", connack=cb[1], kind=kind, code=body[0] if body else None)
    plain.close()
    # Password login still works beside SCRAM (paho).
    d = Device(args.mqtt, dev, protocol=V5, username=dev, password=pw)
    d.publish(f"devices/{dev}/telemetry", b"password", qos=1)
    d.close()
    result("done", puback=puback)


run(main)
