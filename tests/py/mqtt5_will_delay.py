"""MQTT 5 will delay interval and session expiry together (§3.1.3.2.2): the will goes out when
the delay has passed or the session ends, whichever comes first; resuming the session in time
cancels it; a Clean Start reconnect ends the old session and sends it at once."""

import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from mqtt_util import V5, Device, host_port, mqtt_parser, result
from rilltest import run, unique


def device(addr, client_id, topic, delay, expiry, clean=True):
    """A v5 client with a will (delay `delay` s) and session expiry `expiry` s, connected."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    wp = Properties(PacketTypes.WILLMESSAGE)
    wp.WillDelayInterval = delay
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
    watcher.close()
    result("wills", delayed=delayed, expiry=expiry, resumed=resumed, clean=clean)


run(main)
