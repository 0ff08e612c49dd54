//! The bridge against a central cluster (issue 12, item 5): an edge node mirrors into a
//! three-node central cluster while the central nodes are SIGKILLed and restarted one at a time;
//! every record arrives exactly once, in order per partition, with its origin headers
//! (tests/py/bridge_verify.py, read through the cluster with confluent-kafka). The mirror
//! routes each partition to its leader through rill-client and follows the leader changes the
//! kills cause; the target topic is replicated (RF 3), so a kill loses nothing the bridge was
//! told is stored. A group's offsets committed at the edge then reach the cluster translated
//! (checkpoints, and the synced offsets committed to the group's coordinator in the cluster).

use std::time::Duration;

use rill_tests::cluster::{ClusterOptions, TestCluster};
use rill_tests::{recent_ts, run_python, Node};

#[test]
fn an_edge_mirrors_exactly_once_into_a_cluster_whose_nodes_are_killed_one_by_one() {
    let ts = recent_ts();
    let mut cluster = TestCluster::start(&ClusterOptions::default());
    for id in 1..=3 {
        cluster.wait_describe(id, Duration::from_secs(30), "3 brokers", |c, b| {
            c > 0 && b == [1, 2, 3]
        });
    }
    // The target topic exists (RF 3) before the kills: the bridge creates only what is missing.
    cluster.create_topic("edge3.metrics", 2, 3, &[]);
    for p in 0..2 {
        cluster.wait_leader("edge3.metrics", p, -1, 3);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("bridge.toml");
    // A bandwidth cap (of the batches as stored: compressed) stretches the drain over the kills.
    std::fs::write(
        &cfg,
        format!(
            "[[mirror]]\nall_topics = true\ntarget = \"{}\"\nbandwidth_bytes_per_sec = 12000\n\
             checkpoint_interval_ms = 300\n",
            cluster.bootstrap()
        ),
    )
    .expect("write config");
    let cfg_s = cfg.to_string_lossy().to_string();
    let edge = Node::start_with(&["--node-name", "edge3", "--bridge-config", &cfg_s]);
    edge.python(
        "bridge_produce.py",
        &[
            "--base-ts",
            &ts,
            "--topic",
            "metrics",
            "--partitions",
            "2",
            "--count",
            "30000",
        ],
    );
    for id in 1..=3 {
        std::thread::sleep(Duration::from_secs(1));
        cluster.kill(id);
        std::thread::sleep(Duration::from_secs(1));
        cluster.start_node(id);
        for p in 0..2 {
            cluster.wait_leader("edge3.metrics", p, -1, 3);
        }
    }
    let out = run_python(
        "bridge_verify.py",
        &[
            "--bootstrap",
            &cluster.bootstrap(),
            "--base-ts",
            &ts,
            "--topic",
            "edge3.metrics",
            "--count",
            "30000",
            "--node",
            "edge3",
            "--source",
            "metrics",
        ],
    )
    .unwrap_or_else(|e| {
        panic!(
            "{e}\nedge log:\n{}\ncluster:\n{}",
            edge.log(),
            cluster.logs()
        )
    });
    assert!(out.contains("OK"), "{out}");
    assert!(
        edge.log().contains("mirror session failed") || edge.log().contains("NOT_LEADER"),
        "no kill interrupted the transfer:\n{}",
        edge.log()
    );
    // A group at the edge reads part of the topic and commits: the cluster gets the same
    // offsets for the group on the mirrored topic (a fresh target holds the same records at the
    // same offsets).
    let read = edge.python(
        "bridge_groups.py",
        &[
            "--phase",
            "edge-consume",
            "--topic",
            "metrics",
            "--group",
            "g1",
            "--count",
            "1000",
        ],
    );
    let line = read
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("no RESULT line: {read}"));
    let result: serde_json::Value = serde_json::from_str(line).expect("RESULT json");
    let expect: Vec<String> = result["committed"]
        .as_object()
        .expect("committed")
        .iter()
        .map(|(p, o)| format!("{p}:{}", o.as_i64().expect("offset")))
        .collect();
    run_python(
        "bridge_groups.py",
        &[
            "--bootstrap",
            &cluster.bootstrap(),
            "--phase",
            "wait-committed",
            "--topic",
            "edge3.metrics",
            "--group",
            "g1",
            "--expect",
            &expect.join(","),
        ],
    )
    .unwrap_or_else(|e| {
        panic!(
            "{e}\nedge log:\n{}\ncluster:\n{}",
            edge.log(),
            cluster.logs()
        )
    });
}
