//! Downstream (pull) mirrors across several `rill` processes on loopback: central `commands`
//! reaches MQTT devices at the edge exactly once and in order; SIGKILLs of the edge and of
//! central mid-pull lose and duplicate nothing; pulled records never go back to central, also
//! with identity names and a standalone push bridge over the edge's log.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rill_tests::{free_port, random_ms, recent_ts, start_central, Node};

/// Writes `body` to `dir/name`.
fn write(dir: &Path, name: &str, body: &str) -> String {
    let p: PathBuf = dir.join(name);
    std::fs::write(&p, body).expect("write config");
    p.to_string_lossy().into_owned()
}

fn ok(out: String, what: &str, edge: &Node) {
    assert!(
        out.contains("OK"),
        "{what}: {out}\nedge log:\n{}",
        edge.log()
    );
}

#[test]
fn central_commands_reach_mqtt_devices_at_the_edge_exactly_once_in_order() {
    let port = free_port();
    let central = start_central(port);
    central.cli_ok(&["topic", "create", "commands", "-p", "3"], b"");
    let dir = tempfile::tempdir().expect("tempdir");
    // The documented edge setup: a pull mirror with the default names (local topic
    // `central.commands`) and one MQTT rule mapping commands/{device} to it.
    let node_cfg = write(
        dir.path(),
        "edge.toml",
        "[[mqtt.rules]]\npattern = \"commands/{device}\"\ntopic = \"central.commands\"\n",
    );
    let bridge_cfg = write(
        dir.path(),
        "bridge.toml",
        &format!(
            "[[mirror]]\ndirection = \"pull\"\ntopics = [\"commands\"]\n\
             target = \"127.0.0.1:{port}\"\n"
        ),
    );
    let edge = Node::start_with(&[
        "--node-name",
        "edge-01",
        "--config",
        &node_cfg,
        "--bridge-config",
        &bridge_cfg,
    ]);
    let mqtt = edge.mqtt_addr();
    let out = edge.python(
        "downstream_mqtt.py",
        &[
            "--mqtt",
            &mqtt,
            "--central",
            central.kafka_addr(),
            "--count",
            "300",
        ],
    );
    ok(out, "downstream_mqtt.py", &edge);
    // The local log holds them once each, with their origin (alias `central`).
    let out = edge.python(
        "bridge_count.py",
        &["--topic", "central.commands", "--count", "300"],
    );
    ok(out, "bridge_count.py", &edge);
}

