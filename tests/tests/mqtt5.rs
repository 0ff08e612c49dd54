//! MQTT 5 features with real clients (paho-mqtt in MQTT 5 mode, and hand-made packets where a
//! client library hides the wire): flow control and limits. Each script prints `RESULT` lines
//! with what it saw; the assertions are here.

use std::collections::HashMap;
use std::path::PathBuf;

use rill_tests::Node;

const RULES: &str = r#"
[[mqtt.rules]]
pattern = "devices/{device}/telemetry"
topic = "telemetry"
key = "device"
"#;

/// A node started with `[mqtt]` settings `mqtt` (and the rules above); the config file lives
/// as long as the node's test.
fn start(mqtt: &str) -> (Node, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path: PathBuf = dir.path().join("rill.toml");
    std::fs::write(&path, format!("[mqtt]\n{mqtt}\n{RULES}")).expect("write config");
    let node = Node::start_with(&["--config", path.to_str().expect("utf-8 path")]);
    (node, dir)
}

/// What a script reported: its `RESULT <name> <json object>` lines by name.
struct Results(HashMap<String, serde_json::Value>);

impl Results {
    /// Field `key` of the result `name`.
    fn get(&self, name: &str, key: &str) -> &serde_json::Value {
        self.0
            .get(name)
            .and_then(|v| v.get(key))
            .unwrap_or_else(|| panic!("no RESULT {name} with {key} in {:?}", self.0))
    }

    fn int(&self, name: &str, key: &str) -> i64 {
        let v = self.get(name, key);
        v.as_i64()
            .unwrap_or_else(|| panic!("RESULT {name} {key} is not an integer: {v}"))
    }

    fn str(&self, name: &str, key: &str) -> &str {
        let v = self.get(name, key);
        v.as_str()
            .unwrap_or_else(|| panic!("RESULT {name} {key} is not a string: {v}"))
    }
}

/// Runs `script` against the node and collects what it reported.
fn run(node: &Node, script: &str, args: &[&str]) -> Results {
    let addr = node.mqtt_addr();
    let mut full = vec!["--mqtt", addr.as_str()];
    full.extend_from_slice(args);
    let out = node.python(script, &full);
    assert!(out.contains("OK"), "{script} did not finish: {out}");
    let mut map = HashMap::new();
    for line in out.lines() {
        let Some((name, json)) = line.strip_prefix("RESULT ").and_then(|r| r.split_once(' '))
        else {
            continue;
        };
        let value =
            serde_json::from_str(json).unwrap_or_else(|e| panic!("bad RESULT line {line:?}: {e}"));
        map.insert(name.to_string(), value);
    }
    Results(map)
}

#[test]
fn mqtt5_flow_control_and_packet_limits() {
    let (node, _cfg) = start("receive_maximum = 4\nmax_packet_size = 4096");
    let r = run(&node, "mqtt5_limits.py", &[]);
    // §3.2.2.3: the limits in CONNACK.
    assert_eq!(r.int("connack", "receive_maximum"), 4);
    assert_eq!(r.int("connack", "maximum_packet_size"), 4096);
    assert_eq!(r.int("connack", "topic_alias_maximum"), 64);
    // §4.9: four QoS 2 publishes awaiting PUBREL are the quota; one PUBCOMP frees one; the
    // next is one too many: DISCONNECT 0x93 with a reason string.
    assert_eq!(r.int("receive_maximum", "pubrecs"), 4);
    assert_eq!(r.int("receive_maximum", "disconnect"), 0x93);
    let reason = r.str("receive_maximum", "reason");
    assert!(reason.contains("more than 4"), "{reason}");
    // The client's Receive Maximum of 2 bounds unacknowledged deliveries.
    assert_eq!(r.int("client_receive_maximum", "first_window"), 2);
    assert_eq!(r.int("client_receive_maximum", "after_one_ack"), 1);
    assert_eq!(r.int("client_receive_maximum", "total"), 5);
    // §3.1.2.11.4: a message above the client's Maximum Packet Size is skipped.
    assert_eq!(r.str("max_packet_size_out", "first"), "tiny");
    assert_eq!(r.int("max_packet_size_in", "disconnect"), 0x95);
    // §3.3.2.3.4: aliases 1 and 2 are set with the name, reused without it, then taken over.
    assert_eq!(
        r.str("topic_aliases", "sent"),
        "t1:1,t2:2,-:1,t3:1,t1:2,-:1"
    );
    // A failing SUBACK explains itself, unless the client asked for no problem information.
    assert_eq!(r.int("suback", "code"), 0x8F);
    let reason = r.str("suback", "reason");
    assert!(reason.contains("a/#/b"), "{reason}");
    assert_eq!(r.str("suback", "without_problem_info"), "");
    // The well-behaved client was never disturbed.
    assert_eq!(r.int("good_client", "published"), 4);
}

