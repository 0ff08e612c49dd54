//! MQTT over WebSocket (`--mqtt-ws-listen`, `[mqtt.tls] ws_listen`) with real clients: paho-mqtt
//! (`transport="websockets"`, MQTT 3.1.1 and 5, plain and over TLS with a test CA) and MQTT.js
//! from npm (over WebSocket and TCP: subscription identifiers, topic aliases, QoS 0/1/2, and
//! enhanced authentication with SCRAM-SHA-256); and a raw WebSocket client (tokio-tungstenite) for what client libraries hide:
//! a CONNECT split over three frames, two PUBLISHes in one frame, subprotocol echo, and a text
//! frame closing the connection with a close frame.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use rill_tests::Node;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Bytes, Message};

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

/// MQTT 3.1.1 packets the raw client sends.
mod wire {
    /// The remaining-length varint.
    pub fn packet(header: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![header];
        let mut n = body.len();
        loop {
            let mut b = (n % 128) as u8;
            n /= 128;
            if n > 0 {
                b |= 0x80;
            }
            out.push(b);
            if n == 0 {
                break;
            }
        }
        out.extend_from_slice(body);
        out
    }

    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u16).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    }

    pub fn connect(client_id: &str) -> Vec<u8> {
        let mut b = Vec::new();
        string(&mut b, "MQTT");
        b.extend_from_slice(&[4, 0x02, 0, 30]);
        string(&mut b, client_id);
        packet(0x10, &b)
    }

    pub fn subscribe(pkid: u16, filter: &str) -> Vec<u8> {
        let mut b = pkid.to_be_bytes().to_vec();
        string(&mut b, filter);
        b.push(1);
        packet(0x82, &b)
    }

    pub fn publish_qos1(pkid: u16, topic: &str, payload: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        string(&mut b, topic);
        b.extend_from_slice(&pkid.to_be_bytes());
        b.extend_from_slice(payload);
        packet(0x32, &b)
    }

    /// Splits whole packets off the front of `buf`.
    pub fn take(buf: &mut Vec<u8>) -> Option<Vec<u8>> {
        let mut len = 0usize;
        let mut shift = 0;
        let mut i = 1;
        loop {
            let b = *buf.get(i)?;
            len |= ((b & 0x7f) as usize) << shift;
            shift += 7;
            i += 1;
            if b & 0x80 == 0 {
                break;
            }
        }
        if buf.len() < i + len {
            return None;
        }
        Some(buf.drain(..i + len).collect())
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// Opens a WebSocket to `addr` at `path`, offering `protocol`; returns it and the subprotocol
/// the server chose.
async fn open(
    addr: &str,
    path: &str,
    protocol: &str,
) -> Result<(Ws, Option<String>), tokio_tungstenite::tungstenite::Error> {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut req = format!("ws://{addr}{path}")
        .into_client_request()
        .expect("request");
    req.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_str(protocol).expect("header"),
    );
    let (ws, resp) = tokio_tungstenite::client_async(req, tcp).await?;
    let chosen = resp
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    Ok((ws, chosen))
}

/// Reads binary frames until `n` whole MQTT packets arrived (at most 10 s).
async fn packets(ws: &mut Ws, buf: &mut Vec<u8>, n: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while out.len() < n {
        while let Some(p) = wire::take(buf) {
            out.push(p);
        }
        if out.len() >= n {
            break;
        }
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} packets: {out:?}", out.len()))
            .expect("stream ended")
            .expect("websocket error");
        match msg {
            Message::Binary(b) => buf.extend_from_slice(&b),
            other => panic!("unexpected frame {other:?}"),
        }
    }
    out
}

#[test]
fn mqtt_ws_raw_frames_subprotocols_and_text_frame() {
    let (node, _cfg) = start("");
    let addr = node.listening_field("mqtt_ws");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        // A subprotocol MQTT does not define is refused at the upgrade.
        let refused = open(&addr, "/mqtt", "wamp").await;
        assert!(
            matches!(&refused, Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 400),
            "{refused:?}"
        );
        // `mqttv3.1` is echoed, on any path.
        let (mut ws, chosen) = open(&addr, "/some/where", "mqttv3.1").await.expect("open");
        assert_eq!(chosen.as_deref(), Some("mqttv3.1"));
        // One CONNECT split over three frames.
        let connect = wire::connect("raw-ws-client");
        for part in [&connect[..3], &connect[3..9], &connect[9..]] {
            ws.send(Message::Binary(Bytes::copy_from_slice(part)))
                .await
                .expect("send");
        }
        let mut buf = Vec::new();
        let connack = packets(&mut ws, &mut buf, 1).await;
        assert_eq!(connack, vec![vec![0x20, 2, 0, 0]], "CONNACK accepted");
        let topic = "devices/raw-ws/telemetry";
        ws.send(Message::Binary(wire::subscribe(1, topic).into()))
            .await
            .expect("send");
        let suback = packets(&mut ws, &mut buf, 1).await;
        assert_eq!(suback, vec![vec![0x90, 3, 0, 1, 1]], "SUBACK QoS 1");
        // Two PUBLISHes in one frame.
        let mut two = wire::publish_qos1(2, topic, b"first");
        two.extend(wire::publish_qos1(3, topic, b"second"));
        ws.send(Message::Binary(two.into())).await.expect("send");
        let got = packets(&mut ws, &mut buf, 4).await;
        let pubacks: Vec<&Vec<u8>> = got.iter().filter(|p| p[0] == 0x40).collect();
        assert_eq!(
            pubacks,
            vec![&vec![0x40, 2, 0, 2], &vec![0x40, 2, 0, 3]],
            "{got:?}"
        );
        let delivered: Vec<Vec<u8>> = got
            .iter()
            .filter(|p| p[0] & 0xf0 == 0x30)
            .map(|p| {
                // fixed header (2) + topic (2 + len) + packet id (2), then the payload
                let start = 2 + 2 + topic.len() + 2;
                p[start..].to_vec()
            })
            .collect();
        assert_eq!(delivered, vec![b"first".to_vec(), b"second".to_vec()]);
        // A text frame: the server closes with a close frame (1003, unsupported data).
        ws.send(Message::Text("not binary".into()))
            .await
            .expect("send");
        let close = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Close(frame))) => return frame,
                    Some(Ok(_)) => continue,
                    other => panic!("no close frame: {other:?}"),
                }
            }
        })
        .await
        .expect("close frame within 10 s");
        assert_eq!(close.map(|f| f.code), Some(CloseCode::Unsupported));

        // The listener keeps serving: `mqtt` is echoed for a new connection.
        let (mut ws, chosen) = open(&addr, "/", "mqtt").await.expect("open");
        assert_eq!(chosen.as_deref(), Some("mqtt"));
        ws.send(Message::Binary(wire::connect("raw-ws-2").into()))
            .await
            .expect("send");
        let mut buf = Vec::new();
        assert_eq!(packets(&mut ws, &mut buf, 1).await, vec![vec![0x20, 2, 0, 0]]);
    });
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
