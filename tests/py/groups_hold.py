#!/usr/bin/env python3
"""Join --group on --topic with one confluent-kafka consumer (classic or KIP-848 --protocol), consume and commit --count records,
print READY, then stay in the group until standard input closes (used by the CLI test to have a
live member)."""

import sys

from confluent_kafka import Consumer

import rilltest as rt


def main():
    p = rt.parser(__doc__)
    p.add_argument("--group", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--protocol", default="classic", choices=["classic", "consumer"])
    args = p.parse_args()
    conf = {
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group,
        "client.id": "holder",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    }
    if args.protocol == "consumer":
        conf["group.protocol"] = "consumer"
    else:
        conf["session.timeout.ms"] = 6000
    c = Consumer(conf)
    c.subscribe([args.topic])
    n = 0
    while n < args.count:
        m = c.poll(1.0)
        if m is None or m.error():
            continue
        c.commit(message=m, asynchronous=False)
        n += 1
    print("READY", flush=True)
    # Keep polling (heartbeats run in the background) until told to stop.
    import select

    while True:
        c.poll(0.1)
        r, _, _ = select.select([sys.stdin], [], [], 0)
        if r and not sys.stdin.readline():
            break
    c.close()


if __name__ == "__main__":
    rt.run(main)
