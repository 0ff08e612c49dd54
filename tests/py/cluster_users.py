"""SCRAM users of a cluster whose Kafka listener requires SASL, with confluent-kafka.

Every phase authenticates as --user/--password (SCRAM-SHA-512 unless --mechanism) against the one
node named by --bootstrap:
- alter: AlterUserScramCredentials through that node: --target gets SCRAM-SHA-256 and
  SCRAM-SHA-512 credentials for --target-password (or, with --delete, loses both).
- auth: wait (30 s) until a fresh client authenticates at that node and lists its topics.
- refused: wait (30 s) until a fresh client is refused there with an authentication error.
- describe: DescribeUserScramCredentials there; prints the users as JSON.
- create-topic: create --topic (3 partitions, replication factor 3).
- acl: CreateAcls there: ALLOW --acl-principal to DESCRIBE and READ the topic --topic (LITERAL);
  with --delete, DeleteAcls of every ACL on that topic instead.
- sees: wait (30 s) until the topic --topic is in the authenticated user's Metadata there (with
  --hidden: until it is not; the authorizer hides topics a principal may not DESCRIBE).
"""

import json
import time

import rilltest
from rilltest import check


def conf(a, user=None, password=None, mechanism=None, **extra):
    return {
        "bootstrap.servers": a.bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": mechanism or a.mechanism,
        "sasl.username": user or a.user,
        "sasl.password": password or a.password,
        **extra,
    }


def attempt(a):
    """One fresh client: True if it authenticated, False if it was refused, None otherwise."""
    from confluent_kafka import KafkaError
    from confluent_kafka.admin import AdminClient

    errors = []
    adm = AdminClient(conf(a, error_cb=errors.append))
    try:
        adm.list_topics(timeout=3)
        return True
    except Exception:  # noqa: BLE001 - classified below by the error callback
        pass
    finally:
        adm.poll(0)
    if any(e.code() == KafkaError._AUTHENTICATION for e in errors):
        return False
    return None


def wait_for(a, want):
    deadline = time.monotonic() + 30
    seen = []
    while True:
        got = attempt(a)
        seen.append(got)
        if got is want:
            return
        check(time.monotonic() < deadline,
              f"{a.user} at {a.bootstrap}: wanted authenticated={want}, got {seen[-5:]}")
        time.sleep(0.3)


def alter(a):
    from confluent_kafka.admin import (AdminClient, ScramCredentialInfo, ScramMechanism,
                                       UserScramCredentialDeletion, UserScramCredentialUpsertion)

    adm = AdminClient(conf(a))
    mechs = [ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512]
    if a.delete:
        ops = [UserScramCredentialDeletion(a.target, m) for m in mechs]
    else:
        password = a.target_password.encode()
        ops = [UserScramCredentialUpsertion(a.target, ScramCredentialInfo(m, 4096), password)
               for m in mechs]
    adm.alter_user_scram_credentials(ops)[a.target].result(30)
    print(f"alter: {a.target} {'deleted' if a.delete else 'set'} through {a.bootstrap}")


def describe(a):
    from confluent_kafka.admin import AdminClient

    adm = AdminClient(conf(a))
    users = adm.describe_user_scram_credentials().result(30)
    out = {u: sorted(str(i.mechanism) for i in d.scram_credential_infos)
           for u, d in users.items()}
    print(json.dumps(out, sort_keys=True))


def create_topic(a):
    from confluent_kafka.admin import AdminClient, NewTopic

    adm = AdminClient(conf(a))
    adm.create_topics([NewTopic(a.topic, 3, 3)])[a.topic].result(30)
    print(f"create-topic: {a.topic}")


def acl(a):
    from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation,
                                       AclPermissionType, AdminClient, ResourcePatternType,
                                       ResourceType)

    adm = AdminClient(conf(a))
    if a.delete:
        f = AclBindingFilter(ResourceType.TOPIC, a.topic, ResourcePatternType.LITERAL, None, None,
                             AclOperation.ANY, AclPermissionType.ANY)
        deleted = adm.delete_acls([f])[f].result(30)
        check(len(deleted) == 2, f"deleted {deleted}")
        print(f"acl: {len(deleted)} ACLs on {a.topic} deleted through {a.bootstrap}")
        return
    bindings = [AclBinding(ResourceType.TOPIC, a.topic, ResourcePatternType.LITERAL,
                           a.acl_principal, "*", op, AclPermissionType.ALLOW)
                for op in (AclOperation.DESCRIBE, AclOperation.READ)]
    for f in adm.create_acls(bindings).values():
        f.result(30)
    print(f"acl: {a.acl_principal} may describe {a.topic} (created through {a.bootstrap})")


def sees(a):
    from confluent_kafka.admin import AdminClient

    want = not a.hidden
    deadline = time.monotonic() + 30
    while True:
        adm = AdminClient(conf(a))
        try:
            visible = a.topic in adm.list_topics(timeout=5).topics
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            visible = f"error {e}"
        if visible is want:
            print(f"sees: {a.topic} {'visible' if want else 'hidden'} to {a.user} at {a.bootstrap}")
            return
        check(time.monotonic() < deadline,
              f"{a.topic} at {a.bootstrap} for {a.user}: wanted visible={want}, got {visible}")
        time.sleep(0.3)


def main():
    p = rilltest.parser(__doc__)
    p.add_argument("phase", choices=["alter", "auth", "refused", "describe", "create-topic",
                                     "acl", "sees"])
    p.add_argument("--topic")
    p.add_argument("--acl-principal")
    p.add_argument("--hidden", action="store_true")
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--mechanism", default="SCRAM-SHA-512")
    p.add_argument("--target")
    p.add_argument("--target-password")
    p.add_argument("--delete", action="store_true")
    a = p.parse_args()
    if a.phase == "alter":
        alter(a)
    elif a.phase == "auth":
        wait_for(a, True)
        print(f"auth: {a.user} authenticated at {a.bootstrap}")
    elif a.phase == "refused":
        wait_for(a, False)
        print(f"refused: {a.user} refused at {a.bootstrap}")
    elif a.phase == "describe":
        describe(a)
    else:
        {"create-topic": create_topic, "acl": acl, "sees": sees}[a.phase](a)


if __name__ == "__main__":
    rilltest.run(main)
