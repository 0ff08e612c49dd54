//! The console's group pages in a cluster (issue 14): groups coordinated by different nodes
//! (the leaders of their `__consumer_offsets` partitions) all show up in every node's
//! `/api/v1/groups` and `/api/v1/groups/{group}` with the right committed offsets and lag, read
//! through the Kafka client; and `rill_consumer_group_lag_records` is exported by the group's
//! coordinator only (each node exports the groups it coordinates).
//!
//! Setup: a three-node cluster, an RF 3 topic `lagged` with 3 partitions and 10 records in each,
//! and groups whose offsets are committed through the Kafka protocol (admin commits, rill-client)
//! at distinct offsets, so each group's lag is known exactly. Group names are picked until every
//! node coordinates at least one group.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use kafka_protocol::messages::{FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use rill_client::connection::{ConnectOptions, Connection};
use rill_client::{Client, SaslCredentials, SaslMechanism, TargetSecurity};
use rill_core::scram::ScramMechanism;
use rill_tests::cluster::{write_node_certs, ClusterOptions, TestCluster};
use rill_tests::{http_get, rill_cli, run_python};
use serde_json::Value;

const FORM: Duration = Duration::from_secs(30);
const TOPIC: &str = "lagged";
const RECORDS: i64 = 10;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The coordinator of each of `groups` (FindCoordinator v4, batched, asked of node 1 with
/// `security`); `Err` while one is not available yet.
fn coordinators(
    cluster: &TestCluster,
    groups: &[String],
    security: &TargetSecurity,
) -> Result<BTreeMap<String, i32>, String> {
    let addr = cluster.kafka_addr(1);
    let req = FindCoordinatorRequest::default()
        .with_key_type(0)
        .with_coordinator_keys(groups.iter().map(|g| StrBytes::from(g.clone())).collect());
    let resp: FindCoordinatorResponse = runtime().block_on(async {
        let opts = ConnectOptions::default()
            .with_security(security.clone())
            .with_timeout(Duration::from_secs(5));
        let mut conn = Connection::connect(&addr, &opts)
            .await
            .map_err(|e| e.to_string())?;
        conn.send_with_version(&req, 4)
            .await
            .map_err(|e| e.to_string())
    })?;
    resp.coordinators
        .iter()
        .map(|c| match c.error_code {
            0 => Ok((c.key.to_string(), c.node_id.0)),
            code => Err(format!("FindCoordinator {}: error {code}", c.key)),
        })
        .collect()
}

fn http(cluster: &TestCluster, id: i32) -> String {
    cluster
        .member(id)
        .node
        .as_ref()
        .expect("running")
        .http_addr()
        .to_string()
}

fn api(cluster: &TestCluster, id: i32, path: &str) -> Value {
    let (status, body) = http_get(&http(cluster, id), path).expect("GET");
    assert_eq!(status, 200, "node {id} {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("node {id} {path}: {e}: {body}"))
}

/// `rill_consumer_group_lag_records{group=..,topic=TOPIC}` in node `id`'s `/metrics`, by group.
fn exported_lag(cluster: &TestCluster, id: i32) -> BTreeMap<String, i64> {
    let (status, body) = http_get(&http(cluster, id), "/metrics").expect("GET /metrics");
    assert_eq!(status, 200, "{body}");
    body.lines()
        .filter_map(|l| l.strip_prefix("rill_consumer_group_lag_records{group=\""))
        .filter_map(|rest| {
            let (group, rest) = rest.split_once('"')?;
            let rest = rest.strip_prefix(&format!(",topic=\"{TOPIC}\"}} "))?;
            Some((group.to_string(), rest.trim().parse().ok()?))
        })
        .collect()
}

fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + within;
    loop {
        match f() {
            Ok(()) => return,
            Err(e) if Instant::now() >= deadline => panic!("{what} within {within:?}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(300)),
        }
    }
}

#[test]
fn every_node_shows_every_group_with_its_lag() {
    let cluster = TestCluster::start(&ClusterOptions::default());
    for id in 1..=3 {
        cluster.wait_describe(id, FORM, "3 brokers and a controller", |c, b| {
            c > 0 && b == [1, 2, 3]
        });
    }
    let out = rill_cli(
        &cluster.kafka_addr(1),
        &["topic", "create", TOPIC, "-p", "3", "-r", "3"],
        b"",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: String = (0..RECORDS).map(|i| format!("r{i}\n")).collect();
    for p in 0..3 {
        let out = rill_cli(
            &cluster.bootstrap(),
            &["produce", TOPIC, "-p", &p.to_string()],
            lines.as_bytes(),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Groups until each node coordinates one (at most 40 names; 16 offsets partitions).
    let mut chosen: BTreeMap<String, i32> = BTreeMap::new();
    let names: Vec<String> = (0..40).map(|i| format!("console-g{i}")).collect();
    let mut by_node: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    wait_until("coordinators for the groups", FORM, || {
        let found = coordinators(&cluster, &names, &TargetSecurity::default())?;
        by_node.clear();
        for (g, n) in &found {
            by_node.entry(*n).or_default().push(g.clone());
        }
        if by_node.len() == 3 {
            Ok(())
        } else {
            Err(format!("coordinators: {by_node:?}"))
        }
    });
    for (node, groups) in &by_node {
        for g in groups.iter().take(2) {
            chosen.insert(g.clone(), *node);
        }
    }
    // Group i commits offset i on partition 0, RECORDS on 1 (caught up) and nothing on 2.
    let mut expected: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    runtime().block_on(async {
        let mut client = Client::connect(&cluster.bootstrap(), ConnectOptions::default())
            .await
            .expect("client");
        for (i, g) in chosen.keys().enumerate() {
            let at = i as i64 + 1;
            let offsets = BTreeMap::from([
                ((TOPIC.to_string(), 0), at),
                ((TOPIC.to_string(), 1), RECORDS),
            ]);
            client.offset_commit(g, &offsets).await.expect("commit");
            expected.insert(g.clone(), (at, RECORDS - at));
        }
    });
    eprintln!("groups and their coordinators: {chosen:?}");
    assert_eq!(
        chosen.values().collect::<BTreeSet<_>>().len(),
        3,
        "groups on every node"
    );

    for id in 1..=3 {
        // The list: every group, with its coordinator and total lag.
        wait_until(&format!("node {id} lists every group"), FORM, || {
            let v = api(&cluster, id, "/api/v1/groups");
            let list = v["groups"].as_array().ok_or("no groups array")?;
            let rows: BTreeMap<String, &Value> = list
                .iter()
                .filter_map(|g| Some((g["group"].as_str()?.to_string(), g)))
                .collect();
            if rows.len() != list.len() {
                return Err(format!("a group listed twice: {v}"));
            }
            for (g, (_, lag)) in &expected {
                let row = rows.get(g).ok_or(format!("{g} missing from {v}"))?;
                if row["lag_records"] != *lag || row["coordinator"] != chosen[g] {
                    return Err(format!(
                        "{g}: {row} (want lag {lag}, coordinator {})",
                        chosen[g]
                    ));
                }
            }
            Ok(())
        });
        let overview = api(&cluster, id, "/api/v1/overview");
        assert!(
            overview["groups"].as_u64().unwrap_or(0) >= expected.len() as u64,
            "{overview}"
        );
        // Each group: committed offsets, high watermarks and lag per partition.
        for (g, (at, lag)) in &expected {
            let v = api(&cluster, id, &format!("/api/v1/groups/{g}"));
            let offsets = v["offsets"].as_array().expect("offsets");
            assert_eq!(offsets.len(), 2, "node {id} {g}: {v}");
            let p0 = &offsets[0];
            assert_eq!(p0["topic"], TOPIC, "{v}");
            assert_eq!(p0["partition"], 0, "{v}");
            assert_eq!(p0["committed"], *at, "{v}");
            assert_eq!(p0["high_watermark"], RECORDS, "{v}");
            assert_eq!(p0["lag_records"], *lag, "{v}");
            let secs = p0["lag_seconds"].as_f64().expect("lag_seconds");
            assert!((0.0..600.0).contains(&secs) && secs > 0.0, "{v}");
            let p1 = &offsets[1];
            assert_eq!(p1["partition"], 1, "{v}");
            assert_eq!(p1["lag_records"], 0, "{v}");
            assert_eq!(p1["lag_seconds"], 0.0, "{v}");
            assert_eq!(v["state"], "Empty", "{v}");
        }
        let (status, body) =
            http_get(&http(&cluster, id), "/api/v1/groups/no-such-group").expect("GET");
        assert_eq!(status, 404, "{body}");
    }

    // Metrics: each node exports the groups it coordinates, and only those.
    for id in 1..=3 {
        wait_until(&format!("node {id} exports its groups' lag"), FORM, || {
            let exported = exported_lag(&cluster, id);
            let mine: BTreeMap<String, i64> = expected
                .iter()
                .filter(|(g, _)| chosen[*g] == id)
                .map(|(g, (_, lag))| (g.clone(), *lag))
                .collect();
            let ours: BTreeMap<String, i64> = exported
                .into_iter()
                .filter(|(g, _)| expected.contains_key(g))
                .collect();
            if ours == mine {
                Ok(())
            } else {
                Err(format!("exported {ours:?}, coordinated {mine:?}"))
            }
        });
    }
}

/// A cluster whose Kafka listener requires SASL/SCRAM, its nodes authenticated to each other by
/// a cluster secret: the console cannot read through the Kafka listener without a password, so
/// it reads through the cluster listener as a peer. See [`sasl_cluster_console`].
#[test]
fn a_sasl_cluster_shows_groups_on_a_node_that_does_not_coordinate_them() {
    sasl_cluster_console(ClusterOptions::default());
}

/// The same with cluster mTLS instead of a secret: the console's connections (to its own node
/// too) present the node's certificate and check the peer's.
#[test]
fn a_sasl_cluster_over_mtls_shows_groups_on_a_node_that_does_not_coordinate_them() {
    let certs = tempfile::tempdir().expect("tempdir");
    write_node_certs(certs.path(), &[1, 2, 3]);
    sasl_cluster_console(ClusterOptions {
        secret: None,
        tls_dir: Some(certs.path().to_path_buf()),
        ..ClusterOptions::default()
    });
}

/// `cluster` (its inter-node authentication) with SASL/SCRAM required on the Kafka listener:
/// a confluent-kafka consumer group (authenticated) commits offsets; a node that does not
/// coordinate the group lists it with the right lag, describes it per partition, and its lag
/// sampler records the group's lag.
fn sasl_cluster_console(cluster: ClusterOptions) {
    const USER: &str = "console-alice";
    const PASSWORD: &str = "console-alice-s3cret";
    const GROUP: &str = "sasl-console-group";
    const SASL_TOPIC: &str = "sasl-lagged";
    let security = TargetSecurity {
        tls: None,
        sasl: Some(SaslCredentials {
            mechanism: SaslMechanism::Scram(ScramMechanism::Sha256),
            username: USER.to_string(),
            password: PASSWORD.to_string(),
        }),
    };
    let opts = ClusterOptions {
        extra_config: "\n[kafka]\nsasl = true\nsasl_mechanisms = [\"SCRAM-SHA-256\"]\n".into(),
        users: vec![(USER.to_string(), PASSWORD.to_string())],
        client_security: security.clone(),
        ..cluster
    };
    assert!(
        opts.secret.is_some() || opts.tls_dir.is_some(),
        "the nodes authenticate each other"
    );
    let cluster = TestCluster::start(&opts);
    for id in 1..=3 {
        cluster.wait_describe(id, FORM, "3 brokers and a controller", |c, b| {
            c > 0 && b == [1, 2, 3]
        });
    }
    let bootstrap = cluster.bootstrap();
    let out = run_python(
        "cluster_console_sasl.py",
        &[
            "--bootstrap",
            &bootstrap,
            "--topic",
            SASL_TOPIC,
            "--group",
            GROUP,
            "--username",
            USER,
            "--password",
            PASSWORD,
        ],
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
    let committed = out
        .lines()
        .find_map(|l| l.strip_prefix("RESULT committed "))
        .unwrap_or_else(|| panic!("no RESULT committed: {out}"));
    let committed: Value = serde_json::from_str(committed).expect("RESULT json");
    assert_eq!(
        committed,
        serde_json::json!({"consumed": 30, "offsets": {"0": 4, "1": 10, "2": 7}}),
        "{out}"
    );
    // Lag: 10 - 4 on partition 0, 0 on 1, 10 - 7 on 2.
    let want_lag = 9;

    let mut coordinator = 0;
    wait_until("the group's coordinator", FORM, || {
        let found = coordinators(&cluster, &[GROUP.to_string()], &security)?;
        coordinator = found[GROUP];
        Ok(())
    });
    let id = coordinator % 3 + 1;
    eprintln!("group {GROUP} is coordinated by node {coordinator}; asking node {id}");
    wait_until(&format!("node {id} lists {GROUP}"), FORM, || {
        let (status, body) =
            http_get(&http(&cluster, id), "/api/v1/groups").map_err(|e| e.to_string())?;
        if status != 200 {
            return Err(format!("HTTP {status}: {body}"));
        }
        let v: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
        let row = v["groups"]
            .as_array()
            .and_then(|l| l.iter().find(|g| g["group"] == GROUP))
            .ok_or(format!("{GROUP} missing from {v}"))?;
        if row["lag_records"] == want_lag
            && row["coordinator"] == coordinator
            && row["state"] == "Empty"
        {
            Ok(())
        } else {
            Err(format!(
                "{row} (want lag {want_lag}, coordinator {coordinator}, Empty)"
            ))
        }
    });
    let v = api(&cluster, id, &format!("/api/v1/groups/{GROUP}"));
    let offsets: Vec<(i64, i64, i64, i64)> = v["offsets"]
        .as_array()
        .expect("offsets")
        .iter()
        .map(|o| {
            assert_eq!(o["topic"], SASL_TOPIC, "{v}");
            let n = |k: &str| o[k].as_i64().unwrap_or_else(|| panic!("{k} in {o}"));
            (
                n("partition"),
                n("committed"),
                n("high_watermark"),
                n("lag_records"),
            )
        })
        .collect();
    assert_eq!(
        offsets,
        vec![(0, 4, RECORDS, 6), (1, 10, RECORDS, 0), (2, 7, RECORDS, 3)],
        "{v}"
    );
    // The lag sampler reads through the same client: a sample with the group's lag.
    wait_until(&format!("node {id} samples {GROUP}'s lag"), FORM, || {
        let v = api(&cluster, id, &format!("/api/v1/groups/{GROUP}"));
        let history = v["lag_history"]
            .as_array()
            .ok_or(format!("no lag_history: {v}"))?;
        if history.iter().any(|s| s["lag_records"] == want_lag) {
            Ok(())
        } else {
            Err(format!("lag_history {history:?}"))
        }
    });
}
