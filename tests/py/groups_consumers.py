#!/usr/bin/env python3
"""Three confluent-kafka consumer processes in one group on a 6-partition topic.

With manual (synchronous, per record) commits:
- every record is consumed;
- one member is SIGKILLed mid-consumption; its partitions move to the two others once its session
  times out, and re-delivery is limited to what it had consumed without committing (a record whose
  commit succeeded is never delivered again);
- afterwards the group is Empty and its committed offsets are the log end offsets.

Usage: groups_consumers.py --bootstrap H:P --strategy range|roundrobin|cooperative-sticky
Workers are this same script with --worker.
"""

import os
import signal
import subprocess
import sys
import tempfile
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import rilltest as rt

PARTITIONS = 6
PER_PHASE = 50  # records per partition per phase
SESSION_MS = 3000


def worker(args):
    cooperative = args.strategy == "cooperative-sticky"
    out = open(args.out, "a", buffering=1)
    assigned = set()

    def show():
        out.write("A " + ",".join(str(p) for p in sorted(assigned)) + "\n")

    def on_assign(_c, parts):
        if not cooperative:
            assigned.clear()
        assigned.update(p.partition for p in parts)
        show()

    def on_revoke(_c, parts):
        if cooperative:
            assigned.difference_update(p.partition for p in parts)
        else:
            assigned.clear()
        show()

    c = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "client.id": f"worker-{args.index}",
            "partition.assignment.strategy": args.strategy,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": SESSION_MS,
            "heartbeat.interval.ms": 300,
            "topic.metadata.refresh.interval.ms": 1000,
        }
    )
    c.subscribe([args.topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_revoke)
    out.write("S\n")
    while not os.path.exists(args.stop):
        m = c.poll(0.1)
        if m is None:
            continue
        if m.error():
            out.write(f"E {m.error()}\n")
            continue
        out.write(f"M {m.partition()} {m.offset()}\n")
        time.sleep(args.pace)
        try:
            c.commit(message=m, asynchronous=False)
            out.write(f"C {m.partition()} {m.offset() + 1}\n")
        except KafkaException as e:
            out.write(f"X {m.partition()} {m.offset()} {e.args[0].name()}\n")
    c.close()
    out.write("Q\n")


def parse(path):
    """(consumptions [(p, o, committed)], last assignment, all assignment lines, quit)."""
    consumed = []
    assignment = None
    seen = set()
    quit_ = False
    pending = None
    with open(path) as f:
        for line in f:
            parts = line.split()
            if not parts:
                continue
            kind = parts[0]
            if kind == "M":
                if pending:
                    consumed.append((*pending, False))
                pending = (int(parts[1]), int(parts[2]))
            elif kind in ("C", "X"):
                if pending:
                    ok = kind == "C" and int(parts[1]) == pending[0] and int(parts[2]) == pending[1] + 1
                    consumed.append((*pending, ok))
                    pending = None
            elif kind == "A":
                assignment = set(int(p) for p in parts[1].split(",")) if len(parts) > 1 else set()
                seen |= assignment
            elif kind == "Q":
                quit_ = True
    if pending:
        consumed.append((*pending, False))
    return consumed, assignment, seen, quit_


def main():
    p = rt.parser(__doc__)
    p.add_argument("--strategy", default="range")
    p.add_argument("--worker", action="store_true")
    p.add_argument("--index", type=int, default=0)
    p.add_argument("--group")
    p.add_argument("--topic")
    p.add_argument("--out")
    p.add_argument("--stop")
    p.add_argument("--pace", type=float, default=0.002)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return

    topic = rt.unique("grp")
    group = rt.unique(f"g-{args.strategy}")
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    for f in admin.create_topics([NewTopic(topic, PARTITIONS, 1)]).values():
        f.result(timeout=30)
    producer = Producer({"bootstrap.servers": args.bootstrap, "linger.ms": 5})

    def produce(phase):
        for p in range(PARTITIONS):
            for i in range(PER_PHASE):
                producer.produce(topic, value=f"{phase}-{p}-{i}".encode(), partition=p)
        check_remaining = producer.flush(30)
        rt.check_eq(check_remaining, 0, "unflushed records")

    produce(0)
    tmp = tempfile.mkdtemp(prefix="rill-groups-")
    stop = os.path.join(tmp, "stop")
    outs = [os.path.join(tmp, f"w{i}.log") for i in range(3)]
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--bootstrap", args.bootstrap, "--worker",
             "--strategy", args.strategy, "--index", str(i), "--group", group,
             "--topic", topic, "--out", outs[i], "--stop", stop, "--pace", "0.01"],
        )
        for i in range(3)
    ]
    try:
        run(args, topic, group, admin, produce, procs, outs, stop)
    finally:
        open(stop, "w").close()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def consumed_set(outs):
    s = set()
    for o in outs:
        if os.path.exists(o):
            s |= {(p, off) for p, off, _ in parse(o)[0]}
    return s


