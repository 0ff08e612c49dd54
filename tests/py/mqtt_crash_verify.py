"""Every message listed by mqtt_crash_publish.py is in the log topic `telemetry` after the restart,
in publish order per device."""

import json

from mqtt_util import mqtt_parser, read_log
from rilltest import check, check_eq, run


def main():
    p = mqtt_parser(__doc__)
    p.add_argument("--acked", required=True)
    args = p.parse_args()
    with open(args.acked) as f:
        acked = json.load(f)
    recs = read_log(args.bootstrap, "telemetry", len(acked), timeout=60)
    stored = {}
    for r in recs:
        stored.setdefault(r.key().decode(), []).append(r.value().decode())
    missing = [a for a in acked if a["value"] not in set(stored.get(a["key"], []))]
    check(not missing, f"{len(missing)} acknowledged messages missing after SIGKILL, e.g. {missing[:3]}")
    for key, values in stored.items():
        seq = [int(v.rsplit(":", 1)[1]) for v in values]
        check_eq(seq, sorted(seq), f"order of {key}")
    print(f"all {len(acked)} acknowledged messages survived the crash", flush=True)


run(main)
