//! The bridge into a central node that requires SASL_SSL (TLS listener + SCRAM-SHA-512): an edge
//! with the right credentials mirrors every record exactly once; an edge with a wrong password
//! delivers nothing and logs the authentication error.

mod sasl_common;

use std::time::{Duration, Instant};

use rill_tests::Node;
use sasl_common::{node_with_user, sasl_ssl_config, script, self_signed, PASSWORD, USER};

fn bridge_config(
    dir: &std::path::Path,
    name: &str,
    target: &str,
    ca: &str,
    password_env: &str,
) -> String {
    let text = format!(
        "[[mirror]]\nall_topics = true\ntarget = {target:?}\ntls = true\ntls_ca_file = {ca:?}\n\
         sasl_mechanism = \"SCRAM-SHA-512\"\nsasl_username = {USER:?}\nsasl_password_env = {password_env:?}\n"
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("write bridge config");
    path.display().to_string()
}

fn produce(edge: &Node, topic: &str, prefix: &str, count: usize) {
    edge.cli_ok(&["topic", "create", topic, "-p", "2"], b"");
    let lines: String = (0..count).map(|i| format!("{prefix}-{i}\n")).collect();
    edge.cli_ok(&["produce", topic], lines.as_bytes());
}

#[test]
fn edge_mirrors_into_sasl_ssl_central_exactly_once() {
    let scratch = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(scratch.path());
    let config = sasl_ssl_config(scratch.path(), &cert, &key, &["SCRAM-SHA-512"]);
    let central = node_with_user(&["--config", &config.display().to_string()]);
    let ca = cert.display().to_string();

    // The password comes from the environment of the edge process (sasl_password_env).
    std::env::set_var("RILL_TEST_BRIDGE_PASSWORD", PASSWORD);
    std::env::set_var("RILL_TEST_BRIDGE_WRONG", "not-the-password");
    let good = bridge_config(
        scratch.path(),
        "good",
        central.kafka_addr(),
        &ca,
        "RILL_TEST_BRIDGE_PASSWORD",
    );
    let bad = bridge_config(
        scratch.path(),
        "bad",
        central.kafka_addr(),
        &ca,
        "RILL_TEST_BRIDGE_WRONG",
    );
    let edge = Node::start_with(&["--node-name", "edge", "--bridge-config", &good]);
    let intruder = Node::start_with(&["--node-name", "intruder", "--bridge-config", &bad]);

    produce(&edge, "telemetry", "t", 150);
    produce(&intruder, "telemetry", "x", 10);

    let sasl = |phase: &str, topic: &str, count: &str| {
        script(
            central.kafka_addr(),
            &[
                "--phase",
                phase,
                "--topic",
                topic,
                "--count",
                count,
                "--mechanism",
                "SCRAM-SHA-512",
                "--username",
                USER,
                "--password",
                PASSWORD,
                "--ca",
                &ca,
                "--timeout",
                "120",
            ],
            || format!("central:\n{}\nedge:\n{}", central.log(), edge.log()),
        )
    };
    let out = sasl("count", "edge.telemetry", "150");
    assert!(out.contains("exactly once"), "{out}");

    // The intruder's bridge logs the authentication failure and delivers nothing.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !intruder.log().contains("SASL SCRAM-SHA-512 authentication") {
        assert!(
            Instant::now() < deadline,
            "no authentication error in the intruder's log:\n{}",
            intruder.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = intruder.log();
    assert!(log.contains("error code 58"), "{log}");
    let out = sasl("absent", "intruder.telemetry", "0");
    assert!(out.contains("absent"), "{out}");
}
