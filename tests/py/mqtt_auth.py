"""Device identity (node with [mqtt.auth] enabled and device d1 / password "secret-d1"): a bad
password or no credentials are refused; the ACL lets d1 publish only under devices/d1/# and
subscribe only to commands/d1; a denied publish gets reason code 0x87 (MQTT 5) or a disconnect
(3.1.1), and a denied subscription a failure code."""

from mqtt_util import V311, V5, Device, mqtt_parser, read_log
from rilltest import check, check_eq, run


def main():
    args = mqtt_parser(__doc__).parse_args()
    for proto in (V311, V5):
        bad = Device(args.mqtt, "d1", protocol=proto, username="d1", password="wrong", connect=False)
        _, rc, _ = bad.connect(expect_ok=False)
        check(rc.is_failure, f"bad password accepted: {rc}")
        bad.client.loop_stop()
        anon = Device(args.mqtt, "d1", protocol=proto, connect=False)
        _, rc, _ = anon.connect(expect_ok=False)
        check(rc.is_failure, f"connect without credentials accepted: {rc}")
        anon.client.loop_stop()
    print("bad password and missing credentials refused (3.1.1 and 5)", flush=True)

    d5 = Device(args.mqtt, "d1", protocol=V5, username="d1", password="secret-d1")
    d5.publish("devices/d1/telemetry", b"allowed", qos=1)
    info = d5.client.publish("devices/d2/telemetry", b"denied", qos=1)
    info.wait_for_publish(10)
    rc = d5.pub_reasons.get(info.mid)
    check(rc is not None and rc.value == 0x87, f"denied publish got {rc}, want 0x87 Not authorized")
    granted = d5.subscribe("commands/#", qos=1)
    check(granted[0].is_failure, f"subscription outside the ACL granted: {granted}")
    granted = d5.subscribe("commands/d1", qos=1)
    check(not granted[0].is_failure, f"own command topic refused: {granted}")
    d5.close()
    print("MQTT 5: ACL-denied publish got reason code 0x87, denied subscription refused", flush=True)

    d3 = Device(args.mqtt, "d1", protocol=V311, username="d1", password="secret-d1")
    d3.client.publish("devices/d2/telemetry", b"denied", qos=1)
    try:
        d3.disconnects.get(timeout=10)
    except Exception:  # noqa: BLE001
        check(False, "3.1.1 client not disconnected after an ACL-denied publish")
    d3.client.loop_stop()
    print("3.1.1: ACL-denied publish closed the connection", flush=True)

    recs = read_log(args.bootstrap, "telemetry", 1)
    check_eq([r.value() for r in recs], [b"allowed"], "only the allowed publish is stored")


run(main)
