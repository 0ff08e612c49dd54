//! The `rill` CLI against a real node: topic create/list/describe/alter/add-partitions/delete,
//! produce (keys, headers, partitions, acks, codecs) and consume (format strings, --json, offsets,
//! time, count, exit at end), and clear errors with non-zero exit codes.

use rill_core::clock::now_ms;
use rill_tests::{rill_cli, Node};
use serde_json::Value;

fn json_lines(s: &str) -> Vec<Value> {
    s.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect()
}

fn json(s: &str) -> Value {
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("not JSON: {s:?}: {e}"))
}

fn fails_with(node: &Node, args: &[&str], stdin: &[u8], needle: &str) {
    let out = node.cli(args, stdin);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "rill {} should fail; stdout: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr.contains(needle),
        "rill {}: stderr lacks {needle:?}:\n{stderr}",
        args.join(" ")
    );
}

#[test]
fn cli_topic_lifecycle() {
    let node = Node::start();
    let out = node.cli_ok(
        &[
            "topic",
            "create",
            "orders",
            "-p",
            "3",
            "-c",
            "retention.ms=86400000",
        ],
        b"",
    );
    assert!(out.contains("created topic orders"), "{out}");
    fails_with(
        &node,
        &["topic", "create", "orders", "-p", "1"],
        b"",
        "TOPIC_ALREADY_EXISTS",
    );

    let table = node.cli_ok(&["topic", "list"], b"");
    let row = table
        .lines()
        .find(|l| l.starts_with("orders "))
        .unwrap_or_else(|| panic!("no orders row:\n{table}"));
    assert_eq!(row.split_whitespace().nth(1), Some("3"), "{table}");
    let list = json(&node.cli_ok(&["topic", "list", "--json"], b""));
    let t = list
        .as_array()
        .expect("array")
        .iter()
        .find(|t| t["name"] == "orders")
        .expect("orders listed");
    assert_eq!(t["partitions"], 3);

    let d = json(&node.cli_ok(&["topic", "describe", "orders", "--json"], b""));
    assert_eq!(d["partitions"].as_array().map(Vec::len), Some(3), "{d}");
    assert_eq!(d["configs"]["retention.ms"], "86400000", "{d}");
    for p in d["partitions"].as_array().expect("partitions") {
        assert_eq!(p["high_watermark"], 0, "{d}");
        assert_eq!(p["log_start_offset"], 0, "{d}");
        assert!(p["leader"].as_i64().is_some_and(|l| l >= 0), "{d}");
    }
    let human = node.cli_ok(&["topic", "describe", "orders"], b"");
    assert!(
        human.contains("retention.ms")
            && human.contains("86400000")
            && human.contains("HIGH-WATERMARK"),
        "{human}"
    );

    let default_segment = d["configs"]["segment.bytes"]
        .as_str()
        .expect("segment.bytes described")
        .to_string();
    node.cli_ok(
        &[
            "topic",
            "alter",
            "orders",
            "-c",
            "retention.ms=1000",
            "-c",
            "segment.bytes=1048576",
        ],
        b"",
    );
    let d = json(&node.cli_ok(&["topic", "describe", "orders", "--json"], b""));
    assert_eq!(d["configs"]["retention.ms"], "1000");
    assert_eq!(d["configs"]["segment.bytes"], "1048576");
    node.cli_ok(
        &[
            "topic",
            "alter",
            "orders",
            "--delete-config",
            "segment.bytes",
        ],
        b"",
    );
    let d = json(&node.cli_ok(&["topic", "describe", "orders", "--json"], b""));
    assert_eq!(d["configs"]["segment.bytes"], default_segment.as_str());
    assert_eq!(d["configs"]["retention.ms"], "1000");

    node.cli_ok(&["topic", "add-partitions", "orders", "--total", "5"], b"");
    let d = json(&node.cli_ok(&["topic", "describe", "orders", "--json"], b""));
    assert_eq!(d["partitions"].as_array().map(Vec::len), Some(5));
    fails_with(
        &node,
        &["topic", "add-partitions", "orders", "--total", "2"],
        b"",
        "INVALID_PARTITIONS",
    );

    let out = node.cli_ok(&["topic", "delete", "orders"], b"");
    assert!(out.contains("deleted topic orders"), "{out}");
    let list = json(&node.cli_ok(&["topic", "list", "--json"], b""));
    assert!(
        list.as_array()
            .expect("array")
            .iter()
            .all(|t| t["name"] != "orders"),
        "{list}"
    );
    fails_with(
        &node,
        &["topic", "describe", "orders"],
        b"",
        "UNKNOWN_TOPIC_OR_PARTITION",
    );
    fails_with(
        &node,
        &["topic", "delete", "orders"],
        b"",
        "UNKNOWN_TOPIC_OR_PARTITION",
    );
}

