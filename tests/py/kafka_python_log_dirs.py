"""kafka-python >= 3.0 KafkaAdminClient.describe_log_dirs (DescribeLogDirs v1+): produce to two of
three partitions, then check the node's one log directory lists every partition with sizes that
grow with what was written, and that a partition filter is honoured. Prints the sizes as one
`SIZES {json}` line for the Rust test to compare with the files on disk."""

import json

from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from rilltest import check, check_eq, parser, run, unique, wait_for


def partition_sizes(result, topic):
    check_eq(len(result), 1, "brokers answering")
    dirs = result[0]["log_dirs"]
    check_eq(len(dirs), 1, "log directories of a node")
    check_eq(dirs[0]["error_code"], 0, "log dir error")
    check(dirs[0]["log_dir"].startswith("/"), f"log dir {dirs[0]['log_dir']!r} is not absolute")
    for t in dirs[0]["topics"]:
        if t["name"] == topic:
            return dirs[0], {p["partition_index"]: p["partition_size"] for p in t["partitions"]}
    return dirs[0], {}


def main():
    p = parser(__doc__)
    args = p.parse_args()
    admin = KafkaAdminClient(bootstrap_servers=args.bootstrap)
    topic = unique("kp-logdirs")
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    wait_for("topic listed", lambda: topic in admin.list_topics())
    producer = KafkaProducer(bootstrap_servers=args.bootstrap, acks="all")
    for i in range(200):
        producer.send(topic, value=b"v" * 500 + str(i).encode(), partition=0)
    for i in range(20):
        producer.send(topic, value=b"w" * 500 + str(i).encode(), partition=1)
    producer.flush()
    producer.close()

    log_dir, sizes = partition_sizes(admin.describe_log_dirs(), topic)
    check_eq(sorted(sizes), [0, 1, 2], "partitions listed")
    check(sizes[0] > sizes[1] > sizes[2] >= 0, f"sizes do not follow the bytes written: {sizes}")
    check(sizes[0] > 200 * 500, f"partition 0 holds 100 kB of values but reports {sizes[0]} bytes")
    check(log_dir["total_bytes"] > 0 and 0 <= log_dir["usable_bytes"] <= log_dir["total_bytes"],
          f"volume sizes {log_dir['total_bytes']} / {log_dir['usable_bytes']}")

    _, only = partition_sizes(admin.describe_log_dirs({topic: [1]}), topic)
    check_eq(only, {1: sizes[1]}, "sizes with a partition filter")
    admin.close()
    print("SIZES " + json.dumps({"topic": topic, "log_dir": log_dir["log_dir"],
                                 "sizes": {str(k): v for k, v in sizes.items()}}), flush=True)


if __name__ == "__main__":
    run(main)
