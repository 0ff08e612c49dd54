"""Server redirection (MQTT 5 §4.11): with `[mqtt] server_reference` set, paho in MQTT 5 mode is
refused with the configured CONNACK code and the Server Reference; a 3.1.1 client is refused
as server unavailable."""

from mqtt_util import V311, V5, Device, mqtt_parser, result
from rilltest import run, unique


def main():
    args = mqtt_parser(__doc__).parse_args()
    v5 = Device(args.mqtt, unique("r5"), protocol=V5, connect=False)
    _, rc, props = v5.connect(expect_ok=False)
    v5.client.loop_stop()
    old = Device(args.mqtt, unique("r4"), protocol=V311, connect=False)
    _, rc4, _ = old.connect(expect_ok=False)
    old.client.loop_stop()
    result("redirect", code=rc.value, reference=getattr(props, "ServerReference", None),
           reason=getattr(props, "ReasonString", None), v311_code=rc4.value)


run(main)
