//! The bridge's retention floor and the backlog policy (`[storage] backlog_policy`) with an edge
//! node whose central target is down: unmirrored data is kept past retention, producers are
//! held back (`pause`) or the oldest data is dropped (`drop_oldest`), and what was acknowledged
//! (or not dropped) arrives at central exactly once, in order.

use std::time::{Duration, Instant};

use rill_tests::{free_port, run_python, start_central, Node};

const DEADLINE: Duration = Duration::from_secs(120);

/// An edge node mirroring everything to `127.0.0.1:central_port`, with a fast maintenance pass,
/// the given backlog policy, and an MQTT rule `held/{device}` -> topic `held`.
fn start_edge(name: &str, central_port: u16, policy: &str) -> (Node, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("edge.toml");
    std::fs::write(
        &cfg,
        format!(
            "[storage]\nretention_check_interval_ms = 200\nbacklog_policy = \"{policy}\"\n\
             backlog_high_water = 0.9\n\n[[mqtt.rules]]\npattern = \"held/{{device}}\"\n\
             topic = \"held\"\nkey = \"device\"\n"
        ),
    )
    .expect("write config");
    let target = format!("127.0.0.1:{central_port}");
    let cfg_s = cfg.to_string_lossy().to_string();
    let edge = Node::start_with(&[
        "--config",
        &cfg_s,
        "--node-name",
        name,
        "--mirror-to",
        &target,
    ]);
    (edge, dir)
}

/// Poll `cond` until it holds; fail with `what` and the node's log after [`DEADLINE`].
fn wait_until(node: &Node, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < DEADLINE,
            "timed out waiting for {what}; node log:\n{}",
            node.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The node's `/metrics` text.
fn metrics(node: &Node) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(node.http_addr()).expect("connect admin HTTP");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        node.http_addr()
    )
    .expect("send request");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read response");
    out
}

