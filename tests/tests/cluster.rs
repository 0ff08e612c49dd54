//! Cluster mode on real processes (issue 11): three `rill serve` nodes on 127.0.0.11-13,
//! formatted with `rill cluster format --voters`, form a controller quorum and register as
//! brokers; the active controller's SIGKILL elects another one, which fences the dead broker
//! after its session timeout; the restarted node registers again under a new broker epoch; a
//! node with the wrong cluster secret is refused and logged; a wiped and re-formatted node does
//! not vote; a node formatted for another cluster is refused; SIGTERM is a controlled shutdown.
//!
//! The brokers and the controller are read with DescribeCluster (rill-client on the wire).
//! Tests share the loopback aliases, so they run one at a time.

use std::sync::Mutex;
use std::time::Duration;

use rill_tests::cluster::{registered_epochs, write_node_certs, ClusterOptions, TestCluster};

static SERIAL: Mutex<()> = Mutex::new(());

const FORM: Duration = Duration::from_secs(20);

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn all_three(_: i32, brokers: &[i32]) -> bool {
    brokers == [1, 2, 3]
}

#[test]
fn three_nodes_form_a_cluster_fail_over_fence_and_re_register() {
    let _guard = serial();
    let mut cluster = TestCluster::start(&ClusterOptions::default());
    let mut controller = -1;
    for id in 1..=3 {
        let (c, _) =
            cluster.wait_describe(id, FORM, "3 unfenced brokers and a controller", |c, b| {
                c > 0 && all_three(c, b)
            });
        assert!(
            controller == -1 || controller == c,
            "nodes disagree on the controller"
        );
        controller = c;
    }
    // Every broker with its advertised Kafka endpoint and rack, from any node.
    let resp = cluster.describe_cluster(2).unwrap();
    assert_eq!(resp.cluster_id.as_str(), cluster.cluster_id);
    for b in &resp.brokers {
        let id = b.broker_id.0;
        assert_eq!(
            format!("{}:{}", b.host.as_str(), b.port),
            cluster.kafka_addr(id)
        );
        assert_eq!(
            b.rack.as_ref().map(|r| r.to_string()),
            Some(format!("rack-{id}"))
        );
    }
    let first_epoch = registered_epochs(&cluster.log(controller));
    assert_eq!(first_epoch.len(), 1, "{}", cluster.logs());

    // SIGKILL the active controller: another one takes over and fences the dead broker once its
    // session (3 s) expired.
    cluster.kill(controller);
    let survivor = if controller == 1 { 2 } else { 1 };
    let (new_controller, brokers) = cluster.wait_describe(
        survivor,
        FORM,
        "a new controller and the killed broker fenced",
        |c, b| c > 0 && c != controller && !b.contains(&controller) && b.len() == 2,
    );
    cluster.wait_log(new_controller, "broker fenced: its session expired", FORM);
    assert!(brokers.iter().all(|b| *b != controller));

    // Restart it: it registers again, with a new broker epoch, and is unfenced.
    cluster.start_node(controller);
    for id in 1..=3 {
        cluster.wait_describe(id, FORM, "all 3 brokers again", all_three);
    }
    let epochs = registered_epochs(&cluster.log(controller));
    assert_eq!(epochs.len(), 2, "{}", cluster.logs());
    assert!(
        epochs[1] > epochs[0],
        "the new registration has a newer broker epoch: {epochs:?}"
    );

    // SIGTERM: a controlled shutdown through the active controller, then exit 0.
    let (controller, _) = cluster.describe(1).unwrap();
    let leaving = if controller == 3 { 2 } else { 3 };
    let status = cluster.terminate(leaving);
    assert!(status.success(), "{status:?}\n{}", cluster.logs());
    let log = cluster.log(leaving);
    assert!(
        log.contains("controlled shutdown: moving leadership away")
            && log.contains("controlled shutdown complete"),
        "{log}"
    );
}