#[test]
fn mqtt5_server_keep_alive_replaces_the_clients() {
    let (node, _cfg) = start("server_keep_alive_secs = 2");
    let r = run(&node, "mqtt5_keepalive.py", &[]);
    assert_eq!(r.int("connack", "server_keep_alive"), 2);
    assert_eq!(r.int("silent", "server_keep_alive"), 2);
    // Asked for 60 s, held to 2 s: DISCONNECT 0x8D (printed wait: about 3 s).
    assert_eq!(r.int("silent", "disconnect"), 0x8D);
    assert!(r.str("silent", "reason").contains("keep alive"));
    assert_eq!(
        r.get("silent", "v311_alive"),
        &serde_json::Value::Bool(true)
    );
}

#[test]
fn mqtt5_overlapping_subscriptions_retain_options_and_properties() {
    let (node, _cfg) = start("");
    let r = run(&node, "mqtt5_subscriptions.py", &[]);
    // §3.3.4: one delivery per message, the highest granted QoS, every identifier.
    assert_eq!(r.int("overlap_v5", "count"), 2);
    assert_eq!(
        r.get("overlap_v5", "deliveries"),
        &serde_json::json!([["one-match", 0, [1]], ["three-match", 2, [1, 2]]])
    );
    assert_eq!(r.int("overlap_v311", "count"), 1);
    assert_eq!(r.get("overlap_v311", "qos"), &serde_json::json!([1]));
    // §3.8.3.1 Retain Handling: 0 always, 0 again, 1 on the existing filter: none, 1 on a new
    // filter, 2: none.
    assert_eq!(
        r.get("retain_handling", "counts"),
        &serde_json::json!([1, 1, 0, 1, 0])
    );
    assert_eq!(
        r.get("retain_as_published", "with_rap"),
        &serde_json::json!(true)
    );
    assert_eq!(
        r.get("retain_as_published", "without"),
        &serde_json::json!(false)
    );
    // §3.3.2.3.3: 30 s when published, at least 2 s spent waiting.
    let remaining = r.int("expiry_and_properties", "remaining");
    assert!(
        (1..=28).contains(&remaining),
        "remaining expiry {remaining}"
    );
    assert_eq!(r.int("expiry_and_properties", "payload_format"), 1);
    assert_eq!(
        r.str("expiry_and_properties", "content_type"),
        "application/json"
    );
    assert_eq!(
        r.get("expiry_and_properties", "response_topic"),
        &serde_json::json!(true)
    );
    assert_eq!(r.str("expiry_and_properties", "correlation"), "00636f7272");
    assert_eq!(
        r.get("expiry_and_properties", "user_properties"),
        &serde_json::json!([["k", "v"], ["site", "north"]])
    );
}

#[test]
fn mqtt5_qos2_exactly_once_across_sigkill() {
    let (mut node, _cfg) = start("");
    let tag = format!("q2r{}", std::process::id());
    let r = run(
        &node,
        "mqtt5_qos2_restart.py",
        &["--phase", "before", "--tag", &tag],
    );
    // §4.4: a session resumed after PUBREC gets PUBREL again, not the message.
    assert_eq!(r.str("before", "out_resumed_with"), "PUBREL");
    node.kill();
    node.restart();
    let r = run(
        &node,
        "mqtt5_qos2_restart.py",
        &["--phase", "after", "--tag", &tag],
    );
    let yes = serde_json::Value::Bool(true);
    assert_eq!(r.get("after", "a_session_present"), &yes);
    // Crash after PUBREC: the PUBREL is answered with PUBCOMP Success.
    assert_eq!(r.int("after", "a_pubcomp"), 0);
    // Crash after the append, before the PUBREC arrived: the DUP resend is recognised.
    assert_eq!(r.int("after", "b_pubrec"), 0);
    assert_eq!(r.int("after", "b_pubcomp"), 0);
    // Exactly one copy of each in the log and at the subscriber ("out" once, in the log).
    assert_eq!(
        r.get("after", "stored"),
        &serde_json::json!({"a": 1, "b": 1, "out": 1})
    );
    assert_eq!(
        r.get("after", "delivered"),
        &serde_json::json!({"a": 1, "b": 1, "out": 1})
    );
}

