//! Consumer groups with real clients: confluent-kafka group members with each client-side assignor
//! and with `group.protocol=consumer` (KIP-848, both server-side assignors)
//! (SIGKILL of a member, re-delivery limited to uncommitted records), committed offsets across a
//! node restart, kafka-python's group consumer, and the `rill group` CLI (state, lag, reset,
//! delete), and the error codes of bad group requests on the wire. The node runs with short group
//! timeouts so these take seconds.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use rill_tests::{repo_root, venv_python, Node};

/// A node whose group settings allow short sessions and form groups quickly.
fn group_node() -> (Node, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("rill.toml");
    std::fs::write(
        &cfg,
        "[groups]\nmin_session_timeout_ms = 1000\ninitial_rebalance_delay_ms = 200\n\
         consumer_session_timeout_ms = 6000\nconsumer_heartbeat_interval_ms = 500\n",
    )
    .expect("write config");
    let node = Node::start_with(&["--config", cfg.to_str().expect("utf-8 path")]);
    (node, dir)
}

fn three_members(strategy: &str) {
    let (node, _cfg) = group_node();
    let out = node.python("groups_consumers.py", &["--strategy", strategy]);
    assert!(out.contains("OK"), "{out}");
}

#[test]
fn groups_three_members_range() {
    three_members("range");
}

#[test]
fn groups_three_members_roundrobin() {
    three_members("roundrobin");
}

#[test]
fn groups_three_members_cooperative_sticky() {
    three_members("cooperative-sticky");
}

#[test]
fn groups_committed_offsets_survive_restart() {
    let (mut node, cfg) = group_node();
    let state = cfg.path().join("state.json");
    let state = state.to_str().expect("utf-8 path");
    node.python(
        "groups_restart.py",
        &["--phase", "produce-and-consume", "--state", state],
    );
    node.restart();
    let out = node.python(
        "groups_restart.py",
        &["--phase", "resume", "--state", state],
    );
    assert!(out.contains("OK"), "{out}");
}

#[test]
fn groups_kafka_python_group_consumer() {
    let (node, _cfg) = group_node();
    node.python("groups_kafka_python.py", &[]);
}

fn describe(node: &Node) -> serde_json::Value {
    describe_group(node, "cli-g")
}

fn describe_group(node: &Node, group: &str) -> serde_json::Value {
    let json = node.cli_ok(&["group", "describe", group, "--json"], b"");
    serde_json::from_str(&json).expect("describe --json output")
}

