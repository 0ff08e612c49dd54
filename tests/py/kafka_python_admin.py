"""kafka-python KafkaAdminClient: create (with configs), list, describe configs, alter configs
(AlterConfigs), add partitions and delete topics."""

from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewPartitions, NewTopic
from kafka.errors import TopicAlreadyExistsError, UnknownTopicOrPartitionError

from rilltest import check, check_eq, parser, run, unique, wait_for


def configs(admin, topic):
    """The topic's modified configs as {name: value} (kafka-python 3's describe_configs answers
    {resource_type: {name: {config: {data}}}})."""
    resp = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    check_eq(list(resp), ["topic"], "describe_configs resource types")
    check_eq(list(resp["topic"]), [topic], "describe_configs resource names")
    return {k: v["value"] for k, v in resp["topic"][topic].items()}


def main():
    args = parser(__doc__).parse_args()
    admin = KafkaAdminClient(bootstrap_servers=args.bootstrap)
    topic = unique("kp-admin")
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1,
                                  topic_configs={"retention.ms": "600000"})])
    check(topic in wait_for("topic listed", lambda: topic in admin.list_topics() and admin.list_topics()),
          f"{topic} not listed")
    try:
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
        check(False, "creating an existing topic succeeded")
    except TopicAlreadyExistsError:
        pass
    [desc] = admin.describe_topics([topic])
    check_eq(len(desc["partitions"]), 3, "partitions after create")
    check_eq(configs(admin, topic).get("retention.ms"), "600000", "retention.ms after create")

    # AlterConfigs (the non-incremental API) replaces the topic's overrides.
    resp = admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs={"retention.ms": "1200000"})],
                               incremental=False)
    check_eq(resp, {"topic": {topic: "OK"}}, "alter_configs result")
    check_eq(configs(admin, topic).get("retention.ms"), "1200000", "retention.ms after alter_configs")

    admin.create_partitions({topic: NewPartitions(total_count=4)})
    wait_for("4 partitions", lambda: len(admin.describe_topics([topic])[0]["partitions"]) == 4)

    admin.delete_topics([topic])
    wait_for("topic deleted", lambda: topic not in admin.list_topics())
    try:
        admin.delete_topics([topic])
        check(False, "deleting a missing topic succeeded")
    except UnknownTopicOrPartitionError:
        pass
    admin.close()


if __name__ == "__main__":
    run(main)
