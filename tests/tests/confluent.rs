//! confluent-kafka (librdkafka) against a real node: every codec with acks 0, 1 and all, exact
//! round trips, dense offsets, lookups by timestamp; AdminClient topic administration.

use rill_tests::Node;

fn roundtrip(codec: &str) {
    let node = Node::start();
    let out = node.python(
        "confluent_roundtrip.py",
        &["--codecs", codec, "--acks", "0,1,all"],
    );
    assert!(out.contains("OK"), "script did not finish: {out}");
}

#[test]
fn confluent_roundtrip_uncompressed() {
    roundtrip("none");
}

#[test]
fn confluent_roundtrip_gzip() {
    roundtrip("gzip");
}

#[test]
fn confluent_roundtrip_snappy() {
    roundtrip("snappy");
}

#[test]
fn confluent_roundtrip_lz4() {
    roundtrip("lz4");
}

#[test]
fn confluent_roundtrip_zstd() {
    roundtrip("zstd");
}

#[test]
fn confluent_admin_client_manages_topics() {
    let node = Node::start();
    node.python("confluent_admin.py", &[]);
}
