//! The bridge's MirrorMaker-2-style extras across `rill` processes on loopback: consumer group
//! checkpoints and offset translation (a group fails over from the edge to central and continues
//! where it stopped), the `heartbeats` topic, and `rill bridge status` (lag while central is
//! down, zero once it is up).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rill_tests::{free_port, start_central, Node};
use serde_json::Value;

/// The `RESULT {...}` line of a bridge_groups.py run.
fn result(out: &str) -> Value {
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("no RESULT line in:\n{out}"));
    serde_json::from_str(line).expect("RESULT json")
}

fn groups(node: &Node, args: &[&str]) -> Value {
    result(&node.python("bridge_groups.py", args))
}

/// The edge group reads `count` more records of `orders` and commits; returns the values read,
/// and updates `committed` and `ends` (per partition).
fn edge_consume(
    edge: &Node,
    count: usize,
    committed: &mut BTreeMap<i32, i64>,
    ends: &mut BTreeMap<i32, i64>,
) -> Vec<String> {
    let r = groups(
        edge,
        &[
            "--phase",
            "edge-consume",
            "--topic",
            "orders",
            "--group",
            "g1",
            "--count",
            &count.to_string(),
        ],
    );
    for (key, map) in [("committed", &mut *committed), ("ends", &mut *ends)] {
        for (p, o) in r[key].as_object().expect(key) {
            map.insert(p.parse().expect("partition"), o.as_i64().expect("offset"));
        }
    }
    let values: Vec<String> = r["values"]
        .as_array()
        .expect("values")
        .iter()
        .map(|v| v.as_str().expect("str").to_string())
        .collect();
    assert_eq!(values.len(), count);
    values
}

/// Waits for central's checkpoints of the edge's `committed` offsets, checks each against the
/// mirrored records, then waits until group g1 on central has the translated offsets.
fn check_checkpoints(central: &Node, committed: &BTreeMap<i32, i64>, ends: &BTreeMap<i32, i64>) {
    let expect: Vec<String> = committed.iter().map(|(p, o)| format!("{p}:{o}")).collect();
    let cps = groups(
        central,
        &[
            "--phase",
            "checkpoints",
            "--topic",
            "edge-01.checkpoints.internal",
            "--expect",
            &expect.join(","),
        ],
    );
    let mut translated: BTreeMap<i32, i64> = BTreeMap::new();
    for cp in cps["checkpoints"].as_array().expect("checkpoints") {
        assert_eq!(cp["group"], "g1", "{cp}");
        assert_eq!(cp["topic"], "edge-01.orders", "{cp}");
        let p = cp["partition"].as_i64().expect("partition") as i32;
        let up = cp["upstream"].as_i64().expect("upstream");
        let down = cp["downstream"].as_i64().expect("downstream");
        assert_eq!(Some(&up), committed.get(&p), "{cp}");
        if Some(&up) == ends.get(&p) {
            // The group read the whole partition: the target's next offset (the target holds
            // exactly the same records, no filters).
            assert_eq!(Some(&down), ends.get(&p), "{cp}");
        } else {
            // The downstream offset holds the record the group would read next at the edge.
            let origin = groups(
                central,
                &[
                    "--phase",
                    "origin",
                    "--topic",
                    "edge-01.orders",
                    "--partition",
                    &p.to_string(),
                    "--offset",
                    &down.to_string(),
                    "--timeout",
                    "60",
                ],
            );
            assert_eq!(
                origin["origin"],
                format!("edge-01/orders/{p}/{up}"),
                "checkpoint {cp}"
            );
        }
        translated.insert(p, down);
    }
    assert_eq!(translated.len(), committed.len());
    let expect: Vec<String> = translated.iter().map(|(p, o)| format!("{p}:{o}")).collect();
    groups(
        central,
        &[
            "--phase",
            "wait-committed",
            "--topic",
            "edge-01.orders",
            "--group",
            "g1",
            "--expect",
            &expect.join(","),
        ],
    );
}

