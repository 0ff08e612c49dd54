//! kafka-python against a real node: every codec with acks 0, 1 and all, exact round trips, dense
//! offsets, offsets_for_times; KafkaAdminClient topic administration.

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
