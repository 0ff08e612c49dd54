"""confluent-kafka AdminClient against one node of a cluster: list_topics (brokers, leaders,
replicas, ISRs of a topic), elect_leaders(PREFERRED) for a partition whose preferred replica leads
and for one that does not exist, and create_topics with a replication factor above the brokers.
Prints one line `RESULT <json>` with what it saw; the Rust test asserts on it."""

import json

from confluent_kafka import ElectionType, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from rilltest import parser, run


def main():
    p = parser(__doc__)
    p.add_argument("--topic", required=True)
    args = p.parse_args()
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    md = admin.list_topics(timeout=15)
    t = md.topics[args.topic]
    partitions = {
        str(i): {"leader": v.leader, "replicas": v.replicas, "isrs": v.isrs,
                 "error": v.error.name() if v.error else None}
        for i, v in t.partitions.items()
    }
    elected = admin.elect_leaders(
        ElectionType.PREFERRED,
        [TopicPartition(args.topic, 0), TopicPartition(args.topic, 99)],
    ).result(timeout=20)
    elections = {f"{tp.topic}-{tp.partition}": (e.name() if e else None) for tp, e in elected.items()}
    [(_, f)] = admin.create_topics(
        [NewTopic(args.topic + "-rf4", num_partitions=1, replication_factor=4)],
        request_timeout=15,
    ).items()
    try:
        f.result(20)
        rf4 = None
    except KafkaException as e:
        rf4 = e.args[0].name()
    print("RESULT " + json.dumps({
        "brokers": sorted(md.brokers),
        "controller_id": md.controller_id,
        "partitions": partitions,
        "elections": elections,
        "rf4": rf4,
    }), flush=True)


if __name__ == "__main__":
    run(main)
