"""Consume a topic from the beginning (confluent-kafka, assign()) and check that every record listed
in the JSON file written by crash_produce.py is there, at its acknowledged offset, unchanged."""

import base64
import json
import time

from confluent_kafka import Consumer, KafkaError, TopicPartition

from rilltest import check, check_eq, parser, run


def main():
    p = parser(__doc__)
    p.add_argument("--topic", required=True)
    p.add_argument("--acked", required=True)
    p.add_argument("--report-missing", action="store_true",
                   help="print how many acknowledged records are missing instead of failing "
                        "(the control run of a test that breaks durability on purpose)")
    args = p.parse_args()
    with open(args.acked) as f:
        acked = json.load(f)
    want = {}
    for r in acked:
        want[(r["partition"], r["offset"])] = r
    partitions = sorted({r["partition"] for r in acked} | {0, 1, 2})
    consumer = Consumer({"bootstrap.servers": args.bootstrap, "group.id": "rill-tests-assign-only",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    consumer.assign([TopicPartition(args.topic, p, 0) for p in partitions])
    highest = {p: max([o for (pp, o) in want if pp == p], default=-1) for p in partitions}
    seen = {}
    eof = set()
    deadline = time.monotonic() + 60
    while len(eof) < len(partitions):
        check(time.monotonic() < deadline, f"consume timed out: {len(seen)} of {len(want)} acked records seen")
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                # Done with a partition once we are past its highest acknowledged offset.
                if msg.offset() > highest[msg.partition()] or args.report_missing:
                    eof.add(msg.partition())
                continue
            check(False, f"consumer error: {msg.error()}")
        seen[(msg.partition(), msg.offset())] = msg
    consumer.close()
    missing = [k for k in want if k not in seen]
    if args.report_missing:
        print(f"missing {len(missing)} of {len(want)}", flush=True)
        return
    check(not missing, f"{len(missing)} of {len(want)} acknowledged records are missing after the crash, e.g. {sorted(missing)[:5]}")
    for k, r in want.items():
        m = seen[k]
        check_eq(m.key(), base64.b64decode(r["key"]), f"key at {k}")
        check_eq(m.value(), base64.b64decode(r["value"]), f"value at {k}")
        check_eq([[hk, base64.b64encode(hv).decode()] for hk, hv in (m.headers() or [])], r["headers"], f"headers at {k}")
    per = {p: sorted(o for (pp, o) in seen if pp == p) for p in partitions}
    for p, offs in per.items():
        check_eq(offs, list(range(len(offs))), f"offsets of partition {p} are dense from 0")
    print(f"all {len(want)} acknowledged records present", flush=True)


if __name__ == "__main__":
    run(main)
