// MQTT.js (npm `mqtt`) with MQTT 5 enhanced authentication: SCRAM-SHA-256 written on Node's
// crypto, driven through CONNECT's authenticationMethod/authenticationData and MQTT.js's
// `handleAuth` hook. Prints `RESULT <name> <json>` lines for tests/tests/mqtt_ws.rs, then `OK`.
// Usage: node mqtt_enhanced_auth.js URL USER PASSWORD
const crypto = require("crypto");
const mqtt = require("mqtt");

const [url, user, password] = process.argv.slice(2);
const METHOD = "SCRAM-SHA-256";

function scram(password) {
  const nonce = crypto.randomBytes(18).toString("base64");
  const bare = `n=${user},r=${nonce}`;
  const state = {};
  return {
    first: Buffer.from(`n,,${bare}`),
    final(serverFirst) {
      const attrs = Object.fromEntries(
        serverFirst.toString().split(",").map((kv) => [kv[0], kv.slice(2)]));
      if (!attrs.r.startsWith(nonce)) throw new Error("server nonce does not extend ours");
      const salted = crypto.pbkdf2Sync(password, Buffer.from(attrs.s, "base64"),
        parseInt(attrs.i, 10), 32, "sha256");
      const clientKey = crypto.createHmac("sha256", salted).update("Client Key").digest();
      const storedKey = crypto.createHash("sha256").update(clientKey).digest();
      const without = `c=biws,r=${attrs.r}`;
      state.authMessage = `${bare},${serverFirst.toString()},${without}`;
      const sig = crypto.createHmac("sha256", storedKey).update(state.authMessage).digest();
      const proof = Buffer.from(clientKey.map((b, i) => b ^ sig[i]));
      state.serverKey = crypto.createHmac("sha256", salted).update("Server Key").digest();
      return Buffer.from(`${without},p=${proof.toString("base64")}`);
    },
    verify(serverFinal) {
      const want = crypto.createHmac("sha256", state.serverKey).update(state.authMessage).digest();
      return serverFinal && serverFinal.toString() === `v=${want.toString("base64")}`;
    },
  };
}

// Connects with SCRAM; resolves with what happened (connack code, verified server signature).
function attempt(name, pw, method) {
  const s = scram(pw);
  return new Promise((resolve) => {
    const client = mqtt.connect(url, {
      protocolVersion: 5,
      clientId: `${user}`,
      reconnectPeriod: 0,
      connectTimeout: 10000,
      properties: { authenticationMethod: method, authenticationData: s.first },
    });
    let auths = 0;
    client.handleAuth = (packet, cb) => {
      auths += 1;
      try {
        const data = s.final(packet.properties.authenticationData);
        cb(null, { cmd: "auth", reasonCode: 0x18,
          properties: { authenticationMethod: method, authenticationData: data } });
      } catch (e) {
        cb(e);
      }
    };
    const done = (fields) => {
      console.log(`RESULT ${name} ${JSON.stringify({ auths, ...fields })}`);
      client.end(true, () => resolve());
    };
    client.on("connect", (connack) => {
      const verified = s.verify(connack.properties && connack.properties.authenticationData);
      client.publish(`devices/${user}/telemetry`, "mqttjs-scram", { qos: 1 }, (err) => {
        done({ code: connack.reasonCode, verified, published: !err });
      });
    });
    client.on("error", (e) => done({ code: e.code === undefined ? null : e.code, error: e.message }));
  });
}

(async () => {
  await attempt("mqttjs_scram", password, METHOD);
  await attempt("mqttjs_wrong_password", "wrong", METHOD);
  await attempt("mqttjs_unknown_method", password, "SCRAM-SHA-1");
  console.log("OK");
})().catch((e) => {
  console.log(`FAIL: ${e && e.stack ? e.stack : e}`);
  process.exit(1);
});
