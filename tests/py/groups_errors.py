#!/usr/bin/env python3
"""Bad input to the group APIs, on the wire (kafka-python's protocol classes, no client logic in
between; kafka-python 3's generated message classes): empty or too long group ids get INVALID_GROUP_ID, a session timeout outside the node's
range INVALID_SESSION_TIMEOUT, commits and heartbeats from an unknown member UNKNOWN_MEMBER_ID and
from a stale generation ILLEGAL_GENERATION; a member that stops heartbeating is evicted, after
which its commits are refused and commits from outside the group are accepted again."""

import time

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.protocol.admin.groups import DescribeGroupsRequest
from kafka.protocol.consumer.group import (
    HeartbeatRequest,
    JoinGroupRequest,
    OffsetCommitRequest,
    OffsetFetchRequest,
    SyncGroupRequest,
)

import rilltest as rt

INVALID_GROUP_ID, UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION, INVALID_SESSION_TIMEOUT = 24, 25, 22, 26


def main():
    args = rt.parser(__doc__).parse_args()
    topic, group = rt.unique("err-t"), rt.unique("err-g")
    admin = KafkaAdminClient(bootstrap_servers=args.bootstrap)
    admin.create_topics([NewTopic(topic, 1, 1)])

    # Requests go out as built (explicit versions), through the admin client's connection.
    manager = admin._manager  # noqa: SLF001 - kafka-python 3 has no public raw-request call

    async def send(req):
        return await manager.send(req)

    def call(req):
        return manager.run(send, req)

    def join(group_id, session_ms, member=""):
        return call(JoinGroupRequest[1](
            group_id=group_id, session_timeout_ms=session_ms, rebalance_timeout_ms=session_ms,
            member_id=member, protocol_type="consumer",
            protocols=[JoinGroupRequest.JoinGroupRequestProtocol(name="range", metadata=b"")]))

    rt.check_eq(join("", 6000).error_code, INVALID_GROUP_ID, "JoinGroup with an empty group id")
    rt.check_eq(join("g" * 300, 6000).error_code, INVALID_GROUP_ID, "JoinGroup with a 300-byte group id")
    rt.check_eq(join(group, 10).error_code, INVALID_SESSION_TIMEOUT, "JoinGroup with a 10 ms session")

    joined = join(group, 1500)
    rt.check_eq(joined.error_code, 0, "JoinGroup")
    member, gen = joined.member_id, joined.generation_id
    rt.check_eq(joined.leader, member, "leader of a one-member group")
    synced = call(SyncGroupRequest[0](
        group_id=group, generation_id=gen, member_id=member,
        assignments=[SyncGroupRequest.SyncGroupRequestAssignment(member_id=member, assignment=b"assignment")]))
    rt.check_eq((synced.error_code, bytes(synced.assignment)), (0, b"assignment"), "SyncGroup")

    def commit(generation, member_id, offset=5):
        T = OffsetCommitRequest.OffsetCommitRequestTopic
        P = T.OffsetCommitRequestPartition
        resp = call(OffsetCommitRequest[2](
            group_id=group, generation_id_or_member_epoch=generation, member_id=member_id,
            retention_time_ms=-1,
            topics=[T(name=topic, partitions=[P(partition_index=0, committed_offset=offset, committed_metadata="md")])]))
        return resp.topics[0].partitions[0].error_code

    def heartbeat(generation, member_id):
        return call(HeartbeatRequest[0](group_id=group, generation_id=generation, member_id=member_id)).error_code

    rt.check_eq(commit(gen, "nobody"), UNKNOWN_MEMBER_ID, "commit from an unknown member")
    rt.check_eq(commit(gen + 7, member), ILLEGAL_GENERATION, "commit from a stale generation")
    rt.check_eq(commit(-1, ""), UNKNOWN_MEMBER_ID, "commit from outside a non-empty group")
    rt.check_eq(commit(gen, member), 0, "commit from the member")
    rt.check_eq(heartbeat(gen, "nobody"), UNKNOWN_MEMBER_ID, "heartbeat of an unknown member")
    rt.check_eq(heartbeat(gen + 1, member), ILLEGAL_GENERATION, "heartbeat with a wrong generation")
    rt.check_eq(heartbeat(gen, member), 0, "heartbeat")

    # Silence: the member is evicted after its 1.5 s session (watched with DescribeGroups, which,
    # unlike a commit, does not count as a heartbeat).
    started = time.monotonic()

    def state():
        g = call(DescribeGroupsRequest[0](groups=[group])).groups[0]
        return g.group_state, len(g.members)

    rt.wait_for("the silent member evicted", lambda: state() == ("Empty", 0), timeout=20, interval=0.2)
    print(f"evicted after {time.monotonic() - started:.1f}s")
    rt.check_eq(commit(gen, member), UNKNOWN_MEMBER_ID, "commit from the evicted member")
    rt.check_eq(heartbeat(gen, member), UNKNOWN_MEMBER_ID, "heartbeat after eviction")
    rt.check_eq(commit(-1, "", offset=9), 0, "admin commit to the now empty group")
    fetched = call(OffsetFetchRequest[1](
        group_id=group, topics=[OffsetFetchRequest.OffsetFetchRequestTopic(name=topic, partition_indexes=[0])]))
    p = fetched.topics[0].partitions[0]
    rt.check_eq((p.committed_offset, p.metadata), (9, "md"), "fetched offset and metadata")

    # Deleting the topic drops its committed offsets.
    admin.delete_topics([topic])
    offsets = admin.list_group_offsets(group)[group]
    rt.check(all(tp.topic != topic for tp in offsets), f"offsets of the deleted topic: {offsets}")
    admin.close()


if __name__ == "__main__":
    rt.run(main)
