"""Helpers of the MQTT real-client scripts (paho-mqtt for devices, confluent-kafka to read the log)."""

import json
import queue
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from confluent_kafka import Consumer, KafkaError, TopicPartition

from rilltest import check, parser

V311 = mqtt.MQTTv311
V5 = mqtt.MQTTv5


def mqtt_parser(description):
    p = parser(description)
    p.add_argument("--mqtt", required=True, help="HOST:PORT of the node's MQTT listener")
    return p


def host_port(addr):
    host, port = addr.rsplit(":", 1)
    return host, int(port)


class Device:
    """A paho client with a background network loop and a queue of received messages."""

    def __init__(self, addr, client_id, protocol=V311, clean=True, username=None, password=None,
                 will=None, session_expiry=None, keepalive=30, connect=True, connect_props=None,
                 transport="tcp", ws_path="/mqtt", ca=None):
        self.addr = addr
        self.protocol = protocol
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=protocol,
                                  clean_session=clean if protocol == V311 else None,
                                  transport=transport)
        if transport == "websockets":
            self.client.ws_set_options(path=ws_path)
        if ca is not None:
            self.client.tls_set(ca_certs=ca)
        self.clean = clean
        self.session_expiry = session_expiry
        self.keepalive = keepalive
        self.connect_props = connect_props or {}
        self.messages = queue.Queue()
        self.connack = queue.Queue()
        self.disconnects = queue.Queue()
        self.pub_reasons = {}
        self.client.on_publish = self._on_publish
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda c, u, m: self.messages.put(m)
        self.client.on_disconnect = self._on_disconnect
        if username is not None:
            self.client.username_pw_set(username, password)
        if will is not None:
            topic, payload, qos, retain = will
            self.client.will_set(topic, payload, qos=qos, retain=retain)
        if connect:
            self.connect()

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self.connack.put((flags, reason_code, properties))

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        self.pub_reasons[mid] = reason_code

    def ack_ok(self, info):
        """Whether the publish got a successful PUBACK / PUBREC (MQTT 5 acks carry a reason code)."""
        if not info.is_published():
            return False
        rc = self.pub_reasons.get(info.mid)
        return rc is None or not rc.is_failure

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.disconnects.put(reason_code)

    def connect(self, expect_ok=True):
        host, port = host_port(self.addr)
        props = None
        kwargs = {}
        if self.protocol == V5:
            props = Properties(PacketTypes.CONNECT)
            if self.session_expiry is not None:
                props.SessionExpiryInterval = self.session_expiry
            for name, value in self.connect_props.items():
                setattr(props, name, value)
            kwargs["clean_start"] = self.clean
            kwargs["properties"] = props
        self.client.connect(host, port, keepalive=self.keepalive, **kwargs)
        self.client.loop_start()
        try:
            flags, rc, props = self.connack.get(timeout=15)
        except queue.Empty:
            check(False, "no CONNACK within 15 s")
        if expect_ok:
            check(not rc.is_failure, f"CONNECT refused: {rc}")
        return flags, rc, props

    def subscribe(self, topic, qos=1, options=None, properties=None):
        done = threading.Event()
        granted = []

        def on_sub(client, userdata, mid, reason_codes, properties):
            granted.extend(reason_codes)
            done.set()

        self.client.on_subscribe = on_sub
        if options is not None:
            self.client.subscribe(topic, options=options, properties=properties)
        else:
            self.client.subscribe(topic, qos=qos, properties=properties)
        check(done.wait(15), f"no SUBACK for {topic}")
        return granted

    def publish(self, topic, payload, qos=1, retain=False, properties=None, timeout=15):
        info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        if qos > 0:
            info.wait_for_publish(timeout)
            check(self.ack_ok(info), f"publish to {topic} (QoS {qos}) not acknowledged: "
                  f"{self.pub_reasons.get(info.mid)}")
        return info

    def expect(self, timeout=15):
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            check(False, f"no message within {timeout} s")

    def nothing(self, wait=1.0):
        try:
            m = self.messages.get(timeout=wait)
        except queue.Empty:
            return
        check(False, f"unexpected message on {m.topic}: {m.payload!r}")

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()

    def drop(self):
        """Abrupt network loss: close the socket without DISCONNECT."""
        self.client.loop_stop()
        sock = self.client.socket()
        if sock is not None:
            sock.close()


def read_log(bootstrap, topic, want, timeout=30):
    """Every record of `topic` from the beginning until `want` are seen (all partitions)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "rill-mqtt-tests",
                         "enable.auto.commit": False})
    md = consumer.list_topics(topic, timeout=10)
    tmd = md.topics.get(topic)
    check(tmd is not None and tmd.error is None, f"log topic {topic} does not exist: {tmd and tmd.error}")
    consumer.assign([TopicPartition(topic, p, 0) for p in tmd.partitions])
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < want:
        check(time.monotonic() < deadline, f"only {len(out)} of {want} records in {topic}")
        m = consumer.poll(0.5)
        if m is None:
            continue
        if m.error():
            check(m.error().code() == KafkaError._PARTITION_EOF, f"consumer error: {m.error()}")
            continue
        out.append(m)
    consumer.close()
    return out


def read_to_end(bootstrap, topic, timeout=30):
    """Every record of `topic`, from the beginning to the end of each partition."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "rill-mqtt-tests",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    md = consumer.list_topics(topic, timeout=10)
    tmd = md.topics.get(topic)
    check(tmd is not None and tmd.error is None, f"log topic {topic} does not exist: {tmd and tmd.error}")
    consumer.assign([TopicPartition(topic, p, 0) for p in tmd.partitions])
    out, eof = [], set()
    deadline = time.monotonic() + timeout
    while len(eof) < len(tmd.partitions):
        check(time.monotonic() < deadline, f"{topic} not read to its end within {timeout} s")
        m = consumer.poll(0.5)
        if m is None:
            continue
        if m.error():
            check(m.error().code() == KafkaError._PARTITION_EOF, f"consumer error: {m.error()}")
            eof.add(m.partition())
            continue
        out.append(m)
    consumer.close()
    return out


def headers(msg):
    return {k: v for k, v in (msg.headers() or [])}


def result(name, **fields):
    """Reports what a check saw, as `RESULT <name> <json>`, for the Rust test to assert on."""
    print(f"RESULT {name} {json.dumps(fields, default=str)}", flush=True)
