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

/// `rill acl add` on `central` as the super user `admin` (SASL_SSL, CA `ca`).
fn acl_add(central: &Node, ca: &str, args: &[&str]) {
    let password = format!("sasl.password={ADMIN_PASSWORD}");
    let mut full = vec![
        "acl",
        "add",
        "--tls",
        "--tls-ca-file",
        ca,
        "--sasl-mechanism",
        "SCRAM-SHA-512",
        "--sasl-username",
        "admin",
        "-X",
        &password,
        "--principal",
        "User:alice",
    ];
    full.extend_from_slice(args);
    central.cli_ok(&full, b"");
}

const ADMIN_PASSWORD: &str = "central-admin-s3cret";

/// The ACLs docs/security.md lists for an edge's bridge, and nothing more: the bridge user
/// (alice, not a super user) of edge `edge` mirrors into `edge.` topics, emits heartbeats and
/// checkpoints and syncs group `app`'s offsets; the same user on a node named `intruder` has no
/// ACL for `intruder.` and delivers nothing.
#[test]
fn edge_mirrors_into_an_authorizer_on_central_with_only_its_acls() {
    let scratch = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(scratch.path());
    let config = sasl_ssl_config(scratch.path(), &cert, &key, &["SCRAM-SHA-512"]);
    let text = std::fs::read_to_string(&config).unwrap()
        + "authorizer = true\nsuper_users = [\"User:admin\"]\n";
    std::fs::write(&config, text).unwrap();
    let mut central = node_with_user(&["--config", &config.display().to_string()]);
    central.terminate();
    sasl_common::add_user(&central.data_dir(), "admin", ADMIN_PASSWORD, &[]);
    central.restart();
    let ca = cert.display().to_string();

    // docs/security.md, "ACLs of an edge's bridge on central", for node name `edge`.
    acl_add(
        &central,
        &ca,
        &[
            "--operation",
            "CREATE,WRITE,DESCRIBE,READ",
            "--topic",
            "edge.",
            "--pattern",
            "prefixed",
        ],
    );
    acl_add(
        &central,
        &ca,
        &["--operation", "CREATE,WRITE", "--topic", "heartbeats"],
    );
    acl_add(&central, &ca, &["--operation", "READ", "--group", "app"]);

    std::env::set_var("RILL_TEST_ACL_BRIDGE_PASSWORD", PASSWORD);
    let bridge = bridge_config(
        scratch.path(),
        "edge",
        central.kafka_addr(),
        &ca,
        "RILL_TEST_ACL_BRIDGE_PASSWORD",
    );
    let edge = Node::start_with(&["--node-name", "edge", "--bridge-config", &bridge]);
    let intruder = Node::start_with(&["--node-name", "intruder", "--bridge-config", &bridge]);
    produce(&edge, "telemetry", "t", 150);
    produce(&intruder, "telemetry", "x", 10);
    // A consumer group on the edge whose offsets the bridge syncs to central.
    edge.cli_ok(
        &[
            "group",
            "reset-offsets",
            "app",
            "--topic",
            "telemetry",
            "--to-latest",
            "--execute",
        ],
        b"",
    );

    let admin = |phase: &str, topic: &str, count: &str| {
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
                "admin",
                "--password",
                ADMIN_PASSWORD,
                "--ca",
                &ca,
                "--timeout",
                "120",
            ],
            || format!("central:\n{}\nedge:\n{}", central.log(), edge.log()),
        )
    };
    let out = admin("count", "edge.telemetry", "150");
    assert!(out.contains("exactly once"), "{out}");

    // Heartbeats, checkpoints and the synced group reached central.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let metrics = rill_tests::http_get(central.http_addr(), "/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default();
        let synced = metrics
            .lines()
            .any(|l| l.contains("group=\"app\"") && l.contains("edge.telemetry"));
        let heartbeats = metrics.lines().any(|l| l.contains("topic=\"heartbeats\""));
        let checkpoints = metrics
            .lines()
            .any(|l| l.contains("topic=\"edge.checkpoints.internal\""));
        if synced && heartbeats && checkpoints {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "synced={synced} heartbeats={heartbeats} checkpoints={checkpoints}\ncentral:\n{}\n\
             edge:\n{}",
            central.log(),
            edge.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // Nothing the edge's bridge did was refused.
    let log = central.log();
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("authorization denied") && !l.contains("intruder."))
        .collect();
    assert!(
        refused.is_empty(),
        "the edge's bridge was refused: {refused:#?}"
    );

    // The same user under another node name has no ACL for its prefix.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !central.log().contains("resource=\"intruder.telemetry\"") {
        assert!(
            Instant::now() < deadline,
            "no denial of intruder.telemetry:\n{}",
            central.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = admin("absent", "intruder.telemetry", "0");
    assert!(out.contains("absent"), "{out}");
}
