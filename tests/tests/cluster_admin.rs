//! The Kafka metadata and admin APIs of a cluster on real processes (issue 11): three `rill
//! serve` nodes on 127.0.0.11-13 (the `rill_tests::cluster` harness). A topic created with
//! `rill topic create -p 6 -r 3` through one node is listed by kcat `-L` and confluent-kafka's
//! `list_topics` against every node with the three brokers and two leaders on each; confluent's
//! `elect_leaders` answers ELECTION_NOT_NEEDED for a partition its preferred replica leads; a
//! replication factor above the brokers is INVALID_REPLICATION_FACTOR; Metadata auto-creates
//! through the controller; config changes, new partitions and deletion through one node reach the
//! others; `rill topic describe`
//! shows leader, replicas and ISR; `rill cluster status` calls the cluster healthy, then, after a
//! SIGKILL and the session timeout, lists the dead node and the partitions that lost it from
//! their ISR (which `rill topic describe` shows as an offline replica).

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rill_client::connection::{ConnectOptions, Connection};
use rill_tests::cluster::{ClusterOptions, TestCluster};
use rill_tests::{kcat, rill_cli, run_python, run_with_timeout};
use serde_json::Value;

const FORM: Duration = Duration::from_secs(20);

fn json(out: &[u8]) -> Value {
    serde_json::from_slice(out)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(out)))
}

/// `rill ARGS --json` against `addr`, parsed.
fn rill_json(addr: &str, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = rill_cli(addr, &all, b"");
    assert!(
        out.status.success(),
        "rill {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    json(&out.stdout)
}

/// kcat's `-L -J` metadata of `topic` from `addr`.
fn kcat_metadata(kcat: &std::path::Path, addr: &str, topic: &str) -> Value {
    let mut cmd = Command::new(kcat);
    cmd.args(["-L", "-J", "-b", addr, "-t", topic, "-m", "10"]);
    let out = run_with_timeout(cmd, b"", Duration::from_secs(30)).expect("kcat -L");
    assert!(
        out.status.success(),
        "kcat -L: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    json(&out.stdout)
}

/// Polls `f` until it returns `Some` (fails after `within`, with the cluster's logs).
fn wait<T>(cluster: &TestCluster, what: &str, within: Duration, f: impl Fn() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what} not seen within {within:?}\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Metadata for `topic` from `addr`, allowing auto-creation: (topic error code, replica lists).
fn auto_create_metadata(addr: &str, topic: &str) -> Result<(i16, Vec<Vec<i32>>), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let opts = ConnectOptions::default().with_timeout(Duration::from_secs(10));
        let mut conn = Connection::connect(addr, &opts)
            .await
            .map_err(|e| e.to_string())?;
        let req = MetadataRequest::default()
            .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(
                TopicName(StrBytes::from_string(topic.to_string())),
            ))]))
            .with_allow_auto_topic_creation(true);
        let resp: MetadataResponse = conn.send(&req).await.map_err(|e| e.to_string())?;
        let t = resp.topics.first().ok_or("no topic in the answer")?;
        let replicas = t
            .partitions
            .iter()
            .map(|p| p.replica_nodes.iter().map(|b| b.0).collect())
            .collect();
        Ok((t.error_code, replicas))
    })
}

/// A producer id from the node at `addr` (InitProducerId for an idempotent producer, as
/// librdkafka sends it to any broker), retrying while the node answers
/// COORDINATOR_LOAD_IN_PROGRESS.
fn init_producer_id(addr: &str) -> i64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let opts = ConnectOptions::default().with_timeout(Duration::from_secs(10));
        let mut conn = Connection::connect(addr, &opts)
            .await
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let req = InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(kafka_protocol::messages::ProducerId(-1))
                .with_producer_epoch(-1);
            let resp: InitProducerIdResponse = conn
                .send(&req)
                .await
                .unwrap_or_else(|e| panic!("InitProducerId at {addr}: {e}"));
            match resp.error_code {
                0 => return resp.producer_id.0,
                // COORDINATOR_LOAD_IN_PROGRESS: no block from the controller yet.
                14 if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                code => panic!("InitProducerId at {addr}: error {code}"),
            }
        }
    })
}

/// `per_node` producer ids from each of `addrs`, checked to be new (not in `seen`).
fn fresh_producer_ids(addrs: &[String], per_node: usize, seen: &mut Vec<i64>) {
    for addr in addrs {
        for _ in 0..per_node {
            let id = init_producer_id(addr);
            assert!(id >= 0, "{addr} answered producer id {id}");
            assert!(
                !seen.contains(&id),
                "{addr} handed out producer id {id} again (already handed out: {seen:?})"
            );
            seen.push(id);
        }
    }
}

