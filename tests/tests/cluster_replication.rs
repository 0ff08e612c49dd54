//! Partition replication through real nodes (issue 11): a three-node cluster, a topic with
//! replication factor 3, an idempotent acks=all confluent-kafka producer running while the leader
//! of a busy partition is SIGKILLed three times in a row; the history checker
//! (tests/py/cluster_history.py) then reads everything back: every acknowledged record exactly once
//! at its offset, in order per partition, writes with an unknown outcome at most once; a
//! confluent-kafka consumer reading along through the leader changes sees no error (no
//! LOG_TRUNCATION) and nothing it saw vanishes.
//!
//! `RILL_LEADER_KILLS=N` runs N kills instead of three (`scripts/cluster-soak.sh` runs 20+).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rill_tests::cluster::{ClusterOptions, TestCluster};
use rill_tests::{http_get, repo_root, run_python, venv_python};

const FORM: Duration = Duration::from_secs(30);

#[test]
fn acks_all_records_survive_leader_kills() {
    let started = Instant::now();
    let mut cluster = TestCluster::start(&ClusterOptions::default());
    for id in 1..=3 {
        cluster.wait_describe(id, FORM, "3 brokers and a controller", |c, b| {
            c > 0 && b == [1, 2, 3]
        });
    }
    cluster.create_topic("history", 3, 3, &[]);
    let mut leader = cluster.wait_leader("history", 0, -1, 3);
    let kills: u32 = std::env::var("RILL_LEADER_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    // About 4 s of producing per kill at 250 records/s.
    let count = (1000 * kills).to_string();

    let history = cluster.path("history.json");
    let producer = Command::new(venv_python())
        .arg(repo_root().join("tests/py/cluster_history.py"))
        .args(["--bootstrap", &cluster.bootstrap(), "produce"])
        .args(["--topic", "history", "--count", &count, "--rate", "250"])
        .args(["--run", &format!("r{}", std::process::id())])
        .arg("--out")
        .arg(&history)
        .env("PYTHONUNBUFFERED", "1")
        .current_dir(repo_root().join("tests/py"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the producer");

    // A consumer reads along through the leader changes: it must see no error (no
    // LOG_TRUNCATION), and nothing it saw may vanish (checked by `verify --seen`).
    let (seen, stop) = (cluster.path("seen.json"), cluster.path("stop"));
    let consumer = Command::new(venv_python())
        .arg(repo_root().join("tests/py/cluster_history.py"))
        .args(["--bootstrap", &cluster.bootstrap(), "consume"])
        .args(["--topic", "history", "--stop"])
        .arg(&stop)
        .arg("--out")
        .arg(&seen)
        .env("PYTHONUNBUFFERED", "1")
        .current_dir(repo_root().join("tests/py"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the consumer");

    for round in 1..=kills {
        std::thread::sleep(Duration::from_secs(2));
        eprintln!("round {round}: SIGKILL leader {leader} of history-0");
        cluster.kill(leader as i32);
        let next = cluster.wait_leader("history", 0, leader, 2);
        std::thread::sleep(Duration::from_secs(1));
        cluster.start_node(leader as i32);
        leader = next;
    }

    let out = producer.wait_with_output().expect("producer");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "producer failed: {stdout}\n{}\nlogs:\n{}",
        String::from_utf8_lossy(&out.stderr),
        cluster.logs()
    );
    eprintln!("producer: {}", stdout.trim());
    // Everything acknowledged, read back through a node that is up, after every replica caught up
    // and every broker is unfenced again.
    cluster.wait_leader("history", 0, -1, 3);
    for id in 1..=3 {
        cluster.wait_describe(id, FORM, "3 unfenced brokers", |c, b| {
            c > 0 && b == [1, 2, 3]
        });
    }
    std::fs::write(&stop, b"").expect("stop file");
    let out = consumer.wait_with_output().expect("consumer");
    let consumed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && consumed.contains(" errors 0"),
        "the consumer failed or saw errors: {consumed}\n{}\nlogs:\n{}",
        String::from_utf8_lossy(&out.stderr),
        cluster.logs()
    );
    eprintln!("consumer: {}", consumed.trim());
    let verified = run_python(
        "cluster_history.py",
        &[
            "--bootstrap",
            &cluster.bootstrap(),
            "verify",
            "--topic",
            "history",
            "--history",
            history.to_str().expect("utf-8 path"),
            "--seen",
            seen.to_str().expect("utf-8 path"),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}\nlogs:\n{}", cluster.logs()));
    assert!(verified.contains("verified"), "{verified}");
    eprintln!("{} ({:?})", verified.trim(), started.elapsed());

    // Replication metrics: one active controller, every partition led once, none under-
    // replicated now, and the restarted replicas' returns to the ISR counted as expands.
    let sum = |name: &str| -> f64 {
        cluster
            .members
            .iter()
            .filter_map(|m| m.node.as_ref())
            .map(|n| {
                let (status, body) = http_get(n.http_addr(), "/metrics").expect("scrape");
                assert_eq!(status, 200, "{body}");
                body.lines()
                    .filter(|l| l.split([' ', '{']).next() == Some(name))
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                    .sum::<f64>()
            })
            .sum()
    };
    assert_eq!(sum("rill_controller_active"), 1.0);
    // `history` and `__consumer_offsets` (made by the consumers' group lookups), all RF 3.
    let leaders = sum("rill_replica_leader_partitions");
    assert!(leaders >= 3.0, "{leaders} partitions led");
    assert_eq!(sum("rill_replica_partitions"), 3.0 * leaders);
    assert_eq!(sum("rill_replica_under_replicated_partitions"), 0.0);
    assert_eq!(sum("rill_controller_offline_partitions"), 0.0);
    assert!(sum("rill_replica_isr_expands_total") >= kills as f64);

    // MQTT on cluster nodes: only the leader of the target partition stores a publish; a follower
    // refuses it (PUBACK 0x97 on MQTT 5, a closed connection on 3.1.1), so no node appends locally
    // to a partition it does not lead. MQTT topics map to the Kafka topic `mqtt` by default.
    cluster.create_topic("mqtt", 1, 3, &[]);
    let leader = cluster.wait_leader("mqtt", 0, -1, 3);
    let follower = (1..=3).find(|id| *id != leader as i32).expect("a follower");
    let mqtt_of = |id: i32| {
        cluster
            .member(id)
            .node
            .as_ref()
            .expect("running")
            .mqtt_addr()
    };
    let out = run_python(
        "cluster_mqtt.py",
        &[
            "--bootstrap",
            &cluster.bootstrap(),
            "--leader",
            &mqtt_of(leader as i32),
            "--follower",
            &mqtt_of(follower),
            "--topic",
            "sensors/cluster/t",
        ],
    )
    .unwrap_or_else(|e| panic!("{e}\nlogs:\n{}", cluster.logs()));
    assert!(out.contains("follower refuses"), "{out}");
}
