"""Certificate revocation lists on the MQTT TLS listener with paho: the node's `[mqtt.tls]` has
client_ca and crl_files revoking one client certificate (--revoked-*), not the other (--valid-*).

Checks: the valid certificate gets CONNACK 0; with --expect-revoked refused, the revoked one gets
no CONNACK (the TLS handshake fails: an SSL error, or the connection closes before CONNACK); with
--expect-revoked accepted (a node that ignores its CRLs, broken on purpose) it connects; then the
valid certificate connects again (the listener keeps serving).
"""

import ssl
import threading

import paho.mqtt.client as mqtt

from mqtt_util import host_port
from rilltest import check, parser, run, unique


def connects(a, cert, key):
    """Whether a client with this certificate gets CONNACK 0 within 10 s (and why not)."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=unique("crl"),
                    protocol=mqtt.MQTTv311)
    c.tls_set(ca_certs=a.ca, certfile=cert, keyfile=key)
    done = threading.Event()
    result = {}

    def on_connect(_c, _u, _flags, reason_code, _props):
        result["rc"] = reason_code
        done.set()

    def on_disconnect(_c, _u, _flags, reason_code, _props):
        result.setdefault("closed", str(reason_code))
        done.set()

    c.on_connect = on_connect
    c.on_disconnect = on_disconnect
    host, port = host_port(a.tls_addr)
    try:
        c.connect(host, port, keepalive=30)
    except (ssl.SSLError, OSError) as e:
        return False, f"connect: {e}"
    c.loop_start()
    done.wait(10)
    c.disconnect()
    c.loop_stop()
    rc = result.get("rc")
    ok = rc is not None and not rc.is_failure
    return ok, f"rc={rc} closed={result.get('closed')}"


def main():
    ap = parser(__doc__)
    ap.add_argument("--tls-addr", required=True)
    ap.add_argument("--ca", required=True)
    for who in ["valid", "revoked"]:
        ap.add_argument(f"--{who}-cert", required=True)
        ap.add_argument(f"--{who}-key", required=True)
    ap.add_argument("--expect-revoked", choices=["refused", "accepted"], required=True)
    a = ap.parse_args()

    ok, why = connects(a, a.valid_cert, a.valid_key)
    check(ok, f"valid certificate: {why}")
    ok, why = connects(a, a.revoked_cert, a.revoked_key)
    if a.expect_revoked == "refused":
        check(not ok, f"the revoked certificate connected: {why}")
        print(f"MQTT: the revoked certificate is refused ({why})", flush=True)
    else:
        check(ok, f"the revoked certificate did not connect: {why}")
        print("MQTT: the revoked certificate connected (the node ignores its CRLs)", flush=True)
    ok, why = connects(a, a.valid_cert, a.valid_key)
    check(ok, f"valid certificate, again: {why}")
    print("MQTT: the valid certificate connects", flush=True)


run(main)
