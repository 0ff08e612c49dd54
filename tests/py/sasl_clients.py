"""SASL (and SASL_SSL) against a node that requires it, with confluent-kafka and kafka-python.

Phases:
- roundtrip: produce COUNT records to a new topic and consume exactly them back.
- wrong-password: an authenticated producer delivers, a client with a wrong password gets an
  authentication error, the first producer keeps delivering, and everything is consumed.
- count: consume TOPIC from the beginning until it holds COUNT records; no duplicates, no extras.
- absent: TOPIC does not exist (checked with an authenticated client).
- admin: AdminClient alter/describe_user_scram_credentials create user bob on the running node,
  bob authenticates; deleting bob's SCRAM-SHA-256 credential locks that mechanism out; Kafka's
  errors for unknown users and too few iterations.
"""

import time

import rilltest
from rilltest import check, check_eq


def confluent_conf(a, password=None):
    conf = {
        "bootstrap.servers": a.bootstrap,
        "security.protocol": "SASL_SSL" if a.ca else "SASL_PLAINTEXT",
        "sasl.mechanism": a.mechanism,
        "sasl.username": a.username,
        "sasl.password": a.password if password is None else password,
    }
    if a.ca:
        conf["ssl.ca.location"] = a.ca
    return conf


def kafka_python_conf(a):
    conf = {
        "bootstrap_servers": a.bootstrap,
        "security_protocol": "SASL_SSL" if a.ca else "SASL_PLAINTEXT",
        "sasl_mechanism": a.mechanism,
        "sasl_plain_username": a.username,
        "sasl_plain_password": a.password,
    }
    if a.ca:
        conf["ssl_cafile"] = a.ca
    return conf


def confluent_produce(producer, topic, values):
    errors = []

    def report(err, _msg):
        if err is not None:
            errors.append(err)

    for v in values:
        producer.produce(topic, value=v.encode(), key=v.encode(), on_delivery=report)
    left = producer.flush(60)
    check_eq(left, 0, "undelivered records after flush")
    check(not errors, f"delivery errors: {errors}")


def confluent_consume(a, topic, count, timeout=60.0):
    from confluent_kafka import Consumer, KafkaError

    conf = confluent_conf(a)
    conf.update({"group.id": rilltest.unique("sasl"), "auto.offset.reset": "earliest",
                 "enable.auto.commit": False, "fetch.wait.max.ms": 100,
                 "topic.metadata.refresh.interval.ms": 1000})
    c = Consumer(conf)
    c.subscribe([topic])
    got = []
    deadline = time.monotonic() + timeout
    quiet_until = None
    while True:
        m = c.poll(0.2)
        now = time.monotonic()
        if m is not None and m.error() is not None and \
                m.error().code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            m = None  # a mirrored topic may not exist yet: keep polling until the deadline
        if m is not None:
            check(m.error() is None, f"consume error {m.error()}")
            got.append(m.value().decode())
            quiet_until = None
        if len(got) >= count:
            # Keep polling a little: extra (duplicate) records must not follow.
            if quiet_until is None:
                quiet_until = now + 2.0
            elif now >= quiet_until:
                break
        check(now < deadline, f"{topic}: {len(got)} of {count} records within {timeout}s")
    c.close()
    return got


def roundtrip_confluent(a):
    from confluent_kafka import Producer

    topic = rilltest.unique("sasl-cf")
    values = [f"{topic}-{i}" for i in range(a.count)]
    p = Producer(confluent_conf(a))
    confluent_produce(p, topic, values)
    got = confluent_consume(a, topic, len(values))
    check_eq(sorted(got), sorted(values), "consumed values")
    print(f"confluent {a.mechanism}: {len(got)} records round-tripped")


def roundtrip_kafka_python(a):
    from kafka import KafkaConsumer, KafkaProducer

    topic = rilltest.unique("sasl-kp")
    values = [f"{topic}-{i}" for i in range(a.count)]
    p = KafkaProducer(**kafka_python_conf(a))
    futures = [p.send(topic, value=v.encode(), key=v.encode()) for v in values]
    p.flush(60)
    for f in futures:
        check(f.get(timeout=60).offset >= 0, "no offset")
    p.close(10)
    c = KafkaConsumer(topic, group_id=None, auto_offset_reset="earliest",
                      enable_auto_commit=False, consumer_timeout_ms=3000, **kafka_python_conf(a))
    got = []
    deadline = time.monotonic() + 60
    while len(got) < len(values) and time.monotonic() < deadline:
        for m in c:
            got.append(m.value.decode())
    c.close()
    check_eq(sorted(got), sorted(values), "consumed values")
    print(f"kafka-python {a.mechanism}: {len(got)} records round-tripped")


