"""Client certificates (mTLS) and several listeners with confluent-kafka, against a node with the
authorizer on whose `[listeners] kafka` is SSL with client_ca (--bootstrap), with an extra
PLAINTEXT listener (--local) and an extra SASL_SSL listener (--lan, SCRAM-SHA-512 user admin,
a super user).

Checks, in order:
- Metadata on each listener names the broker at that listener's address.
- As admin (SASL_SSL): topics sensors.a and other, and ALLOW User:edge-01 WRITE on the PREFIXED
  topic sensors. (the edge certificate's CN, mapped by ssl_principal_mapping_rules).
- The edge certificate produces to sensors.a and is refused on other
  (TOPIC_AUTHORIZATION_FAILED); the ops certificate (its whole DN, a super user) produces to
  other; an anonymous client of the PLAINTEXT listener is refused on sensors.a.
- Certificates of another CA, an expired one and none at all fail the TLS handshake.
"""

import time

from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

import rilltest
from rilltest import check, check_eq


def ssl_conf(a, cert, key):
    conf = {
        "bootstrap.servers": a.bootstrap,
        "security.protocol": "SSL",
        "ssl.ca.location": a.ca,
        "ssl.endpoint.identification.algorithm": "none",
    }
    if cert:
        conf["ssl.certificate.location"] = cert
        conf["ssl.key.location"] = key
    return conf


def lan_conf(a):
    return {
        "bootstrap.servers": a.lan,
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": a.ca,
        "ssl.endpoint.identification.algorithm": "none",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "admin",
        "sasl.password": a.admin_password,
    }


def local_conf(a):
    return {"bootstrap.servers": a.local}


def broker_addrs(conf):
    md = AdminClient(conf).list_topics(timeout=20)
    return sorted(f"{b.host}:{b.port}" for b in md.brokers.values())


def produce_one(conf, topic, value):
    """The error of producing one record (None: delivered)."""
    result = []
    p = Producer({**conf, "message.timeout.ms": 10000})
    p.produce(topic, value=value.encode(), on_delivery=lambda err, _m: result.append(err))
    left = p.flush(30)
    check_eq(left, 0, f"undelivered record to {topic}")
    return result[0]


def handshake_fails(a, name, cert, key):
    errors = []
    conf = {**ssl_conf(a, cert, key), "error_cb": errors.append, "socket.timeout.ms": 5000}
    p = Producer(conf)
    deadline = time.monotonic() + 15
    while not errors and time.monotonic() < deadline:
        p.poll(0.2)
    check(errors, f"{name}: no error from the TLS handshake")
    text = " ".join(str(e) for e in errors)
    check(
        any(e.code() in (KafkaError._SSL, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN)
            for e in errors),
        f"{name}: unexpected errors {text}",
    )
    print(f"{name}: refused ({text[:160]})", flush=True)


def main():
    ap = rilltest.parser(__doc__)
    ap.add_argument("--local", required=True)
    ap.add_argument("--lan", required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--admin-password", required=True)
    for who in ["edge", "ops", "rogue", "expired"]:
        ap.add_argument(f"--{who}-cert", required=True)
        ap.add_argument(f"--{who}-key", required=True)
    a = ap.parse_args()

    edge = ssl_conf(a, a.edge_cert, a.edge_key)
    check_eq(broker_addrs(edge), [a.bootstrap], "brokers on the SSL listener")
    check_eq(broker_addrs(local_conf(a)), [a.local], "brokers on the PLAINTEXT listener")
    check_eq(broker_addrs(lan_conf(a)), [a.lan], "brokers on the SASL_SSL listener")
    print("Metadata names each listener's own address", flush=True)

    admin = AdminClient(lan_conf(a))
    for f in admin.create_topics([NewTopic(t, 1, 1) for t in ["sensors.a", "other"]]).values():
        f.result(30)
    acl = AclBinding(ResourceType.TOPIC, "sensors.", ResourcePatternType.PREFIXED,
                     "User:edge-01", "*", AclOperation.WRITE, AclPermissionType.ALLOW)
    for f in admin.create_acls([acl]).values():
        f.result(30)

    err = produce_one(edge, "sensors.a", "from-edge")
    check(err is None, f"edge -> sensors.a: {err}")
    err = produce_one(edge, "other", "from-edge")
    check(err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED,
          f"edge -> other: {err}")
    print("the edge certificate writes sensors.a and is refused on other", flush=True)

    ops = ssl_conf(a, a.ops_cert, a.ops_key)
    err = produce_one(ops, "other", "from-ops")
    check(err is None, f"ops (super user) -> other: {err}")
    err = produce_one(local_conf(a), "sensors.a", "anonymous")
    check(err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED,
          f"anonymous on PLAINTEXT -> sensors.a: {err}")
    print("ops (DN super user) writes other; anonymous PLAINTEXT is refused", flush=True)

    handshake_fails(a, "another CA", a.rogue_cert, a.rogue_key)
    handshake_fails(a, "expired", a.expired_cert, a.expired_key)
    handshake_fails(a, "no certificate", None, None)


if __name__ == "__main__":
    rilltest.run(main)
