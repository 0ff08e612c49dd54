"""MQTT 5 flow control and limits (§3.1.2.11, §3.2.2.3, §4.9) against a node with
receive_maximum = 4 and max_packet_size = 4096: the CONNACK announces them; a client exceeding
the Receive Maximum is disconnected with 0x93 and a reason string (PUBREL/PUBCOMP frees quota);
the client's Receive Maximum bounds unacknowledged deliveries; messages larger than the client's
Maximum Packet Size are skipped; too-large incoming packets get 0x95; outgoing topic aliases up
to the client's Topic Alias Maximum; a SUBACK failure carries a reason string. A well-behaved
client keeps publishing with acks throughout. Prints RESULT lines the Rust test checks."""

import mqtt_wire as w
from mqtt_util import V5, Device, mqtt_parser, read_log, result
from rilltest import check, check_eq, run, unique


def main():
    args = mqtt_parser(__doc__).parse_args()
    base = unique("lim")
    good_id = unique("good")
    good = Device(args.mqtt, good_id, protocol=V5)
    sent = [0]

    def good_publish():
        good.publish(f"devices/{good_id}/telemetry", f"ok{sent[0]}".encode(), qos=1)
        sent[0] += 1

    # CONNACK as paho sees it.
    probe = Device(args.mqtt, unique("probe"), protocol=V5, connect=False)
    _, _, cp = probe.connect()
    result("connack", receive_maximum=cp.ReceiveMaximum, maximum_packet_size=cp.MaximumPacketSize,
           topic_alias_maximum=cp.TopicAliasMaximum)
    probe.close()
    good_publish()

    # Receive Maximum exceeded: 4 QoS 2 publishes held (no PUBREL), PUBREL frees one, the 6th
    # unfinished one is one too many.
    c = w.Wire(args.mqtt)
    c.connect(unique("greedy"))
    for pkid in range(1, 5):
        c.send(w.publish(f"{base}/q2", f"m{pkid}".encode(), qos=2, pkid=pkid))
    pubrecs = [w.pkid_of(c.expect(w.PUBREC)[2]) for _ in range(4)]
    check_eq(pubrecs, [1, 2, 3, 4], "PUBREC packet ids")
    c.send(w.ack(w.PUBREL, 1))
    c.expect(w.PUBCOMP)
    c.send(w.publish(f"{base}/q2", b"m5", qos=2, pkid=5))
    c.expect(w.PUBREC)
    c.send(w.publish(f"{base}/q2", b"m6", qos=2, pkid=6))
    kind, _, body = c.read()
    check_eq(kind, w.DISCONNECT, "packet after the publish beyond Receive Maximum")
    code, text = w.parse_disconnect(body)
    check(c.read() is None, "connection still open after DISCONNECT")
    c.close()
    result("receive_maximum", pubrecs=len(pubrecs), disconnect=code, reason=text)
    good_publish()

    # The client's Receive Maximum: with 2, only 2 QoS 1 deliveries are unacknowledged at once.
    sub = w.Wire(args.mqtt)
    sub.connect(unique("slow"), properties=w.props((0x21, w.u16(2))))
    sub.send(w.subscribe(f"{base}/rm/#", qos=1))
    sub.expect(w.SUBACK)
    for i in range(5):
        good.publish(f"{base}/rm/x", f"r{i}".encode(), qos=1)
    got = []
    for _ in range(2):
        _, flags, body = sub.expect(w.PUBLISH)
        got.append(w.parse_publish(flags, body))
    first_window = len(got)
    sub.quiet(1.0)
    sub.send(w.ack(w.PUBACK, got[0][1]))
    _, flags, body = sub.expect(w.PUBLISH)
    got.append(w.parse_publish(flags, body))
    after_one_ack = len(got) - first_window
    sub.quiet(0.5)
    for g in got[1:]:
        sub.send(w.ack(w.PUBACK, g[1]))
    while len(got) < 5:
        _, flags, body = sub.expect(w.PUBLISH)
        got.append(w.parse_publish(flags, body))
        sub.send(w.ack(w.PUBACK, got[-1][1]))
    check_eq([g[3] for g in got], [f"r{i}".encode() for i in range(5)], "deliveries in order")
    sub.close()
    result("client_receive_maximum", first_window=first_window, after_one_ack=after_one_ack,
           total=len(got))

    # The client's Maximum Packet Size: a larger message is skipped, later ones still come.
    small = Device(args.mqtt, unique("small"), protocol=V5, connect_props={"MaximumPacketSize": 200})
    small.subscribe(f"{base}/mps/#", qos=1)
    good.publish(f"{base}/mps/big", b"B" * 500, qos=1)
    good.publish(f"{base}/mps/small", b"tiny", qos=1)
    m = small.expect()
    small.nothing(0.5)
    small.close()
    result("max_packet_size_out", first=m.payload.decode())

    # Incoming packets above our maximum: 0x95.
    c = w.Wire(args.mqtt)
    c.connect(unique("big"))
    c.send(w.publish(f"{base}/huge", b"H" * 5000, qos=1))
    kind, _, body = c.read()
    check_eq(kind, w.DISCONNECT, "reply to a packet above the maximum packet size")
    code, _ = w.parse_disconnect(body)
    c.close()
    result("max_packet_size_in", disconnect=code)
    good_publish()

    # Outgoing topic aliases with the client's Topic Alias Maximum of 2 (paho passes the alias
    # and the topic as sent; resolving them here checks what the server sent).
    al = Device(args.mqtt, unique("alias"), protocol=V5, connect_props={"TopicAliasMaximum": 2})
    al.subscribe(f"{base}/ta/#", qos=1)
    order = ["t1", "t2", "t1", "t3", "t1", "t3"]
    for i, t in enumerate(order):
        good.publish(f"{base}/ta/{t}", f"a{i}".encode(), qos=1)
    seen, mapping, resolved = [], {}, []
    for _ in order:
        m = al.expect()
        alias = getattr(m.properties, "TopicAlias", None)
        topic = m.topic
        if topic:
            if alias is not None:
                mapping[alias] = topic
        else:
            check(alias in mapping, f"alias {alias} used before it was set")
            topic = mapping[alias]
        seen.append(f"{m.topic.rsplit('/', 1)[-1] if m.topic else '-'}:{alias}")
        resolved.append((topic, m.payload))
    al.close()
    check_eq(resolved, [(f"{base}/ta/{t}", f"a{i}".encode()) for i, t in enumerate(order)],
             "messages under their topics")
    result("topic_aliases", sent=",".join(seen))

    # A SUBACK failure code with a reason string, none when Request Problem Information is 0
    # (§3.1.2.11.7). paho refuses to send an invalid filter, so these are hand-made.
    reasons = []
    for problem_info in (1, 0):
        c = w.Wire(args.mqtt)
        c.connect(unique("badsub"), properties=w.props((0x17, bytes([problem_info]))))
        c.send(w.subscribe("a/#/b", qos=1))
        _, _, body = c.expect(w.SUBACK)
        p, pos = w.read_props(body, 2)
        code = body[pos]
        rs = p.get(0x1F, [b""])[0].decode()
        reasons.append(rs)
        c.close()
    result("suback", code=code, reason=reasons[0], without_problem_info=reasons[1])

    good_publish()
    good.close()
    recs = read_log(args.bootstrap, "telemetry", sent[0])
    check_eq([r.value() for r in recs], [f"ok{i}".encode() for i in range(sent[0])],
             "the good client's messages")
    result("good_client", published=sent[0])


run(main)