def wrong_password(a):
    from confluent_kafka import KafkaError, Producer

    topic = rilltest.unique("sasl-wrong")
    good = Producer(confluent_conf(a))
    first = [f"{topic}-a{i}" for i in range(a.count)]
    confluent_produce(good, topic, first)

    errors = []
    bad = Producer({**confluent_conf(a, password=a.password + "-wrong"),
                    "error_cb": lambda e: errors.append(e)})
    bad.produce(topic, value=b"must-not-arrive")
    deadline = time.monotonic() + 30
    while not any(e.code() == KafkaError._AUTHENTICATION for e in errors):
        bad.poll(0.2)
        check(time.monotonic() < deadline, f"no authentication error within 30s: {errors}")
    auth = [e for e in errors if e.code() == KafkaError._AUTHENTICATION][0]
    print(f"wrong password: {auth.str()}")
    check("Authentication failed" in auth.str(), f"error names the failure: {auth.str()}")
    bad.purge()

    second = [f"{topic}-b{i}" for i in range(a.count)]
    confluent_produce(good, topic, second)
    got = confluent_consume(a, topic, 2 * a.count)
    check_eq(sorted(got), sorted(first + second), "consumed values (nothing from the bad client)")


def count(a):
    got = confluent_consume(a, a.topic, a.count, timeout=a.timeout)
    check_eq(len(got), a.count, f"{a.topic}: record count")
    check_eq(len(set(got)), a.count, f"{a.topic}: distinct records")
    print(f"{a.topic}: {len(got)} records, exactly once")


def absent(a):
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(confluent_conf(a))
    topics = admin.list_topics(timeout=30).topics
    check(a.topic not in topics, f"{a.topic} exists on the target: {sorted(topics)}")
    print(f"{a.topic}: absent")


def expect_auth_error(a, username, password, mechanism):
    from confluent_kafka import KafkaError, Producer

    errors = []
    conf = {**confluent_conf(a, password=password), "sasl.username": username,
            "sasl.mechanism": mechanism, "error_cb": lambda e: errors.append(e)}
    p = Producer(conf)
    deadline = time.monotonic() + 30
    while not any(e.code() == KafkaError._AUTHENTICATION for e in errors):
        p.poll(0.2)
        try:
            p.list_topics(timeout=0.2)
        except Exception:  # noqa: BLE001 - the failure itself is what we wait for
            pass
        check(time.monotonic() < deadline, f"no authentication error for {username}: {errors}")


def admin(a):
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import (AdminClient, ScramCredentialInfo, ScramMechanism,
                                       UserScramCredentialDeletion, UserScramCredentialUpsertion)

    adm = AdminClient(confluent_conf(a))
    s256, s512 = ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512
    futures = adm.alter_user_scram_credentials([
        UserScramCredentialUpsertion("bob", ScramCredentialInfo(s256, 4096), b"bob-pw"),
        UserScramCredentialUpsertion("bob", ScramCredentialInfo(s512, 8192), b"bob-pw"),
    ])
    futures["bob"].result(30)
    described = adm.describe_user_scram_credentials().result(30)
    check("bob" in described and a.username in described, f"users: {sorted(described)}")
    infos = sorted((i.mechanism, i.iterations) for i in described["bob"].scram_credential_infos)
    check_eq(infos, sorted([(s256, 4096), (s512, 8192)]), "bob's credentials")

    bob = argparse_copy(a, username="bob", password="bob-pw", mechanism="SCRAM-SHA-256")
    roundtrip_confluent(bob)

    adm.alter_user_scram_credentials([UserScramCredentialDeletion("bob", s256)])["bob"].result(30)
    one = adm.describe_user_scram_credentials(["bob"])["bob"].result(30)
    check_eq([i.mechanism for i in one.scram_credential_infos], [s512], "after deletion")
    expect_auth_error(a, "bob", "bob-pw", "SCRAM-SHA-256")
    roundtrip_confluent(argparse_copy(bob, mechanism="SCRAM-SHA-512"))

    for what, call, code in [
        ("describe an unknown user",
         lambda: adm.describe_user_scram_credentials(["nobody"])["nobody"].result(30), 91),
        ("delete a missing credential",
         lambda: adm.alter_user_scram_credentials(
             [UserScramCredentialDeletion("nobody", s256)])["nobody"].result(30), 91),
        ("too few iterations",
         lambda: adm.alter_user_scram_credentials([UserScramCredentialUpsertion(
             "carol", ScramCredentialInfo(s256, 100), b"x")])["carol"].result(30), 93),
    ]:
        try:
            call()
            check(False, f"{what}: no error")
        except KafkaException as e:
            check_eq(e.args[0].code(), code, f"{what}: error code ({e})")
    print("admin: SCRAM users altered and described")


def argparse_copy(a, **changes):
    import copy

    b = copy.copy(a)
    for k, v in changes.items():
        setattr(b, k, v)
    return b


def main():
    ap = rilltest.parser(__doc__)
    ap.add_argument("--phase", required=True,
                    choices=["roundtrip", "wrong-password", "count", "absent", "admin"])
    ap.add_argument("--client", default="confluent", choices=["confluent", "kafka-python"])
    ap.add_argument("--mechanism", default="SCRAM-SHA-512")
    ap.add_argument("--username", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--ca", help="CA file: SASL_SSL instead of SASL_PLAINTEXT")
    ap.add_argument("--topic")
    ap.add_argument("--count", type=int, default=20)
    ap.add_argument("--timeout", type=float, default=120)
    a = ap.parse_args()
    if a.phase == "roundtrip":
        (roundtrip_confluent if a.client == "confluent" else roundtrip_kafka_python)(a)
    elif a.phase == "wrong-password":
        wrong_password(a)
    elif a.phase == "count":
        count(a)
    elif a.phase == "admin":
        admin(a)
    else:
        absent(a)


if __name__ == "__main__":
    rilltest.run(main)
