"""Consumer group fail-over through the bridge's checkpoints, and its MM2 topics.

Phases (stdout ends with one JSON line `RESULT {...}` before OK):
- produce: COUNT records "v<i>" (keys "k<i % 13>", current timestamps, so that time retention
  keeps them across restarts) to TOPIC, created with PARTITIONS.
- edge-consume: group GROUP reads COUNT records of TOPIC, commits synchronously, closes;
  result: the values read, the committed offset and the end offset per partition.
- wait-committed: poll GROUP's committed offsets of TOPIC until they equal EXPECT (p:o,...).
- central-consume: group GROUP subscribes to TOPIC and reads exactly COUNT records (then stays
  quiet for IDLE seconds to catch extra ones); result: the values.
- checkpoints: read TOPIC (MM2 checkpoints) from the start, decoding every record with MM2's
  Checkpoint format independently of the bridge's code, until for each partition p:o of EXPECT
  one with upstream offset o was seen; result: those checkpoints.
- heartbeats: read TOPIC (MM2 heartbeats) until at least COUNT records and decode them.
- origin: the rill.origin header of the record at OFFSET of TOPIC[PARTITION].
"""

import json
import struct
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import rilltest
from rilltest import check


def mm2_string(buf, pos):
    (n,) = struct.unpack_from(">h", buf, pos)
    check(n >= 0, f"negative string length {n}")
    s = buf[pos + 2:pos + 2 + n].decode()
    check(len(buf) >= pos + 2 + n, "truncated string")
    return s, pos + 2 + n


def decode_checkpoint(key, value):
    group, pos = mm2_string(key, 0)
    topic, pos = mm2_string(key, pos)
    (partition,) = struct.unpack_from(">i", key, pos)
    check(pos + 4 == len(key), "trailing bytes in checkpoint key")
    version, upstream, downstream = struct.unpack_from(">hqq", value, 0)
    check(version == 0, f"checkpoint version {version}")
    metadata, end = mm2_string(value, 18)
    check(end == len(value), "trailing bytes in checkpoint value")
    return {"group": group, "topic": topic, "partition": partition, "upstream": upstream,
            "downstream": downstream, "metadata": metadata}


def decode_heartbeat(key, value):
    source, pos = mm2_string(key, 0)
    target, pos = mm2_string(key, pos)
    check(pos == len(key), "trailing bytes in heartbeat key")
    check(len(value) == 10, f"heartbeat value of {len(value)} bytes")
    version, ts = struct.unpack(">hq", value)
    check(version == 0, f"heartbeat version {version}")
    return {"source": source, "target": target, "timestamp": ts}


def read_all(bootstrap, topic, partition, want, timeout):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": rilltest.unique("raw"),
                  "enable.auto.commit": False, "fetch.wait.max.ms": 100,
                  "topic.metadata.refresh.interval.ms": 500})
    c.assign([TopicPartition(topic, partition, 0)])
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < want:
        m = c.poll(0.2)
        if m is not None and m.error() is None:
            out.append(m)
        check(time.monotonic() < deadline, f"{topic}: {len(out)}/{want} records in time")
    c.close()
    return out


