#!/usr/bin/env python3
"""kafka-python's group consumer against a node: two KafkaConsumers share a topic in one group
with automatic commits, every record is consumed once the group is stable, a restarted consumer
resumes after the committed offsets; the admin client lists, describes and deletes the group
(refused with NON_EMPTY_GROUP while it has a member)."""

import threading

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import NonEmptyGroupError

import rilltest as rt

PARTITIONS = 4
RECORDS = 200


def main():
    args = rt.parser(__doc__).parse_args()
    topic, group = rt.unique("kp-grp"), rt.unique("kp-g")
    admin = KafkaAdminClient(bootstrap_servers=args.bootstrap)
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    producer = KafkaProducer(bootstrap_servers=args.bootstrap)
    for i in range(RECORDS):
        producer.send(topic, value=str(i).encode(), partition=i % PARTITIONS)
    producer.flush()

    seen, lock, stop = [], threading.Lock(), threading.Event()
    assignments = {}

    def run_consumer(name):
        c = KafkaConsumer(
            topic,
            bootstrap_servers=args.bootstrap,
            group_id=group,
            client_id=name,
            auto_offset_reset="earliest",
            enable_auto_commit=True,
            auto_commit_interval_ms=100,
            session_timeout_ms=6000,
            heartbeat_interval_ms=300,
        )
        while not stop.is_set():
            for _tp, records in c.poll(timeout_ms=100).items():
                with lock:
                    seen.extend((r.partition, r.offset) for r in records)
            assignments[name] = {tp.partition for tp in c.assignment()}
        c.close()  # commits and leaves

    threads = [threading.Thread(target=run_consumer, args=(f"kp-{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    try:
        rt.wait_for(
            "both consumers assigned",
            lambda: len(assignments) == 2
            and all(assignments.values())
            and set().union(*assignments.values()) == set(range(PARTITIONS))
            and not (assignments["kp-0"] & assignments["kp-1"]),
            timeout=60,
        )
        rt.wait_for("all records", lambda: len({*seen}) >= RECORDS, timeout=60)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    rt.check_eq(len({*seen}), RECORDS, "distinct records consumed")

    rt.wait_for(
        "group Empty",
        lambda: admin.describe_groups([group])[group]["group_state"] == "Empty",
        timeout=30,
    )
    offsets = admin.list_group_offsets(group)[group]
    rt.check_eq(
        {tp.partition: om.offset for tp, om in offsets.items() if tp.topic == topic},
        {p: RECORDS // PARTITIONS for p in range(PARTITIONS)},
        "auto-committed offsets",
    )
    listed = {g["group_id"] for g in admin.list_groups()}
    rt.check(group in listed, f"{group} listed in {listed}")

    # A new consumer in the group starts after the committed offsets: nothing to read until more
    # records arrive.
    producer.send(topic, value=b"late", partition=0)
    producer.flush()
    c = KafkaConsumer(
        topic,
        bootstrap_servers=args.bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=6000,
    )
    late = []
    rt.wait_for(
        "the late record",
        lambda: late.extend(r for rs in c.poll(timeout_ms=200).values() for r in rs) or late,
        timeout=30,
    )
    rt.check_eq([(r.partition, r.offset, r.value) for r in late], [(0, RECORDS // PARTITIONS, b"late")], "records after restart")

    # While it is a member, the group cannot be deleted.
    rt.check_eq(admin.delete_groups([group]), {group: NonEmptyGroupError.__name__}, "delete of a non-empty group")
    rt.check(group in {g["group_id"] for g in admin.list_groups()}, "non-empty group survives delete")

    c.close(autocommit=False)
    rt.check_eq(admin.delete_groups([group]), {group: "OK"}, "delete of the empty group")
    rt.check(group not in {g["group_id"] for g in admin.list_groups()}, "deleted group is gone")
    rt.check_eq(admin.list_group_offsets(group)[group], {}, "offsets of the deleted group")
    admin.close()


if __name__ == "__main__":
    rt.run(main)
