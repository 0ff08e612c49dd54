//! Durability and encryption at rest, seen from outside: records acknowledged with acks=all survive
//! a SIGKILL, a graceful SIGTERM restart keeps everything, and nothing a client sent (produced
//! records, retained MQTT messages and their properties, messages queued for a persistent
//! session, offset-commit metadata) is found in the clear anywhere in the data directory.

use rill_tests::{dir_usage, files_containing, marker, Node};

#[test]
fn acks_all_records_survive_sigkill() {
    let mut node = Node::start();
    let mark = marker(24);
    let acked = node.scratch().join("acked.json");
    let acked_s = acked.to_str().expect("utf-8 path");
    let out = node.python(
        "crash_produce.py",
        &[
            "--topic", "crash", "--count", "3000", "--marker", &mark, "--out", acked_s,
        ],
    );
    assert!(
        out.contains("acked 3000"),
        "not every record was acknowledged: {out}"
    );
    // Right after the last acknowledgement: no chance to flush anything more.
    node.kill();
    node.restart();
    node.python("crash_verify.py", &["--topic", "crash", "--acked", acked_s]);
}

#[test]
fn sigterm_shuts_down_cleanly_and_restart_keeps_records() {
    let mut node = Node::start();
    let mark = marker(24);
    let acked = node.scratch().join("acked.json");
    let acked_s = acked.to_str().expect("utf-8 path");
    node.python(
        "crash_produce.py",
        &[
            "--topic",
            "graceful",
            "--count",
            "500",
            "--marker",
            &mark,
            "--out",
            acked_s,
            "--compression",
            "lz4",
        ],
    );
    let status = node.terminate();
    assert!(
        status.success(),
        "node exited with {status} after SIGTERM; log:\n{}",
        node.log()
    );
    node.restart();
    node.python(
        "crash_verify.py",
        &["--topic", "graceful", "--acked", acked_s],
    );
}

#[test]
fn data_directory_holds_no_plaintext() {
    let mut node = Node::start();
    let mark = marker(32);
    let acked = node.scratch().join("acked.json");
    let acked_s = acked.to_str().expect("utf-8 path");
    // Uncompressed, so the payload bytes would be visible on disk if stored in the clear. The
    // marker is in every key, value and header value (not in the topic name).
    let out = node.python(
        "crash_produce.py",
        &[
            "--topic", "secret", "--count", "1000", "--marker", &mark, "--out", acked_s,
        ],
    );
    assert!(out.contains("acked 1000"), "{out}");
    // The records really are there, so the search below is meaningful.
    node.python(
        "crash_verify.py",
        &["--topic", "secret", "--acked", acked_s],
    );
    // What the metadata database keeps: a retained MQTT 5 message with properties, QoS 1
    // messages queued for an offline persistent session, an offset commit with metadata.
    let mqtt = node.mqtt_addr();
    let out = node.python(
        "at_rest_clients.py",
        &["--mqtt", &mqtt, "--phase", "write", "--marker", &mark],
    );
    assert!(out.contains("OK"), "{out}");
    let sent: Vec<String> = [
        format!("retained-{mark}"),
        format!("ct-{mark}"),
        format!("up-{mark}"),
        format!("cd-{mark}"),
        format!("offset-metadata-{mark}"),
    ]
    .into_iter()
    .chain((0..5).map(|i| format!("queued-{mark}-{i}")))
    .collect();
    let data = node.data_dir();
    let (bytes, files) = dir_usage(&data);
    assert!(
        bytes > 1000 * 40,
        "data dir holds only {bytes} bytes in {files} files: where did the records go?"
    );
    let hits = files_containing(&data, mark.as_bytes());
    assert!(
        hits.is_empty(),
        "plaintext of produced records found in the data dir (node running): {hits:?}"
    );
    let status = node.terminate();
    assert!(
        status.success(),
        "node exited with {status} after SIGTERM; log:\n{}",
        node.log()
    );
    let hits = files_containing(&data, mark.as_bytes());
    assert!(
        hits.is_empty(),
        "plaintext of produced records found in the data dir (node stopped): {hits:?}"
    );
    for value in &sent {
        let hits = files_containing(&data, value.as_bytes());
        assert!(hits.is_empty(), "{value:?} found in the clear in {hits:?}");
    }
    // ... and it all reads back after the restart (sealed, not lost).
    node.restart();
    let mqtt = node.mqtt_addr();
    let out = node.python(
        "at_rest_clients.py",
        &["--mqtt", &mqtt, "--phase", "verify", "--marker", &mark],
    );
    assert!(out.contains("OK"), "{out}");
}
