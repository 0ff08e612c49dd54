"""confluent-kafka (librdkafka): produce COUNT records to one partition with a given client.id,
wait for every delivery report, print {"delivered": N} (the OTLP test checks the node's spans)."""

import json

from confluent_kafka import Producer

from rilltest import check_eq, parser, run


def main(args):
    producer = Producer({
        "bootstrap.servers": args.bootstrap,
        "client.id": args.client_id,
        "acks": "all",
        "linger.ms": 0,
    })
    delivered = []

    def on_delivery(err, msg):
        if err is None:
            delivered.append(msg.offset())

    for i in range(args.count):
        producer.produce(args.topic, value=f"v{i}".encode(), partition=args.partition,
                         on_delivery=on_delivery)
        producer.flush(10)
    check_eq(len(delivered), args.count, "delivered")
    print(json.dumps({"delivered": len(delivered)}))


if __name__ == "__main__":
    p = parser(__doc__)
    p.add_argument("--topic", required=True)
    p.add_argument("--partition", type=int, default=0)
    p.add_argument("--client-id", required=True)
    p.add_argument("--count", type=int, default=3)
    cli = p.parse_args()
    run(lambda: main(cli))