#[test]
fn cli_produce_and_consume() {
    let node = Node::start();
    node.cli_ok(&["topic", "create", "ev", "-p", "6"], b"");
    let lines: Vec<String> = (0..40)
        .map(|i| format!("dev-{}:reading {i}", i % 5))
        .collect();
    let mut input = lines.join("\n");
    input.push_str("\na-little-bit-long-string:known\n");
    let out = node.cli_ok(
        &[
            "produce",
            "ev",
            "-k",
            ":",
            "-H",
            "src=cli",
            "-H",
            "n=1",
            "--compression",
            "zstd",
            "--json",
        ],
        input.as_bytes(),
    );
    let acks = json_lines(&out);
    let total: i64 = acks
        .iter()
        .map(|a| a["count"].as_i64().expect("count"))
        .sum();
    assert_eq!(total, 41, "{out}");

    let out = node.cli_ok(
        &[
            "consume",
            "ev",
            "--from-beginning",
            "-e",
            "-f",
            "%p|%o|%k|%s|%h\\n",
        ],
        b"",
    );
    let rows: Vec<Vec<&str>> = out.lines().map(|l| l.split('|').collect()).collect();
    assert_eq!(rows.len(), 41, "{out}");
    let mut got: Vec<String> = rows.iter().map(|r| format!("{}:{}", r[2], r[3])).collect();
    got.sort();
    let mut want: Vec<String> = lines.clone();
    want.push("a-little-bit-long-string:known".into());
    want.sort();
    assert_eq!(got, want);
    for r in &rows {
        assert_eq!(r[4], "src=cli,n=1", "headers of {r:?}");
    }
    // Keyed records go where Kafka's murmur2 partitioner puts them (Kafka's own test vector).
    let known = rows
        .iter()
        .find(|r| r[2] == "a-little-bit-long-string")
        .expect("known key");
    assert_eq!(known[0], "2", "murmur2 partition of the known key");
    // Same key, same partition; offsets dense per partition.
    for p in 0..6 {
        let offsets: Vec<i64> = rows
            .iter()
            .filter(|r| r[0] == p.to_string())
            .map(|r| r[1].parse().expect("offset"))
            .collect();
        assert_eq!(
            offsets,
            (0..offsets.len() as i64).collect::<Vec<_>>(),
            "partition {p}"
        );
    }

    // --json with a count.
    let out = node.cli_ok(
        &["consume", "ev", "--from-beginning", "-c", "3", "--json"],
        b"",
    );
    let recs = json_lines(&out);
    assert_eq!(recs.len(), 3, "{out}");
    for r in &recs {
        assert_eq!(r["topic"], "ev");
        assert!(
            r["key"].as_str().is_some()
                && r["value"].as_str().is_some()
                && r["timestamp"].as_i64().is_some()
        );
        assert_eq!(
            r["headers"],
            serde_json::json!([["src", "cli"], ["n", "1"]])
        );
    }

    // Explicit partition, each acks level and codec; unkeyed lines.
    for (acks, codec) in [
        ("0", "none"),
        ("1", "gzip"),
        ("all", "snappy"),
        ("1", "lz4"),
        ("all", "none"),
    ] {
        node.cli_ok(
            &[
                "produce",
                "ev",
                "-p",
                "4",
                "--acks",
                acks,
                "--compression",
                codec,
            ],
            format!("{acks}-{codec}\n").as_bytes(),
        );
    }
    let out = node.cli_ok(&["consume", "ev", "-p", "4", "-o", "-5", "-e"], b"");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec!["0-none", "1-gzip", "all-snappy", "1-lz4", "all-none"],
        "last five records of partition 4"
    );
    // Absolute offset.
    let d = json(&node.cli_ok(&["topic", "describe", "ev", "--json"], b""));
    let hw4 = d["partitions"][4]["high_watermark"].as_i64().expect("hw");
    let out = node.cli_ok(
        &[
            "consume",
            "ev",
            "-p",
            "4",
            "-o",
            &(hw4 - 2).to_string(),
            "-e",
            "-f",
            "%o %s\\n",
        ],
        b"",
    );
    assert_eq!(out, format!("{} 1-lz4\n{} all-none\n", hw4 - 2, hw4 - 1));
    // -e at the end with nothing new exits with no output.
    let out = node.cli_ok(&["consume", "ev", "-o", "end", "-e"], b"");
    assert_eq!(out, "");
}

