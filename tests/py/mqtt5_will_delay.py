"""MQTT 5 will delay interval and session expiry together (§3.1.3.2.2): the will goes out when
the delay has passed or the session ends, whichever comes first; resuming the session in time
cancels it; a Clean Start reconnect ends the old session and sends it at once. A will is
published on behalf of its client: No Local (§3.8.3.1) keeps it from that client's own
subscription when it resumes its session, and the log record names the client
(`mqtt.client_id`)."""

import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from paho.mqtt.subscribeoptions import SubscribeOptions

from mqtt_util import V5, Device, headers, host_port, mqtt_parser, read_to_end, result
from rilltest import run, unique


def device(addr, client_id, topic, delay, expiry, clean=True, will_expiry=None):
    """A v5 client with a will (delay `delay` s, message expiry `will_expiry` s) and session
    expiry `expiry` s, connected."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    wp = Properties(PacketTypes.WILLMESSAGE)
    wp.WillDelayInterval = delay
    if will_expiry is not None:
        wp.MessageExpiryInterval = will_expiry
    c.will_set(topic, b"gone", qos=1, properties=wp)
    cp = Properties(PacketTypes.CONNECT)
    cp.SessionExpiryInterval = expiry
    host, port = host_port(addr)
    c.connect(host, port, keepalive=30, clean_start=clean, properties=cp)
    c.loop_start()
    deadline = time.monotonic() + 10
    while not c.is_connected() and time.monotonic() < deadline:
        time.sleep(0.02)
    return c


def drop(c):
    c.loop_stop()
    c.socket().close()


def arrival(watcher, topic, within):
    """Seconds until the will on `topic` arrives (None if not within `within` s)."""
    start = time.monotonic()
    while time.monotonic() - start < within:
        try:
            m = watcher.messages.get(timeout=0.1)
        except Exception:  # noqa: BLE001 - queue.Empty
            continue
        if m.topic == topic:
            return round(time.monotonic() - start, 2)
    return None


def main():
    args = mqtt_parser(__doc__).parse_args()
    base = unique("wd")
    watcher = Device(args.mqtt, unique("watcher"), protocol=V5)
    watcher.subscribe(f"{base}/#", qos=1)

    # Delay 2 s, session 60 s: after about 2 s.
    c = device(args.mqtt, unique("d2"), f"{base}/delay", 2, 60)
    drop(c)
    delayed = arrival(watcher, f"{base}/delay", 8)
    # Delay 30 s, session 1 s: the session ends first.
    c = device(args.mqtt, unique("s1"), f"{base}/expiry", 30, 1)
    drop(c)
    expiry = arrival(watcher, f"{base}/expiry", 8)
    # Delay 3 s, reconnect (same session) after 1 s: never.
    cid = unique("resume")
    c = device(args.mqtt, cid, f"{base}/resumed", 3, 60)
    drop(c)
    time.sleep(1)
    c2 = device(args.mqtt, cid, f"{base}/resumed-2", 0, 60, clean=False)
    resumed = arrival(watcher, f"{base}/resumed", 4.5)
    c2.disconnect()
    c2.loop_stop()
    # Delay 30 s, reconnect with Clean Start: the old session ends, its will comes at once.
    cid = unique("clean")
    c = device(args.mqtt, cid, f"{base}/clean", 30, 60)
    drop(c)
    time.sleep(0.5)
    c3 = device(args.mqtt, cid, f"{base}/clean-2", 0, 0, clean=True)
    clean = arrival(watcher, f"{base}/clean", 5)
    c3.disconnect()
    c3.loop_stop()

    # §3.1.3.2.4: the will's Message Expiry Interval is its publication's.
    c = device(args.mqtt, unique("wexp"), f"{base}/wexp", 0, 0, will_expiry=30)
    drop(c)
    will_expiry = None
    deadline = time.monotonic() + 5
    while will_expiry is None and time.monotonic() < deadline:
        try:
            m = watcher.messages.get(timeout=0.1)
        except Exception:  # noqa: BLE001 - queue.Empty
            continue
        if m.topic == f"{base}/wexp":
            will_expiry = getattr(m.properties, "MessageExpiryInterval", 0)

    # No Local: the client's own subscription does not get its will (it is in the log between
    # the client's cursor and the marker published after it came back).
    cid = unique("nolocal")
    nl = Device(args.mqtt, cid, protocol=V5, clean=True, session_expiry=300,
                will=(f"{base}/nl/will", b"offline", 1, False))
    nl.subscribe(f"{base}/nl/#", options=SubscribeOptions(qos=1, noLocal=True))
    nl.drop()
    will_seen = arrival(watcher, f"{base}/nl/will", 5)
    nl = Device(args.mqtt, cid, protocol=V5, clean=False, session_expiry=300)
    other = Device(args.mqtt, unique("other"), protocol=V5)
    other.publish(f"{base}/nl/marker", b"m", qos=1)
    got = []
    while True:
        m = nl.expect()
        got.append(m.topic[len(base) + 1:])
        if m.topic.endswith("/marker"):
            break
    nl.close()
    other.close()
    logged = [headers(r) for r in read_to_end(args.bootstrap, "mqtt")
              if headers(r).get("mqtt.topic") == f"{base}/nl/will".encode()]
    watcher.close()
    result("wills", delayed=delayed, expiry=expiry, resumed=resumed, clean=clean)
    result("will_expiry", remaining=will_expiry)
    result("will_no_local", will_seen=will_seen is not None, own_subscription=got,
           logged=len(logged),
           client_id=logged[0].get("mqtt.client_id", b"").decode() if logged else None,
           expected_client_id=cid)


run(main)
