"""MQTT 5 specifics: assigned client identifier, topic aliases on publish, user properties,
content type, response topic and correlation data carried to subscribers, message expiry
(an expired retained message is not delivered), subscription identifiers."""

import time

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from mqtt_util import V5, Device, headers, mqtt_parser, read_log
from rilltest import check, check_eq, run, unique


def main():
    args = mqtt_parser(__doc__).parse_args()
    anon = Device(args.mqtt, "", protocol=V5, connect=False)
    _, rc, props = anon.connect()
    assigned = getattr(props, "AssignedClientIdentifier", None)
    check(assigned and assigned.startswith("rill-"), f"no assigned client id in CONNACK: {props}")
    anon.close()
    print(f"assigned client identifier {assigned}", flush=True)

    base = unique("v5")
    sub = Device(args.mqtt, unique("sub"), protocol=V5)
    sp = Properties(PacketTypes.SUBSCRIBE)
    sp.SubscriptionIdentifier = 7
    done = []
    sub.client.on_subscribe = lambda c, u, mid, rcs, p: done.append(rcs)
    sub.client.subscribe(f"{base}/#", qos=1, properties=sp)
    deadline = time.monotonic() + 10
    while not done and time.monotonic() < deadline:
        time.sleep(0.02)
    check(done, "no SUBACK")

    pub = Device(args.mqtt, unique("pub"), protocol=V5)
    p = Properties(PacketTypes.PUBLISH)
    p.TopicAlias = 3
    p.UserProperty = [("site", "north"), ("line", "4")]
    p.ContentType = "text/plain"
    p.ResponseTopic = f"{base}/reply"
    p.CorrelationData = b"corr-1"
    pub.publish(f"{base}/aliased", b"first", qos=1, properties=p)
    p2 = Properties(PacketTypes.PUBLISH)
    p2.TopicAlias = 3
    pub.publish("", b"second", qos=1, properties=p2)

    m1, m2 = sub.expect(), sub.expect()
    check_eq((m1.topic, m1.payload), (f"{base}/aliased", b"first"), "first message")
    check_eq((m2.topic, m2.payload), (f"{base}/aliased", b"second"), "message published with the alias only")
    mp = m1.properties
    check_eq(sorted(mp.UserProperty), [("line", "4"), ("site", "north")], "user properties")
    check_eq(mp.ContentType, "text/plain", "content type")
    check_eq(mp.ResponseTopic, f"{base}/reply", "response topic")
    check_eq(mp.CorrelationData, b"corr-1", "correlation data")
    check_eq(mp.SubscriptionIdentifier, [7], "subscription identifier")
    print("topic alias, user properties, content type, response topic, correlation data and "
          "subscription identifier delivered", flush=True)

    # Message expiry: a retained message that expired is not given to a new subscriber.
    e = Properties(PacketTypes.PUBLISH)
    e.MessageExpiryInterval = 1
    pub.publish(f"{base}/expiring", b"soon-gone", qos=1, retain=True, properties=e)
    keep = Properties(PacketTypes.PUBLISH)
    keep.MessageExpiryInterval = 3600
    pub.publish(f"{base}/kept", b"still-here", qos=1, retain=True, properties=keep)
    time.sleep(2.2)
    late = Device(args.mqtt, unique("late"), protocol=V5)
    late.subscribe(f"{base}/+", qos=1)
    m = late.expect()
    check_eq((m.topic, m.payload), (f"{base}/kept", b"still-here"), "only the unexpired retained message")
    remaining = m.properties.MessageExpiryInterval
    check(0 < remaining <= 3600, f"remaining expiry {remaining}")
    late.nothing(0.5)
    late.close()
    print("expired retained message dropped, the other delivered with its remaining expiry", flush=True)

    # No Local: a subscriber is not sent its own publishes, only other clients' ones.
    nl_id = unique("nl")
    nl = Device(args.mqtt, nl_id, protocol=V5)
    nl.subscribe(f"{base}/nl/#", options=SubscribeOptions(qos=1, noLocal=True))
    nl.publish(f"{base}/nl/own", b"mine", qos=1)
    pub.publish(f"{base}/nl/other", b"theirs", qos=1)
    m = nl.expect()
    check_eq((m.topic, m.payload), (f"{base}/nl/other", b"theirs"), "No Local: only the other's")
    nl.nothing(0.5)
    # Everything published so far: first, second, expiring, kept, own, other.
    own = [r for r in read_log(args.bootstrap, "mqtt", 6)
           if headers(r).get("mqtt.topic") == f"{base}/nl/own".encode()]
    check(own and headers(own[0]).get("mqtt.client_id") == nl_id.encode(),
          "the publisher's client id is stored in mqtt.client_id")
    nl.close()
    print("No Local: own publishes skipped, others delivered", flush=True)
    sub.close()
    pub.close()

    # Session takeover: a second connection with the same client id closes the first (0x8E).
    same = unique("same")
    first = Device(args.mqtt, same, protocol=V5)
    second = Device(args.mqtt, same, protocol=V5)
    try:
        rc = first.disconnects.get(timeout=10)
    except Exception:  # noqa: BLE001
        check(False, "first connection not closed by the takeover")
    check_eq(getattr(rc, "value", rc), 0x8E, "takeover reason code")
    second.publish(f"{base}/after-takeover", b"x", qos=1)
    first.client.loop_stop()
    second.close()
    print("session takeover closed the old connection with 0x8E", flush=True)

    recs = [r for r in read_log(args.bootstrap, "mqtt", 4) if r.key().decode().startswith(base)]
    check(any(headers(r).get("site") == b"north" for r in recs), "user property stored as a header")


run(main)
