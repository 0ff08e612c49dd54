"""Kafka ACLs on a node with the authorizer on (SASL/SCRAM listener), with real clients.

Users (SCRAM-SHA-512, all with password --password): admin (a super user), alice, bob.

Phases:
- admin-confluent: confluent-kafka AdminClient create_acls / describe_acls (ANY, MATCH and
  PREFIXED filters) / delete_acls as admin; a non-super user's describe_acls shows nothing.
- admin-kafka-python: kafka-python KafkaAdminClient create_acls / describe_acls / delete_acls;
  a malformed binding is refused alone with INVALID_REQUEST; alice's describe_acls is refused
  with CLUSTER_AUTHORIZATION_FAILED.
- scenario: alice with PREFIXED WRITE on `sensors.` produces there with an idempotent producer
  (KIP-679: WRITE is enough for InitProducerId) and is refused elsewhere; a DENY beats her ALLOW;
  her metadata lists only the topics she may describe; her consumer without GROUP READ cannot
  join, with it consumes; a producer of bob's that was refused starts delivering once an ACL is
  added, without reconnecting; admin (super user) produces, consumes with a group, reads configs
  and deletes a topic without any ACL.
"""

import time

import rilltest
from rilltest import check, check_eq


def conf(a, user):
    return {
        "bootstrap.servers": a.bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": user,
        "sasl.password": a.password,
    }


def admin_client(a, user="admin"):
    from confluent_kafka.admin import AdminClient

    return AdminClient(conf(a, user))


def binding(rtype, name, ptype, principal, op, perm):
    from confluent_kafka.admin import AclBinding

    return AclBinding(rtype, name, ptype, principal, "*", op, perm)


def wait_all(futures, what):
    out = {}
    for k, f in futures.items():
        out[k] = f.result(timeout=30)
    print(f"{what}: ok", flush=True)
    return out


def admin_confluent(a):
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import (AclBindingFilter, AclOperation, AclPermissionType,
                                       ResourcePatternType, ResourceType)

    adm = admin_client(a)
    acls = [
        binding(ResourceType.TOPIC, "sensors.", ResourcePatternType.PREFIXED, "User:alice",
                AclOperation.WRITE, AclPermissionType.ALLOW),
        binding(ResourceType.TOPIC, "sensors.t1", ResourcePatternType.LITERAL, "User:alice",
                AclOperation.READ, AclPermissionType.ALLOW),
        binding(ResourceType.GROUP, "g1", ResourcePatternType.LITERAL, "User:bob",
                AclOperation.READ, AclPermissionType.ALLOW),
        binding(ResourceType.TOPIC, "*", ResourcePatternType.LITERAL, "User:bob",
                AclOperation.DESCRIBE, AclPermissionType.DENY),
    ]
    wait_all(adm.create_acls(acls), "create_acls")
    everything = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                                  AclOperation.ANY, AclPermissionType.ANY)
    got = adm.describe_acls(everything).result(timeout=30)
    check_eq(sorted(map(str, got)), sorted(map(str, acls)), "describe_acls(ANY)")
    match = AclBindingFilter(ResourceType.TOPIC, "sensors.t1", ResourcePatternType.MATCH, None,
                             None, AclOperation.ANY, AclPermissionType.ANY)
    got = adm.describe_acls(match).result(timeout=30)
    check_eq(len(got), 3, f"describe_acls(MATCH sensors.t1) {got}")
    prefixed = AclBindingFilter(ResourceType.TOPIC, "sensors.", ResourcePatternType.PREFIXED, None,
                                None, AclOperation.ANY, AclPermissionType.ANY)
    got = adm.describe_acls(prefixed).result(timeout=30)
    check_eq([str(b) for b in got], [str(acls[0])], "describe_acls(PREFIXED sensors.)")
    print("describe_acls: ANY, MATCH and PREFIXED filters", flush=True)

    # A user without DESCRIBE on the cluster learns nothing (the broker answers
    # CLUSTER_AUTHORIZATION_FAILED, which librdkafka 2.x reports as an empty list; kafka-python's
    # phase checks the error itself).
    alice = admin_client(a, "alice")
    check_eq(alice.describe_acls(everything).result(timeout=30), [], "alice's describe_acls")
    print("describe_acls shows alice nothing", flush=True)

    bob = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, "User:bob", None,
                           AclOperation.ANY, AclPermissionType.ANY)
    deleted = adm.delete_acls([bob])[bob].result(timeout=30)
    check_eq(sorted(map(str, deleted)), sorted(map(str, acls[2:])), "delete_acls(User:bob)")
    got = adm.describe_acls(everything).result(timeout=30)
    check_eq(sorted(map(str, got)), sorted(map(str, acls[:2])), "after delete_acls")
    adm.delete_acls([everything])[everything].result(timeout=30)
    check_eq(adm.describe_acls(everything).result(timeout=30), [], "after deleting all")
    print("delete_acls: removed what the filters matched", flush=True)