/// A consumer in `group` on topic `cli-grp` that has committed 15 records and stays a member
/// until its stdin is closed.
fn hold(node: &Node, group: &str, protocol: &str) -> std::process::Child {
    let mut holder = Command::new(venv_python())
        .current_dir(repo_root().join("tests/py"))
        .arg("groups_hold.py")
        .args(["--bootstrap", node.kafka_addr()])
        .args(["--group", group, "--topic", "cli-grp", "--count", "15"])
        .args(["--protocol", protocol])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start holder");
    let mut stdout = BufReader::new(holder.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("holder output");
    assert_eq!(line.trim(), "READY", "holder said {line:?}\n{}", node.log());
    // Keep the pipe open: the holder prints again when it exits.
    holder.stdout = Some(stdout.into_inner());
    holder
}

fn reset(node: &Node, topic: &str, how: &[&str]) -> String {
    let mut args = vec!["group", "reset-offsets", "cli-g", "--topic", topic];
    args.extend_from_slice(how);
    node.cli_ok(&args, b"")
}

#[test]
fn groups_cli_shows_lag_and_resets_only_empty_groups() {
    let (node, _cfg) = group_node();
    node.cli_ok(&["topic", "create", "cli-grp", "-p", "2"], b"");
    let lines: String = (0..20).map(|i| format!("v{i}\n")).collect();
    node.cli_ok(&["produce", "cli-grp", "-p", "0"], lines.as_bytes());
    node.cli_ok(&["produce", "cli-grp", "-p", "1"], lines.as_bytes());

    // A live member that consumed and committed 15 of the 40 records.
    let mut holder = hold(&node, "cli-g", "classic");

    let list = node.cli_ok(&["group", "list"], b"");
    assert!(list.contains("cli-g") && list.contains("Stable"), "{list}");
    let v = describe(&node);
    assert_eq!(v["state"], "Stable", "{v}");
    assert_eq!(v["members"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["total_lag"], 25, "{v}");
    for p in v["partitions"].as_array().expect("partitions") {
        assert_eq!(p["log_end_offset"], 20, "{p}");
        assert_eq!(p["client_id"], "holder", "{p}");
    }
    let human = node.cli_ok(&["group", "describe", "cli-g"], b"");
    assert!(human.contains("LAG") && human.contains("holder"), "{human}");

    // Not while it has a member.
    let refused = node.cli(
        &[
            "group",
            "reset-offsets",
            "cli-g",
            "--topic",
            "cli-grp",
            "--to-earliest",
            "--execute",
        ],
        b"",
    );
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("Stable"),
        "{refused:?}"
    );
    let refused = node.cli(&["group", "delete", "cli-g"], b"");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("NON_EMPTY_GROUP"),
        "{refused:?}"
    );

    // The member leaves; the group is Empty and its offsets can be moved.
    drop(holder.stdin.take());
    assert!(holder.wait().expect("holder exit").success());
    let listed = node.cli_ok(&["group", "list", "--state", "Empty"], b"");
    assert!(listed.contains("cli-g"), "{listed}");

    let dry = reset(&node, "cli-grp", &["--to-offset", "5"]);
    assert!(dry.contains("Dry run"), "{dry}");
    // Without members there is no assignment: only partitions with a commit are shown (partition
    // 0, committed at 15), as kafka-consumer-groups does.
    let v = describe(&node);
    assert_eq!(v["total_lag"], 5, "{v}");
    assert_eq!(v["partitions"].as_array().map(Vec::len), Some(1), "{v}");
    reset(&node, "cli-grp", &["--to-offset", "5", "--execute"]);
    assert_eq!(describe(&node)["total_lag"], 30);
    reset(&node, "cli-grp:1", &["--to-latest", "--execute"]);
    assert_eq!(describe(&node)["total_lag"], 15);
    reset(&node, "cli-grp", &["--to-earliest", "--execute"]);
    assert_eq!(describe(&node)["total_lag"], 40);
    reset(
        &node,
        "cli-grp",
        &["--to-datetime", "2999-01-01T00:00:00Z", "--execute"],
    );
    assert_eq!(describe(&node)["total_lag"], 0);

    node.cli_ok(&["group", "delete", "cli-g"], b"");
    let list = node.cli_ok(&["group", "list"], b"");
    assert!(!list.contains("cli-g"), "{list}");
}

#[test]
fn groups_bad_input_gets_kafka_errors() {
    let (node, _cfg) = group_node();
    let out = node.python("groups_errors.py", &[]);
    assert!(out.contains("evicted after"), "{out}");
}

fn kip848(assignor: &str) {
    let (node, _cfg) = group_node();
    let out = node.python("groups_kip848.py", &["--assignor", assignor]);
    assert!(out.contains("moved to the remaining members"), "{out}");
}

#[test]
fn groups_kip848_uniform_assignor() {
    kip848("uniform");
}

#[test]
fn groups_kip848_range_assignor() {
    kip848("range");
}

#[test]
fn groups_cli_describes_kip848_group() {
    let (node, _cfg) = group_node();
    node.cli_ok(&["topic", "create", "cli-grp", "-p", "2"], b"");
    let lines: String = (0..20).map(|i| format!("v{i}\n")).collect();
    node.cli_ok(&["produce", "cli-grp", "-p", "0"], lines.as_bytes());
    node.cli_ok(&["produce", "cli-grp", "-p", "1"], lines.as_bytes());
    let mut holder = hold(&node, "k-g", "consumer");
    let list = node.cli_ok(&["group", "list"], b"");
    assert!(list.contains("k-g"), "{list}");
    let v = describe_group(&node, "k-g");
    assert_eq!(v["group_protocol"], "consumer", "{v}");
    assert_eq!(v["members"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(
        v["members"][0]["assignment"]["cli-grp"],
        serde_json::json!([0, 1]),
        "{v}"
    );
    assert_eq!(v["total_lag"], 25, "{v}");
    for p in v["partitions"].as_array().expect("partitions") {
        assert_eq!(p["client_id"], "holder", "{p}");
    }
    drop(holder.stdin.take());
    assert!(holder.wait().expect("holder exit").success());
    // Without members it is an ordinary empty group that can be deleted.
    node.cli_ok(&["group", "delete", "k-g"], b"");
}
