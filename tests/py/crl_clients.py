"""Certificate revocation lists with confluent-kafka, against a node whose `[listeners] kafka` is
SSL with client_ca and crl_files revoking one client certificate (--revoked-*), not the other
(--valid-*).

Checks, in order:
- A producer with the valid certificate delivers a record (and keeps its connection open).
- --expect-revoked refused: a producer with the revoked certificate fails the TLS handshake (an
  SSL/transport error, nothing delivered). --expect-revoked accepted (a node that ignores its
  CRLs, broken on purpose): that producer delivers, so the script fails its caller's check.
- The first producer, on its open connection, delivers again; a new consumer with the valid
  certificate reads every record the valid producer sent.
"""

import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import rilltest
from rilltest import check, check_eq


def ssl_conf(a, cert, key):
    return {
        "bootstrap.servers": a.bootstrap,
        "security.protocol": "SSL",
        "ssl.ca.location": a.ca,
        "ssl.endpoint.identification.algorithm": "none",
        "ssl.certificate.location": cert,
        "ssl.key.location": key,
    }


def deliver(p, topic, value):
    """Produce one record with `p` and return its delivery error (None: delivered)."""
    result = []
    p.produce(topic, value=value.encode(), on_delivery=lambda err, _m: result.append(err))
    left = p.flush(30)
    check_eq(left, 0, f"undelivered record to {topic}")
    return result[0]


def revoked_attempt(a, topic):
    """The revoked certificate's producer: (delivered, error texts)."""
    errors = []
    conf = {
        **ssl_conf(a, a.revoked_cert, a.revoked_key),
        "error_cb": errors.append,
        "socket.timeout.ms": 5000,
        "message.timeout.ms": 10000,
    }
    p = Producer(conf)
    result = []
    p.produce(topic, value=b"from-revoked", on_delivery=lambda err, _m: result.append(err))
    deadline = time.monotonic() + 15
    while not result and time.monotonic() < deadline:
        p.poll(0.2)
        if errors and a.expect_revoked == "refused":
            break
    p.purge()
    p.flush(5)
    delivered = bool(result) and result[0] is None
    return delivered, [str(e) for e in errors], errors


def main():
    ap = rilltest.parser(__doc__)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--topic", required=True)
    for who in ["valid", "revoked"]:
        ap.add_argument(f"--{who}-cert", required=True)
        ap.add_argument(f"--{who}-key", required=True)
    ap.add_argument("--expect-revoked", choices=["refused", "accepted"], required=True)
    a = ap.parse_args()

    admin = AdminClient(ssl_conf(a, a.valid_cert, a.valid_key))
    for f in admin.create_topics([NewTopic(a.topic, 1, 1)]).values():
        f.result(30)
    valid = Producer({**ssl_conf(a, a.valid_cert, a.valid_key), "message.timeout.ms": 10000})
    err = deliver(valid, a.topic, "valid-1")
    check(err is None, f"valid certificate -> {a.topic}: {err}")
    print("the valid certificate delivers", flush=True)

    delivered, texts, errors = revoked_attempt(a, a.topic)
    if a.expect_revoked == "refused":
        check(not delivered, "the revoked certificate delivered a record")
        check(errors, "the revoked certificate got no error")
        check(
            any(e.code() in (KafkaError._SSL, KafkaError._TRANSPORT,
                             KafkaError._ALL_BROKERS_DOWN) for e in errors),
            f"revoked: unexpected errors {texts}",
        )
        print(f"the revoked certificate is refused ({' '.join(texts)[:200]})", flush=True)
    else:
        check(delivered, f"the revoked certificate did not deliver: {texts}")
        print("the revoked certificate delivered (the node ignores its CRLs)", flush=True)

    err = deliver(valid, a.topic, "valid-2")
    check(err is None, f"valid certificate, same connection, -> {a.topic}: {err}")
    c = Consumer({
        **ssl_conf(a, a.valid_cert, a.valid_key),
        "group.id": rilltest.unique("crl"),
        "enable.auto.commit": False,
    })
    c.assign([TopicPartition(a.topic, 0, 0)])
    got = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len([v for v in got if v.startswith("valid")]) < 2:
        m = c.poll(0.5)
        if m is None:
            continue
        check(m.error() is None, f"consume: {m.error()}")
        got.append(m.value().decode())
    c.close()
    check_eq([v for v in got if v.startswith("valid")], ["valid-1", "valid-2"],
             "records of the valid certificate read back")
    print("the valid certificate keeps producing and consuming", flush=True)


if __name__ == "__main__":
    rilltest.run(main)
