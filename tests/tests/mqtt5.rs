//! MQTT 5 features with real clients (paho-mqtt in MQTT 5 mode, and hand-made packets where a
//! client library hides the wire): flow control and limits. Each script prints `RESULT` lines
//! with what it saw; the assertions are here.

use std::collections::HashMap;
use std::path::PathBuf;

use rill_tests::{rill_failpoints_bin, Launch, Node};

const RULES: &str = r#"
[[mqtt.rules]]
pattern = "devices/{device}/telemetry"
topic = "telemetry"
key = "device"
"#;

/// A node started with `[mqtt]` settings `mqtt` (and the rules above); the config file lives
/// as long as the node's test.
fn start(mqtt: &str) -> (Node, tempfile::TempDir) {
    start_launched(Launch::default(), mqtt)
}

/// [`start`] through `launch` (another binary, failpoints).
fn start_launched(launch: Launch, mqtt: &str) -> (Node, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path: PathBuf = dir.path().join("rill.toml");
    std::fs::write(&path, format!("[mqtt]\n{mqtt}\n{RULES}")).expect("write config");
    let node = Node::start_launched(launch, &["--config", path.to_str().expect("utf-8 path")]);
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
    // §3.1.3.2.4: the will carries its Message Expiry Interval (30 s, counting down).
    let remaining = r.int("will_expiry", "remaining");
    assert!((20..=30).contains(&remaining), "will expiry {remaining}");
    // §3.8.3.1 No Local: the will was published (another subscriber got it, the log holds
    // it under the client's id) but not to its own client's No Local subscription.
    assert_eq!(
        r.get("will_no_local", "will_seen"),
        &serde_json::json!(true)
    );
    assert_eq!(r.int("will_no_local", "logged"), 1);
    assert_eq!(
        r.str("will_no_local", "client_id"),
        r.str("will_no_local", "expected_client_id")
    );
    assert_eq!(
        r.get("will_no_local", "own_subscription"),
        &serde_json::json!(["nl/marker"])
    );
}

/// The will restart scenario of `mqtt5_will_restart.py` up to the first restart; returns the
/// connection loss time (Unix s) and the `after` results.
fn will_restart_until_after(node: &mut Node, tag: &str, w1_within: &str) -> (String, Results) {
    let http = node.http_addr().to_string();
    let r = run(
        node,
        "mqtt5_will_restart.py",
        &["--http", &http, "--phase", "before", "--tag", tag],
    );
    let dropped_at = r.get("before", "dropped_at").to_string();
    node.kill();
    node.restart();
    let http = node.http_addr().to_string();
    let r = run(
        node,
        "mqtt5_will_restart.py",
        &[
            "--http",
            &http,
            "--phase",
            "after",
            "--tag",
            tag,
            "--dropped-at",
            &dropped_at,
            "--w1-within",
            w1_within,
        ],
    );
    assert_eq!(
        r.get("after", "w2_session_present"),
        &serde_json::json!(true)
    );
    let resumed = r
        .get("after", "w2_resumed_after")
        .as_f64()
        .unwrap_or(f64::MAX);
    assert!(
        resumed < 10.0,
        "W2 resumed {resumed} s after its connection loss, after its 10 s will delay: the \
         restart took too long for this test"
    );
    (dropped_at, r)
}

#[test]
fn mqtt5_delayed_will_survives_sigkill() {
    // The broken build first: wills kept in memory only (as before they were saved with their
    // session) are lost in the restart, and this test sees it.
    let broken = Launch {
        program: Some(rill_failpoints_bin()),
        env: vec![("RILL_FAILPOINTS".into(), "mqtt_will_in_memory_only".into())],
        ..Launch::default()
    };
    let (mut node, _cfg) = start_launched(broken, "");
    let tag = format!("wr0{}", std::process::id());
    let (_, r) = will_restart_until_after(&mut node, &tag, "6");
    assert_eq!(r.get("after", "wills"), &serde_json::json!([]));
    drop(node);

    let (mut node, _cfg) = start("");
    let tag = format!("wr{}", std::process::id());
    let (dropped_at, r) = will_restart_until_after(&mut node, &tag, "8");
    // §3.1.3.2.2: W1's will once its 3 s delay (from the connection loss) had passed, or at
    // once after the restart if that took longer; W2 resumed in time: no will.
    let wills = r.get("after", "wills").as_array().expect("wills").clone();
    assert_eq!(wills.len(), 1, "{wills:?}");
    assert_eq!(wills[0][0], "w1", "{wills:?}");
    let at = wills[0][1].as_f64().expect("seconds");
    assert!(
        at >= 2.8,
        "W1's will {at} s after the connection loss, before its delay"
    );
    // A second SIGKILL: W2's cancelled will stays cancelled, W1's is not sent again.
    node.kill();
    node.restart();
    let http = node.http_addr().to_string();
    let r = run(
        &node,
        "mqtt5_will_restart.py",
        &[
            "--http",
            &http,
            "--phase",
            "final",
            "--tag",
            &tag,
            "--dropped-at",
            &dropped_at,
        ],
    );
    assert_eq!(r.get("final", "wills"), &serde_json::json!([]));
}

#[test]
fn mqtt5_repeated_user_properties_both_ways() {
    let (node, _cfg) = start("");
    let r = run(&node, "mqtt5_user_properties.py", &[]);
    // §3.3.2.3.7: a name may repeat; the order is kept when forwarding.
    let props = serde_json::json!([["k", "a"], ["site", "x"], ["k", "b"]]);
    assert_eq!(r.get("mqtt_to_mqtt", "user_properties"), &props);
    // Kafka headers are a list: a Kafka consumer sees both `k` headers, in order.
    assert_eq!(r.get("mqtt_to_kafka", "headers"), &props);
    // A Kafka producer's repeated headers become repeated user properties.
    assert_eq!(
        r.get("kafka_to_mqtt", "user_properties"),
        &serde_json::json!([["tag", "1"], ["other", "o"], ["tag", "2"]])
    );
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
