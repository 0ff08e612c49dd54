//! MQTT over WebSocket (`--mqtt-ws-listen`, `[mqtt.tls] ws_listen`) with real clients: paho-mqtt
//! (`transport="websockets"`, MQTT 3.1.1 and 5, plain and over TLS with a test CA) and MQTT.js
//! from npm (over WebSocket and TCP: subscription identifiers, topic aliases, QoS 0/1/2, and
//! enhanced authentication with SCRAM-SHA-256); and a raw WebSocket client (`websockets` from
//! PyPI, tests/py/mqtt_ws_raw.py) for what client libraries hide: subprotocol negotiation
//! (`mqtt`, `mqttv3.1`, none, an unknown one refused with 400), any path, a CONNECT split over
//! three frames, two PUBLISHes in one frame, a PUBLISH spanning frames, and a text frame
//! closing the connection with a close frame (1003).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rill_tests::Node;

const RULES: &str = r#"
[[mqtt.rules]]
pattern = "devices/{device}/telemetry"
topic = "telemetry"
key = "device"
"#;

/// A node with the WebSocket listener on a free port and `extra` config; the config file lives
/// in the returned directory.
fn start(extra: &str) -> (Node, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path: PathBuf = dir.path().join("rill.toml");
    std::fs::write(&path, format!("{RULES}\n{extra}")).expect("write config");
    let node = Node::start_with(&[
        "--config",
        path.to_str().expect("utf-8 path"),
        "--mqtt-ws-listen",
        "127.0.0.1:0",
    ]);
    (node, dir)
}

/// A test CA and a server certificate for localhost / 127.0.0.1 signed by it: (ca, cert, key).
fn test_ca(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "rill test CA");
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let key = KeyPair::generate().expect("server key");
    let params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("server params");
    let cert = params.signed_by(&key, &ca, &ca_key).expect("sign");
    let paths = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    );
    std::fs::write(&paths.0, ca.pem()).expect("write CA");
    std::fs::write(&paths.1, cert.pem()).expect("write cert");
    std::fs::write(&paths.2, key.serialize_pem()).expect("write key");
    paths
}

/// The `RESULT <name> <json>` lines of a script's output, by name.
fn results(out: &str) -> std::collections::HashMap<String, serde_json::Value> {
    out.lines()
        .filter_map(|l| l.strip_prefix("RESULT "))
        .filter_map(|r| r.split_once(' '))
        .map(|(name, json)| {
            let v = serde_json::from_str(json).unwrap_or_else(|e| panic!("bad RESULT {json}: {e}"));
            (name.to_string(), v)
        })
        .collect()
}

#[test]
fn mqtt_ws_paho_v311_v5_and_secure_websocket() {
    let certs = tempfile::tempdir().expect("tempdir");
    let (ca, cert, key) = test_ca(certs.path());
    let (node, _cfg) = start(&format!(
        "[mqtt.tls]\nlisten = \"127.0.0.1:0\"\nws_listen = \"127.0.0.1:0\"\ncert = {:?}\nkey = {:?}\n",
        cert.display().to_string(),
        key.display().to_string()
    ));
    let ws = node.listening_field("mqtt_ws");
    let wss = node.logged_addr("MQTT secure WebSocket listener");
    let mqtt = node.mqtt_addr();
    let out = node.python(
        "mqtt_ws.py",
        &[
            "--mqtt",
            &mqtt,
            "--ws-addr",
            &ws,
            "--wss-addr",
            &wss,
            "--ca",
            ca.to_str().expect("utf-8 path"),
        ],
    );
    assert!(out.contains("OK"), "{out}");
    let r = results(&out);
    for name in ["ws_v311", "ws_v5", "wss_v5"] {
        let got = &r
            .get(name)
            .unwrap_or_else(|| panic!("no RESULT {name}: {out}"));
        // Each QoS arrives once at its own QoS over the WebSocket, and at the TCP subscriber.
        assert_eq!(
            got["delivered"],
            serde_json::json!({format!("{name}-q0"): 0, format!("{name}-q1"): 1, format!("{name}-q2"): 2}),
            "{name}"
        );
        let want: Vec<String> = (0..3).map(|q| format!("{name}-q{q}")).collect();
        assert_eq!(got["tcp"], serde_json::json!(want), "{name}");
        // The same three records, in order, in the log (read with confluent-kafka).
        assert_eq!(got["stored"], serde_json::json!(want), "{name}");
        assert_eq!(got["granted"], serde_json::json!([2]), "{name}");
    }
}