def main():
    ap = rilltest.parser(__doc__)
    ap.add_argument("--phase", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--group", default="g1")
    ap.add_argument("--count", type=int, default=0)
    ap.add_argument("--expect", default="")
    ap.add_argument("--idle", type=float, default=3.0)
    ap.add_argument("--partition", type=int, default=0)
    ap.add_argument("--offset", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=90)
    ap.add_argument("--partitions", type=int, default=3)
    a = ap.parse_args()
    result = {}
    if a.phase == "produce":
        admin = AdminClient({"bootstrap.servers": a.bootstrap})
        for f in admin.create_topics([NewTopic(a.topic, num_partitions=a.partitions,
                                               replication_factor=1)]).values():
            f.result(15)
        p = Producer({"bootstrap.servers": a.bootstrap, "linger.ms": 5,
                      "enable.idempotence": True})
        errors = []
        for i in range(a.count):
            p.produce(a.topic, key=f"k{i % 13}".encode(), value=f"v{i}".encode(),
                      on_delivery=lambda err, m: errors.append(err) if err else None)
        check(p.flush(60) == 0, "undelivered records")
        check(not errors, f"errors: {errors[:3]}")
        result = {"produced": a.count}
    elif a.phase == "edge-consume":
        c = Consumer({"bootstrap.servers": a.bootstrap, "group.id": a.group,
                      "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        c.subscribe([a.topic])
        values = []
        deadline = time.monotonic() + a.timeout
        while len(values) < a.count:
            m = c.poll(0.2)
            check(time.monotonic() < deadline, f"read {len(values)}/{a.count}")
            if m is None:
                continue
            check(m.error() is None, f"consume error {m.error()}")
            values.append(m.value().decode())
        parts = c.commit(asynchronous=False)
        committed = {str(tp.partition): tp.offset for tp in parts if tp.offset >= 0}
        ends = {str(tp.partition): c.get_watermark_offsets(tp, timeout=10)[1] for tp in parts}
        c.close()
        result = {"values": values, "committed": committed, "ends": ends}
    elif a.phase == "wait-committed":
        want = {int(p): int(o) for p, o in (x.split(":") for x in a.expect.split(","))}
        c = Consumer({"bootstrap.servers": a.bootstrap, "group.id": a.group,
                      "enable.auto.commit": False})
        tps = [TopicPartition(a.topic, p) for p in sorted(want)]
        got = {}

        def synced():
            nonlocal got
            try:
                got = {tp.partition: tp.offset for tp in c.committed(tps, timeout=5)}
            except Exception:  # noqa: BLE001 - the topic may not exist yet
                return False
            return got == want
        rilltest.wait_for(f"committed offsets {want}", synced, timeout=a.timeout,
                          interval=0.5)
        c.close()
        result = {"committed": {str(k): v for k, v in got.items()}}
    elif a.phase == "central-consume":
        c = Consumer({"bootstrap.servers": a.bootstrap, "group.id": a.group,
                      "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        c.subscribe([a.topic])
        values = []
        deadline = time.monotonic() + a.timeout
        quiet_until = None
        while True:
            m = c.poll(0.2)
            if m is not None:
                check(m.error() is None, f"consume error {m.error()}")
                values.append(m.value().decode())
                check(len(values) <= a.count, f"more than {a.count} records: {values[-5:]}")
                continue
            if len(values) == a.count:
                if quiet_until is None:
                    quiet_until = time.monotonic() + a.idle
                elif time.monotonic() > quiet_until:
                    break
            check(time.monotonic() < deadline, f"read {len(values)}/{a.count}")
        c.close()
        result = {"values": values}
    elif a.phase == "checkpoints":
        want = {int(p): int(o) for p, o in (x.split(":") for x in a.expect.split(","))}
        c = Consumer({"bootstrap.servers": a.bootstrap, "group.id": rilltest.unique("raw"),
                      "enable.auto.commit": False, "fetch.wait.max.ms": 100,
                      "topic.metadata.refresh.interval.ms": 500})
        c.assign([TopicPartition(a.topic, 0, 0)])
        found = {}
        seen = []
        deadline = time.monotonic() + a.timeout
        while len(found) < len(want):
            m = c.poll(0.2)
            check(time.monotonic() < deadline,
                  f"checkpoints for {want} not all seen; seen {seen[-10:]}")
            if m is None or m.error() is not None:
                continue
            cp = decode_checkpoint(m.key(), m.value())
            seen.append(cp)
            if want.get(cp["partition"]) == cp["upstream"]:
                found[cp["partition"]] = cp
        c.close()
        result = {"checkpoints": list(found.values())}
    elif a.phase == "heartbeats":
        msgs = read_all(a.bootstrap, a.topic, 0, a.count, a.timeout)
        result = {"heartbeats": [decode_heartbeat(m.key(), m.value()) for m in msgs]}
    elif a.phase == "origin":
        c = Consumer({"bootstrap.servers": a.bootstrap, "group.id": rilltest.unique("o"),
                      "enable.auto.commit": False})
        c.assign([TopicPartition(a.topic, a.partition, a.offset)])
        deadline = time.monotonic() + a.timeout
        while True:
            m = c.poll(0.2)
            if m is not None and m.error() is None:
                break
            check(time.monotonic() < deadline, "no record")
        c.close()
        check(m.offset() == a.offset, f"got offset {m.offset()}")
        result = {"origin": dict(m.headers() or []).get("rill.origin", b"").decode()}
    else:
        check(False, f"unknown phase {a.phase}")
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    rilltest.run(main)
