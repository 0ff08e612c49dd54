"""QoS 2 exactly once across a node restart (SIGKILL between the phases, done by the Rust test),
with persistent sessions (session expiry 300 s), by hand-made packets:
- a: the client got PUBREC, then the node died; after the restart it sends PUBREL and gets
  PUBCOMP with reason Success (no second copy: it never resends the PUBLISH);
- b: the node stored the message, then died before the client saw the PUBREC (the script
  reads the PUBREC and ignores it, as if it had been lost); after the restart the client
  resends the PUBLISH with DUP and gets PUBREC, and the message is not stored again;
- out: a subscriber that got PUBREL for a delivered QoS 2 message and went away without PUBCOMP
  gets PUBREL again (not the PUBLISH) when it comes back.
A persistent paho subscriber gets exactly one copy of a and of b. Prints RESULT lines."""

from confluent_kafka import Consumer, KafkaError, TopicPartition

import mqtt_wire as w
from mqtt_util import V5, Device, headers, mqtt_parser, result
from rilltest import check, check_eq, run

PERSIST = w.props((0x11, w.u32(300)))


def log_counts(bootstrap, prefix):
    """Records of the `mqtt` log topic by MQTT topic, read to the end."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "rill-qos2-restart",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    md = consumer.list_topics("mqtt", timeout=10).topics["mqtt"]
    consumer.assign([TopicPartition("mqtt", p, 0) for p in md.partitions])
    eof, counts = set(), {}
    while len(eof) < len(md.partitions):
        m = consumer.poll(10)
        check(m is not None, "log read timed out")
        if m.error():
            check(m.error().code() == KafkaError._PARTITION_EOF, f"consumer error: {m.error()}")
            eof.add(m.partition())
            continue
        t = headers(m).get("mqtt.topic", b"").decode()
        if t.startswith(prefix):
            counts[t[len(prefix):]] = counts.get(t[len(prefix):], 0) + 1
    consumer.close()
    return counts


def before(args, tag):
    sub = Device(args.mqtt, f"{tag}-sub", protocol=V5, clean=True, session_expiry=300)
    sub.subscribe(f"{tag}/#", qos=2)
    sub.close()

    a = w.Wire(args.mqtt)
    a.connect(f"{tag}-a", properties=PERSIST)
    a.send(w.publish(f"{tag}/a", b"A", qos=2, pkid=7))
    check_eq(w.pkid_of(a.expect(w.PUBREC)[2]), 7, "PUBREC of a")
    a.close()

    b = w.Wire(args.mqtt)
    b.connect(f"{tag}-b", properties=PERSIST)
    b.send(w.publish(f"{tag}/b", b"B", qos=2, pkid=9))
    b.expect(w.PUBREC)  # stored; this PUBREC counts as lost
    b.close()

    o = w.Wire(args.mqtt)
    o.connect(f"{tag}-o", properties=PERSIST)
    o.send(w.subscribe(f"{tag}/out", qos=2))
    o.expect(w.SUBACK)
    pub = Device(args.mqtt, f"{tag}-pub", protocol=V5)
    pub.publish(f"{tag}/out", b"O", qos=2)
    pub.close()
    _, flags, body = o.expect(w.PUBLISH)
    _, pkid, _, _ = w.parse_publish(flags, body)
    o.send(w.ack(w.PUBREC, pkid))
    check_eq(w.pkid_of(o.expect(w.PUBREL)[2]), pkid, "PUBREL")
    o.close()
    o = w.Wire(args.mqtt)
    o.connect(f"{tag}-o", properties=PERSIST, clean=False)
    kind, _, body = o.read()
    first = "PUBREL" if kind == w.PUBREL else f"type {kind}"
    check_eq(w.pkid_of(body), pkid, "resent PUBREL's packet id")
    o.quiet(1.0)  # and no PUBLISH of the same message
    o.send(w.ack(w.PUBCOMP, pkid))
    o.send(bytes([0xE0, 0]))  # DISCONNECT: the session is saved without the id
    check(o.read() is None, "connection open after DISCONNECT")
    o.close()
    result("before", out_resumed_with=first, out_session_present=o.session_present)


def after(args, tag):
    a = w.Wire(args.mqtt)
    a.connect(f"{tag}-a", properties=PERSIST, clean=False)
    a_present = a.session_present
    a.send(w.ack(w.PUBREL, 7))
    _, _, body = a.expect(w.PUBCOMP)
    a_comp = w.reason_of(body)
    a.close()

    b = w.Wire(args.mqtt)
    b.connect(f"{tag}-b", properties=PERSIST, clean=False)
    b.send(w.publish(f"{tag}/b", b"B", qos=2, pkid=9, dup=True))
    _, _, body = b.expect(w.PUBREC)
    b_rec = w.reason_of(body)
    b.send(w.ack(w.PUBREL, 9))
    _, _, body = b.expect(w.PUBCOMP)
    b_comp = w.reason_of(body)
    b.close()

    o = w.Wire(args.mqtt)
    o.connect(f"{tag}-o", properties=PERSIST, clean=False)
    o.quiet(1.0)
    o.close()

    sub = Device(args.mqtt, f"{tag}-sub", protocol=V5, clean=False, session_expiry=300)
    got = []
    while True:
        try:
            got.append(sub.messages.get(timeout=1.5))
        except Exception:  # noqa: BLE001 - queue.Empty: nothing more
            break
    sub.close()
    delivered = {}
    for m in got:
        k = m.topic[len(tag) + 1:]
        delivered[k] = delivered.get(k, 0) + 1
    result("after", a_session_present=a_present, a_pubcomp=a_comp, b_pubrec=b_rec,
           b_pubcomp=b_comp, stored=log_counts(args.bootstrap, f"{tag}/"), delivered=delivered)


def main():
    p = mqtt_parser(__doc__)
    p.add_argument("--phase", choices=["before", "after"], required=True)
    p.add_argument("--tag", required=True)
    args = p.parse_args()
    (before if args.phase == "before" else after)(args, args.tag)


run(main)
