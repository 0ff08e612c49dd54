"""Persistent sessions served from durable cursors. Phases (the node may be restarted between):
  subscribe  - client (clean session off / MQTT 5 session expiry) subscribes at QoS 1, leaves
  publish    - --count QoS 1 downlink messages are published to its topic while it is away
  receive    - it reconnects, the session is present, and it gets exactly those messages
"""

from mqtt_util import V311, V5, Device, mqtt_parser
from rilltest import check, check_eq, run


def client(args, clean):
    proto = V5 if args.v5 else V311
    return Device(args.mqtt, args.client_id, protocol=proto, clean=clean,
                  session_expiry=3600 if args.v5 else None, connect=False)


def main():
    p = mqtt_parser(__doc__)
    p.add_argument("--phase", required=True, choices=["subscribe", "publish", "receive"])
    p.add_argument("--client-id", required=True)
    p.add_argument("--count", type=int, default=5)
    p.add_argument("--tag", default="m")
    p.add_argument("--v5", action="store_true")
    args = p.parse_args()
    topic = f"commands/{args.client_id}"
    if args.phase == "subscribe":
        c = client(args, clean=True)
        c.connect()
        c.close()
        c = client(args, clean=False)
        c.connect()
        c.subscribe(topic, qos=1)
        c.close()
        print(f"{args.client_id} subscribed to {topic} and left", flush=True)
    elif args.phase == "publish":
        pub = Device(args.mqtt, f"{args.client_id}-pub", protocol=V311)
        for i in range(args.count):
            pub.publish(topic, f"{args.tag}{i}".encode(), qos=1)
        pub.close()
        print(f"published {args.count} QoS 1 messages to {topic}", flush=True)
    else:
        c = client(args, clean=False)
        flags, rc, _ = c.connect()
        check(flags.session_present, "session not present after reconnect")
        got = [c.expect() for _ in range(args.count)]
        check_eq([m.payload for m in got], [f"{args.tag}{i}".encode() for i in range(args.count)], "queued messages")
        check(all(m.qos == 1 for m in got), "QoS 1")
        c.nothing(0.5)
        c.close()
        print(f"{args.client_id} got the {args.count} messages it missed", flush=True)


run(main)
