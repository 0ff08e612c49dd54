//! A small multi-node harness for cluster tests: nodes on loopback aliases 127.0.0.11,
//! 127.0.0.12, ... (they work on Linux without setup), each data directory formatted with
//! `rill cluster format ... --voters`, each node started with its own TOML file and waited for
//! until its `listening` line; kill, restart and re-format helpers.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kafka_protocol::messages::{DescribeClusterRequest, DescribeClusterResponse};
use rill_client::connection::{ConnectOptions, Connection};
use rill_client::TargetSecurity;

use crate::{rill_bin, rill_cli, Launch, Node};

/// Extra settings of every node's TOML file.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Number of nodes (all voters).
    pub nodes: usize,
    /// `[cluster] broker_session_timeout_ms`.
    pub session_timeout_ms: u64,
    /// `[cluster] broker_heartbeat_interval_ms`.
    pub heartbeat_interval_ms: u64,
    /// The shared secret (`None`: plaintext on loopback, unless `tls_dir`).
    pub secret: Option<String>,
    /// mTLS: a directory with `ca.pem` and `node{N}.pem` / `node{N}.key` for each node.
    pub tls_dir: Option<PathBuf>,
    /// `[cluster] replica_lag_time_max_ms` (`None`: the node's default).
    pub replica_lag_time_max_ms: Option<u64>,
    /// The binary to run instead of `rill` (the fault suite's `rill-failpoints`).
    pub program: Option<PathBuf>,
    /// `RILL_FAILPOINTS` of every node (needs `program` = the failpoint build).
    pub failpoints: Option<String>,
    /// TOML appended to every node's file (whole sections, e.g. `[kafka]\nsasl = true\n`).
    pub extra_config: String,
    /// Extra arguments of every node's `rill cluster format` (e.g. `--add-scram ...`).
    pub format_args: Vec<String>,
    /// SCRAM users `(name, password)` of the cluster (SCRAM-SHA-256 and -512), created with it
    /// (`rill cluster format --add-scram`).
    pub users: Vec<(String, String)>,
    /// SCRAM users `(name, password)` each node kept on its own before it was formatted into
    /// the cluster (an upgraded data directory): each data directory is first served by a plain
    /// node, which is stopped, and `rill user add` writes them into its own table.
    pub own_users: Vec<(String, String)>,
    /// How the harness's own Kafka requests (DescribeCluster) connect: TLS and SASL as the
    /// Kafka listener requires.
    pub client_security: TargetSecurity,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            nodes: 3,
            session_timeout_ms: 3000,
            heartbeat_interval_ms: 500,
            secret: Some("a-test-cluster-secret-0123456789".into()),
            tls_dir: None,
            replica_lag_time_max_ms: None,
            program: None,
            failpoints: None,
            extra_config: String::new(),
            format_args: Vec::new(),
            users: Vec::new(),
            own_users: Vec::new(),
            client_security: TargetSecurity::default(),
        }
    }
}

/// One member: its id, addresses and the running process.
pub struct Member {
    /// Node id (1-based).
    pub id: i32,
    /// Its loopback alias.
    pub ip: String,
    /// Its cluster listener address.
    pub cluster_addr: String,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The TOML file.
    pub config: PathBuf,
    /// The process (`None` while killed).
    pub node: Option<Node>,
    /// Logs of earlier processes of this member.
    pub past_logs: String,
    /// The Kafka, HTTP and MQTT listeners of its first start, kept across restarts (as a
    /// restarted broker keeps its ports: clients hold its advertised address).
    pub ports: Option<(String, String, String)>,
}

/// A formatted cluster of `rill serve` processes.
pub struct TestCluster {
    /// Cluster id.
    pub cluster_id: String,
    /// `--voters` value.
    pub voters: String,
    /// The members, index `id - 1`.
    pub members: Vec<Member>,
    dir: tempfile::TempDir,
    program: Option<PathBuf>,
    failpoints: Option<String>,
    client_security: TargetSecurity,
}

fn free_port_on(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port on {ip}: {e}"))
}

/// Runs `rill cluster format` for one node.
pub fn format(data_dir: &Path, node_id: i32, cluster_id: &str, voters: &str) {
    format_with(data_dir, node_id, cluster_id, voters, &[]);
}

