//! The MQTT front end with real clients (paho-mqtt; confluent-kafka reads the log): QoS 0/1/2
//! ingest through mapping rules, acknowledged publishes surviving SIGKILL, subscriptions served
//! from the log, retained and will messages, persistent sessions across reconnects and
//! restarts, authentication and ACLs, and bad input closing only the offending connection.

use std::path::PathBuf;

use rill_tests::Node;

const RULES: &str = r#"
[[mqtt.rules]]
pattern = "devices/{device}/telemetry"
topic = "telemetry"
key = "device"

[[mqtt.rules]]
pattern = "commands/{device}"
topic = "commands"
"#;

const AUTH: &str = r#"
[mqtt.auth]
enabled = true
publish = ["devices/{client_id}/#"]
subscribe = ["commands/{client_id}/#", "commands/{client_id}"]
"#;

/// A config file with `body`, kept for the life of the test.
struct ConfigFile {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn config(body: &str) -> ConfigFile {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("rill.toml");
    std::fs::write(&path, body).expect("write config");
    ConfigFile { _dir: dir, path }
}

fn start(cfg: &ConfigFile) -> Node {
    let path = cfg.path.to_str().expect("utf-8 path");
    Node::start_with(&["--config", path])
}

fn py(node: &Node, script: &str, args: &[&str]) -> String {
    let addr = node.mqtt_addr();
    let mut full = vec!["--mqtt", addr.as_str()];
    full.extend_from_slice(args);
    let out = node.python(script, &full);
    assert!(out.contains("OK"), "{script} did not finish: {out}");
    out
}

#[test]
fn mqtt_qos_0_1_2_publishes_land_in_mapped_topics() {
    let cfg = config(RULES);
    let node = start(&cfg);
    py(&node, "mqtt_ingest.py", &[]);
}

#[test]
fn mqtt_subscriptions_retained_kafka_downlink_and_shared() {
    let cfg = config(RULES);
    let node = start(&cfg);
    py(&node, "mqtt_subscribe.py", &[]);
}

#[test]
fn mqtt_will_messages_and_keepalive() {
    let cfg = config(RULES);
    let node = start(&cfg);
    py(&node, "mqtt_will.py", &[]);
}

fn session_roundtrip(v5: bool) {
    let cfg = config(RULES);
    let mut node = start(&cfg);
    let id = if v5 { "sess-v5" } else { "sess-v311" };
    let mut base = vec!["--client-id", id];
    if v5 {
        base.push("--v5");
    }
    let with = |extra: &[&'static str]| {
        let mut a = base.clone();
        a.extend_from_slice(extra);
        a
    };
    py(&node, "mqtt_session.py", &with(&["--phase", "subscribe"]));
    py(
        &node,
        "mqtt_session.py",
        &with(&["--phase", "publish", "--tag", "a"]),
    );
    py(
        &node,
        "mqtt_session.py",
        &with(&["--phase", "receive", "--tag", "a"]),
    );
    // Queued while away, then the node restarts (SIGKILL) before the client comes back.
    py(
        &node,
        "mqtt_session.py",
        &with(&["--phase", "publish", "--tag", "b"]),
    );
    node.kill();
    node.restart();
    py(
        &node,
        "mqtt_session.py",
        &with(&["--phase", "receive", "--tag", "b"]),
    );
}

#[test]
fn mqtt_persistent_session_v311_queues_across_reconnect_and_restart() {
    session_roundtrip(false);
}

#[test]
fn mqtt_persistent_session_v5_queues_across_reconnect_and_restart() {
    session_roundtrip(true);
}

#[test]
fn mqtt_acknowledged_publishes_survive_sigkill() {
    let cfg = config(RULES);
    let mut node = start(&cfg);
    let acked = node.scratch().join("mqtt-acked.json");
    let acked_s = acked.to_str().expect("utf-8 path");
    let out = py(&node, "mqtt_crash_publish.py", &["--out", acked_s]);
    assert!(
        out.contains("acked 800"),
        "not every publish was acknowledged: {out}"
    );
    // Right after the last PUBACK / PUBREC.
    node.kill();
    node.restart();
    py(&node, "mqtt_crash_verify.py", &["--acked", acked_s]);
}

#[test]
fn mqtt_auth_refuses_bad_passwords_and_enforces_acls() {
    let cfg = config(&format!("{RULES}\n{AUTH}"));
    let node = start(&cfg);
    let data = node.data_dir();
    let data_s = data.to_str().expect("utf-8 path");
    let out = rill_tests::rill_cli(
        node.kafka_addr(),
        &["device", "add", "d1", "--data-dir", data_s],
        b"secret-d1\n",
    );
    assert!(out.status.success(), "rill device add failed: {out:?}");
    let out = rill_tests::rill_cli(
        node.kafka_addr(),
        &["device", "list", "--data-dir", data_s],
        b"",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "d1");
    let creds = std::fs::read_to_string(data.join("mqtt-credentials")).expect("credential file");
    assert!(creds.contains("$argon2id$") && !creds.contains("secret-d1"));
    py(&node, "mqtt_auth.py", &[]);
}

#[test]
fn mqtt_bad_input_closes_only_that_connection() {
    let cfg = config(RULES);
    let node = start(&cfg);
    py(&node, "mqtt_bad_input.py", &[]);
}

#[test]
fn rill_devices_simulator_publishes_json_and_cbor_with_acks() {
    // CBOR payloads are decoded to JSON on ingest by the rule.
    let cfg = config(
        r#"
[[mqtt.rules]]
pattern = "cbor/{device}"
topic = "cbor-json"
key = "device"
payload = "cbor-to-json"
"#,
    );
    let node = start(&cfg);
    let addr = node.mqtt_addr();
    let bin = rill_tests::rill_bin()
        .with_file_name(format!("rill-devices{}", std::env::consts::EXE_SUFFIX));
    for (format, qos, topic) in [
        ("json", "1", "devices/{device}/telemetry"),
        ("cbor", "2", "cbor/{device}"),
    ] {
        let out = std::process::Command::new(&bin)
            .args([
                "--broker",
                &addr,
                "-n",
                "4",
                "--rate",
                "0",
                "--messages",
                "25",
                "--qos",
                qos,
                "--format",
                format,
                "--topic",
                topic,
                "--json",
            ])
            .output()
            .expect("run rill-devices (cargo build --workspace --bins builds it)");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "rill-devices failed: {stdout}{}\nnode log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            node.log()
        );
        assert!(
            stdout.contains(r#""sent":100,"acked":100,"errors":0"#),
            "{stdout}"
        );
    }
    let out = node.cli_ok(
        &["consume", "cbor-json", "--from-beginning", "--count", "100"],
        b"",
    );
    assert_eq!(out.lines().count(), 100, "{out}");
    assert!(
        out.contains("temperature"),
        "CBOR was not stored as JSON: {out}"
    );
}

#[test]
fn mqtt5_properties_topic_alias_and_message_expiry() {
    let cfg = config(RULES);
    let node = start(&cfg);
    py(&node, "mqtt_v5.py", &[]);
}

#[test]
fn mqtt_shared_subscription_redelivers_a_leaving_members_messages() {
    let cfg = config(RULES);
    let node = start(&cfg);
    py(&node, "mqtt_shared.py", &[]);
}

/// Makes a CA and a server certificate for 127.0.0.1 with the `openssl` command; None without it.
fn make_certs(dir: &std::path::Path) -> Option<(PathBuf, PathBuf, PathBuf)> {
    let run = |args: &[&str]| {
        std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .ok()?;
    let ok = run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=rill-test-ca",
    ]) && run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]) && run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    ok.then(|| {
        (
            dir.join("ca.pem"),
            dir.join("server.pem"),
            dir.join("server.key"),
        )
    })
}