def admin_kafka_python(a):
    from kafka.admin import (ACL, ACLFilter, ACLOperation, ACLPermissionType,
                             ACLResourcePatternType, KafkaAdminClient, ResourcePattern,
                             ResourcePatternFilter, ResourceType)

    adm = KafkaAdminClient(bootstrap_servers=a.bootstrap, security_protocol="SASL_PLAINTEXT",
                           sasl_mechanism="SCRAM-SHA-512", sasl_plain_username="admin",
                           sasl_plain_password=a.password)
    acl = ACL(principal="User:carol", host="*", operation=ACLOperation.WRITE,
              permission_type=ACLPermissionType.ALLOW,
              resource_pattern=ResourcePattern(ResourceType.TOPIC, "carol.",
                                               ACLResourcePatternType.PREFIXED))
    bad = ACL(principal="carol-without-type", host="*", operation=ACLOperation.READ,
              permission_type=ACLPermissionType.ALLOW,
              resource_pattern=ResourcePattern(ResourceType.TOPIC, "t",
                                               ACLResourcePatternType.LITERAL))
    result = adm.create_acls([acl, bad])
    check_eq(len(result["succeeded"]), 1, f"create_acls succeeded {result}")
    check_eq(len(result["failed"]), 1, f"create_acls failed {result}")
    # kafka-python 3 lists the error class of each failed binding (2.x listed (acl, error)).
    failed = result["failed"][0]
    error = failed[1] if isinstance(failed, tuple) else failed
    check_eq(error.__name__, "InvalidRequestError", "bad principal error")
    flt = ACLFilter(principal="User:carol", host=None, operation=ACLOperation.ANY,
                    permission_type=ACLPermissionType.ANY,
                    resource_pattern=ResourcePatternFilter(ResourceType.ANY, None,
                                                           ACLResourcePatternType.ANY))
    found, error = adm.describe_acls(flt)
    check_eq(error.__name__, "NoError", "describe_acls error")
    check_eq(len(found), 1, f"describe_acls {found}")
    check_eq(found[0].resource_pattern.resource_name, "carol.", "described resource")
    check_eq(found[0].resource_pattern.pattern_type, ACLResourcePatternType.PREFIXED, "pattern")
    check_eq(found[0].operation, ACLOperation.WRITE, "operation")
    deleted = adm.delete_acls([flt])
    check_eq(len(deleted), 1, "one filter result")
    _, matching, ferr = deleted[0]
    check_eq(ferr.__name__, "NoError", "delete_acls error")
    check_eq(len(matching), 1, f"delete_acls matched {matching}")
    found, _ = adm.describe_acls(flt)
    check_eq(found, [], "after delete_acls")
    # DescribeLogDirs needs DESCRIBE on the cluster: the super user gets the node's directory.
    [dirs] = adm.describe_log_dirs()
    check_eq((len(dirs["log_dirs"]), dirs["log_dirs"][0]["error_code"]), (1, 0), "admin's describe_log_dirs")
    adm.close()
    alice = KafkaAdminClient(bootstrap_servers=a.bootstrap, security_protocol="SASL_PLAINTEXT",
                             sasl_mechanism="SCRAM-SHA-512", sasl_plain_username="alice",
                             sasl_plain_password=a.password)
    try:
        alice.describe_acls(flt)
        check(False, "alice's describe_acls succeeded")
    except Exception as e:  # noqa: BLE001 - the error class is what is checked
        check_eq(type(e).__name__, "ClusterAuthorizationFailedError", f"alice: {e!r}")
    # Without DESCRIBE on the cluster the answer lists no directory (CLUSTER_AUTHORIZATION_FAILED
    # at the top, which kafka-python 3 does not raise).
    [dirs] = alice.describe_log_dirs()
    check_eq(dirs["log_dirs"], [], "alice's describe_log_dirs")
    alice.close()
    print("kafka-python: create/describe/delete ACLs, describe_log_dirs; alice refused", flush=True)


def produce(a, user, topic, value, idempotent=False, producer=None):
    """Produce one record; the delivery error (a KafkaError) or None."""
    from confluent_kafka import Producer

    p = producer
    if p is None:
        c = conf(a, user)
        c.update({"enable.idempotence": idempotent, "message.timeout.ms": 10000,
                  "topic.metadata.refresh.interval.ms": 500})
        p = Producer(c)
    from confluent_kafka import KafkaException

    result = []
    try:
        p.produce(topic, value=value.encode(), on_delivery=lambda err, _m: result.append(err))
    except KafkaException as e:
        # librdkafka refuses at once for a topic its metadata already marks unauthorized.
        return e.args[0]
    p.flush(30)
    check_eq(len(result), 1, f"{user} -> {topic}: delivery reports")
    return result[0]


def consume(a, user, topic, group, count, timeout=30.0):
    """(values, first error) of a group consumer of `topic` reading from the start."""
    from confluent_kafka import Consumer

    c = conf(a, user)
    c.update({"group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False,
              "fetch.wait.max.ms": 100})
    cons = Consumer(c)
    cons.subscribe([topic])
    got, error = [], None
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline and error is None:
        m = cons.poll(0.2)
        if m is None:
            continue
        if m.error() is not None:
            error = m.error()
        else:
            got.append(m.value().decode())
    if error is None and got:
        cons.commit(asynchronous=False)
    cons.close()
    return got, error