/// The packets of one RESULT of `mqtt_ws_raw.py` (hex strings), as bytes.
fn packets(r: &serde_json::Value) -> Vec<Vec<u8>> {
    let hex = |s: &str| -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    };
    r["packets"]
        .as_array()
        .unwrap_or_else(|| panic!("no packets in {r}"))
        .iter()
        .map(|p| hex(p.as_str().expect("hex string")))
        .collect()
}

/// The PUBACKs among `got`, and the payloads of the QoS 1 PUBLISHes to `topic` among them.
fn pubacks_and_payloads(got: &[Vec<u8>], topic: &str) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let pubacks = got.iter().filter(|p| p[0] == 0x40).cloned().collect();
    let payloads = got
        .iter()
        .filter(|p| p[0] & 0xf0 == 0x30)
        .map(|p| {
            // fixed header (2) + topic (2 + len) + packet id (2), then the payload
            let start = 2 + 2 + topic.len() + 2;
            p[start..].to_vec()
        })
        .collect();
    (pubacks, payloads)
}

#[test]
fn mqtt_ws_raw_frames_subprotocols_and_text_frame() {
    let (node, _cfg) = start("");
    let addr = node.listening_field("mqtt_ws");
    let out = node.python("mqtt_ws_raw.py", &["--ws-addr", &addr]);
    assert!(out.contains("OK"), "{out}");
    let r = results(&out);
    let get = |name: &str| {
        r.get(name)
            .unwrap_or_else(|| panic!("no RESULT {name}: {out}"))
    };
    // A subprotocol MQTT does not define is refused at the upgrade; offering none is accepted
    // without one.
    assert_eq!(
        get("unknown_subprotocol"),
        &serde_json::json!({"status": 400, "subprotocol": null})
    );
    assert_eq!(
        get("no_subprotocol"),
        &serde_json::json!({"status": 101, "subprotocol": null})
    );
    // `mqttv3.1` is echoed, on any path.
    assert_eq!(
        get("mqttv31"),
        &serde_json::json!({"status": 101, "subprotocol": "mqttv3.1"})
    );
    // The CONNECT split over three frames is accepted.
    assert_eq!(
        packets(get("connack")),
        vec![vec![0x20, 2, 0, 0]],
        "CONNACK"
    );
    assert_eq!(
        packets(get("suback")),
        vec![vec![0x90, 3, 0, 1, 1]],
        "SUBACK QoS 1"
    );
    let topic = "devices/raw-ws/telemetry";
    // Two PUBLISHes in one frame: each PUBACKed and delivered, in order.
    let (pubacks, payloads) = pubacks_and_payloads(&packets(get("two_in_one_frame")), topic);
    assert_eq!(pubacks, vec![vec![0x40, 2, 0, 2], vec![0x40, 2, 0, 3]]);
    assert_eq!(payloads, vec![b"first".to_vec(), b"second".to_vec()]);
    // A PUBLISH spanning two frames, followed by a whole one in the second frame.
    let (pubacks, payloads) = pubacks_and_payloads(&packets(get("spanning_frames")), topic);
    assert_eq!(pubacks, vec![vec![0x40, 2, 0, 4], vec![0x40, 2, 0, 5]]);
    assert_eq!(payloads, vec![b"third".to_vec(), b"fourth".to_vec()]);
    // A text frame: the server closes with a close frame (1003, unsupported data).
    assert_eq!(
        get("text_frame"),
        &serde_json::json!({"closed": true, "close_frame_received": true, "code": 1003})
    );
    // The listener keeps serving: `mqtt` is echoed for a new connection on `/`.
    let after = get("after_close");
    assert_eq!(after["status"], 101, "{after}");
    assert_eq!(after["subprotocol"], "mqtt", "{after}");
    assert_eq!(packets(after), vec![vec![0x20, 2, 0, 0]], "CONNACK");
}

/// The npm `mqtt` package (MQTT.js), installed on first use into the test's target temp dir
/// (once per test process: the tests run in parallel); `None` (skip) when Node or npm are
/// missing outside CI.
fn mqtt_js() -> Option<PathBuf> {
    static INSTALLED: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    INSTALLED.get_or_init(install_mqtt_js).clone()
}

