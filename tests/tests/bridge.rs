//! Producer idempotence with real clients and the bridge (edge -> central mirroring) across
//! several `rill` processes on loopback.

use rill_tests::Node;

#[test]
fn idempotent_producers_survive_restart() {
    let mut node = Node::start();
    let topic = "idem";
    node.cli_ok(&["topic", "create", topic, "-p", "1"], b"");
    let py = |node: &Node, args: &[&str]| {
        let mut all = vec!["--topic", topic];
        all.extend_from_slice(args);
        node.python("bridge_idempotent.py", &all)
    };
    py(
        &node,
        &[
            "--phase",
            "produce",
            "--client",
            "confluent",
            "--prefix",
            "c",
            "--count",
            "200",
        ],
    );
    py(
        &node,
        &[
            "--phase",
            "produce",
            "--client",
            "kafka-python",
            "--prefix",
            "k",
            "--count",
            "50",
        ],
    );
    node.restart();
    py(
        &node,
        &[
            "--phase",
            "produce",
            "--client",
            "confluent",
            "--prefix",
            "c",
            "--start",
            "200",
            "--count",
            "100",
        ],
    );
    py(
        &node,
        &[
            "--phase",
            "produce",
            "--client",
            "kafka-python",
            "--prefix",
            "k",
            "--start",
            "50",
            "--count",
            "50",
        ],
    );
    let out = py(
        &node,
        &[
            "--phase",
            "verify",
            "--expect",
            "c:0:200,k:0:50,c:200:100,k:50:50",
        ],
    );
    assert!(out.contains("OK"), "{out}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A pseudo-random number from the clock (no extra dependency; enough to vary kill points).
fn random_ms(max: u64) -> u64 {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(7);
    (n.wrapping_mul(6364136223846793005) >> 20) % max.max(1)
}

fn central_args(port: u16) -> Vec<String> {
    vec![
        "--node-name".into(),
        "central".into(),
        "--kafka-listen".into(),
        format!("127.0.0.1:{port}"),
    ]
}

fn start_central(port: u16) -> Node {
    let args = central_args(port);
    let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    Node::start_with(&refs)
}

fn start_edge(name: &str, central_port: u16, extra: &[&str]) -> Node {
    let target = format!("127.0.0.1:{central_port}");
    let mut args = vec!["--node-name", name, "--mirror-to", &target];
    if extra.first() == Some(&"--bridge-config") {
        args = vec!["--node-name", name];
    }
    args.extend_from_slice(extra);
    Node::start_with(&args)
}

#[test]
fn edge_buffers_while_central_is_down_then_delivers_exactly_once() {
    let port = free_port();
    let edge = start_edge("edge1", port, &[]);
    edge.python(
        "bridge_produce.py",
        &["--topic", "sensors", "--partitions", "3", "--count", "3000"],
    );
    // The edge keeps working and buffers; now central comes up on the agreed port.
    let central = start_central(port);
    let out = central.python(
        "bridge_verify.py",
        &[
            "--topic",
            "edge1.sensors",
            "--count",
            "3000",
            "--node",
            "edge1",
            "--source",
            "sensors",
        ],
    );
    assert!(out.contains("OK"), "{out}\nedge log:\n{}", edge.log());
}

#[test]
fn sigkill_edge_and_central_during_mirroring_is_still_exactly_once() {
    let port = free_port();
    // A bandwidth cap stretches the drain over a few seconds, so the kills land mid-transfer.
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("bridge.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[mirror]]\nall_topics = true\ntarget = \"127.0.0.1:{port}\"\n\
             bandwidth_bytes_per_sec = 150000\n"
        ),
    )
    .expect("write config");
    let cfg_s = cfg.to_string_lossy().to_string();
    let mut edge = start_edge("edge2", port, &["--bridge-config", &cfg_s]);
    edge.python(
        "bridge_produce.py",
        &[
            "--topic",
            "metrics",
            "--partitions",
            "2",
            "--count",
            "40000",
        ],
    );
    let mut central = start_central(port);
    for round in 0..3 {
        std::thread::sleep(std::time::Duration::from_millis(150 + random_ms(600)));
        if round % 2 == 0 {
            central.kill();
            std::thread::sleep(std::time::Duration::from_millis(random_ms(300)));
            central.restart();
        } else {
            edge.restart();
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(random_ms(400)));
    edge.restart();
    let out = central.python(
        "bridge_verify.py",
        &[
            "--topic",
            "edge2.metrics",
            "--count",
            "40000",
            "--node",
            "edge2",
            "--source",
            "metrics",
        ],
    );
    assert!(out.contains("OK"), "{out}\nedge log:\n{}", edge.log());
    assert!(
        edge.log().contains("mirror session failed"),
        "no kill interrupted the transfer:\n{}",
        edge.log()
    );
}

#[test]
fn rename_and_filter_rules_from_a_bridge_config() {
    let port = free_port();
    let central = start_central(port);
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("bridge.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[mirror]]\ntopics_regex = \"al.*\"\ntarget = \"127.0.0.1:{port}\"\n\
             rename = \"{{topic}}\"\nfilter_header = \"class=alarm\"\ncompression = \"none\"\n\
             bandwidth_bytes_per_sec = 10000000\n"
        ),
    )
    .expect("write config");
    let cfg_s = cfg.to_string_lossy().to_string();
    let edge = start_edge("edge3", port, &["--bridge-config", &cfg_s]);
    edge.python(
        "bridge_produce.py",
        &["--topic", "alarms", "--partitions", "1", "--count", "300"],
    );
    edge.python(
        "bridge_produce.py",
        &["--topic", "other", "--partitions", "1", "--count", "10"],
    );
    let out = central.python(
        "bridge_verify.py",
        &[
            "--topic",
            "alarms",
            "--count",
            "100",
            "--node",
            "edge3",
            "--source",
            "alarms",
            "--only-alarms",
        ],
    );
    assert!(out.contains("OK"), "{out}\nedge log:\n{}", edge.log());
    let topics = central.cli_ok(&["topic", "list"], b"");
    assert!(
        !topics.contains("other"),
        "unselected topic mirrored: {topics}"
    );
}
