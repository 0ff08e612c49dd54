//! Consumer groups in a cluster (issue 12): three confluent-kafka consumers in one group on a
//! three-node cluster consume an RF 3 topic while a producer writes; the node coordinating the
//! group (the leader of its `__consumer_offsets` partition, as DescribeConsumerGroups reports
//! it) is SIGKILLed, later restarted. The script (tests/py/cluster_groups.py) logs every
//! assignment, processed record and commit outcome on one monotonic clock; this test checks:
//! - every acknowledged record was processed,
//! - no record was processed after a commit past it had been acknowledged (the group resumes
//!   from committed offsets: a record is processed again only inside the uncommitted window),
//! - every acknowledged commit covers a processed record,
//! - no partition was owned by two consumers at once,
//! - the coordinator moved, commits went on at the new one without a rebalance (it loaded the
//!   group's members), and the killed node rejoined.
//!
//! Before the kill the other two nodes are stopped (SIGSTOP) for 1.5 s, so that the last commits
//! exist on the coordinator only. Broken builds show that the checks bite
//! (`RILL_BIN=target/debug/rill-failpoints`): with `RILL_FAILPOINTS=skip_offsets_load` (the new
//! coordinator does not replay `__consumer_offsets`) and with
//! `RILL_FAILPOINTS=offset_commit_acks_leader` (commits acknowledged before replication) the
//! checks on committed offsets fail.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kafka_protocol::messages::{
    FindCoordinatorRequest, FindCoordinatorResponse, GroupId, OffsetFetchRequest,
    OffsetFetchResponse,
};
use kafka_protocol::protocol::StrBytes;
use rill_client::connection::{ConnectOptions, Connection};
use rill_tests::cluster::{ClusterOptions, TestCluster};
use rill_tests::{repo_root, rill_cli, venv_python};
use serde_json::Value;

const FORM: Duration = Duration::from_secs(30);
/// The consumers' script must be done within this (it has its own deadlines inside).
const SCRIPT_LIMIT: Duration = Duration::from_secs(150);

/// How long the followers are stopped (SIGSTOP) before the coordinator is killed.
const STALL: Duration = Duration::from_millis(1500);

/// Sends `sig` (`-STOP`, `-CONT`) to node `id`.
fn signal(cluster: &TestCluster, id: i32, sig: &str) {
    let pid = cluster
        .member(id)
        .node
        .as_ref()
        .and_then(|n| n.pid())
        .expect("a running node");
    let st = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("kill");
    assert!(st.success(), "kill {sig} {pid}");
}

/// Kills the script if the test fails before it ended.
struct ScriptGuard(std::process::Child);

impl Drop for ScriptGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn bootstrap(cluster: &TestCluster) -> String {
    cluster
        .members
        .iter()
        .filter_map(|m| m.node.as_ref().map(|n| n.kafka_addr().to_string()))
        .collect::<Vec<_>>()
        .join(",")
}

fn wait_file(path: &std::path::Path, within: Duration, cluster: &TestCluster) -> String {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "no {} within {within:?}; logs:\n{}",
            path.display(),
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs one request against `addr`.
fn ask<R: kafka_protocol::protocol::Request>(addr: &str, req: R, version: i16) -> R::Response
where
    R::Response: Send,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let opts = ConnectOptions::default().with_timeout(Duration::from_secs(5));
        let mut conn = Connection::connect(addr, &opts)
            .await
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        tokio::time::timeout(
            Duration::from_secs(10),
            conn.send_with_version(&req, version),
        )
        .await
        .unwrap_or_else(|_| panic!("no answer from {addr} within 10 s"))
        .unwrap_or_else(|e| panic!("request to {addr}: {e}"))
    })
}

/// Batched FindCoordinator (v4) for `groups` on node `id`: (key, node id, error code).
fn find_coordinators(cluster: &TestCluster, id: i32, groups: &[&str]) -> Vec<(String, i32, i16)> {
    let req = FindCoordinatorRequest::default()
        .with_key_type(0)
        .with_coordinator_keys(
            groups
                .iter()
                .map(|g| StrBytes::from(g.to_string()))
                .collect(),
        );
    let resp: FindCoordinatorResponse = ask(&cluster.kafka_addr(id), req, 4);
    resp.coordinators
        .iter()
        .map(|c| (c.key.to_string(), c.node_id.0, c.error_code))
        .collect()
}

