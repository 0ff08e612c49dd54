"""MQTT publishes on cluster nodes (issue 11, until publishes are forwarded to leaders): a QoS 1
MQTT 5 publish to the node that leads the target partition is stored and acknowledged (PUBACK 0);
the same publish to a node that only follows it is refused with PUBACK 0x97 and nothing is
appended there; over MQTT 3.1.1 the follower closes the connection without a PUBACK.
--leader and --follower are the nodes' MQTT addresses."""

import mqtt_wire as w
from rilltest import check, check_eq, parser, run, unique

PUBACK_BODY_REASON = 2  # packet id (2 bytes), then the reason code


def publish(addr, level, topic, payload):
    """PUBACK reason code of one QoS 1 publish, or None if the connection closed first."""
    c = w.Wire(addr)
    c.connect(unique("cluster-dev"), level=level)
    c.send(w.publish(topic, payload, qos=1, pkid=7, level=level))
    p = c.read()
    if p is None:
        return None
    check_eq(p[0], w.PUBACK, "packet type after PUBLISH")
    body = p[2]
    return body[PUBACK_BODY_REASON] if len(body) > PUBACK_BODY_REASON else 0


def main():
    p = parser(__doc__)
    p.add_argument("--leader", required=True)
    p.add_argument("--follower", required=True)
    p.add_argument("--topic", required=True, help="an MQTT topic mapped to the partition")
    args = p.parse_args()
    check_eq(publish(args.leader, 5, args.topic, b"to-leader"), 0, "PUBACK reason on the leader")
    check_eq(publish(args.follower, 5, args.topic, b"to-follower"), 0x97,
             "PUBACK reason on a follower")
    check(publish(args.follower, 4, args.topic, b"to-follower-311") is None,
          "a 3.1.1 publish on a follower must close the connection without a PUBACK")
    print("mqtt on cluster nodes: leader stores, follower refuses", flush=True)


if __name__ == "__main__":
    run(main)
