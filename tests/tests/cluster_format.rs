//! `rill cluster format` and `rill cluster random-id` on the real binary: the file they write,
//! the ids they print, and the inputs they refuse.

use std::process::{Command, Output};

use rill_tests::rill_bin;

fn rill(args: &[&str]) -> Output {
    Command::new(rill_bin())
        .args(args)
        .output()
        .expect("run rill")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn properties(path: &std::path::Path) -> std::collections::BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

#[test]
fn random_id_prints_a_fresh_kafka_style_id() {
    let a = rill(&["cluster", "random-id"]);
    let b = rill(&["cluster", "random-id"]);
    assert!(a.status.success(), "{}", text(&a.stderr));
    let (a, b) = (
        text(&a.stdout).trim().to_string(),
        text(&b.stdout).trim().to_string(),
    );
    assert_eq!(a.len(), 22, "{a:?}");
    assert!(a
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-'));
    assert!(!a.starts_with('-'));
    assert_ne!(a, b);
}

#[test]
fn format_writes_meta_properties_with_a_random_directory_id() {
    let dir = tempfile::TempDir::new().unwrap();
    let voters = "1@127.0.0.11:9093,2@127.0.0.12:9093,3@127.0.0.13:9093";
    let mut dir_ids = Vec::new();
    for node in ["1", "2"] {
        let data = dir.path().join(format!("node{node}"));
        let out = rill(&[
            "cluster",
            "format",
            "--data-dir",
            data.to_str().unwrap(),
            "--node-id",
            node,
            "--cluster-id",
            "edge-central_1",
            "--voters",
            voters,
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(
            text(&out.stdout).contains("3 initial voter(s)"),
            "{}",
            text(&out.stdout)
        );
        let p = properties(&data.join("meta.properties"));
        assert_eq!(p["version"], "1");
        assert_eq!(p["cluster.id"], "edge-central_1");
        assert_eq!(p["node.id"], node);
        assert_eq!(p["initial.voters"], voters);
        assert_eq!(p["directory.id"].len(), 22);
        dir_ids.push(p["directory.id"].clone());
    }
    assert_ne!(
        dir_ids[0], dir_ids[1],
        "every format gets its own directory id"
    );

    // Formatting the same directory again is refused and leaves the file alone.
    let data = dir.path().join("node1");
    let before = std::fs::read(data.join("meta.properties")).unwrap();
    let out = rill(&[
        "cluster",
        "format",
        "--data-dir",
        data.to_str().unwrap(),
        "--node-id",
        "1",
        "--cluster-id",
        "edge-central_1",
        "--voters",
        voters,
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("already"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read(data.join("meta.properties")).unwrap(), before);
}

#[test]
fn format_refuses_bad_ids_and_voters_without_writing() {
    let dir = tempfile::TempDir::new().unwrap();
    let data = dir.path().join("node");
    let long = "x".repeat(65);
    let cases: [(&str, &str, &str, &str); 6] = [
        ("1", "has space", "1@h:1", "cluster id"),
        ("1", &long, "1@h:1", "cluster id"),
        ("1", "a.b", "1@h:1", "cluster id"),
        ("-1", "ok", "1@h:1", "node id"),
        ("1", "ok", "1@h", "voters"),
        ("1", "ok", "1@h:1,1@g:2", "twice"),
    ];
    for (node, cluster, voters, needle) in cases {
        let node = format!("--node-id={node}");
        let out = rill(&[
            "cluster",
            "format",
            "--data-dir",
            data.to_str().unwrap(),
            &node,
            "--cluster-id",
            cluster,
            "--voters",
            voters,
        ]);
        assert!(!out.status.success(), "{cluster:?} {voters:?} was accepted");
        assert!(
            text(&out.stderr).contains(needle),
            "{needle}: {}",
            text(&out.stderr)
        );
        assert!(!data.join("meta.properties").exists());
    }
}