#[test]
fn consumer_group_fails_over_to_central_through_checkpoints_and_heartbeats_flow() {
    let port = free_port();
    let central = start_central(port);
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("bridge.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[mirror]]\nall_topics = true\ntarget = \"127.0.0.1:{port}\"\n\
             checkpoint_interval_ms = 300\n"
        ),
    )
    .expect("write config");
    let cfg = cfg.to_string_lossy().to_string();
    let mut edge = Node::start_with(&["--node-name", "edge-01", "--bridge-config", &cfg]);
    groups(
        &edge,
        &[
            "--phase",
            "produce",
            "--topic",
            "orders",
            "--partitions",
            "3",
            "--count",
            "1000",
        ],
    );
    let mut committed = BTreeMap::new();
    let mut ends = BTreeMap::new();
    // Translated from the offset syncs of the running mirror.
    let mut edge_values = edge_consume(&edge, 300, &mut committed, &mut ends);
    check_checkpoints(&central, &committed, &ends);
    // After a restart the mirror knows only its resume point; the group, behind it, is
    // translated by a lookup on the target.
    edge.restart();
    poll_status(&edge, "orders", "the mirror caught up again", |parts| {
        parts.len() == 3 && parts.iter().all(|p| p["state"] == "caught_up")
    });
    edge_values.extend(edge_consume(&edge, 300, &mut committed, &mut ends));
    assert_eq!(committed.values().sum::<i64>(), 600, "{committed:?}");
    check_checkpoints(&central, &committed, &ends);

    // A consumer of the same group on central gets exactly the other 400.
    let central_read = groups(
        &central,
        &[
            "--phase",
            "central-consume",
            "--topic",
            "edge-01.orders",
            "--group",
            "g1",
            "--count",
            "400",
        ],
    );
    let central_values: Vec<String> = central_read["values"]
        .as_array()
        .expect("values")
        .iter()
        .map(|v| v.as_str().expect("str").to_string())
        .collect();
    let mut all: Vec<String> = edge_values.clone();
    all.extend(central_values.iter().cloned());
    let unique: BTreeSet<&String> = all.iter().collect();
    assert_eq!(
        unique.len(),
        1000,
        "duplicates between edge and central reads"
    );
    let want: BTreeSet<String> = (0..1000).map(|i| format!("v{i}")).collect();
    assert_eq!(unique.into_iter().cloned().collect::<BTreeSet<_>>(), want);

    // Heartbeats: MM2 format, source and target aliases, increasing timestamps.
    let hb = groups(
        &central,
        &[
            "--phase",
            "heartbeats",
            "--topic",
            "heartbeats",
            "--count",
            "3",
        ],
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let mut last = 0;
    for h in hb["heartbeats"].as_array().expect("heartbeats") {
        assert_eq!(h["source"], "edge-01", "{h}");
        assert_eq!(h["target"], "central", "{h}");
        let ts = h["timestamp"].as_i64().expect("ts");
        assert!(ts > last, "timestamps not increasing: {hb}");
        assert!(
            (now - ts).abs() < 600_000,
            "timestamp {ts} far from now {now}"
        );
        last = ts;
    }
}

/// The body of `GET /metrics` on the node's admin listener (plain HTTP/1.0).
fn metrics(node: &Node) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(node.http_addr()).expect("connect admin");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(s, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").expect("request");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("response");
    out
}

/// Sum of the samples of a metric family for the `metrics` topic.
fn metric_sum(text: &str, name: &str) -> i64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{topic=\"metrics\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<i64>().ok())
        .sum()
}

fn status(edge: &Node) -> Value {
    let out = edge.cli_ok(
        &["bridge", "status", "--admin", edge.http_addr(), "--json"],
        b"",
    );
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("status json: {e}: {out}"))
}

fn poll_status(
    edge: &Node,
    topic: &str,
    what: &str,
    cond: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = status(edge);
        let parts: Vec<Value> = s["partitions"]
            .as_array()
            .expect("partitions")
            .iter()
            .filter(|p| p["topic"] == topic)
            .cloned()
            .collect();
        if cond(&parts) {
            return parts;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; last status: {s}\nedge log:\n{}",
            edge.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn bridge_status_shows_the_backlog_while_central_is_down_then_zero_lag() {
    let port = free_port();
    let target = format!("127.0.0.1:{port}");
    let edge = Node::start_with(&["--node-name", "edge-02", "--mirror-to", &target]);
    edge.python(
        "bridge_produce.py",
        &["--topic", "metrics", "--partitions", "2", "--count", "500"],
    );
    let lag = |parts: &[Value]| {
        parts
            .iter()
            .map(|p| p["lag_records"].as_i64().unwrap_or(-1))
            .sum::<i64>()
    };
    let parts = poll_status(
        &edge,
        "metrics",
        "a backlog of 500 in 2 partitions, each after a failed connection",
        |parts| {
            parts.len() == 2
                && lag(parts) == 500
                && parts.iter().all(|p| p["last_error"].is_string())
        },
    );
    for p in &parts {
        let state = p["state"].as_str().unwrap_or("");
        assert!(
            state == "backoff" || state == "connecting",
            "central is down but the state is {state}: {p}"
        );
        assert_eq!(p["target_topic"], "edge-02.metrics");
        assert!(p["lag_bytes"].as_u64().unwrap_or(0) > 0, "{p}");
        // bridge_produce.py stamps records in 2023.
        assert!(p["lag_seconds"].as_f64().unwrap_or(0.0) > 86_400.0, "{p}");
    }
    let m = metrics(&edge);
    assert_eq!(metric_sum(&m, "rill_bridge_lag_records"), 500, "{m}");
    assert_eq!(metric_sum(&m, "rill_bridge_connected"), 0, "{m}");
    let table = edge.cli_ok(&["bridge", "status", "--admin", edge.http_addr()], b"");
    assert!(
        table.contains("LAG RECORDS")
            && table.contains("metrics[1]")
            && table.contains("last error"),
        "{table}"
    );

    let _central = start_central(port);
    let parts = poll_status(&edge, "metrics", "zero lag once central is up", |parts| {
        parts.len() == 2 && lag(parts) == 0 && parts.iter().all(|p| p["state"] == "caught_up")
    });
    let mirrored: u64 = parts
        .iter()
        .map(|p| p["records_mirrored"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(mirrored, 500);
    let m = metrics(&edge);
    assert_eq!(metric_sum(&m, "rill_bridge_lag_records"), 0, "{m}");
    assert_eq!(metric_sum(&m, "rill_bridge_connected"), 2, "{m}");
    assert_eq!(
        metric_sum(&m, "rill_bridge_mirrored_records_total"),
        500,
        "{m}"
    );
    for p in &parts {
        assert_eq!(p["lag_seconds"].as_f64(), Some(0.0), "{p}");
        assert_eq!(p["next_offset"], p["high_watermark"], "{p}");
    }
}