#[test]
fn cli_consume_from_time() {
    let node = Node::start();
    node.cli_ok(&["topic", "create", "tt", "-p", "1"], b"");
    node.cli_ok(&["produce", "tt"], b"old-1\nold-2\n");
    // A time strictly after the first batch's timestamps; the second batch is stamped after it.
    let t = now_ms() + 1;
    while now_ms() <= t {
        std::thread::yield_now();
    }
    node.cli_ok(&["produce", "tt"], b"new-1\nnew-2\n");
    let out = node.cli_ok(&["consume", "tt", "--from-time", &t.to_string(), "-e"], b"");
    assert_eq!(out, "new-1\nnew-2\n");
    let out = node.cli_ok(
        &[
            "consume",
            "tt",
            "--from-time",
            "1970-01-01T00:00:00Z",
            "-e",
            "-f",
            "%s,%T\\n",
        ],
        b"",
    );
    let rows: Vec<(&str, i64)> = out
        .lines()
        .map(|l| {
            let (v, ts) = l.split_once(',').expect("value,timestamp");
            (v, ts.parse().expect("ts"))
        })
        .collect();
    assert_eq!(
        rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec!["old-1", "old-2", "new-1", "new-2"]
    );
    assert!(
        rows[0].1 < t && rows[2].1 >= t,
        "timestamps {rows:?} around {t}"
    );
    // A time after everything: nothing to read, exits at the end.
    let out = node.cli_ok(
        &[
            "consume",
            "tt",
            "--from-time",
            &(now_ms() + 3_600_000).to_string(),
            "-e",
        ],
        b"",
    );
    assert_eq!(out, "");
}

#[test]
fn cli_errors_are_clear() {
    let node = Node::start();
    fails_with(
        &node,
        &["consume", "missing", "-e"],
        b"",
        "UNKNOWN_TOPIC_OR_PARTITION",
    );
    node.cli_ok(&["topic", "create", "e1", "-p", "2"], b"");
    fails_with(
        &node,
        &["produce", "e1", "-p", "7"],
        b"x\n",
        "no partition 7",
    );
    fails_with(
        &node,
        &["consume", "e1", "-p", "9", "-e"],
        b"",
        "no partition 9",
    );
    fails_with(
        &node,
        &["topic", "create", "bad", "-c", "cleanup.policy=shred"],
        b"",
        "INVALID_CONFIG",
    );
    // Nothing listens on port 1.
    let out = rill_cli("127.0.0.1:1", &["topic", "list"], b"");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot connect to 127.0.0.1:1"),
        "{out:?}"
    );
}