#[test]
fn a_node_of_another_cluster_is_refused() {
    let _guard = serial();
    let mut cluster = TestCluster::start(&ClusterOptions {
        secret: None,
        ..ClusterOptions::default()
    });
    cluster.wait_describe(1, FORM, "3 brokers", |c, b| c > 0 && all_three(c, b));
    // Node 3 is formatted for another cluster at the same address.
    cluster.reformat(3, "another-cluster");
    cluster.start_node(3);
    let refused = |id| {
        cluster.log(id).lines().any(|l| {
            l.contains("cluster connection refused")
                && l.contains("is not this cluster's (\"rill-test-cluster\")")
        })
    };
    let deadline = std::time::Instant::now() + FORM;
    while !(refused(1) || refused(2)) {
        assert!(
            std::time::Instant::now() < deadline,
            "no refusal of the other cluster logged\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    cluster.wait_describe(1, FORM, "node 3 fenced", |c, b| c > 0 && b == [1, 2]);
}

#[test]
fn a_node_with_the_wrong_cluster_secret_is_refused() {
    let _guard = serial();
    let opts = ClusterOptions::default();
    let mut cluster = TestCluster::start(&opts);
    cluster.wait_describe(1, FORM, "3 brokers", |c, b| c > 0 && all_three(c, b));
    // Node 3 restarts with another secret: it cannot prove it knows the cluster's, and the
    // others cannot prove theirs to it.
    cluster.kill(3);
    let wrong = cluster.path("wrong.secret");
    std::fs::write(&wrong, "not-the-cluster-secret-9876543210").unwrap();
    cluster.write_config(3, &opts, Some(&wrong));
    cluster.start_node(3);
    cluster.wait_log(3, "wrong cluster secret", FORM);
    let refused_by_peer = |id| {
        cluster
            .log(id)
            .lines()
            .any(|l| l.contains("cluster connection refused") && l.contains("wrong cluster secret"))
    };
    let deadline = std::time::Instant::now() + FORM;
    while !(refused_by_peer(1) || refused_by_peer(2)) {
        assert!(
            std::time::Instant::now() < deadline,
            "no refusal logged by nodes 1 and 2\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // It never registers: the others fence it and list two brokers.
    cluster.wait_describe(1, FORM, "node 3 fenced", |c, b| c > 0 && b == [1, 2]);
    assert!(
        !cluster
            .log(3)
            .contains("registered with the active controller broker_epoch")
            || registered_epochs(&cluster.log(3)).len() == 1,
        "node 3 registered with the wrong secret\n{}",
        cluster.logs()
    );
}

#[test]
fn a_reformatted_node_does_not_vote() {
    let _guard = serial();
    let mut cluster = TestCluster::start(&ClusterOptions::default());
    cluster.wait_describe(1, FORM, "3 brokers", |c, b| c > 0 && all_three(c, b));
    // The first leader binds each voter to its directory id.
    let (controller, _) = cluster.describe(1).unwrap();
    cluster.wait_log(controller, "voters bound to their directory ids", FORM);

    // Node 3 loses its disk and is formatted again (new directory id): it must not vote.
    let cluster_id = cluster.cluster_id.clone();
    cluster.reformat(3, &cluster_id);
    cluster.start_node(3);
    cluster.wait_log(
        3,
        "this node is not a voter of cluster rill-test-cluster",
        FORM,
    );

    // Make the active controller one of 1 and 2, then kill it: the other is alone with the
    // re-formatted node, which has no vote, so no controller can be elected.
    let (controller, _) = cluster.wait_describe(1, FORM, "a controller among 1 and 2", |c, _| {
        c == 1 || c == 2
    });
    cluster.kill(controller);
    let survivor = 3 - controller;
    cluster.wait_describe(survivor, FORM, "no controller", |c, _| c == -1);
    std::thread::sleep(Duration::from_secs(4));
    let (c, _) = cluster.describe(survivor).unwrap();
    assert_eq!(
        c,
        -1,
        "a controller was elected with the re-formatted node's vote\n{}",
        cluster.logs()
    );
    let (c3, _) = cluster.describe(3).unwrap();
    assert!(
        c3 != 3,
        "the re-formatted node became controller\n{}",
        cluster.logs()
    );
}

/// Writes `ca.pem` (unless `ca` is given) and `node{id}.pem` / `node{id}.key` for node ids 1-3
/// (certificates naming 127.0.0.11-13) into `dir`, signed by the CA; returns the CA.
#[test]
fn mutual_tls_against_the_cluster_ca() {
    let _guard = serial();
    let certs = tempfile::TempDir::new().unwrap();
    let tls_dir = certs.path().join("tls");
    write_node_certs(&tls_dir, &[1, 2, 3]);
    let opts = ClusterOptions {
        secret: None,
        tls_dir: Some(tls_dir.clone()),
        ..ClusterOptions::default()
    };
    let mut cluster = TestCluster::start(&opts);
    for id in 1..=3 {
        cluster.wait_describe(id, FORM, "3 brokers over mTLS", |c, b| {
            c > 0 && all_three(c, b)
        });
    }
    // Node 3 comes back with a certificate of another CA: refused by the others.
    cluster.kill(3);
    let rogue = certs.path().join("rogue");
    write_node_certs(&rogue, &[3]);
    for f in ["node3.pem", "node3.key"] {
        std::fs::copy(rogue.join(f), tls_dir.join(f)).unwrap();
    }
    std::fs::copy(rogue.join("ca.pem"), tls_dir.join("ca3.pem")).unwrap();
    let mut three = opts.clone();
    three.tls_dir = Some(tls_dir.clone());
    cluster.write_config(3, &three, None);
    let cfg = cluster.member(3).config.clone();
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("ca.pem", "ca3.pem");
    std::fs::write(&cfg, text).unwrap();
    cluster.start_node(3);
    let refused = |id| {
        cluster
            .log(id)
            .lines()
            .any(|l| l.contains("cluster connection refused: TLS handshake failed"))
    };
    let deadline = std::time::Instant::now() + FORM;
    while !(refused(1) || refused(2)) {
        assert!(
            std::time::Instant::now() < deadline,
            "no TLS refusal logged\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    cluster.wait_describe(1, FORM, "node 3 fenced", |c, b| c > 0 && b == [1, 2]);
}

/// `rill serve` on a formatted data directory with `toml` and `flags`: its exit status and
/// stderr (it must exit by itself).
fn serve_refused(toml: &str, flags: &[&str]) -> String {
    let dir = tempfile::TempDir::new().unwrap();
    let data = dir.path().join("data");
    rill_tests::cluster::format(&data, 1, "c1", "1@127.0.0.11:19999");
    let config = dir.path().join("node.toml");
    std::fs::write(&config, toml).unwrap();
    let mut cmd = std::process::Command::new(rill_tests::rill_bin());
    cmd.arg("serve")
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .arg("--key-file")
        .arg(dir.path().join("k.key"))
        .args([
            "--kafka-listen",
            "127.0.0.11:0",
            "--http-listen",
            "127.0.0.11:0",
            "--mqtt-listen",
            "127.0.0.11:0",
        ])
        .args(flags);
    let out = rill_tests::run_with_timeout(cmd, b"", Duration::from_secs(30)).unwrap();
    assert!(!out.status.success(), "rill serve started: {out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn cluster_mode_refuses_unsafe_or_inconsistent_settings_at_start() {
    let listen = ["--cluster-listen", "127.0.0.11:0"];
    let node1 = [&listen[..], &["--node-id", "1"]].concat();
    let err = serve_refused("", &[&listen[..], &["--node-id", "2"]].concat());
    assert!(
        err.contains("--node-id 2 does not match node.id 1"),
        "{err}"
    );
    let err = serve_refused("[storage]\nflush = { interval_ms = 100 }\n", &node1);
    assert!(
        err.contains("flush = { interval_ms = 100 } is refused in cluster mode")
            && err.contains("KIP-966"),
        "{err}"
    );
    let err = serve_refused(
        "[cluster]\ntls = { cert = \"/nonexistent/c.pem\", key = \"k.pem\", ca = \"ca.pem\" }\n",
        &node1,
    );
    assert!(
        err.contains("[cluster] tls: cannot read /nonexistent/c.pem"),
        "{err}"
    );
    let err = serve_refused("", &["--node-id", "1", "--cluster-listen", "0.0.0.0:0"]);
    assert!(
        err.contains("is not a loopback address and neither [cluster] secret_file"),
        "{err}"
    );
    let err = serve_refused("", &["--node-id", "1"]);
    assert!(
        err.contains("cluster mode needs a cluster listener"),
        "{err}"
    );
}

/// SCRAM users and ACLs are the cluster's (issue 12 item 3, issue 15: "ACLs stored with the
/// metadata, through the controller once the cluster exists"): the first user comes from `rill
/// cluster format --add-scram` (Kafka's KIP-900 flag); a user added through
/// AlterUserScramCredentials at one node and an ACL created at that node count at every node,
/// also after that node was killed; deleting them at another node locks the user out and hides
/// the topic everywhere, the restarted node included. `rill user add` refuses a member's data
/// directory.
#[test]
fn scram_users_and_acls_live_in_the_cluster() {
    let _guard = serial();
    let opts = ClusterOptions {
        extra_config:
            "\n[kafka]\nsasl = true\nsasl_mechanisms = [\"SCRAM-SHA-512\", \"SCRAM-SHA-256\"]\n\
             authorizer = true\nsuper_users = [\"User:admin\"]\n"
                .into(),
        format_args: vec![
            "--add-scram".into(),
            "SCRAM-SHA-512=[name=admin,password=admin-secret]".into(),
        ],
        ..ClusterOptions::default()
    };
    let mut cluster = TestCluster::start(&opts);
    let addrs: Vec<String> = (1..=3).map(|id| cluster.kafka_addr(id)).collect();
    let py = |cluster: &TestCluster,
              phase: &str,
              addr: &str,
              user: &str,
              password: &str,
              extra: &[&str]| {
        let mut args = vec![
            phase,
            "--bootstrap",
            addr,
            "--user",
            user,
            "--password",
            password,
        ];
        args.extend_from_slice(extra);
        rill_tests::run_python("cluster_users.py", &args)
            .unwrap_or_else(|e| panic!("{e}\n--- nodes ---\n{}", cluster.logs()))
    };
    let admin = ("admin", "admin-secret");
    for addr in &addrs {
        py(&cluster, "auth", addr, admin.0, admin.1, &[]);
    }
    let refused = std::process::Command::new(rill_tests::rill_bin())
        .args(["user", "add", "mallory", "--password", "pw", "--data-dir"])
        .arg(&cluster.member(2).data_dir)
        .output()
        .expect("run rill user add");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success()
            && err.contains("--add-scram")
            && err.contains("AlterUserScramCredentials"),
        "rill user add on a member's data directory: {err}"
    );
    py(
        &cluster,
        "alter",
        &addrs[0],
        admin.0,
        admin.1,
        &["--target", "alice", "--target-password", "alice-pw"],
    );
    for addr in &addrs {
        py(
            &cluster,
            "auth",
            addr,
            "alice",
            "alice-pw",
            &["--mechanism", "SCRAM-SHA-256"],
        );
    }
    let topic = ["--topic", "guarded"];
    py(
        &cluster,
        "create-topic",
        &addrs[0],
        admin.0,
        admin.1,
        &topic,
    );
    for addr in &addrs {
        py(
            &cluster,
            "sees",
            addr,
            "alice",
            "alice-pw",
            &["--topic", "guarded", "--hidden"],
        );
    }
    py(
        &cluster,
        "acl",
        &addrs[0],
        admin.0,
        admin.1,
        &["--topic", "guarded", "--acl-principal", "User:alice"],
    );
    for addr in &addrs {
        py(&cluster, "sees", addr, "alice", "alice-pw", &topic);
    }
    cluster.kill(1);
    for addr in &addrs[1..] {
        py(&cluster, "auth", addr, "alice", "alice-pw", &[]);
        let users = py(&cluster, "describe", addr, admin.0, admin.1, &[]);
        assert!(
            users.contains("\"alice\"") && users.contains("\"admin\""),
            "users at {addr}: {users}"
        );
    }
    py(&cluster, "sees", &addrs[2], "alice", "alice-pw", &topic);
    py(&cluster, "refused", &addrs[2], "alice", "wrong", &[]);
    py(
        &cluster,
        "acl",
        &addrs[1],
        admin.0,
        admin.1,
        &["--topic", "guarded", "--delete"],
    );
    py(
        &cluster,
        "sees",
        &addrs[2],
        "alice",
        "alice-pw",
        &["--topic", "guarded", "--hidden"],
    );
    // The restarted node applies what changed while it was down: the ACL is gone there too
    // (the super user still sees the topic).
    cluster.start_node(1);
    py(&cluster, "auth", &addrs[0], admin.0, admin.1, &[]);
    py(&cluster, "sees", &addrs[0], admin.0, admin.1, &topic);
    py(
        &cluster,
        "sees",
        &addrs[0],
        "alice",
        "alice-pw",
        &["--topic", "guarded", "--hidden"],
    );
    py(
        &cluster,
        "alter",
        &addrs[1],
        admin.0,
        admin.1,
        &["--target", "alice", "--delete"],
    );
    py(&cluster, "refused", &addrs[2], "alice", "alice-pw", &[]);
    py(&cluster, "refused", &addrs[0], "alice", "alice-pw", &[]);
}

/// An upgraded cluster (issue 12, item 6, for users): every node kept its own SCRAM users before
/// users lived in the cluster (here: each data directory was a plain node's first, with a user
/// added by `rill user add`). The cluster starts with none of its own, so the members import
/// theirs once they caught up: the user authenticates at every node, and each member's own table
/// is emptied (`rill user` no longer reads it; a restarted member does not bring the user back
/// once the cluster deleted it).
#[test]
fn an_upgraded_cluster_imports_the_users_its_nodes_kept_on_their_own() {
    let _guard = serial();
    let opts = ClusterOptions {
        extra_config:
            "\n[kafka]\nsasl = true\nsasl_mechanisms = [\"SCRAM-SHA-512\", \"SCRAM-SHA-256\"]\n"
                .into(),
        own_users: vec![("legacy".into(), "legacy-pw".into())],
        ..ClusterOptions::default()
    };
    let mut cluster = TestCluster::start(&opts);
    let addrs: Vec<String> = (1..=3).map(|id| cluster.kafka_addr(id)).collect();
    let py = |cluster: &TestCluster, phase: &str, addr: &str, extra: &[&str]| {
        let mut args = vec![
            phase,
            "--bootstrap",
            addr,
            "--user",
            "legacy",
            "--password",
            "legacy-pw",
        ];
        args.extend_from_slice(extra);
        rill_tests::run_python("cluster_users.py", &args)
            .unwrap_or_else(|e| panic!("{e}\n--- nodes ---\n{}", cluster.logs()))
    };
    for addr in &addrs {
        py(&cluster, "auth", addr, &[]);
    }
    for id in 1..=3 {
        cluster.wait_log(
            id,
            "imported this node's own SCRAM users into the cluster",
            FORM,
        );
    }
    // Deleted from the cluster, the user stays deleted after a member restarts.
    py(
        &cluster,
        "alter",
        &addrs[0],
        &["--target", "legacy", "--delete"],
    );
    cluster.kill(2);
    cluster.start_node(2);
    py(&cluster, "refused", &addrs[1], &[]);
}