/// OffsetFetch (v7) of every committed offset of `group` on node `id`: (top-level error code,
/// committed offset by partition of `topic`).
fn offset_fetch(
    cluster: &TestCluster,
    id: i32,
    group: &str,
    topic: &str,
) -> (i16, BTreeMap<i64, i64>) {
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from(group.to_string())))
        .with_topics(None);
    let resp: OffsetFetchResponse = ask(&cluster.kafka_addr(id), req, 7);
    let offsets = resp
        .topics
        .iter()
        .filter(|t| t.name.0.as_str() == topic)
        .flat_map(|t| t.partitions.iter())
        .map(|p| (i64::from(p.partition_index), p.committed_offset))
        .collect();
    (resp.error_code, offsets)
}

fn num(e: &Value, k: &str) -> i64 {
    e[k].as_i64()
        .unwrap_or_else(|| panic!("event without {k}: {e}"))
}

fn t(e: &Value) -> f64 {
    e["t"]
        .as_f64()
        .unwrap_or_else(|| panic!("event without t: {e}"))
}

#[test]
fn group_survives_coordinator_kill() {
    let started = Instant::now();
    let mut cluster = TestCluster::start(&ClusterOptions::default());
    for id in 1..=3 {
        cluster.wait_describe(id, FORM, "3 brokers and a controller", |c, b| {
            c > 0 && b == [1, 2, 3]
        });
    }
    let out = rill_cli(
        &cluster.kafka_addr(1),
        &["topic", "create", "work", "-p", "6", "-r", "3"],
        b"",
    );
    assert!(
        out.status.success(),
        "topic create: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let dir = cluster.path("groups");
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let script = Command::new(venv_python())
        .arg(repo_root().join("tests/py/cluster_groups.py"))
        .args(["--bootstrap", &bootstrap(&cluster)])
        .args(["--topic", "work", "--group", "analytics"])
        .args([
            "--count",
            "1500",
            "--rate",
            "100",
            "--burst",
            "1000",
            "--work-ms",
            "5",
        ])
        .arg("--dir")
        .arg(&dir)
        .env("PYTHONUNBUFFERED", "1")
        .current_dir(repo_root().join("tests/py"))
        .stdout(Stdio::from(
            std::fs::File::create(dir.join("stdout")).expect("stdout file"),
        ))
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("stderr")).expect("stderr file"),
        ))
        .spawn()
        .expect("start the consumers");
    let mut script = ScriptGuard(script);

    let coordinator: i32 = wait_file(&dir.join("coordinator"), Duration::from_secs(90), &cluster)
        .trim()
        .parse()
        .expect("a node id");
    assert!((1..=3).contains(&coordinator), "coordinator {coordinator}");
    // The other nodes (the followers of the group's partition) stall first, so that commits
    // made just before the kill are on the coordinator alone: a build that acknowledged them
    // before replication loses them with the coordinator (the checks below then fail). With
    // acks=all they are not acknowledged until replicated, and their outcome is unknown.
    let others: Vec<i32> = (1..=3).filter(|id| *id != coordinator).collect();
    for id in &others {
        signal(&cluster, *id, "-STOP");
    }
    std::thread::sleep(STALL);
    eprintln!("SIGKILL coordinator node {coordinator} (nodes {others:?} stalled for {STALL:?})");
    cluster.kill(coordinator);
    for id in &others {
        signal(&cluster, *id, "-CONT");
    }
    std::fs::write(dir.join("killed"), b"1").expect("killed marker");
    std::thread::sleep(Duration::from_secs(6));
    cluster.start_node(coordinator);
    for id in 1..=3 {
        cluster.wait_describe(id, FORM, "the killed node registered again", |c, b| {
            c > 0 && b == [1, 2, 3]
        });
    }

    let deadline = Instant::now() + SCRIPT_LIMIT;
    let status = loop {
        if let Some(status) = script.0.try_wait().expect("consumers") {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = std::fs::read_to_string(dir.join("stdout")).unwrap_or_default();
    let stderr = std::fs::read_to_string(dir.join("stderr")).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "consumers failed ({status:?}, limit {SCRIPT_LIMIT:?}): {stdout}\n{stderr}\nlogs:\n{}",
        cluster.logs()
    );
    eprintln!("consumers: {}", stdout.trim());
    let history: Value =
        serde_json::from_slice(&std::fs::read(dir.join("history.json")).expect("history.json"))
            .expect("history json");
    let after = history["coordinator_after"].as_i64().unwrap_or(-1);
    assert_ne!(
        after,
        i64::from(coordinator),
        "the coordinator did not move"
    );

    let events = history["events"].as_array().expect("events");
    let acked: BTreeSet<(i64, i64)> = history["acked"]
        .as_array()
        .expect("acked")
        .iter()
        .map(|a| (a[0].as_i64().unwrap_or(-1), a[1].as_i64().unwrap_or(-1)))
        .collect();
    assert!(
        acked.len() >= 1000,
        "only {} records acknowledged",
        acked.len()
    );
    let processed: Vec<&Value> = events.iter().filter(|e| e["kind"] == "process").collect();
    let seen: BTreeSet<(i64, i64)> = processed
        .iter()
        .map(|e| (num(e, "partition"), num(e, "offset")))
        .collect();
    let missing: Vec<_> = acked.difference(&seen).take(10).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged records never processed, e.g. {missing:?}",
        acked.difference(&seen).count()
    );

    // Acknowledged commits, by partition: (completion time, committed offset).
    let mut commits: BTreeMap<i64, Vec<(f64, i64)>> = BTreeMap::new();
    for e in events.iter().filter(|e| e["kind"] == "commit") {
        commits
            .entry(num(e, "partition"))
            .or_default()
            .push((t(e), num(e, "offset")));
        assert!(
            seen.contains(&(num(e, "partition"), num(e, "offset") - 1)),
            "commit of an unprocessed record: {e}"
        );
    }
    let killed_at = events
        .iter()
        .find(|e| e["kind"] == "killed")
        .map(t)
        .expect("kill event");
    let commits_after_kill = commits
        .values()
        .flatten()
        .filter(|(at, _)| *at > killed_at)
        .count();
    assert!(commits_after_kill > 0, "no commit after the kill");
    // The new coordinator loaded the group with its members (GroupMetadata records): nobody lost
    // or changed partitions between the kill and the replacement of a consumer.
    let replaced_at = events
        .iter()
        .find(|e| e["kind"] == "replace")
        .map(t)
        .expect("replace event");
    let moved: Vec<&Value> = events
        .iter()
        .filter(|e| {
            matches!(e["kind"].as_str(), Some("assign" | "revoke" | "lost"))
                && t(e) > killed_at
                && t(e) < replaced_at
        })
        .collect();
    assert!(
        moved.is_empty(),
        "the coordinator move rebalanced the group: {moved:?}"
    );
    // Once a commit of offset n was acknowledged, no record below n is processed again.
    let mut violations = Vec::new();
    for e in &processed {
        let (p, o, at) = (num(e, "partition"), num(e, "offset"), t(e));
        if let Some(c) = commits
            .get(&p)
            .and_then(|cs| cs.iter().find(|(ct, n)| *ct < at && *n > o))
        {
            violations.push(format!(
                "{}: partition {p} offset {o} processed {:.3}s after offset {} was committed",
                e["consumer"],
                at - c.0,
                c.1
            ));
        }
    }
    assert!(
        violations.is_empty(),
        "{} records processed again below an acknowledged commit (committed offsets lost), e.g.\n{}",
        violations.len(),
        violations[..violations.len().min(10)].join("\n")
    );

    // Ownership intervals per partition: (consumer, from, to).
    let mut open: BTreeMap<(String, i64), f64> = BTreeMap::new();
    let mut intervals: BTreeMap<i64, Vec<(String, f64, f64)>> = BTreeMap::new();
    let end = events.iter().map(t).fold(0.0, f64::max) + 1.0;
    let mut rebalances = 0;
    for e in events {
        let consumer = e["consumer"].as_str().unwrap_or("").to_string();
        let parts = |e: &Value| -> Vec<i64> {
            e["partitions"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_i64).collect())
                .unwrap_or_default()
        };
        match e["kind"].as_str() {
            Some("assign") => {
                rebalances += 1;
                for p in parts(e) {
                    open.insert((consumer.clone(), p), t(e));
                }
            }
            Some("revoke") | Some("lost") => {
                for p in parts(e) {
                    if let Some(from) = open.remove(&(consumer.clone(), p)) {
                        intervals
                            .entry(p)
                            .or_default()
                            .push((consumer.clone(), from, t(e)));
                    }
                }
            }
            _ => {}
        }
    }
    for ((consumer, p), from) in open {
        intervals.entry(p).or_default().push((consumer, from, end));
    }
    for (p, list) in &intervals {
        for (i, a) in list.iter().enumerate() {
            for b in &list[i + 1..] {
                assert!(
                    a.0 == b.0 || a.2 <= b.1 || b.2 <= a.1,
                    "partition {p} owned by {} ({:.3}-{:.3}) and {} ({:.3}-{:.3}) at once",
                    a.0,
                    a.1,
                    a.2,
                    b.0,
                    b.1,
                    b.2
                );
            }
        }
    }
    assert!(
        rebalances >= 4,
        "the replacement consumer caused no rebalance"
    );
    // Every processed record was processed by the consumer that owned its partition then.
    for e in &processed {
        let (p, at) = (num(e, "partition"), t(e));
        let consumer = e["consumer"].as_str().unwrap_or("");
        assert!(
            intervals.get(&p).is_some_and(|l| l
                .iter()
                .any(|(c, from, to)| c == consumer && *from <= at && at <= *to)),
            "{consumer} processed partition {p} without owning it: {e}"
        );
    }

    // Every node names the same coordinator for each group (batched FindCoordinator); that node
    // serves the group's committed offsets, which are the last ones acknowledged; the other nodes
    // answer NOT_COORDINATOR.
    let keys = ["analytics", "another-group", "polygenelubricants"];
    let answers: Vec<_> = (1..=3)
        .map(|id| find_coordinators(&cluster, id, &keys))
        .collect();
    for a in &answers {
        assert_eq!(
            a, &answers[0],
            "nodes disagree on coordinators: {answers:?}"
        );
        assert!(
            a.iter()
                .all(|(_, node, code)| *code == 0 && (1..=3).contains(node)),
            "{a:?}"
        );
    }
    let now = answers[0][0].1;
    let last: BTreeMap<i64, i64> = commits
        .iter()
        .map(|(p, cs)| (*p, cs.iter().map(|(_, n)| *n).max().unwrap_or(-1)))
        .collect();
    let (code, fetched) = offset_fetch(&cluster, now, "analytics", "work");
    assert_eq!(code, 0, "OffsetFetch at the coordinator {now}");
    // A commit the client saw fail (a timeout) may still have been applied after the last
    // acknowledged one.
    for (p, n) in &last {
        let got = fetched.get(p).copied().unwrap_or(-1);
        let unknown_outcome = events.iter().any(|e| {
            e["kind"] == "commit_failed" && num(e, "partition") == *p && num(e, "offset") == got
        });
        assert!(
            got == *n || (got > *n && unknown_outcome),
            "partition {p}: coordinator {now} has committed offset {got}, the last acknowledged commit was {n}"
        );
    }
    assert_eq!(
        fetched.keys().collect::<Vec<_>>(),
        last.keys().collect::<Vec<_>>(),
        "partitions with committed offsets"
    );
    for id in (1..=3).filter(|id| *id != now) {
        let (code, _) = offset_fetch(&cluster, id, "analytics", "work");
        assert_eq!(
            code, 16,
            "OffsetFetch at node {id}, not the coordinator: NOT_COORDINATOR"
        );
    }
    eprintln!(
        "{} acknowledged, {} processed, {} commits ({commits_after_kill} after the kill), coordinator {coordinator} -> {after} ({:?})",
        acked.len(),
        processed.len(),
        commits.values().map(Vec::len).sum::<usize>(),
        started.elapsed()
    );
}
