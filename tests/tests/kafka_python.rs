//! kafka-python against a real node: every codec with acks 0, 1 and all, exact round trips, dense
//! offsets, offsets_for_times; KafkaAdminClient topic administration and describe_log_dirs.

use rill_tests::Node;

fn roundtrip(codec: &str) {
    let node = Node::start();
    let out = node.python(
        "kafka_python_roundtrip.py",
        &["--codecs", codec, "--acks", "0,1,all"],
    );
    assert!(out.contains("OK"), "script did not finish: {out}");
}

#[test]
fn kafka_python_roundtrip_uncompressed() {
    roundtrip("none");
}

#[test]
fn kafka_python_roundtrip_gzip() {
    roundtrip("gzip");
}

#[test]
fn kafka_python_roundtrip_snappy() {
    roundtrip("snappy");
}

#[test]
fn kafka_python_roundtrip_lz4() {
    roundtrip("lz4");
}

#[test]
fn kafka_python_roundtrip_zstd() {
    roundtrip("zstd");
}

#[test]
fn kafka_python_admin_client_manages_topics() {
    let node = Node::start();
    node.python("kafka_python_admin.py", &[]);
}

/// DescribeLogDirs through kafka-python 3's `KafkaAdminClient.describe_log_dirs`: the sizes it
/// reports are those of the partition's files on disk (segments, offset and time indexes).
#[test]
fn kafka_python_describe_log_dirs_reports_sizes_from_the_logs() {
    let node = Node::start();
    let out = node.python("kafka_python_log_dirs.py", &[]);
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("SIZES "))
        .unwrap_or_else(|| panic!("no SIZES line: {out}"));
    let v: serde_json::Value = serde_json::from_str(line).expect("SIZES json");
    let topic = v["topic"].as_str().expect("topic");
    let data_dir = std::fs::canonicalize(node.data_dir()).expect("data dir");
    assert_eq!(v["log_dir"].as_str(), data_dir.to_str(), "log dir");
    for p in 0..3 {
        let dir = data_dir.join(format!("{topic}-{p}"));
        let on_disk: u64 = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(Result::ok)
            .filter(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                [".log", ".index", ".timeindex"]
                    .iter()
                    .any(|ext| name.ends_with(ext))
            })
            .map(|e| e.metadata().map_or(0, |m| m.len()))
            .sum();
        assert_eq!(
            v["sizes"][p.to_string()].as_u64(),
            Some(on_disk),
            "partition {p}: reported vs on disk ({out})"
        );
    }
}
