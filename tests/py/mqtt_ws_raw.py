"""MQTT over WebSocket below the client libraries, with the `websockets` package as a raw
WebSocket client: subprotocol negotiation (`mqtt`, `mqttv3.1`, none, an unknown one), any
request path, one CONNECT split over three binary frames, two QoS 1 PUBLISHes in one frame, a
PUBLISH spanning two frames (the second also carrying the start of the next packet), and a text
frame, which the server answers with a close frame. MQTT 3.1.1 packets are built by hand.

Reports what it saw as RESULT lines; the Rust test (tests/tests/mqtt_ws.rs) asserts on them."""

import asyncio
import struct

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from mqtt_util import result
from rilltest import check, parser, run

TIMEOUT = 10.0


def packet(header, body):
    """A packet: fixed header byte, remaining-length varint, body."""
    out = bytearray([header])
    n = len(body)
    while True:
        b = n % 128
        n //= 128
        out.append(b | 0x80 if n else b)
        if not n:
            break
    return bytes(out) + body


def string(s):
    raw = s.encode()
    return struct.pack(">H", len(raw)) + raw


def connect_packet(client_id):
    """CONNECT, MQTT 3.1.1, clean session, keep-alive 30 s."""
    return packet(0x10, string("MQTT") + bytes([4, 0x02, 0, 30]) + string(client_id))


def subscribe_packet(pkid, topic_filter):
    """SUBSCRIBE to one filter at QoS 1."""
    return packet(0x82, struct.pack(">H", pkid) + string(topic_filter) + bytes([1]))


def publish_qos1(pkid, topic, payload):
    return packet(0x32, string(topic) + struct.pack(">H", pkid) + payload)


def take(buf):
    """Splits one whole packet off the front of `buf` (a bytearray), or returns None."""
    length, shift, i = 0, 0, 1
    while True:
        if i >= len(buf):
            return None
        b = buf[i]
        length |= (b & 0x7F) << shift
        shift += 7
        i += 1
        if not b & 0x80:
            break
    if len(buf) < i + length:
        return None
    out = bytes(buf[: i + length])
    del buf[: i + length]
    return out


class Raw:
    """One WebSocket connection and the bytes of its binary frames not yet split into packets."""

    def __init__(self, ws):
        self.ws = ws
        self.buf = bytearray()

    async def packets(self, n):
        """Reads binary frames until `n` whole packets arrived (at most TIMEOUT seconds)."""
        out = []
        async with asyncio.timeout(TIMEOUT):
            while True:
                while (p := take(self.buf)) is not None:
                    out.append(p)
                if len(out) >= n:
                    return out
                frame = await self.ws.recv()
                check(isinstance(frame, bytes), f"a text frame from the server: {frame!r}")
                self.buf.extend(frame)


def opened(addr, path, subprotocols):
    """A raw connection to ws://addr/path offering `subprotocols` (None: no header at all)."""
    return connect(
        f"ws://{addr}{path}",
        subprotocols=subprotocols,
        compression=None,
        open_timeout=TIMEOUT,
        ping_interval=None,
    )


async def upgrade(addr, path, subprotocols):
    """What the upgrade answered: the HTTP status and the subprotocol chosen."""
    try:
        async with opened(addr, path, subprotocols) as ws:
            return {"status": ws.response.status_code, "subprotocol": ws.subprotocol}
    except InvalidStatus as e:
        return {"status": e.response.status_code, "subprotocol": None}


def hexes(packets):
    return [p.hex() for p in packets]


async def session(addr):
    topic = "devices/raw-ws/telemetry"
    # Offering `mqttv3.1` on an arbitrary path.
    async with opened(addr, "/some/where", ["mqttv3.1"]) as ws:
        raw = Raw(ws)
        result("mqttv31", status=ws.response.status_code, subprotocol=ws.subprotocol)
        # One CONNECT split over three binary frames.
        conn = connect_packet("raw-ws-client")
        for part in (conn[:3], conn[3:9], conn[9:]):
            await ws.send(part)
        result("connack", packets=hexes(await raw.packets(1)))
        await ws.send(subscribe_packet(1, topic))
        result("suback", packets=hexes(await raw.packets(1)))
        # Two PUBLISHes in one frame: two PUBACKs, two deliveries to our own subscription.
        await ws.send(publish_qos1(2, topic, b"first") + publish_qos1(3, topic, b"second"))
        result("two_in_one_frame", packets=hexes(await raw.packets(4)))
        # A PUBLISH spanning two frames, the second frame also holding a whole PUBLISH.
        third = publish_qos1(4, topic, b"third")
        fourth = publish_qos1(5, topic, b"fourth")
        await ws.send(third[:7])
        await ws.send(third[7:] + fourth)
        result("spanning_frames", packets=hexes(await raw.packets(4)))
        # A text frame: the server closes the connection with a close frame.
        await ws.send("not binary")
        closed = {"closed": False}
        try:
            async with asyncio.timeout(TIMEOUT):
                while True:
                    await ws.recv()
        except ConnectionClosed as e:
            closed = {
                "closed": True,
                "close_frame_received": e.rcvd is not None,
                "code": e.rcvd.code if e.rcvd is not None else None,
            }
        result("text_frame", **closed)
    # The listener keeps serving: `mqtt` on `/` for a new client.
    async with opened(addr, "/", ["mqtt"]) as ws:
        raw = Raw(ws)
        await ws.send(connect_packet("raw-ws-2"))
        result(
            "after_close",
            status=ws.response.status_code,
            subprotocol=ws.subprotocol,
            packets=hexes(await raw.packets(1)),
        )


async def amain(addr):
    # A subprotocol MQTT does not define, and no subprotocol at all.
    result("unknown_subprotocol", **await upgrade(addr, "/mqtt", ["wamp"]))
    result("no_subprotocol", **await upgrade(addr, "/mqtt", None))
    await session(addr)


def main():
    p = parser(__doc__)
    p.add_argument("--ws-addr", required=True, help="HOST:PORT of the MQTT WebSocket listener")
    args = p.parse_args()
    asyncio.run(amain(args.ws_addr))


run(main)
