//! Log compaction against a real node driven by confluent-kafka: a compacted topic with tiny
//! segments, several values per key, the node's cleaner running every 200 ms; a consumer from
//! offset 0 sees only the latest value per key at the original offsets.

use rill_tests::Node;

#[test]
fn confluent_sees_compacted_topic() {
    let cfg = tempfile::Builder::new()
        .prefix("rill-compaction-")
        .tempdir()
        .expect("tempdir");
    let path = cfg.path().join("rill.toml");
    std::fs::write(&path, "[storage]\ncleaner_interval_ms = 200\n").expect("write config");
    let path = path.to_str().expect("utf-8 path").to_string();
    let node = Node::start_with(&["--config", &path]);
    let out = node.python("compaction_confluent.py", &[]);
    assert!(out.contains("OK"), "script did not finish: {out}");
}
