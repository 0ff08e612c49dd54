"""MQTT 5 delayed wills across a node restart (§3.1.3.2.2, §3.1.2.5): a will waiting out its
Will Delay Interval is kept with its session, so a SIGKILL of the node (done by the Rust test
between the phases) does not drop it.

- before: a persistent paho subscriber S (session expiry 300 s) subscribes to T/will/# and goes
  away; paho clients W1 (will delay 3 s) and W2 (will delay 10 s), both with session expiry
  60 s, lose their network connection (socket closed, no DISCONNECT). The phase ends once the
  node has seen both connections end (the console's client list), so their wills are pending.
- after (node restarted): W2 resumes its session (Clean Start 0) before its delay is over; S
  comes back and waits for W1's will, which must come when its delay has passed (measured from
  the connection loss) or at once if that was during the restart.
- final (node restarted once more): S comes back and waits until W2's delay is long over: W2's
  will never comes (the resume cancelled it durably), and W1's does not come again.
Prints RESULT lines the Rust test checks."""

import json
import time
import urllib.request

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from mqtt_util import V5, Device, host_port, mqtt_parser, result
from rilltest import check, run

W1_DELAY = 3
W2_DELAY = 10


def will_client(addr, client_id, topic, delay):
    """A paho MQTT 5 client with a will (delay `delay` s) and session expiry 60 s, connected."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    wp = Properties(PacketTypes.WILLMESSAGE)
    wp.WillDelayInterval = delay
    c.will_set(topic, f"{client_id} gone".encode(), qos=1, properties=wp)
    cp = Properties(PacketTypes.CONNECT)
    cp.SessionExpiryInterval = 60
    host, port = host_port(addr)
    c.connect(host, port, keepalive=30, clean_start=True, properties=cp)
    c.loop_start()
    deadline = time.monotonic() + 10
    while not c.is_connected():
        check(time.monotonic() < deadline, f"{client_id} not connected")
        time.sleep(0.02)
    return c


def connected_ids(http):
    with urllib.request.urlopen(f"http://{http}/api/v1/mqtt", timeout=5) as r:
        return {c["client_id"] for c in json.load(r)["clients"]}


def wills_until(sub, tag, dropped_at, until, stop_after=None):
    """(will name, seconds after the connection loss) of every message until `until` s after it
    (or half a second after the will `stop_after` came)."""
    got = []
    while True:
        left = dropped_at + until - time.time()
        if stop_after in [g[0] for g in got]:
            left = min(left, dropped_at + got[-1][1] + 0.5 - time.time())
        if left <= 0:
            return got
        try:
            m = sub.messages.get(timeout=min(left, 0.2))
        except Exception:  # noqa: BLE001 - queue.Empty
            continue
        got.append([m.topic[len(f"{tag}/will/"):], round(time.time() - dropped_at, 2)])


def subscriber(args, tag):
    return Device(args.mqtt, f"{tag}-sub", protocol=V5, clean=False, session_expiry=300)


def main():
    p = mqtt_parser(__doc__)
    p.add_argument("--http", required=True)
    p.add_argument("--phase", choices=["before", "after", "final"], required=True)
    p.add_argument("--tag", required=True)
    p.add_argument("--dropped-at", type=float, default=0.0)
    p.add_argument("--w1-within", type=float, default=W1_DELAY + 5,
                   help="how long after the connection loss to wait for W1's will")
    args = p.parse_args()
    tag = args.tag

    if args.phase == "before":
        s = Device(args.mqtt, f"{tag}-sub", protocol=V5, clean=True, session_expiry=300)
        s.subscribe(f"{tag}/will/#", qos=1)
        s.close()
        w1 = will_client(args.mqtt, f"{tag}-w1", f"{tag}/will/w1", W1_DELAY)
        w2 = will_client(args.mqtt, f"{tag}-w2", f"{tag}/will/w2", W2_DELAY)
        for c in (w1, w2):
            c.loop_stop()
            c.socket().close()
        dropped_at = time.time()
        deadline = time.monotonic() + 10
        while connected_ids(args.http) & {f"{tag}-w1", f"{tag}-w2"}:
            check(time.monotonic() < deadline, "the node did not notice the lost connections")
            time.sleep(0.05)
        result("before", dropped_at=dropped_at,
               noticed_after=round(time.time() - dropped_at, 2))
    elif args.phase == "after":
        w2 = Device(args.mqtt, f"{tag}-w2", protocol=V5, clean=False, session_expiry=60,
                    connect=False)
        flags, _, _ = w2.connect()
        resumed_after = round(time.time() - args.dropped_at, 2)
        w2.close()
        s = subscriber(args, tag)
        got = wills_until(s, tag, args.dropped_at, args.w1_within, stop_after="w1")
        s.close()
        result("after", w2_session_present=bool(flags.session_present),
               w2_resumed_after=resumed_after, wills=got)
    else:
        s = subscriber(args, tag)
        got = wills_until(s, tag, args.dropped_at, W2_DELAY + 2.5)
        s.close()
        result("final", wills=got)


run(main)