def run(args, topic, group, admin, produce, procs, outs, stop):
    everything0 = {(p, o) for p in range(PARTITIONS) for o in range(PER_PHASE)}

    def balanced():
        sets = [parse(o)[1] if os.path.exists(o) else None for o in outs]
        if any(s is None or len(s) != 2 for s in sets):
            return False
        return set().union(*sets) == set(range(PARTITIONS))

    # Three members share six partitions: two each once the group is stable.
    rt.wait_for("a balanced assignment of 2 partitions per member", balanced, timeout=60)
    rt.wait_for("phase 0 consumed", lambda: everything0 <= consumed_set(outs), timeout=60)

    victim = 0
    victim_parts = parse(outs[victim])[1]
    before = len(parse(outs[victim])[0])
    produce(1)
    rt.wait_for(
        "the victim consuming phase 1",
        lambda: len(parse(outs[victim])[0]) >= before + 5,
        timeout=30,
    )
    procs[victim].send_signal(signal.SIGKILL)
    procs[victim].wait()
    killed_at = time.monotonic()

    everything = {(p, o) for p in range(PARTITIONS) for o in range(2 * PER_PHASE)}
    rt.wait_for("every record consumed", lambda: everything <= consumed_set(outs), timeout=60)
    survivors = [1, 2]
    final = [parse(outs[i])[1] for i in survivors]
    rt.check_eq(set().union(*final), set(range(PARTITIONS)), "partitions owned by the survivors")
    for part in victim_parts:
        owners = [i for i in survivors if part in parse(outs[i])[2]]
        rt.check(owners, f"partition {part} of the killed member moved to a survivor")
    print(f"partitions {sorted(victim_parts)} moved {time.monotonic() - killed_at:.1f}s after the kill")

    # Re-delivery: a record is delivered again only if an earlier delivery was not committed.
    deliveries = {}
    for o in outs:
        for p, off, committed in parse(o)[0]:
            deliveries.setdefault((p, off), []).append(committed)
    dups = {k: v for k, v in deliveries.items() if len(v) > 1}
    for k, v in dups.items():
        rt.check(
            len(v) - v.count(False) <= 1,
            f"record {k} was committed and still delivered again ({v})",
        )
    victim_uncommitted = [(p, off) for p, off, c in parse(outs[victim])[0] if not c]
    print(f"re-delivered {len(dups)} record(s); the killed member had {len(victim_uncommitted)} uncommitted")
    rt.check(
        len(dups) <= len(victim_uncommitted) + sum(
            1 for i in survivors for _, _, c in parse(outs[i])[0] if not c
        ),
        f"more re-deliveries ({len(dups)}) than uncommitted deliveries",
    )

    # Stop the survivors (they leave the group); the group ends Empty with everything committed.
    open(stop, "w").close()
    for i in survivors:
        procs[i].wait(timeout=30)
        rt.check(parse(outs[i])[3], f"worker {i} closed cleanly")

    def group_state():
        d = admin.describe_consumer_groups([group])[group].result(timeout=10)
        return d

    rt.wait_for(
        "the group to be Empty",
        lambda: str(group_state().state).endswith("EMPTY"),
        timeout=30,
    )
    from confluent_kafka import ConsumerGroupTopicPartitions

    res = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(timeout=10)
    committed = {tp.partition: tp.offset for tp in res.topic_partitions if tp.topic == topic}
    rt.check_eq(committed, {p: 2 * PER_PHASE for p in range(PARTITIONS)}, "committed offsets")
    listed = admin.list_consumer_groups().result(timeout=10)
    rt.check(any(g.group_id == group for g in listed.valid), "group is listed")


if __name__ == "__main__":
    rt.run(main)