/// Runs `rill cluster format` for one node with `extra` arguments.
pub fn format_with(
    data_dir: &Path,
    node_id: i32,
    cluster_id: &str,
    voters: &str,
    extra: &[String],
) {
    let out = Command::new(rill_bin())
        .args(["cluster", "format", "--data-dir"])
        .arg(data_dir)
        .args([
            "--node-id",
            &node_id.to_string(),
            "--cluster-id",
            cluster_id,
            "--voters",
            voters,
        ])
        .args(extra)
        .output()
        .expect("run rill cluster format");
    assert!(
        out.status.success(),
        "rill cluster format failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Cluster mTLS material for `tls_dir` ([`ClusterOptions::tls_dir`]): a new CA in `ca.pem`,
/// and for each of `ids` a certificate for its loopback alias (`127.0.0.{10 + id}`) signed by it
/// in `node{id}.pem` / `node{id}.key`.
pub fn write_node_certs(dir: &Path, ids: &[i32]) {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = params.self_signed(&ca_key).expect("CA certificate");
    std::fs::create_dir_all(dir).expect("certificate dir");
    std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write CA");
    for id in ids {
        let key = rcgen::KeyPair::generate().expect("node key");
        let params = rcgen::CertificateParams::new(vec![format!("127.0.0.{}", 10 + id)])
            .expect("node params");
        let cert = params.signed_by(&key, &ca, &ca_key).expect("sign");
        std::fs::write(dir.join(format!("node{id}.pem")), cert.pem()).expect("write cert");
        std::fs::write(dir.join(format!("node{id}.key")), key.serialize_pem()).expect("write key");
    }
}

/// Serves `data_dir` once as a plain node (no cluster), stops it, and adds `users` to its own
/// table with `rill user add`: a data directory from before it was formatted into a cluster.
fn serve_alone_with_users(data_dir: &Path, key_file: &Path, ip: &str, users: &[(String, String)]) {
    let any = format!("{ip}:0");
    let (dd, kf) = (
        data_dir.display().to_string(),
        key_file.display().to_string(),
    );
    let mut node = Node::start_launched(
        Launch::default(),
        &[
            "--data-dir",
            &dd,
            "--key-file",
            &kf,
            "--kafka-listen",
            &any,
            "--http-listen",
            &any,
            "--mqtt-listen",
            &any,
        ],
    );
    node.terminate();
    for (name, password) in users {
        let out = rill_cli(
            "",
            &["user", "add", name, "--data-dir", &dd, "--password-stdin"],
            format!("{password}\n").as_bytes(),
        );
        assert!(
            out.status.success(),
            "rill user add {name} in {dd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl TestCluster {
    /// Formats the nodes and starts them all, waiting for each `listening` line.
    pub fn start(opts: &ClusterOptions) -> TestCluster {
        let dir = tempfile::Builder::new()
            .prefix("rill-cluster-")
            .tempdir()
            .expect("tempdir");
        let ips: Vec<String> = (1..=opts.nodes)
            .map(|i| format!("127.0.0.{}", 10 + i))
            .collect();
        let ports: Vec<u16> = ips.iter().map(|ip| free_port_on(ip)).collect();
        let voters: Vec<String> = ips
            .iter()
            .zip(&ports)
            .enumerate()
            .map(|(i, (ip, port))| format!("{}@{ip}:{port}", i + 1))
            .collect();
        let voters = voters.join(",");
        let cluster_id = "rill-test-cluster".to_string();
        let secret_file = dir.path().join("cluster.secret");
        let mut format_args = opts.format_args.clone();
        for (name, password) in &opts.users {
            for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
                format_args.push("--add-scram".into());
                format_args.push(format!("{mechanism}=[name={name},password={password}]"));
            }
        }
        let mut members = Vec::new();
        for (i, ip) in ips.iter().enumerate() {
            let id = i as i32 + 1;
            let data_dir = dir.path().join(format!("node{id}"));
            if !opts.own_users.is_empty() {
                serve_alone_with_users(
                    &data_dir,
                    &dir.path().join(format!("node{id}.key")),
                    ip,
                    &opts.own_users,
                );
            }
            format_with(&data_dir, id, &cluster_id, &voters, &format_args);
            let config = dir.path().join(format!("node{id}.toml"));
            members.push(Member {
                id,
                ip: ip.clone(),
                cluster_addr: format!("{ip}:{}", ports[i]),
                data_dir,
                config,
                node: None,
                past_logs: String::new(),
                ports: None,
            });
        }
        let mut cluster = TestCluster {
            cluster_id,
            voters,
            members,
            dir,
            program: opts.program.clone(),
            failpoints: opts.failpoints.clone(),
            client_security: opts.client_security.clone(),
        };
        let secrets: Vec<Option<PathBuf>> = cluster
            .members
            .iter()
            .map(|m| {
                opts.secret.as_ref().map(|s| {
                    let f = secret_file.with_extension(format!("node{}", m.id));
                    std::fs::write(&f, s).expect("write secret");
                    f
                })
            })
            .collect();
        let ids = 1..=opts.nodes as i32;
        for id in ids.clone() {
            cluster.write_config(id, opts, secrets[(id - 1) as usize].as_deref());
        }
        for id in ids {
            cluster.start_node(id);
        }
        cluster
    }

    /// (Re)writes node `id`'s TOML file.
    pub fn write_config(&self, id: i32, opts: &ClusterOptions, secret_file: Option<&Path>) {
        let m = self.member(id);
        let mut text = format!(
            "[node]\nid = {id}\nrack = \"rack-{id}\"\n\n[storage]\nflush = \"always\"\n\n[cluster]\n\
             broker_session_timeout_ms = {}\nbroker_heartbeat_interval_ms = {}\n",
            opts.session_timeout_ms, opts.heartbeat_interval_ms
        );
        if let Some(ms) = opts.replica_lag_time_max_ms {
            text.push_str(&format!("replica_lag_time_max_ms = {ms}\n"));
        }
        if let Some(f) = secret_file {
            text.push_str(&format!("secret_file = {:?}\n", f.display().to_string()));
        }
        if let Some(dir) = &opts.tls_dir {
            let file = |name: String| format!("{:?}", dir.join(name).display().to_string());
            text.push_str(&format!(
                "tls = {{ cert = {}, key = {}, ca = {} }}\n",
                file(format!("node{id}.pem")),
                file(format!("node{id}.key")),
                file("ca.pem".into())
            ));
        }
        text.push_str(&opts.extra_config);
        std::fs::write(&m.config, text).expect("write node config");
    }

    /// A scratch path inside the cluster's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The member with node id `id`.
    pub fn member(&self, id: i32) -> &Member {
        &self.members[(id - 1) as usize]
    }

    fn member_mut(&mut self, id: i32) -> &mut Member {
        &mut self.members[(id - 1) as usize]
    }

    /// Starts node `id` (it must not be running) and waits for its `listening` line.
    pub fn start_node(&mut self, id: i32) {
        let m = self.member(id);
        assert!(m.node.is_none(), "node {id} is running");
        let (kafka, http, mqtt) = m.ports.clone().unwrap_or_else(|| {
            let any = format!("{}:0", m.ip);
            (any.clone(), any.clone(), any)
        });
        let args = [
            "--config".to_string(),
            m.config.display().to_string(),
            "--data-dir".to_string(),
            m.data_dir.display().to_string(),
            "--node-id".to_string(),
            id.to_string(),
            "--kafka-listen".to_string(),
            kafka,
            "--http-listen".to_string(),
            http,
            "--mqtt-listen".to_string(),
            mqtt,
            "--cluster-listen".to_string(),
            m.cluster_addr.clone(),
            // Kept across restarts (each start is a new `Node` with its own scratch directory).
            "--key-file".to_string(),
            self.path(&format!("node{id}.key")).display().to_string(),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        // RILL_TEST_LOG overrides the nodes' RUST_LOG (e.g. debug for one module).
        let filter =
            std::env::var("RILL_TEST_LOG").unwrap_or_else(|_| "info,openraft=warn".to_string());
        let mut env = vec![("RUST_LOG".into(), filter.into())];
        if let Some(spec) = &self.failpoints {
            env.push(("RILL_FAILPOINTS".into(), spec.into()));
        }
        let launch = Launch {
            program: self.program.clone(),
            env,
            ..Launch::default()
        };
        let node = Node::start_launched(launch, &args);
        let m = self.member_mut(id);
        m.ports.get_or_insert_with(|| {
            (
                node.kafka_addr().to_string(),
                node.http_addr().to_string(),
                node.mqtt_addr(),
            )
        });
        m.node = Some(node);
    }

    /// SIGKILLs node `id`.
    pub fn kill(&mut self, id: i32) {
        let m = self.member_mut(id);
        if let Some(mut node) = m.node.take() {
            node.kill();
            m.past_logs.push_str(&node.log());
            m.past_logs.push_str("----- killed -----\n");
        }
    }

    /// Sends `signal` (a `kill -s` name: STOP, CONT, USR1, ...) to running node `id`.
    pub fn signal(&self, id: i32, signal: &str) {
        let pid = self
            .member(id)
            .node
            .as_ref()
            .and_then(Node::pid)
            .unwrap_or_else(|| panic!("node {id} is not running"));
        let st = Command::new("kill")
            .args(["-s", signal, &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(st.success(), "kill -s {signal} {pid} failed");
    }

    /// Waits (at most `within`) for node `id` to exit by itself (a failpoint's power cut); its
    /// exit status. The node counts as stopped afterwards.
    pub fn wait_exit(&mut self, id: i32, within: Duration) -> std::process::ExitStatus {
        let m = self.member_mut(id);
        let mut node = m
            .node
            .take()
            .unwrap_or_else(|| panic!("node {id} is not running"));
        let status = node.wait_exit(within);
        m.past_logs.push_str(&node.log());
        m.past_logs.push_str("----- exited -----\n");
        status.unwrap_or_else(|| panic!("node {id} did not exit within {within:?}"))
    }

    /// SIGTERMs node `id` and waits for it to exit; its exit status.
    pub fn terminate(&mut self, id: i32) -> std::process::ExitStatus {
        let m = self.member_mut(id);
        let mut node = m
            .node
            .take()
            .unwrap_or_else(|| panic!("node {id} is not running"));
        let status = node.terminate();
        m.past_logs.push_str(&node.log());
        m.past_logs.push_str("----- terminated -----\n");
        status
    }

    /// Kills node `id`, wipes its data directory and formats it again (a new directory id),
    /// for the cluster `cluster_id` (normally [`TestCluster::cluster_id`]).
    pub fn reformat(&mut self, id: i32, cluster_id: &str) {
        self.kill(id);
        let m = self.member(id);
        std::fs::remove_dir_all(&m.data_dir).expect("wipe data dir");
        format(&m.data_dir, id, cluster_id, &self.voters);
    }

    /// Everything node `id` logged, over all its processes.
    pub fn log(&self, id: i32) -> String {
        let m = self.member(id);
        let mut out = m.past_logs.clone();
        if let Some(n) = &m.node {
            out.push_str(&n.log());
        }
        out
    }

    /// Every running node's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for m in &self.members {
            out.push_str(&format!("===== node {} =====\n{}\n", m.id, self.log(m.id)));
        }
        out
    }

    /// The Kafka address of running node `id`.
    pub fn kafka_addr(&self, id: i32) -> String {
        self.member(id)
            .node
            .as_ref()
            .map(|n| n.kafka_addr().to_string())
            .unwrap_or_else(|| panic!("node {id} is not running"))
    }

    /// DescribeCluster against node `id`: (controller id, sorted broker ids).
    pub fn describe(&self, id: i32) -> Result<(i32, Vec<i32>), String> {
        let resp = self.describe_cluster(id)?;
        let mut ids: Vec<i32> = resp.brokers.iter().map(|b| b.broker_id.0).collect();
        ids.sort_unstable();
        Ok((resp.controller_id.0, ids))
    }

    /// DescribeCluster against node `id`, the whole response.
    pub fn describe_cluster(&self, id: i32) -> Result<DescribeClusterResponse, String> {
        let addr = self.kafka_addr(id);
        let security = self.client_security.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async move {
            let opts = ConnectOptions::default()
                .with_security(security)
                .with_timeout(Duration::from_secs(5));
            let mut conn = Connection::connect(&addr, &opts)
                .await
                .map_err(|e| e.to_string())?;
            conn.send(&DescribeClusterRequest::default())
                .await
                .map_err(|e| e.to_string())
        })
    }

    /// `rill topic create` through node 1 (`configs`: `key=value`); fails the test if refused.
    pub fn create_topic(&self, topic: &str, partitions: u32, replication: u32, configs: &[&str]) {
        let (p, r) = (partitions.to_string(), replication.to_string());
        let mut args = vec!["topic", "create", topic, "-p", &p, "-r", &r];
        for c in configs {
            args.extend(["-c", c]);
        }
        let out = rill_cli(&self.kafka_addr(1), &args, b"");
        assert!(
            out.status.success(),
            "topic create {topic}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Every running node's Kafka address, comma-separated (a client's bootstrap list).
    pub fn bootstrap(&self) -> String {
        self.members
            .iter()
            .filter_map(|m| m.node.as_ref().map(|n| n.kafka_addr().to_string()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `rill topic describe --json` of `topic` through `addr`: each partition's (leader, ISR).
    pub fn topic_state(addr: &str, topic: &str) -> Option<Vec<(i64, Vec<i64>)>> {
        let out = rill_cli(addr, &["topic", "describe", topic, "--json"], b"");
        if !out.status.success() {
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let ids = |v: &serde_json::Value| -> Vec<i64> {
            v.as_array()
                .map(|a| a.iter().filter_map(serde_json::Value::as_i64).collect())
                .unwrap_or_default()
        };
        Some(
            v["partitions"]
                .as_array()?
                .iter()
                .map(|p| (p["leader"].as_i64().unwrap_or(-1), ids(&p["isr"])))
                .collect(),
        )
    }

    /// Polls until every running node reports the same leader of partition `p` of `topic`,
    /// other than `not`, with an ISR of at least `isr_len` (a node that just restarted may still
    /// show an older state, so one node's word is not enough); the leader. Fails the test after
    /// 30 s.
    pub fn wait_leader(&self, topic: &str, p: usize, not: i64, isr_len: usize) -> i64 {
        self.wait_leader_among(topic, p, not, isr_len, &[])
    }

    /// [`Self::wait_leader`], asking every running node but those in `skip` (a stopped process
    /// would not answer).
    pub fn wait_leader_among(
        &self,
        topic: &str,
        p: usize,
        not: i64,
        isr_len: usize,
        skip: &[i32],
    ) -> i64 {
        let within = Duration::from_secs(30);
        let deadline = Instant::now() + within;
        let mut last = Vec::new();
        loop {
            last.clear();
            for m in &self.members {
                if skip.contains(&m.id) {
                    continue;
                }
                let Some(node) = &m.node else { continue };
                let seen = Self::topic_state(node.kafka_addr(), topic)
                    .and_then(|parts| parts.get(p).cloned());
                last.push((m.id, seen));
            }
            let leaders: Vec<i64> = last
                .iter()
                .filter_map(|(_, seen)| {
                    seen.as_ref()
                        .filter(|(l, isr)| *l > 0 && *l != not && isr.len() >= isr_len)
                        .map(|(l, _)| *l)
                })
                .collect();
            if !leaders.is_empty()
                && leaders.len() == last.len()
                && leaders.windows(2).all(|w| w[0] == w[1])
            {
                return leaders[0];
            }
            assert!(
                Instant::now() < deadline,
                "partition {p} of {topic}: no common leader (not {not}) with {isr_len} in sync \
                 on every node within {within:?} (node: (leader, isr)): {last:?}; logs:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Polls DescribeCluster on node `id` until `ok` holds (fails the test after `within`).
    pub fn wait_describe(
        &self,
        id: i32,
        within: Duration,
        what: &str,
        ok: impl Fn(i32, &[i32]) -> bool,
    ) -> (i32, Vec<i32>) {
        let deadline = Instant::now() + within;
        let mut last = Err("not asked yet".to_string());
        while Instant::now() < deadline {
            last = self.describe(id);
            if let Ok((c, b)) = &last {
                if ok(*c, b) {
                    return (*c, b.clone());
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "node {id}: {what} not seen within {within:?}; last DescribeCluster: {last:?}\n{}",
            self.logs()
        );
    }

    /// Polls until node `id`'s log contains `needle`.
    pub fn wait_log(&self, id: i32, needle: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.log(id).contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "node {id} did not log {needle:?} within {within:?}\n{}",
            self.logs()
        );
    }
}

/// The broker epochs a node's log reports for its registrations, in order.
pub fn registered_epochs(log: &str) -> Vec<i64> {
    log.lines()
        .filter(|l| l.contains("registered with the active controller"))
        .filter_map(|l| {
            let rest = l.split("broker_epoch=").nth(1)?;
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect()
}