fn install_mqtt_js() -> Option<PathBuf> {
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let have = |cmd: &str| {
        Command::new(cmd)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !have("node") || !have("npm") {
        assert!(
            !in_ci,
            "node and npm are required for the MQTT.js test (CI=true)"
        );
        eprintln!("skipping the MQTT.js test: node or npm is not installed");
        return None;
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("npm-mqtt5");
    if !dir.join("node_modules/mqtt/package.json").exists() {
        std::fs::create_dir_all(&dir).expect("npm dir");
        let out = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&dir)
            .arg("mqtt@5")
            .output()
            .expect("run npm");
        assert!(
            out.status.success(),
            "npm install mqtt@5 failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Some(dir.join("node_modules"))
}

#[test]
fn mqtt_ws_mqtt_js() {
    let Some(node_modules) = mqtt_js() else {
        return;
    };
    let (node, _cfg) = start("");
    let script = rill_tests::repo_root().join("tests/js/mqtt_ws.js");
    // The same script over WebSocket and over TCP.
    for url in [
        format!("ws://{}/mqtt", node.listening_field("mqtt_ws")),
        format!("mqtt://{}", node.mqtt_addr()),
    ] {
        let mut cmd = Command::new("node");
        cmd.arg(&script).arg(&url).env("NODE_PATH", &node_modules);
        let out = rill_tests::run_with_timeout(cmd, b"", Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{e}\nnode log:\n{}", node.log()));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("OK"),
            "mqtt_ws.js {url} failed:\n{stdout}\n{}\nnode log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            node.log()
        );
        let r = results(&stdout);
        for (name, v5) in [("mqttjs_v311", false), ("mqttjs_v5", true)] {
            let got = r
                .get(name)
                .unwrap_or_else(|| panic!("no RESULT {name}: {stdout}"));
            assert_eq!(got["granted"], serde_json::json!([2]), "{url} {name}");
            // MQTT.js gives one identifier as a number.
            let ids = if v5 {
                serde_json::json!(7)
            } else {
                serde_json::Value::Null
            };
            let want: Vec<serde_json::Value> = (0..3)
                .map(|q| {
                    // MQTT 5: deliveries carry topic aliases (the first with the name, later
                    // QoS 0/1 ones only the alias); MQTT.js resolves them to the topic.
                    serde_json::json!({"payload": format!("{name}-q{q}"), "topic": true,
                        "alias": v5, "qos": q, "ids": ids})
                })
                .collect();
            assert_eq!(got["got"], serde_json::json!(want), "{url} {name}");
        }
    }
}

#[test]
fn mqtt_js_enhanced_auth_over_tcp_and_websocket() {
    let Some(node_modules) = mqtt_js() else {
        return;
    };
    let (node, _cfg) = start("[mqtt.auth]\nenabled = true\n");
    let data = node.data_dir();
    let out = rill_tests::rill_cli(
        node.kafka_addr(),
        &[
            "device",
            "add",
            "jsdev",
            "--data-dir",
            data.to_str().expect("utf-8 path"),
        ],
        b"js-secret\n",
    );
    assert!(out.status.success(), "rill device add failed: {out:?}");
    let script = rill_tests::repo_root().join("tests/js/mqtt_enhanced_auth.js");
    for url in [
        format!("mqtt://{}", node.mqtt_addr()),
        format!("ws://{}/mqtt", node.listening_field("mqtt_ws")),
    ] {
        let mut cmd = Command::new("node");
        cmd.arg(&script)
            .args([url.as_str(), "jsdev", "js-secret"])
            .env("NODE_PATH", &node_modules);
        let out = rill_tests::run_with_timeout(cmd, b"", Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{e}\nnode log:\n{}", node.log()));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("OK"),
            "mqtt_enhanced_auth.js {url} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r = results(&stdout);
        // One AUTH round trip, CONNACK success with the server's signature, which MQTT.js's
        // SCRAM client verified; the device then publishes under its ACL.
        assert_eq!(
            r["mqttjs_scram"],
            serde_json::json!({"auths": 1, "code": 0, "verified": true, "published": true}),
            "{url}"
        );
        assert_eq!(r["mqttjs_wrong_password"]["code"], 0x87, "{url}");
        assert_eq!(r["mqttjs_unknown_method"]["code"], 0x8C, "{url}");
        assert_eq!(r["mqttjs_unknown_method"]["auths"], 0, "{url}");
    }
}