#[test]
fn mqtt_over_tls() {
    let certs_dir = tempfile::tempdir().expect("tempdir");
    let Some((ca, cert, key)) = make_certs(certs_dir.path()) else {
        eprintln!("skipping mqtt_over_tls: the openssl command is not available");
        return;
    };
    let cfg = config(&format!(
        "{RULES}\n[mqtt.tls]\nlisten = \"127.0.0.1:0\"\ncert = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        key.display()
    ));
    let node = start(&cfg);
    let log = node.log();
    let tls_addr = log
        .lines()
        .find(|l| l.contains("MQTT TLS listener"))
        .and_then(|l| l.split_whitespace().find_map(|t| t.strip_prefix("addr=")))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no TLS listener line in the log:\n{log}"));
    py(
        &node,
        "mqtt_tls.py",
        &[
            "--tls-addr",
            &tls_addr,
            "--ca",
            ca.to_str().expect("utf-8 path"),
        ],
    );
}

#[test]
fn config_validate_checks_mqtt_rules() {
    let bad = config("[[mqtt.rules]]\npattern = \"a/#/b\"\ntopic = \"t\"\n");
    let out = std::process::Command::new(rill_tests::rill_bin())
        .args(["config", "validate"])
        .arg(&bad.path)
        .output()
        .expect("run rill config validate");
    assert!(!out.status.success(), "bad rule accepted: {out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("mqtt.rules"),
        "{out:?}"
    );
    let good = config(RULES);
    let out = std::process::Command::new(rill_tests::rill_bin())
        .args(["config", "validate"])
        .arg(&good.path)
        .output()
        .expect("run rill config validate");
    assert!(out.status.success(), "{out:?}");
}