/// The value of an unlabelled sample (or one with exactly these labels) in `/metrics`.
fn metric(node: &Node, sample: &str) -> f64 {
    metrics(node)
        .lines()
        .find_map(|l| {
            l.strip_prefix(sample)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

/// Create a one-partition topic with small segments, and wait until the bridge runs a mirror
/// task for it (its first connection attempt to the down central fails and is logged), so its
/// retention floor is in place before any data arrives.
fn create_mirrored_topic(edge: &Node, topic: &str, configs: &[&str]) {
    let mut args = vec![
        "topic",
        "create",
        topic,
        "-p",
        "1",
        "-c",
        "segment.bytes=2048",
    ];
    for c in configs {
        args.extend_from_slice(&["-c", c]);
    }
    edge.cli_ok(&args, b"");
    let needle = format!("topic={topic} ");
    wait_until(edge, "the mirror task of the topic", || {
        edge.log()
            .lines()
            .any(|l| l.contains("mirror session failed") && l.contains(&needle))
    });
}

fn log_start(edge: &Node, topic: &str) -> i64 {
    let out = edge.cli_ok(&["topic", "describe", topic, "--json"], b"");
    let v: serde_json::Value = serde_json::from_str(&out).expect("describe --json");
    v["partitions"][0]["log_start_offset"]
        .as_i64()
        .unwrap_or_else(|| panic!("no log_start_offset in {out}"))
}

fn py(node: &Node, args: &[&str]) -> String {
    node.python("bridge_backlog.py", args)
}

/// Run the script in a thread (for phases that only finish once central is up).
fn py_background(
    bootstrap: &str,
    args: &[&str],
) -> std::thread::JoinHandle<Result<String, String>> {
    let mut all = vec!["--bootstrap".to_string(), bootstrap.to_string()];
    all.extend(args.iter().map(|s| s.to_string()));
    std::thread::spawn(move || {
        let refs: Vec<&str> = all.iter().map(|s| s.as_str()).collect();
        run_python("bridge_backlog.py", &refs)
    })
}

#[test]
fn unmirrored_data_is_kept_past_retention_until_mirrored() {
    let port = free_port();
    let (edge, _cfg) = start_edge("edgea", port, "pause");
    create_mirrored_topic(&edge, "kept", &[]);
    let out = py(
        &edge,
        &["--phase", "produce", "--topic", "kept", "--count", "1000"],
    );
    assert!(out.contains("acked=1000"), "{out}");
    // Retention shrinks to a fraction of what is buffered: without the floor, retention would
    // delete almost everything at its next pass.
    edge.cli_ok(
        &["topic", "alter", "kept", "-c", "retention.bytes=8192"],
        b"",
    );
    // The pass that applied the new retention also paused producers (the backlog is past the
    // high water of retention.bytes); it deleted nothing.
    wait_until(&edge, "producers paused", || {
        metric(&edge, "rill_bridge_backlog_paused") == 1.0
    });
    assert_eq!(log_start(&edge, "kept"), 0, "unmirrored data was deleted");

    let central = start_central(port);
    let out = py(
        &central,
        &[
            "--phase",
            "verify",
            "--target",
            "edgea.kept",
            "--count",
            "1000",
            "--exact",
        ],
    );
    assert!(out.contains("received=1000"), "{out}");
    // Mirrored: retention deletes again, and the pressure is gone.
    wait_until(&edge, "retention deleting mirrored data", || {
        log_start(&edge, "kept") > 0
    });
    wait_until(&edge, "producers resumed", || {
        metric(&edge, "rill_bridge_backlog_paused") == 0.0
    });
}

#[test]
fn pause_holds_kafka_and_mqtt_producers_until_the_backlog_drains() {
    let port = free_port();
    let (edge, _cfg) = start_edge("edgeb", port, "pause");
    create_mirrored_topic(&edge, "held", &["retention.bytes=16384"]);
    let count = 5000;
    let producer = py_background(
        edge.kafka_addr(),
        &[
            "--phase",
            "produce",
            "--topic",
            "held",
            "--count",
            &count.to_string(),
            "--request-timeout-ms",
            "3000",
        ],
    );
    // Backpressure: producers paused, and a Produce held for its whole timeout was answered
    // REQUEST_TIMED_OUT (7), which the client retries.
    wait_until(&edge, "producers paused", || {
        metric(&edge, "rill_bridge_backlog_paused") == 1.0
    });
    wait_until(&edge, "a Produce answered REQUEST_TIMED_OUT", || {
        metric(&edge, "rill_kafka_errors_total{code=\"7\"}") >= 1.0
    });
    assert!(!producer.is_finished(), "the producer cannot have finished");
    assert!(
        edge.log().contains("pausing its producers"),
        "{}",
        edge.log()
    );
    // An MQTT device publishing to the same topic gets no PUBACK while paused.
    let held_file = edge.scratch().join("mqtt-held");
    let held_arg = held_file.to_string_lossy().to_string();
    let mqtt = py_background(
        edge.kafka_addr(),
        &[
            "--phase",
            "mqtt",
            "--mqtt",
            &edge.mqtt_addr(),
            "--mqtt-topic",
            "held/dev1",
            "--held-file",
            &held_arg,
        ],
    );
    wait_until(&edge, "the MQTT publish held back", || {
        held_file.exists() || mqtt.is_finished()
    });
    assert!(
        edge.log().contains("MQTT publishes held back"),
        "{}",
        edge.log()
    );

    let central = start_central(port);
    let out = producer.join().expect("producer thread");
    let out = out.unwrap_or_else(|e| panic!("{e}\nedge log:\n{}", edge.log()));
    assert!(out.contains(&format!("acked={count}")), "{out}");
    let out = mqtt.join().expect("mqtt thread");
    let out = out.unwrap_or_else(|e| panic!("{e}\nedge log:\n{}", edge.log()));
    assert!(out.contains("held") && out.contains("acked"), "{out}");
    let out = py(
        &central,
        &[
            "--phase",
            "verify",
            "--target",
            "edgeb.held",
            "--count",
            &count.to_string(),
            "--exact",
            "--extra",
            "m-held",
        ],
    );
    assert!(out.contains(&format!("received={count}")), "{out}");
    wait_until(&edge, "producers resumed", || {
        metric(&edge, "rill_bridge_backlog_paused") == 0.0
    });
    assert_eq!(
        metric(&edge, "rill_bridge_backlog_dropped_records_total"),
        0.0
    );
}

#[test]
fn drop_oldest_drops_counts_and_logs_then_mirrors_the_rest_exactly_once() {
    let port = free_port();
    let (edge, _cfg) = start_edge("edgec", port, "drop_oldest");
    create_mirrored_topic(&edge, "dropped", &["retention.bytes=16384"]);
    let count = 2000;
    let out = py(
        &edge,
        &[
            "--phase",
            "produce",
            "--topic",
            "dropped",
            "--count",
            &count.to_string(),
        ],
    );
    assert!(out.contains(&format!("acked={count}")), "{out}");
    wait_until(&edge, "dropped records counted", || {
        metric(&edge, "rill_bridge_backlog_dropped_records_total") > 0.0
    });
    let log = edge.log();
    let warn = log
        .lines()
        .find(|l| l.contains("WARN") && l.contains("dropped unmirrored records"))
        .unwrap_or_else(|| panic!("no drop warning in the edge log:\n{log}"));
    for field in [
        "topic=dropped",
        "partition=0",
        "first_offset=0",
        "last_offset=",
    ] {
        assert!(warn.contains(field), "{field} missing in: {warn}");
    }

    let central = start_central(port);
    let out = py(
        &central,
        &[
            "--phase",
            "verify",
            "--target",
            "edgec.dropped",
            "--count",
            &count.to_string(),
        ],
    );
    let received: f64 = out
        .lines()
        .find_map(|l| l.strip_prefix("received="))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no received= in {out}"));
    let dropped = metric(&edge, "rill_bridge_backlog_dropped_records_total");
    assert!(received > 0.0 && dropped > 0.0, "{out}");
    assert_eq!(
        received + dropped,
        count as f64,
        "every record was either mirrored or counted as dropped\n{out}\nedge log:\n{}",
        edge.log()
    );
}
