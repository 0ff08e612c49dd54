#!/usr/bin/env python3
"""Bad input to the group APIs, on the wire (kafka-python's protocol classes, no client logic in
between): empty or too long group ids get INVALID_GROUP_ID, a session timeout outside the node's
range INVALID_SESSION_TIMEOUT, commits and heartbeats from an unknown member UNKNOWN_MEMBER_ID and
from a stale generation ILLEGAL_GENERATION; a member that stops heartbeating is evicted, after
which its commits are refused and commits from outside the group are accepted again."""

import time

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.client_async import KafkaClient
from kafka.protocol.commit import OffsetCommitRequest, OffsetFetchRequest
from kafka.protocol.admin import DescribeGroupsRequest
from kafka.protocol.group import HeartbeatRequest, JoinGroupRequest, SyncGroupRequest

import rilltest as rt

INVALID_GROUP_ID, UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION, INVALID_SESSION_TIMEOUT = 24, 25, 22, 26


def main():
    args = rt.parser(__doc__).parse_args()
    topic, group = rt.unique("err-t"), rt.unique("err-g")
    admin = KafkaAdminClient(bootstrap_servers=args.bootstrap)
    admin.create_topics([NewTopic(topic, 1, 1)])
    admin.close()

    client = KafkaClient(bootstrap_servers=args.bootstrap)
    rt.wait_for("a broker", lambda: client.poll(timeout_ms=100) is not None and client.least_loaded_node() is not None)
    node = client.least_loaded_node()
    rt.check(client.await_ready(node, timeout_ms=10000), "connected")

    def call(req):
        f = client.send(node, req)
        client.poll(future=f, timeout_ms=15000)
        rt.check(f.succeeded(), f"{type(req).__name__} failed: {f.exception}")
        return f.value

    def join(group_id, session_ms, member=""):
        return call(JoinGroupRequest[1](group_id, session_ms, session_ms, member, "consumer", [("range", b"")]))

    rt.check_eq(join("", 6000).error_code, INVALID_GROUP_ID, "JoinGroup with an empty group id")
    rt.check_eq(join("g" * 300, 6000).error_code, INVALID_GROUP_ID, "JoinGroup with a 300-byte group id")
    rt.check_eq(join(group, 10).error_code, INVALID_SESSION_TIMEOUT, "JoinGroup with a 10 ms session")

    joined = join(group, 1500)
    rt.check_eq(joined.error_code, 0, "JoinGroup")
    member, gen = joined.member_id, joined.generation_id
    rt.check_eq(joined.leader_id, member, "leader of a one-member group")
    synced = call(SyncGroupRequest[0](group, gen, member, [(member, b"assignment")]))
    rt.check_eq((synced.error_code, synced.member_assignment), (0, b"assignment"), "SyncGroup")

    def commit(generation, member_id, offset=5):
        resp = call(OffsetCommitRequest[2](group, generation, member_id, -1, [(topic, [(0, offset, "md")])]))
        return resp.topics[0][1][0][1]

    rt.check_eq(commit(gen, "nobody"), UNKNOWN_MEMBER_ID, "commit from an unknown member")
    rt.check_eq(commit(gen + 7, member), ILLEGAL_GENERATION, "commit from a stale generation")
    rt.check_eq(commit(-1, ""), UNKNOWN_MEMBER_ID, "commit from outside a non-empty group")
    rt.check_eq(commit(gen, member), 0, "commit from the member")
    rt.check_eq(call(HeartbeatRequest[0](group, gen, "nobody")).error_code, UNKNOWN_MEMBER_ID, "heartbeat of an unknown member")
    rt.check_eq(call(HeartbeatRequest[0](group, gen + 1, member)).error_code, ILLEGAL_GENERATION, "heartbeat with a wrong generation")
    rt.check_eq(call(HeartbeatRequest[0](group, gen, member)).error_code, 0, "heartbeat")

    # Silence: the member is evicted after its 1.5 s session (watched with DescribeGroups, which,
    # unlike a commit, does not count as a heartbeat).
    started = time.monotonic()

    def state():
        g = call(DescribeGroupsRequest[0]([group])).groups[0]
        return g[2], len(g[5])

    rt.wait_for("the silent member evicted", lambda: state() == ("Empty", 0), timeout=20, interval=0.2)
    print(f"evicted after {time.monotonic() - started:.1f}s")
    rt.check_eq(commit(gen, member), UNKNOWN_MEMBER_ID, "commit from the evicted member")
    rt.check_eq(call(HeartbeatRequest[0](group, gen, member)).error_code, UNKNOWN_MEMBER_ID, "heartbeat after eviction")
    rt.check_eq(commit(-1, "", offset=9), 0, "admin commit to the now empty group")
    fetched = call(OffsetFetchRequest[1](group, [(topic, [0])]))
    rt.check_eq(fetched.topics[0][1][0][1:3], (9, "md"), "fetched offset and metadata")
    client.close()

    # Deleting the topic drops its committed offsets.
    admin = KafkaAdminClient(bootstrap_servers=args.bootstrap)
    admin.delete_topics([topic])
    offsets = admin.list_consumer_group_offsets(group)
    rt.check(all(tp.topic != topic for tp in offsets), f"offsets of the deleted topic: {offsets}")
    admin.close()


if __name__ == "__main__":
    rt.run(main)