#[test]
fn mqtt5_enhanced_auth_scram_sha_256_and_reauthentication() {
    let (node, _cfg) = start("[mqtt.auth]\nenabled = true");
    let data = node.data_dir();
    let out = rill_tests::rill_cli(
        node.kafka_addr(),
        &[
            "device",
            "add",
            "scram-dev",
            "--data-dir",
            data.to_str().expect("utf-8 path"),
        ],
        b"s3cret\n",
    );
    assert!(out.status.success(), "rill device add failed: {out:?}");
    let creds = std::fs::read_to_string(data.join("mqtt-credentials")).expect("credentials");
    // `rill device add` stores a SCRAM-SHA-256 verifier beside the argon2 hash.
    assert!(
        creds.contains("scram-dev:$argon2id$") && creds.contains(":SCRAM-SHA-256$4096:"),
        "{creds}"
    );
    let r = run(
        &node,
        "mqtt5_enhanced_auth.py",
        &["--device", "scram-dev", "--password", "s3cret"],
    );
    // §4.12: the exchange at CONNECT; the client verified the server-final message.
    assert_eq!(r.int("connect", "code"), 0);
    assert_eq!(r.str("connect", "method"), "SCRAM-SHA-256");
    assert_eq!(
        r.get("connect", "server_verified"),
        &serde_json::json!(true)
    );
    assert_eq!(r.int("done", "puback"), 0);
    // §4.12.1: re-authentication ends with AUTH 0x00 and the server's signature.
    assert_eq!(r.int("reauth", "kind"), 15);
    assert_eq!(r.int("reauth", "code"), 0);
    assert_eq!(r.get("reauth", "server_verified"), &serde_json::json!(true));
    // A failed re-authentication: DISCONNECT 0x87.
    assert_eq!(r.int("bad_reauth", "kind"), 14);
    assert_eq!(r.int("bad_reauth", "code"), 0x87);
    // Wrong proof / unknown user: CONNACK 0x87; unknown method: 0x8C.
    assert_eq!(r.int("wrong_password", "code"), 0x87);
    assert_eq!(r.int("unknown_user", "code"), 0x87);
    assert_eq!(r.int("unknown_method", "code"), 0x8C);
    assert!(r.str("unknown_method", "reason").contains("SCRAM-SHA-1"));
    // AUTH on a password-authenticated connection: DISCONNECT 0x82.
    assert_eq!(r.int("auth_without_enhanced", "connack"), 0);
    assert_eq!(r.int("auth_without_enhanced", "kind"), 14);
    assert_eq!(r.int("auth_without_enhanced", "code"), 0x82);
}

#[test]
fn mqtt5_will_delay_and_session_expiry_together() {
    let (node, _cfg) = start("");
    let r = run(&node, "mqtt5_will_delay.py", &[]);
    let secs = |k: &str| {
        r.get("wills", k)
            .as_f64()
            .unwrap_or_else(|| panic!("no {k} will: {:?}", r.0))
    };
    // §3.1.3.2.2: the delay (2 s) when the session lasts longer ...
    let delayed = secs("delayed");
    assert!(
        (1.5..6.0).contains(&delayed),
        "delayed will after {delayed} s"
    );
    // ... the session expiry (1 s) when it ends first ...
    let expiry = secs("expiry");
    assert!(
        (0.5..4.0).contains(&expiry),
        "will at session end after {expiry} s"
    );
    // ... never when the session is resumed in time, at once when a Clean Start ends it.
    assert_eq!(r.get("wills", "resumed"), &serde_json::Value::Null);
    let clean = secs("clean");
    assert!(clean < 3.0, "will after Clean Start reconnect: {clean} s");
}

#[test]
fn mqtt5_server_redirection() {
    for (moved, code) in [("false", 0x9C), ("true", 0x9D)] {
        let (node, _cfg) = start(&format!(
            "server_reference = \"other.example:1883\"\nserver_moved = {moved}"
        ));
        let r = run(&node, "mqtt5_redirect.py", &[]);
        // §4.11: CONNACK 0x9C / 0x9D with the Server Reference.
        assert_eq!(r.int("redirect", "code"), code);
        assert_eq!(r.str("redirect", "reference"), "other.example:1883");
        // 3.1.1 has no redirection: "server unavailable" (return code 3, paho's 0x88).
        assert_eq!(r.int("redirect", "v311_code"), 0x88);
    }
}
