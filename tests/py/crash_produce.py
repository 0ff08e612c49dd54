"""Produce records with acks=all (confluent-kafka) and write every acknowledged record to a JSON
file, so a test can SIGKILL the node right after and check that all of them survive."""

import base64
import json
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from rilltest import check, parser, run


def main():
    p = parser(__doc__)
    p.add_argument("--topic", required=True)
    p.add_argument("--count", type=int, default=2000)
    p.add_argument("--marker", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--compression", default="none")
    p.add_argument("--until-dead", action="store_true",
                   help="the node dies while producing (a failpoint): one record in flight at a "
                        "time; record what was acknowledged before, do not require every record")
    p.add_argument("--partitions", type=int, default=3)
    args = p.parse_args()
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    admin.create_topics([NewTopic(args.topic, num_partitions=args.partitions, replication_factor=1)])[args.topic].result(15)
    producer = Producer({"bootstrap.servers": args.bootstrap, "acks": "all", "linger.ms": 2,
                         "compression.type": args.compression, "enable.idempotence": False})
    acked = []
    failed = []

    def on_delivery_of(headers):
        # Delivery reports do not carry headers: remember the ones sent.
        def on_delivery(err, msg):
            if err is not None:
                failed.append(str(err))
            else:
                acked.append({"partition": msg.partition(), "offset": msg.offset(),
                              "key": base64.b64encode(msg.key()).decode(),
                              "value": base64.b64encode(msg.value()).decode(),
                              "headers": [[k, base64.b64encode(v).decode()] for k, v in headers]})
        return on_delivery

    now = int(time.time() * 1000)
    if args.until_dead:
        # Writes whose outcome is unknown when the node dies are indeterminate, never failures.
        for i in range(args.count):
            headers = [("h", f"{args.marker}-h{i}".encode())]
            producer.produce(args.topic, key=f"{args.marker}-k{i}".encode(),
                             value=f"{args.marker}-payload-{i}-".encode() * 3,
                             headers=headers, timestamp=now, on_delivery=on_delivery_of(headers))
            if producer.flush(3) != 0 or failed:
                break
        with open(args.out, "w") as f:
            json.dump(acked, f)
        print(f"acked {len(acked)} before the node died", flush=True)
        return
    for i in range(args.count):
        headers = [("h", f"{args.marker}-h{i}".encode())]
        producer.produce(args.topic, key=f"{args.marker}-k{i}".encode(),
                         value=f"{args.marker}-payload-{i}-".encode() * 3,
                         headers=headers, timestamp=now, on_delivery=on_delivery_of(headers))
        producer.poll(0)
    check(producer.flush(60) == 0, "records left in the producer queue after flush")
    check(not failed, f"{len(failed)} deliveries failed, first: {failed[:1]}")
    check(len(acked) == args.count, f"{len(acked)} of {args.count} records acknowledged")
    with open(args.out, "w") as f:
        json.dump(acked, f)
    print(f"acked {len(acked)}", flush=True)


if __name__ == "__main__":
    run(main)