fn ids(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_i64().expect("an id"))
        .collect()
}

#[test]
fn metadata_elections_and_status_of_a_three_node_cluster() {
    let started = Instant::now();
    let Some(kcat) = kcat() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "kcat is not installed (CI=true requires it)"
        );
        eprintln!("note: kcat is not installed; skipping");
        return;
    };
    let mut cluster = TestCluster::start(&ClusterOptions::default());
    for id in 1..=3 {
        cluster.wait_describe(id, FORM, "3 brokers and a controller", |c, b| {
            c > 0 && b == [1, 2, 3]
        });
    }
    let addrs: Vec<String> = (1..=3).map(|id| cluster.kafka_addr(id)).collect();
    // Producer ids are unique across the cluster's members (each node alone would start at 0).
    let mut producer_ids = Vec::new();
    fresh_producer_ids(&addrs, 2, &mut producer_ids);
    let created = rill_json(
        &addrs[0],
        &["topic", "create", "orders", "-p", "6", "-r", "3"],
    );
    assert_eq!(created["partitions"], 6, "{created}");
    assert_eq!(created["replication_factor"], 3, "{created}");

    // kcat -L against every node: three brokers, six partitions led two per broker, every
    // replica in the ISR.
    for addr in &addrs {
        let md = wait(&cluster, "orders in the metadata", FORM, || {
            let md = kcat_metadata(&kcat, addr, "orders");
            let ok = md["topics"][0]["partitions"].as_array().map(Vec::len) == Some(6);
            ok.then_some(md)
        });
        let mut brokers: Vec<i64> = md["brokers"]
            .as_array()
            .expect("brokers")
            .iter()
            .map(|b| b["id"].as_i64().expect("broker id"))
            .collect();
        brokers.sort_unstable();
        assert_eq!(brokers, vec![1, 2, 3], "{addr}: {md}");
        let mut leaders: BTreeMap<i64, usize> = BTreeMap::new();
        for p in md["topics"][0]["partitions"]
            .as_array()
            .expect("partitions")
        {
            let replicas: Vec<i64> = p["replicas"]
                .as_array()
                .expect("replicas")
                .iter()
                .map(|r| r["id"].as_i64().expect("replica id"))
                .collect();
            let isrs: Vec<i64> = p["isrs"]
                .as_array()
                .expect("isrs")
                .iter()
                .map(|r| r["id"].as_i64().expect("isr id"))
                .collect();
            let mut distinct = replicas.clone();
            distinct.sort_unstable();
            distinct.dedup();
            assert_eq!(distinct, vec![1, 2, 3], "{addr}: {p}");
            assert_eq!(isrs, replicas, "{addr}: {p}");
            assert_eq!(p["leader"].as_i64(), Some(replicas[0]), "{addr}: {p}");
            *leaders.entry(replicas[0]).or_default() += 1;
        }
        assert_eq!(
            leaders,
            BTreeMap::from([(1, 2), (2, 2), (3, 2)]),
            "{addr}: leaders spread over the brokers"
        );
    }

    // confluent-kafka against every node.
    for addr in &addrs {
        let out = run_python(
            "cluster_admin.py",
            &["--bootstrap", addr, "--topic", "orders"],
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
        let line = out
            .lines()
            .find_map(|l| l.strip_prefix("RESULT "))
            .unwrap_or_else(|| panic!("no RESULT line: {out}"));
        let r: Value = serde_json::from_str(line).expect("RESULT json");
        assert_eq!(ids(&r["brokers"]), vec![1, 2, 3], "{addr}: {r}");
        let mut leaders: BTreeMap<i64, usize> = BTreeMap::new();
        for p in r["partitions"].as_object().expect("partitions").values() {
            assert_eq!(p["error"], Value::Null, "{addr}: {p}");
            assert_eq!(ids(&p["isrs"]), ids(&p["replicas"]), "{addr}: {p}");
            *leaders
                .entry(p["leader"].as_i64().expect("leader"))
                .or_default() += 1;
        }
        assert_eq!(leaders, BTreeMap::from([(1, 2), (2, 2), (3, 2)]), "{addr}");
        assert_eq!(
            r["elections"]["orders-0"], "ELECTION_NOT_NEEDED",
            "{addr}: {r}"
        );
        assert_eq!(
            r["elections"]["orders-99"], "UNKNOWN_TOPIC_OR_PART",
            "{addr}: {r}"
        );
        assert_eq!(r["rf4"], "INVALID_REPLICATION_FACTOR", "{addr}: {r}");
    }

    // Metadata with auto-creation (node 3): created through the controller with the defaults
    // (one partition, replication factor 3); LEADER_NOT_AVAILABLE (5) until this node's image
    // has it.
    let (code, _) = auto_create_metadata(&addrs[2], "auto-created").expect("metadata");
    assert!(code == 0 || code == 5, "auto-create answered {code}");
    let replicas = wait(
        &cluster,
        "the auto-created topic",
        FORM,
        || match auto_create_metadata(&addrs[0], "auto-created") {
            Ok((0, replicas)) => Some(replicas),
            _ => None,
        },
    );
    assert_eq!(replicas.len(), 1);
    let mut r = replicas[0].clone();
    r.sort_unstable();
    assert_eq!(r, vec![1, 2, 3]);

    // rill topic describe (another node): leader, replicas and ISR of every partition.
    let d = rill_json(&addrs[1], &["topic", "describe", "orders"]);
    let parts = d["partitions"].as_array().expect("partitions");
    assert_eq!(parts.len(), 6, "{d}");
    for p in parts {
        let replicas = ids(&p["replicas"]);
        assert_eq!(replicas.len(), 3, "{p}");
        assert_eq!(p["leader"].as_i64(), Some(replicas[0]), "{p}");
        assert_eq!(ids(&p["isr"]), replicas, "{p}");
        assert_eq!(ids(&p["offline_replicas"]), Vec::<i64>::new(), "{p}");
    }

    // Admin writes through any node reach every node's image: configs (IncrementalAlterConfigs,
    // read back with DescribeConfigs elsewhere), partitions, deletion.
    let ok = |addr: &str, args: &[&str]| {
        let out = rill_cli(addr, args, b"");
        assert!(
            out.status.success(),
            "rill {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ok(
        &addrs[0],
        &["topic", "alter", "orders", "-c", "retention.ms=3600000"],
    );
    wait(&cluster, "the altered config on node 3", FORM, || {
        let d = rill_json(&addrs[2], &["topic", "describe", "orders"]);
        (d["configs"]["retention.ms"] == "3600000").then_some(())
    });
    ok(
        &addrs[1],
        &["topic", "add-partitions", "auto-created", "--total", "3"],
    );
    let grown = wait(
        &cluster,
        "3 partitions of auto-created on node 1",
        FORM,
        || {
            let md = kcat_metadata(&kcat, &addrs[0], "auto-created");
            let n = md["topics"][0]["partitions"].as_array().map(Vec::len);
            (n == Some(3)).then_some(md)
        },
    );
    for p in grown["topics"][0]["partitions"]
        .as_array()
        .expect("partitions")
    {
        assert_eq!(p["replicas"].as_array().map(Vec::len), Some(3), "{p}");
    }
    ok(&addrs[2], &["topic", "delete", "auto-created"]);
    wait(&cluster, "auto-created gone on node 1", FORM, || {
        let topics = rill_json(&addrs[0], &["topic", "list"]);
        let names: Vec<&str> = topics
            .as_array()
            .expect("topics")
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect();
        (names == ["orders"]).then_some(())
    });

    // rill cluster status: healthy, the controller DescribeCluster names, three voters caught up.
    let (controller, _) = cluster.wait_describe(2, FORM, "a controller", |c, _| c > 0);
    let status = wait(&cluster, "a healthy status", FORM, || {
        let s = rill_json(&addrs[1], &["cluster", "status"]);
        (s["healthy"] == true).then_some(s)
    });
    assert_eq!(
        status["controller_id"].as_i64(),
        Some(i64::from(controller))
    );
    assert_eq!(status["cluster_id"], cluster.cluster_id.as_str());
    let voters = status["voters"].as_array().expect("voters");
    assert_eq!(voters.len(), 3, "{status}");
    assert!(
        voters
            .iter()
            .all(|v| v["lag"].as_i64().is_some_and(|l| l <= 10)),
        "{status}"
    );
    let running: Vec<i64> = status["brokers"]
        .as_array()
        .expect("brokers")
        .iter()
        .filter(|b| b["state"] == "running")
        .map(|b| b["node_id"].as_i64().expect("id"))
        .collect();
    assert_eq!(running, vec![1, 2, 3], "{status}");
    assert_eq!(status["under_replicated_partitions"], serde_json::json!([]));
    assert_eq!(status["offline_partitions"], serde_json::json!([]));
    let human = rill_cli(&addrs[0], &["cluster", "status"], b"");
    let human = String::from_utf8_lossy(&human.stdout);
    assert!(human.contains("STATUS      healthy"), "{human}");

    // SIGKILL node 3 (not the bootstrap): once fenced, it is no live broker, every partition
    // lost it from its ISR (and the two it led have another leader).
    let victim = 3;
    cluster.kill(victim);
    cluster.wait_describe(1, FORM, "node 3 fenced", |c, b| c > 0 && b == [1, 2]);
    let status = wait(&cluster, "node 3 out of every ISR", FORM, || {
        let s = rill_json(&addrs[0], &["cluster", "status"]);
        let under = s["under_replicated_partitions"].as_array().map(Vec::len);
        (under == Some(6)).then_some(s)
    });
    assert_eq!(status["healthy"], false);
    let problems: Vec<&str> = status["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        problems.contains(&"node 3 is not a live broker"),
        "{status}"
    );
    for p in status["under_replicated_partitions"]
        .as_array()
        .expect("under")
    {
        assert_eq!(ids(&p["offline_replicas"]), vec![3], "{p}");
        assert!(!ids(&p["isr"]).contains(&3), "{p}");
        assert_ne!(p["leader"].as_i64(), Some(3), "{p}");
    }
    assert_eq!(status["offline_partitions"], serde_json::json!([]));
    let d = rill_json(&addrs[1], &["topic", "describe", "orders"]);
    for p in d["partitions"].as_array().expect("partitions") {
        assert_eq!(ids(&p["offline_replicas"]), vec![3], "{p}");
        assert!(!ids(&p["isr"]).contains(&3), "{p}");
    }
    // With two live brokers, the default replication factor (3) cannot be met: refused as in
    // Kafka; an explicit 2 works.
    let out = rill_cli(&addrs[1], &["topic", "create", "late"], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("INVALID_REPLICATION_FACTOR"),
        "{err}"
    );
    let created = rill_json(
        &addrs[1],
        &["topic", "create", "late", "-r", "2", "-p", "2"],
    );
    assert_eq!(created["replication_factor"], 2, "{created}");
    let dead = &status["brokers"].as_array().expect("brokers")[2];
    assert_eq!(
        (dead["node_id"].as_i64(), dead["state"].as_str()),
        (Some(3), Some("not live"))
    );
    // The survivors keep handing out new producer ids, and a restarted node (whose block was
    // only in memory) gets a new block, not its old one again.
    fresh_producer_ids(&addrs[..2], 1, &mut producer_ids);
    cluster.kill(2);
    cluster.start_node(2);
    fresh_producer_ids(&addrs[1..2], 2, &mut producer_ids);
    eprintln!("cluster_admin: {:?}", started.elapsed());
}

/// A node alone keeps answering as the only broker: ElectLeaders has nothing to elect, and
/// `rill cluster status` says there is no quorum.
#[test]
fn a_node_alone_has_nothing_to_elect_and_no_quorum() {
    let node = rill_tests::Node::start();
    let addr = node.kafka_addr().to_string();
    let created = rill_json(&addr, &["topic", "create", "orders", "-p", "2"]);
    assert_eq!(created["partitions"], 2, "{created}");
    let out = run_python(
        "cluster_admin.py",
        &["--bootstrap", &addr, "--topic", "orders"],
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", node.log()));
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("no RESULT line: {out}"));
    let r: Value = serde_json::from_str(line).expect("RESULT json");
    assert_eq!(r["brokers"].as_array().map(Vec::len), Some(1), "{r}");
    assert_eq!(r["elections"]["orders-0"], "ELECTION_NOT_NEEDED", "{r}");
    assert_eq!(r["elections"]["orders-99"], "UNKNOWN_TOPIC_OR_PART", "{r}");
    assert_eq!(r["rf4"], "INVALID_REPLICATION_FACTOR", "{r}");
    let status = rill_cli(&addr, &["cluster", "status"], b"");
    assert!(!status.status.success());
    let err = String::from_utf8_lossy(&status.stderr);
    assert!(
        err.contains("INVALID_REQUEST") && err.contains("runs alone"),
        "{err}"
    );
}
