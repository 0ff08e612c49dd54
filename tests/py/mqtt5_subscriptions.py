"""Subscriptions as MQTT 5 defines them: overlapping subscriptions of one client give one
delivery at the highest granted QoS with every matching subscription identifier (§3.3.4; on
3.1.1 one delivery too, §4.7.1.2); Retain Handling 0/1/2 and Retain As Published (§3.8.3.1);
the message expiry interval counts down while a message waits (§3.3.2.3.3); payload format
indicator, content type, response topic, correlation data and user properties pass through.
Prints RESULT lines the Rust test checks."""

import time

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from mqtt_util import V311, V5, Device, mqtt_parser, result
from rilltest import run, unique


def sub_id(n):
    p = Properties(PacketTypes.SUBSCRIBE)
    p.SubscriptionIdentifier = n
    return p


def drain(dev, wait=0.5):
    out = []
    while True:
        try:
            out.append(dev.messages.get(timeout=wait))
        except Exception:  # noqa: BLE001 - queue.Empty
            return out


def main():
    args = mqtt_parser(__doc__).parse_args()
    base = unique("subs")
    pub = Device(args.mqtt, unique("pub"), protocol=V5)

    # Overlapping subscriptions, MQTT 5.
    c = Device(args.mqtt, unique("overlap"), protocol=V5)
    c.subscribe(f"{base}/ov/#", qos=0, properties=sub_id(1))
    c.subscribe(f"{base}/ov/+/x", qos=2, properties=sub_id(2))
    c.subscribe(f"{base}/ov/a/x", qos=1)
    pub.publish(f"{base}/ov/a/x", b"three-match", qos=2)
    pub.publish(f"{base}/ov/b/y", b"one-match", qos=1)
    got = [c.expect(), c.expect()] + drain(c)
    c.close()
    # Sorted by payload: paho hands a QoS 2 message over only after PUBREL, so arrival order
    # says nothing.
    result("overlap_v5", count=len(got),
           deliveries=sorted([m.payload.decode(), m.qos,
                              sorted(getattr(m.properties, "SubscriptionIdentifier", []))]
                             for m in got))

    # Overlapping subscriptions, MQTT 3.1.1.
    c = Device(args.mqtt, unique("overlap4"), protocol=V311)
    c.subscribe(f"{base}/o4/#", qos=0)
    c.subscribe(f"{base}/o4/+", qos=1)
    pub.publish(f"{base}/o4/t", b"v311", qos=1)
    got = [c.expect()] + drain(c)
    c.close()
    result("overlap_v311", count=len(got), qos=[m.qos for m in got])

    # Retain Handling: 0 sends retained messages on every subscribe, 1 only for a new
    # subscription, 2 never.
    pub.publish(f"{base}/rh/t", b"kept", qos=1, retain=True)
    c = Device(args.mqtt, unique("rh"), protocol=V5)
    counts = []
    for filt, rh in [(f"{base}/rh/t", 0), (f"{base}/rh/t", 0), (f"{base}/rh/t", 1),
                     (f"{base}/rh/+", 1), (f"{base}/rh/#", 2)]:
        c.subscribe(filt, options=SubscribeOptions(qos=1, retainHandling=rh))
        got = drain(c)
        counts.append(len(got))
        if got:
            assert got[0].retain, "retained message on subscribe without the retain flag"
    c.close()
    result("retain_handling", counts=counts)

    # Retain As Published for messages published while subscribed.
    rap = Device(args.mqtt, unique("rap"), protocol=V5)
    rap.subscribe(f"{base}/rap/#", options=SubscribeOptions(qos=1, retainAsPublished=True,
                                                            retainHandling=2))
    plain = Device(args.mqtt, unique("plain"), protocol=V5)
    plain.subscribe(f"{base}/rap/#", options=SubscribeOptions(qos=1, retainHandling=2))
    pub.publish(f"{base}/rap/t", b"live", qos=1, retain=True)
    a, b = rap.expect(), plain.expect()
    rap.close()
    plain.close()
    result("retain_as_published", with_rap=bool(a.retain), without=bool(b.retain))

    # Message expiry counts down while the message waits in a persistent session, and the
    # other properties arrive as published.
    sid = unique("away")
    away = Device(args.mqtt, sid, protocol=V5, clean=True, session_expiry=300)
    away.subscribe(f"{base}/exp/#", qos=1)
    away.close()
    p = Properties(PacketTypes.PUBLISH)
    p.MessageExpiryInterval = 30
    p.PayloadFormatIndicator = 1
    p.ContentType = "application/json"
    p.ResponseTopic = f"{base}/reply"
    p.CorrelationData = b"\x00corr"
    p.UserProperty = [("k", "v"), ("site", "north")]
    pub.publish(f"{base}/exp/t", b'{"t": 1}', qos=1, properties=p)
    time.sleep(2.2)
    back = Device(args.mqtt, sid, protocol=V5, clean=False, session_expiry=300)
    m = back.expect()
    back.close()
    mp = m.properties
    result("expiry_and_properties", payload=m.payload.decode(),
           remaining=getattr(mp, "MessageExpiryInterval", None),
           payload_format=getattr(mp, "PayloadFormatIndicator", None),
           content_type=getattr(mp, "ContentType", None),
           response_topic=getattr(mp, "ResponseTopic", None) == f"{base}/reply",
           correlation=getattr(mp, "CorrelationData", b"").hex(),
           user_properties=[list(x) for x in getattr(mp, "UserProperty", [])])
    pub.close()


run(main)
