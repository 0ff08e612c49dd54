// MQTT.js (npm `mqtt`) over WebSocket, MQTT 3.1.1 and 5: subscribe (MQTT 5 with a subscription
// identifier, and a Topic Alias Maximum so deliveries come with topic aliases), publish QoS
// 0/1/2, receive them under the right topic. Prints `RESULT <name> <json>` lines for the Rust
// test (tests/tests/mqtt_ws.rs) to assert on, then `OK`.
// Usage: node mqtt_ws.js ws://HOST:PORT/PATH
const mqtt = require("mqtt");

const url = process.argv[2];

async function roundtrip(name, protocolVersion) {
  const tag = `${name}-${process.pid}-${Date.now()}`;
  const topic = `devices/${tag}/telemetry`;
  const opts = { protocolVersion, clientId: `${tag}-sub`, reconnectPeriod: 0, connectTimeout: 10000 };
  const subOpts5 = protocolVersion === 5 ? { properties: { topicAliasMaximum: 4 } } : {};
  const sub = await mqtt.connectAsync(url, { ...opts, ...subOpts5 });
  const got = [];
  const done = new Promise((resolve) => {
    sub.on("message", (t, payload, packet) => {
      got.push({
        payload: payload.toString(),
        topic: t === topic,
        alias: Boolean(packet.properties && packet.properties.topicAlias),
        qos: packet.qos,
        ids: (packet.properties && packet.properties.subscriptionIdentifier) || null,
      });
      if (got.length === 3) resolve();
    });
  });
  const subOpts = { qos: 2 };
  if (protocolVersion === 5) subOpts.properties = { subscriptionIdentifier: 7 };
  const granted = await sub.subscribeAsync(`devices/${tag}/#`, subOpts);
  const pub = await mqtt.connectAsync(url, { ...opts, clientId: tag });
  for (const qos of [0, 1, 2]) {
    await pub.publishAsync(topic, `${name}-q${qos}`, { qos });
  }
  const timeout = new Promise((_, reject) =>
    setTimeout(() => reject(new Error(`only ${got.length} of 3 messages`)), 15000));
  await Promise.race([done, timeout]);
  got.sort((a, b) => a.qos - b.qos);
  console.log(`RESULT ${name} ${JSON.stringify({ granted: granted.map((g) => g.qos), got })}`);
  await pub.endAsync();
  await sub.endAsync();
}

(async () => {
  await roundtrip("mqttjs_v311", 4);
  await roundtrip("mqttjs_v5", 5);
  console.log("OK");
})().catch((e) => {
  console.log(`FAIL: ${e && e.stack ? e.stack : e}`);
  process.exit(1);
});