#[test]
fn sigkill_edge_and_central_during_pull_is_still_exactly_once() {
    let ts = recent_ts();
    let port = free_port();
    let mut central = start_central(port);
    central.python(
        "bridge_produce.py",
        &[
            "--base-ts",
            &ts,
            "--topic",
            "commands",
            "--partitions",
            "3",
            "--count",
            "30000",
        ],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    // A bandwidth cap stretches the pull over a few seconds, so the kills land mid-transfer.
    let bridge_cfg = write(
        dir.path(),
        "bridge.toml",
        &format!(
            "[[mirror]]\ndirection = \"pull\"\ntopics = [\"commands\"]\n\
             target = \"127.0.0.1:{port}\"\nbandwidth_bytes_per_sec = 20000\n"
        ),
    );
    let mut edge = Node::start_with(&["--node-name", "edge-02", "--bridge-config", &bridge_cfg]);
    // Wait until the pull is under way, then kill at random points.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !edge.log().contains("pulling") {
        assert!(
            Instant::now() < deadline,
            "pull never started:\n{}",
            edge.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for round in 0..4 {
        std::thread::sleep(Duration::from_millis(200 + random_ms(700)));
        if round % 2 == 0 {
            edge.kill();
            std::thread::sleep(Duration::from_millis(random_ms(300)));
            edge.restart();
        } else {
            central.kill();
            std::thread::sleep(Duration::from_millis(random_ms(300)));
            central.restart();
        }
    }
    std::thread::sleep(Duration::from_millis(random_ms(500)));
    edge.kill();
    edge.restart();
    let out = edge.python(
        "bridge_verify.py",
        &[
            "--base-ts",
            &ts,
            "--topic",
            "central.commands",
            "--count",
            "30000",
            "--node",
            "central",
            "--source",
            "commands",
            "--timeout",
            "140",
        ],
    );
    ok(out, "bridge_verify.py", &edge);
    // The kills landed mid-transfer: some session resumed from a position past the start.
    let resumed: Vec<i64> = edge
        .log()
        .lines()
        .filter(|l| l.contains("pulling"))
        .filter_map(|l| l.split_whitespace().find_map(|t| t.strip_prefix("from=")))
        .filter_map(|v| v.parse().ok())
        .collect();
    eprintln!("pull sessions started from {resumed:?}");
    assert!(
        resumed.iter().any(|&f| f > 0),
        "no session resumed mid-pull: {resumed:?}\n{}",
        edge.log()
    );
    assert!(
        !edge.log().contains("remote retention removed"),
        "records were skipped:\n{}",
        edge.log()
    );
    assert!(
        edge.log().contains("pull session failed"),
        "no kill of central interrupted the pull:\n{}",
        edge.log()
    );
}

#[test]
fn pulled_records_never_go_back_to_central_also_with_identity_names() {
    let ts = recent_ts();
    let port = free_port();
    let central = start_central(port);
    central.python(
        "bridge_produce.py",
        &[
            "--base-ts",
            &ts,
            "--topic",
            "commands",
            "--partitions",
            "3",
            "--count",
            "300",
        ],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    // Pull `commands` under its own name, and push every topic back to the same cluster under
    // its own name too (the hardest case for cycles), besides --mirror-to's default policy.
    let target = format!("127.0.0.1:{port}");
    let bridge_cfg = write(
        dir.path(),
        "bridge.toml",
        &format!(
            "[[mirror]]\ndirection = \"pull\"\ntopics = [\"commands\"]\ntarget = \"{target}\"\n\
             rename = \"{{topic}}\"\n\
             [[mirror]]\nall_topics = true\ntarget = \"{target}\"\nrename = \"{{topic}}\"\n"
        ),
    );
    let mut edge = Node::start_with(&[
        "--node-name",
        "edge",
        "--mirror-to",
        &target,
        "--bridge-config",
        &bridge_cfg,
    ]);
    let out = edge.python(
        "bridge_verify.py",
        &[
            "--base-ts",
            &ts,
            "--topic",
            "commands",
            "--count",
            "300",
            "--node",
            "central",
            "--source",
            "commands",
        ],
    );
    ok(out, "pulled commands at the edge", &edge);
    // The push mirrors work: local telemetry reaches central under both names.
    edge.python(
        "bridge_produce.py",
        &[
            "--base-ts",
            &ts,
            "--topic",
            "telemetry",
            "--partitions",
            "2",
            "--count",
            "100",
        ],
    );
    for topic in ["telemetry", "edge.telemetry"] {
        let out = central.python(
            "bridge_verify.py",
            &[
                "--base-ts",
                &ts,
                "--topic",
                topic,
                "--count",
                "100",
                "--node",
                "edge",
                "--source",
                "telemetry",
            ],
        );
        ok(out, topic, &edge);
    }
    // ... but central's commands stay as produced, and no edge.commands appears.
    let out = central.python(
        "bridge_count.py",
        &["--topic", "commands", "--count", "300"],
    );
    ok(out, "central commands", &edge);
    let topics = central.cli_ok(&["topic", "list"], b"");
    assert!(
        !topics.contains("edge.commands"),
        "a pulled topic was pushed back: {topics}"
    );

    // A standalone push bridge over the stopped edge's log does not know which topics were
    // pulled: the records' origin (central) alone keeps them from going back.
    edge.terminate();
    let cfg = write(
        dir.path(),
        "standalone.toml",
        &format!(
            "node_name = \"edge\"\ndata_dir = {:?}\nkey_file = {:?}\n[[mirror]]\n\
             topics = [\"commands\", \"telemetry\"]\ntarget = \"{target}\"\nrename = \"{{topic}}\"\n",
            edge.data_dir().to_string_lossy(),
            edge.key_file().to_string_lossy()
        ),
    );
    let log_path = dir.path().join("standalone.log");
    let log_file = std::fs::File::create(&log_path).expect("log file");
    let mut bridge = std::process::Command::new(rill_tests::rill_bin())
        .args(["bridge", "--config", &cfg])
        .env_remove("RILL_MASTER_KEY")
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(log_file)
        .spawn()
        .expect("start rill bridge");
    // Wait until every partition of `commands` is being mirrored (resume position read).
    let deadline = Instant::now() + Duration::from_secs(60);
    let started = |log: &str| {
        (0..3).all(|p| {
            log.lines().any(|l| {
                l.contains("mirroring")
                    && l.contains("topic=commands")
                    && l.contains(&format!("partition={p}"))
            })
        })
    };
    loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if started(&log) {
            break;
        }
        if Instant::now() > deadline {
            let _ = bridge.kill();
            let _ = bridge.wait();
            panic!("standalone bridge did not start mirroring commands:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let counts = [("commands", "300"), ("telemetry", "100")].map(|(topic, n)| {
        rill_tests::run_python(
            "bridge_count.py",
            &[
                "--bootstrap",
                central.kafka_addr(),
                "--topic",
                topic,
                "--count",
                n,
            ],
        )
    });
    let _ = bridge.kill();
    let _ = bridge.wait();
    for c in counts {
        let out = c.unwrap_or_else(|e| {
            panic!(
                "{e}\nstandalone log:\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            )
        });
        assert!(out.contains("OK"), "{out}");
    }
}

/// Polls the file at `path` until `done(text)` holds; panics after 90 s with its text.
fn wait_for_log(path: &Path, what: &str, done: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let log = std::fs::read_to_string(path).unwrap_or_default();
        if done(&log) {
            return;
        }
        assert!(Instant::now() < deadline, "{what} did not happen:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn standalone_bridge_pulls_into_a_stopped_nodes_log() {
    let ts = recent_ts();
    let port = free_port();
    let central = start_central(port);
    central.python(
        "bridge_produce.py",
        &[
            "--base-ts",
            &ts,
            "--topic",
            "commands",
            "--partitions",
            "3",
            "--count",
            "500",
        ],
    );
    let mut edge = Node::start_with(&["--node-name", "edge-05"]);
    edge.terminate();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write(
        dir.path(),
        "standalone.toml",
        &format!(
            "node_name = \"edge-05\"\ndata_dir = {:?}\nkey_file = {:?}\n[[mirror]]\n\
             direction = \"pull\"\ntopics_regex = \"comm.*\"\ntarget = \"127.0.0.1:{port}\"\n",
            edge.data_dir().to_string_lossy(),
            edge.key_file().to_string_lossy()
        ),
    );
    let log_path = dir.path().join("standalone.log");
    let log_file = std::fs::File::create(&log_path).expect("log file");
    let mut bridge = std::process::Command::new(rill_tests::rill_bin())
        .args(["bridge", "--config", &cfg])
        .env_remove("RILL_MASTER_KEY")
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(log_file)
        .spawn()
        .expect("start rill bridge");
    let caught_up = |log: &str| {
        (0..3).all(|p| {
            log.lines().any(|l| {
                l.contains("pull caught up")
                    && l.contains("topic=commands")
                    && l.contains(&format!("partition={p}"))
            })
        })
    };
    wait_for_log(&log_path, "the standalone pull catching up", caught_up);
    // SIGINT: a clean stop, then the node serves what was pulled.
    let pid = bridge.id().to_string();
    let _ = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status();
    let _ = bridge.wait();
    edge.restart();
    let out = edge.python(
        "bridge_verify.py",
        &[
            "--base-ts",
            &ts,
            "--topic",
            "central.commands",
            "--count",
            "500",
            "--node",
            "central",
            "--source",
            "commands",
        ],
    );
    ok(out, "pulled by the standalone bridge", &edge);
}
