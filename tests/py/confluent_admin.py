"""confluent-kafka AdminClient: create (with configs), list, describe configs, incrementally alter
configs (set and delete), add partitions and delete topics; errors carry Kafka's error codes."""

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   NewPartitions, NewTopic, ResourceType)

from rilltest import check, check_eq, parser, run, unique, wait_for


def topic_configs(admin, topic):
    res = ConfigResource(ResourceType.TOPIC, topic)
    [(r, f)] = admin.describe_configs([res], request_timeout=15).items()
    return {name: entry.value for name, entry in f.result(15).items()}


def partitions_of(admin, topic):
    md = admin.list_topics(topic=topic, timeout=10)
    t = md.topics.get(topic)
    if t is None or t.error is not None:
        return None
    return len(t.partitions)


def expect_error(what, fn, code):
    try:
        fn()
    except KafkaException as e:
        err = e.args[0]
        check_eq(err.code(), code, f"{what}: error code ({err})")
        return
    check(False, f"{what}: expected error {code}, got success")


def main():
    args = parser(__doc__).parse_args()
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    topic = unique("cf-admin")

    # Create with configs.
    fs = admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1,
                                       config={"retention.ms": "3600000", "cleanup.policy": "delete"})],
                             operation_timeout=15)
    fs[topic].result(15)
    print(f"created {topic}", flush=True)
    check_eq(wait_for("topic in metadata", lambda: partitions_of(admin, topic)), 2, "partitions after create")
    md = admin.list_topics(timeout=10)
    check(topic in md.topics, f"list_topics does not list {topic}: {sorted(md.topics)}")

    # Creating it again fails with TOPIC_ALREADY_EXISTS.
    expect_error("create existing topic",
                 lambda: admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(15),
                 KafkaError.TOPIC_ALREADY_EXISTS)

    # Describe configs: the overrides given at creation.
    cfg = topic_configs(admin, topic)
    check_eq(cfg.get("retention.ms"), "3600000", "retention.ms after create")
    check_eq(cfg.get("cleanup.policy"), "delete", "cleanup.policy after create")
    check("segment.bytes" in cfg, f"describe_configs lacks segment.bytes: {sorted(cfg)}")
    default_segment_bytes = cfg["segment.bytes"]
    print(f"described configs ({len(cfg)} entries)", flush=True)

    # Incremental alter: set one, set another, then delete the override again.
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("segment.bytes", "1048576", incremental_operation=AlterConfigOpType.SET),
    ])
    for f in admin.incremental_alter_configs([res]).values():
        f.result(15)
    cfg = topic_configs(admin, topic)
    check_eq(cfg.get("retention.ms"), "7200000", "retention.ms after incremental SET")
    check_eq(cfg.get("segment.bytes"), "1048576", "segment.bytes after incremental SET")
    check_eq(cfg.get("cleanup.policy"), "delete", "cleanup.policy untouched by incremental alter")
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("segment.bytes", None, incremental_operation=AlterConfigOpType.DELETE),
    ])
    for f in admin.incremental_alter_configs([res]).values():
        f.result(15)
    cfg = topic_configs(admin, topic)
    check_eq(cfg.get("segment.bytes"), default_segment_bytes, "segment.bytes after incremental DELETE (back to default)")
    check_eq(cfg.get("retention.ms"), "7200000", "retention.ms kept after deleting another override")
    print("altered configs", flush=True)

    # An invalid config value is refused.
    bad = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("cleanup.policy", "shred", incremental_operation=AlterConfigOpType.SET)])
    try:
        for f in admin.incremental_alter_configs([bad]).values():
            f.result(15)
        check(False, "setting cleanup.policy=shred succeeded")
    except KafkaException as e:
        check(e.args[0].code() in (KafkaError.INVALID_CONFIG, KafkaError.INVALID_REQUEST),
              f"cleanup.policy=shred: unexpected error {e.args[0]}")

    # Add partitions.
    admin.create_partitions([NewPartitions(topic, 5)])[topic].result(15)
    check_eq(wait_for("5 partitions", lambda: partitions_of(admin, topic) == 5 and 5), 5, "partitions after create_partitions")
    expect_error("shrink partitions",
                 lambda: admin.create_partitions([NewPartitions(topic, 3)])[topic].result(15),
                 KafkaError.INVALID_PARTITIONS)
    print("added partitions", flush=True)

    # Delete.
    admin.delete_topics([topic], operation_timeout=15)[topic].result(15)
    wait_for("topic gone from metadata", lambda: topic not in admin.list_topics(timeout=10).topics)
    expect_error("delete missing topic", lambda: admin.delete_topics([topic])[topic].result(15),
                 KafkaError.UNKNOWN_TOPIC_OR_PART)
    print("deleted", flush=True)


if __name__ == "__main__":
    run(main)