def scenario(a):
    from confluent_kafka import KafkaError
    from confluent_kafka.admin import (AclOperation, AclPermissionType, ConfigResource,
                                       NewTopic, ResourcePatternType, ResourceType)

    adm = admin_client(a)
    topics = ["sensors.t1", "sensors.locked", "other.t1", "open.t1"]
    wait_all(adm.create_topics([NewTopic(t, 1, 1) for t in topics]), "admin creates topics")
    ALLOW, DENY = AclPermissionType.ALLOW, AclPermissionType.DENY
    wait_all(adm.create_acls([
        binding(ResourceType.TOPIC, "sensors.", ResourcePatternType.PREFIXED, "User:alice",
                AclOperation.WRITE, ALLOW),
        binding(ResourceType.TOPIC, "sensors.t1", ResourcePatternType.LITERAL, "User:alice",
                AclOperation.READ, ALLOW),
        binding(ResourceType.TOPIC, "sensors.locked", ResourcePatternType.LITERAL, "User:alice",
                AclOperation.WRITE, DENY),
        binding(ResourceType.GROUP, "alice-ok", ResourcePatternType.LITERAL, "User:alice",
                AclOperation.READ, ALLOW),
    ]), "admin adds alice's ACLs")

    err = produce(a, "alice", "sensors.t1", "from-alice", idempotent=True)
    check(err is None, f"alice's idempotent produce to sensors.t1: {err}")
    print("alice produces to sensors.t1 (idempotent, WRITE only)", flush=True)
    err = produce(a, "alice", "other.t1", "nope")
    check(err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED,
          f"alice -> other.t1: {err}")
    print("alice refused on other.t1: TOPIC_AUTHORIZATION_FAILED", flush=True)
    err = produce(a, "alice", "sensors.locked", "nope")
    check(err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED,
          f"alice -> sensors.locked: {err}")
    print("DENY beats ALLOW: alice refused on sensors.locked", flush=True)

    alice = admin_client(a, "alice")
    visible = set(alice.list_topics(timeout=30).topics)
    check_eq(visible, {"sensors.t1", "sensors.locked"}, "topics alice's metadata lists")
    print("metadata hides the topics alice may not describe", flush=True)

    got, error = consume(a, "alice", "sensors.t1", "alice-no-acl", 1, timeout=15)
    check(error is not None and error.code() == KafkaError.GROUP_AUTHORIZATION_FAILED,
          f"alice without GROUP READ: {got} {error}")
    print("alice's consumer without GROUP READ cannot join", flush=True)
    got, error = consume(a, "alice", "sensors.t1", "alice-ok", 1)
    check(error is None and got == ["from-alice"], f"alice with GROUP READ: {got} {error}")
    print("alice's consumer with GROUP READ consumes", flush=True)

    from confluent_kafka import Producer
    c = conf(a, "bob")
    c.update({"message.timeout.ms": 3000, "topic.metadata.refresh.interval.ms": 500})
    bob = Producer(c)
    err = produce(a, "bob", "open.t1", "before", producer=bob)
    check(err is not None, "bob's produce before any ACL was delivered")
    wait_all(adm.create_acls([binding(ResourceType.TOPIC, "open.t1", ResourcePatternType.LITERAL,
                                      "User:bob", AclOperation.WRITE, ALLOW)]),
             "admin allows bob to write open.t1")
    deadline = time.monotonic() + 30
    while True:
        err = produce(a, "bob", "open.t1", "after", producer=bob)
        if err is None:
            break
        check(time.monotonic() < deadline, f"bob still refused after the ACL: {err}")
    print("bob's open producer delivers once the ACL exists", flush=True)

    err = produce(a, "admin", "other.t1", "from-admin")
    check(err is None, f"admin produce: {err}")
    got, error = consume(a, "admin", "other.t1", "admin-group", 1)
    check(error is None and got == ["from-admin"], f"admin consume: {got} {error}")
    res = ConfigResource(ConfigResource.Type.TOPIC, "other.t1")
    configs = adm.describe_configs([res])[res].result(timeout=30)
    check("retention.ms" in configs, "admin describe_configs")
    wait_all(adm.delete_topics(["other.t1"]), "admin deletes other.t1")
    print("the super user does everything without ACLs", flush=True)


def main():
    ap = rilltest.parser(__doc__)
    ap.add_argument("--phase", required=True,
                    choices=["admin-confluent", "admin-kafka-python", "scenario"])
    ap.add_argument("--password", required=True)
    a = ap.parse_args()
    {"admin-confluent": admin_confluent, "admin-kafka-python": admin_kafka_python,
     "scenario": scenario}[a.phase](a)


if __name__ == "__main__":
    rilltest.run(main)
