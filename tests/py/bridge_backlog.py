"""Backlog policy tests of the bridge (tests/tests/bridge_backlog.rs).

--phase produce: produce COUNT records (value "b<i>:" + 100 bytes, key "k<i % 7>") to TOPIC with an idempotent
  confluent-kafka producer that retries for as long as it takes (a paused edge answers
  REQUEST_TIMED_OUT after the request's timeout); checks every record was acknowledged.
--phase mqtt: publish one QoS 1 message with paho to the MQTT topic MQTT_TOPIC; checks it is NOT
  acknowledged within HOLD seconds (the edge holds producers back; then HELD_FILE is written),
  then that it is acknowledged once the pressure clears.
--phase verify: on the target, read TARGET until "b<COUNT-1>" (and every --extra value) arrived;
  checks no duplicates, values in production order, rill.origin offsets increasing. With
  --exact, all of b0..b<COUNT-1> must be there; otherwise the received values must be a suffix
  of what was produced (older ones dropped) and the script prints "received=N".
"""

import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

import rilltest
from rilltest import check, check_eq

PAD = "x" * 100


def produce(a):
    p = Producer({
        "bootstrap.servers": a.bootstrap,
        "enable.idempotence": True,
        "linger.ms": 5,
        "batch.size": 4096,
        "request.timeout.ms": a.request_timeout_ms,
        "message.timeout.ms": 300000,
    })
    errors = []
    acked = [0]

    def on_delivery(err, _m):
        if err:
            errors.append(err)
        else:
            acked[0] += 1

    for i in range(a.count):
        while True:
            try:
                p.produce(a.topic, key=f"k{i % 7}".encode(), value=(f"b{i}:" + PAD).encode(),
                          on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    deadline = time.monotonic() + a.timeout
    while p.flush(1) > 0:
        check(time.monotonic() < deadline, f"only {acked[0]}/{a.count} acknowledged")
    check(not errors, f"delivery errors: {errors[:3]}")
    check_eq(acked[0], a.count, "acknowledged records")
    print(f"acked={acked[0]}")


def mqtt_held(a):
    from mqtt_util import Device

    d = Device(a.mqtt, rilltest.unique("held"), keepalive=60)
    info = d.client.publish(a.mqtt_topic, a.mqtt_payload.encode(), qos=1)
    info.wait_for_publish(a.hold)
    check(not info.is_published(), "PUBACK while the edge should hold producers back")
    print("held", flush=True)
    if a.held_file:
        with open(a.held_file, "w") as f:
            f.write("held\n")
    info.wait_for_publish(a.timeout)
    check(d.ack_ok(info), "publish not acknowledged after the pressure cleared")
    print("acked", flush=True)
    d.client.disconnect()
    d.client.loop_stop()


def verify(a):
    admin = AdminClient({"bootstrap.servers": a.bootstrap})

    def topic_md():
        t = admin.list_topics(a.target, timeout=5).topics.get(a.target)
        return t if t is not None and t.error is None and t.partitions else None

    md = rilltest.wait_for(f"topic {a.target}", topic_md, timeout=a.timeout)
    c = Consumer({"bootstrap.servers": a.bootstrap, "group.id": rilltest.unique("bb"),
                  "enable.auto.commit": False, "fetch.wait.max.ms": 100})
    c.assign([TopicPartition(a.target, p, 0) for p in sorted(md.partitions)])
    last = f"b{a.count - 1}"
    want_extra = set(a.extra)
    recs = []
    seen = set()
    deadline = time.monotonic() + a.timeout
    quiet_until = None
    while True:
        m = c.poll(0.2)
        if m is not None:
            check(m.error() is None, f"consume error {m.error()}")
            recs.append(m)
            seen.add(m.value().decode().split(":")[0])
            continue
        if last in seen and want_extra <= seen:
            # Linger a little to catch duplicates arriving late.
            if quiet_until is None:
                quiet_until = time.monotonic() + 2
            elif time.monotonic() > quiet_until:
                break
        check(time.monotonic() < deadline,
              f"timed out with {len(recs)} records, last={last in seen}, extra={want_extra - seen}")
    c.close()
    values = [m.value().decode().split(":")[0] for m in recs]
    check_eq(len(values), len(set(values)), "no duplicate values")
    origin_last = {}
    numbers = []
    for m in recs:
        h = dict(m.headers() or [])
        origin = h.get("rill.origin")
        check(origin is not None, "rill.origin header present")
        _node, _topic, sp, off = origin.decode().rsplit("/", 3)
        key = (m.partition(), int(sp))
        check(int(off) > origin_last.get(key, -1), f"origin offsets increase in {key}")
        origin_last[key] = int(off)
        v = m.value().decode().split(":")[0]
        if v in want_extra:
            continue
        check(v.startswith("b"), f"unexpected value {v!r}")
        numbers.append(int(v[1:]))
    check(numbers == sorted(numbers), "records in production order")
    if a.exact:
        check_eq(numbers, list(range(a.count)), "every produced record, once, in order")
    else:
        check(numbers and numbers[-1] == a.count - 1, "the newest record arrived")
        check_eq(numbers, list(range(a.count - len(numbers), a.count)),
                 "the received records are the newest ones, contiguous")
    print(f"received={len(numbers)}")


def main():
    ap = rilltest.parser(__doc__)
    ap.add_argument("--phase", choices=["produce", "mqtt", "verify"], required=True)
    ap.add_argument("--topic")
    ap.add_argument("--target")
    ap.add_argument("--count", type=int, default=0)
    ap.add_argument("--request-timeout-ms", type=int, default=3000)
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--exact", action="store_true")
    ap.add_argument("--extra", action="append", default=[])
    ap.add_argument("--mqtt")
    ap.add_argument("--mqtt-topic")
    ap.add_argument("--mqtt-payload", default="m-held")
    ap.add_argument("--hold", type=float, default=2)
    ap.add_argument("--held-file", help="written once the hold was observed")
    a = ap.parse_args()
    {"produce": produce, "mqtt": mqtt_held, "verify": verify}[a.phase](a)


if __name__ == "__main__":
    rilltest.run(main)
