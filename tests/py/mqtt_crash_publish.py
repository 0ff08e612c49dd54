"""Many devices publish QoS 1 and 2 concurrently; every acknowledged (PUBACK / PUBREC) message is
written to --out (the node is SIGKILLed right after, then mqtt_crash_verify.py checks the log)."""

import json
import threading

from mqtt_util import V311, V5, Device, mqtt_parser
from rilltest import check, run, unique


def main():
    p = mqtt_parser(__doc__)
    p.add_argument("--devices", type=int, default=8)
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    acked = []
    lock = threading.Lock()
    errors = []

    def device(n):
        try:
            dev_id = unique(f"crash{n}")
            dev = Device(args.mqtt, dev_id, protocol=V5 if n % 2 else V311)
            topic = f"devices/{dev_id}/telemetry"
            infos = []
            # Pipelined: many publishes in flight per connection, acks waited for afterwards.
            for i in range(args.count):
                payload = f"{dev_id}:{i}"
                infos.append((payload, dev.client.publish(topic, payload.encode(), qos=1 + (i % 2))))
            for payload, info in infos:
                info.wait_for_publish(30)
                if dev.ack_ok(info):
                    with lock:
                        acked.append({"key": dev_id, "value": payload})
            dev.drop()
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    threads = [threading.Thread(target=device, args=(n,)) for n in range(args.devices)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check(not errors, f"device errors: {errors}")
    with open(args.out, "w") as f:
        json.dump(acked, f)
    print(f"acked {len(acked)}", flush=True)


run(main)
