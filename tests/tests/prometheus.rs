//! A real Prometheus server (Debian package `prometheus`) scrapes a node that ran a Kafka
//! (confluent-kafka) + MQTT (paho) + bridge workload: the target is `up` with no scrape error,
//! and values read back through Prometheus's query API match what the workload did (records
//! produced, lag = produced - committed, MQTT connections and publishes, the error code of a
//! refused CreateTopics, records mirrored). `promtool check metrics` (same package) checks the
//! exposition. The Grafana dashboard `deploy/grafana/rill.json`: every panel's PromQL names only
//! families the node exports, and returns at least one series from this Prometheus.
//!
//! Without Prometheus the test skips with a note; with `CI=true` it fails instead
//! (`scripts/test.sh` installs the package when it runs as root).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rill_tests::{free_port, http_get, repo_root, start_central, venv_python, Node};
use serde_json::Value;

const PRODUCED: i64 = 300;
const COMMITTED: i64 = 120;
const QOS1: i64 = 20;
const QOS0: i64 = 10;

/// `prometheus` on PATH, or `None` (then the test skips; with CI=true it fails).
fn prometheus_bin() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("prometheus"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "prometheus is not installed (Debian package `prometheus`; scripts/test.sh installs it as root)"
        );
        eprintln!("note: prometheus is not installed; skipping the Prometheus test");
    }
    found
}

/// A Prometheus server in a temp dir, scraping one target every second; killed on drop.
struct Prometheus {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(bin: &Path, target: &str) -> Prometheus {
        let dir = tempfile::Builder::new()
            .prefix("rill-prom-")
            .tempdir()
            .expect("tempdir");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: rill\n    static_configs:\n      - targets: [\"{target}\"]\n"
            ),
        )
        .expect("prometheus.yml");
        let addr = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log");
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let p = Prometheus {
            child,
            addr,
            _dir: dir,
        };
        p.wait_for("ready", || {
            matches!(http_get(&p.addr, "/-/ready"), Ok((200, _))).then_some(())
        });
        p
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// Poll `f` until it gives a value (at most 60 s).
    fn wait_for<T>(&self, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus: {what} not reached within 60 s; its log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// `GET /api/v1/<path>` as JSON (`data` of a successful answer).
    fn api(&self, path: &str) -> Value {
        let (status, body) =
            http_get(&self.addr, &format!("/api/v1/{path}")).unwrap_or_else(|e| panic!("{e}"));
        let v: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("Prometheus {path}: {e}: {body}"));
        assert_eq!(status, 200, "Prometheus {path}: {body}");
        assert_eq!(v["status"], "success", "Prometheus {path}: {body}");
        v["data"].clone()
    }

    /// The instant-vector result of `query`.
    fn query(&self, query: &str) -> Vec<Value> {
        let data = self.api(&format!("query?query={}", url_encode(query)));
        assert_eq!(data["resultType"], "vector", "{query}: {data}");
        data["result"].as_array().cloned().unwrap_or_default()
    }

    /// The single value of `query` (`None` while it has no series).
    fn value(&self, query: &str) -> Option<f64> {
        let result = self.query(query);
        let v = result.first()?["value"][1].as_str()?.parse().ok()?;
        assert_eq!(result.len(), 1, "{query} has several series: {result:?}");
        Some(v)
    }

    /// Wait until `query` equals `want`.
    fn expect(&self, query: &str, want: f64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let got = self.value(query);
            if got == Some(want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus: {query} is {got:?}, want {want} (waited 60 s); its log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encoding of a query parameter value.
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An OpenMetrics exposition in the Prometheus text format `promtool check metrics` reads: a
/// counter family `x` (samples `x_total`) is declared as `x_total`, and `# EOF` goes. Nothing
/// else changes, so promtool lints names, units and types as the node exports them.
fn text_format(openmetrics: &str) -> String {
    let counters: BTreeSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::new();
    for line in openmetrics.lines() {
        if line == "# EOF" {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                if counters.contains(name) {
                    out.push_str(&format!("{prefix}{name}_total {tail}\n"));
                } else {
                    out.push_str(line);
                    out.push('\n');
                }
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// The sample names of a text exposition (`rill_x_total`, `rill_y_bucket`, ...).
fn exported_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

/// PromQL words that are not metric names.
const PROMQL_WORDS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "group",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "le",
    "inf",
    "nan",
];

/// The metric names an expression reads: identifiers outside label matchers, ranges and
/// strings that are not functions (followed by `(`), grouping labels or keywords.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = BTreeSet::new();
    let mut i = 0;
    let mut after_grouping = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '{' | '[' | '"' => {
                let close = match c {
                    '{' => '}',
                    '[' => ']',
                    _ => '"',
                };
                i += 1;
                while i < chars.len() && chars[i] != close {
                    i += 1;
                }
                i += 1;
            }
            '(' if after_grouping => {
                // `by (a, b)`: label names.
                while i < chars.len() && chars[i] != ')' {
                    i += 1;
                }
                after_grouping = false;
                i += 1;
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let mut j = i;
                while j < chars.len() && chars[j] == ' ' {
                    j += 1;
                }
                let is_call = chars.get(j) == Some(&'(');
                if [
                    "by",
                    "without",
                    "on",
                    "ignoring",
                    "group_left",
                    "group_right",
                ]
                .contains(&word.as_str())
                {
                    after_grouping = true;
                    i = j;
                } else if !is_call && !PROMQL_WORDS.contains(&word.to_lowercase().as_str()) {
                    out.insert(word);
                }
            }
            _ => i += 1,
        }
    }
    out
}

/// Every `expr` of the dashboard's panels, with `$__rate_interval` at a value that suits the
/// test's 1 s scrape interval (Grafana's default is four scrape intervals).
fn dashboard_exprs() -> Vec<(String, String)> {
    let path = repo_root().join("deploy/grafana/rill.json");
    let text = std::fs::read_to_string(&path).expect("deploy/grafana/rill.json");
    let dash: Value = serde_json::from_str(&text).expect("dashboard JSON");
    let rows: Vec<&str> = dash["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .filter(|p| p["type"] == "row")
        .filter_map(|p| p["title"].as_str())
        .collect();
    for want in ["Throughput", "Latency", "lag", "MQTT", "Storage", "Bridge"] {
        assert!(
            rows.iter().any(|r| r.contains(want)),
            "no {want} row in {rows:?}"
        );
    }
    let mut out = Vec::new();
    for p in dash["panels"].as_array().expect("panels") {
        if p["type"] == "row" {
            continue;
        }
        assert!(
            ["timeseries", "stat", "gauge"].contains(&p["type"].as_str().unwrap_or("")),
            "panel {} is not a built-in panel type",
            p["title"]
        );
        for t in p["targets"].as_array().expect("targets") {
            let expr = t["expr"].as_str().expect("expr");
            out.push((
                p["title"].as_str().unwrap_or("?").to_string(),
                expr.replace("$__rate_interval", "30s"),
            ));
        }
    }
    assert!(
        out.len() > 20,
        "only {} queries in the dashboard",
        out.len()
    );
    out
}

#[test]
fn metrics_match_the_workload_and_the_dashboard() {
    let Some(bin) = prometheus_bin() else {
        return;
    };
    let started = Instant::now();
    let central_port = free_port();
    let central = start_central(central_port);
    let target = central.kafka_addr().to_string();
    let conf_dir = tempfile::tempdir().expect("tempdir");
    let conf = conf_dir.path().join("edge.toml");
    std::fs::write(
        &conf,
        "[storage]\ndisk_budget_bytes = 1073741824\n\n[metrics]\nenabled = true\nper_partition = true\n",
    )
    .expect("config");
    let conf = conf.display().to_string();
    let edge = Node::start_with(&[
        "--node-name",
        "edge-01",
        "--config",
        &conf,
        "--mirror-to",
        &target,
    ]);
    let prom = Prometheus::start(&bin, edge.http_addr());

    // Kafka: produce, consume part in a group and commit, one refused CreateTopics.
    let out = edge.python(
        "prometheus_workload.py",
        &[
            "--phase",
            "kafka",
            "--topic",
            "orders",
            "--group",
            "g1",
            "--records",
            &PRODUCED.to_string(),
            "--consume",
            &COMMITTED.to_string(),
        ],
    );
    let result: Value = out
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .map(|l| serde_json::from_str(l).expect("RESULT json"))
        .unwrap_or_else(|| panic!("no RESULT in {out}"));
    assert_eq!(result["produced"], PRODUCED);
    assert_eq!(result["committed"], COMMITTED);

    // MQTT: two clients stay connected while Prometheus scrapes.
    let mqtt = edge.mqtt_addr();
    let mut held = Command::new(venv_python())
        .arg(repo_root().join("tests/py/prometheus_workload.py"))
        .args([
            "--bootstrap",
            edge.kafka_addr(),
            "--phase",
            "mqtt",
            "--mqtt",
            &mqtt,
            "--qos1",
            &QOS1.to_string(),
            "--qos0",
            &QOS0.to_string(),
        ])
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the MQTT workload");
    let mut lines = BufReader::new(held.stdout.take().expect("stdout")).lines();
    let ready = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l == "READY" || l.starts_with("FAIL"));
    assert_eq!(ready.as_deref(), Some("READY"), "MQTT workload failed");

    // The scrape itself.
    prom.wait_for("the rill target up with no scrape error", || {
        let targets = prom.api("targets");
        let t = targets["activeTargets"].as_array()?.first()?.clone();
        (t["health"] == "up").then_some(()).inspect(|_| {
            assert_eq!(t["lastError"], "", "scrape error: {t}");
        })
    });
    prom.expect(r#"up{job="rill"}"#, 1.0);

    // Kafka values against the workload.
    prom.expect(
        r#"sum(rill_topic_produce_records_total{topic="orders"})"#,
        PRODUCED as f64,
    );
    prom.expect(
        r#"sum(rill_partition_produce_records_total{topic="orders"})"#,
        PRODUCED as f64,
    );
    prom.expect(
        r#"sum(rill_log_end_offset{topic="orders"})"#,
        PRODUCED as f64,
    );
    prom.expect(
        r#"rill_consumer_group_lag_records{group="g1",topic="orders"}"#,
        (PRODUCED - COMMITTED) as f64,
    );
    prom.expect(
        r#"sum(rill_consumer_group_partition_lag_records{group="g1",topic="orders"})"#,
        (PRODUCED - COMMITTED) as f64,
    );
    let lag_s = prom
        .value(r#"rill_consumer_group_lag_seconds{group="g1",topic="orders"}"#)
        .expect("lag seconds");
    let age = started.elapsed().as_secs_f64() + 1.0;
    assert!(
        lag_s > 0.0 && lag_s <= age,
        "lag seconds {lag_s} not in (0, {age}]: the oldest unconsumed record was produced during this test"
    );
    prom.expect(
        r#"rill_consumer_group_state{group="g1",state="Empty"}"#,
        1.0,
    );
    prom.expect(
        r#"rill_kafka_request_errors_total{api="CreateTopics",code="36"}"#,
        1.0,
    );
    let produces = prom
        .value(r#"sum(rill_kafka_request_total_time_seconds_count{api="Produce"})"#)
        .expect("produce latency count");
    let requests = prom
        .value(r#"rill_kafka_requests_total{api="Produce"}"#)
        .expect("produce requests");
    assert!(
        produces >= 1.0 && produces == requests,
        "every Produce timed: {produces} of {requests}"
    );
    assert!(
        prom.value("sum(rill_log_flush_batches_sum)").unwrap_or(0.0) >= 1.0,
        "group commits counted"
    );

    // MQTT values.
    prom.expect(r#"rill_mqtt_open_connections{protocol="3.1.1"}"#, 1.0);
    prom.expect(r#"rill_mqtt_open_connections{protocol="5"}"#, 1.0);
    prom.expect(r#"rill_mqtt_connections_total{protocol="3.1.1"}"#, 1.0);
    prom.expect(
        r#"rill_mqtt_publishes_received_total{qos="1"}"#,
        QOS1 as f64,
    );
    prom.expect(
        r#"rill_mqtt_publishes_received_total{qos="0"}"#,
        QOS0 as f64,
    );
    prom.expect("sum(rill_mqtt_publishes_sent_total)", (QOS1 + QOS0) as f64);
    prom.expect("rill_mqtt_puback_latency_seconds_count", QOS1 as f64);
    prom.expect("rill_mqtt_retained_messages", 1.0);
    prom.expect(r#"rill_mqtt_refused_total{reason="protocol_version"}"#, 1.0);
    prom.expect(r#"rill_mqtt_publishes_dropped_total{reason="acl"}"#, 0.0);
    prom.expect("rill_mqtt_subscriptions", 1.0);

    // Bridge: everything produced is mirrored to central.
    prom.expect(
        r#"sum(rill_bridge_mirrored_records_total{topic="orders"})"#,
        PRODUCED as f64,
    );

    // Process and build info.
    assert!(prom.value("process_resident_memory_bytes").unwrap_or(0.0) > 1e6);
    assert!(prom.value("process_open_fds").unwrap_or(0.0) > 3.0);
    assert!(prom.value("process_cpu_seconds_total").is_some());
    let build = prom.query("rill_build_info");
    assert_eq!(build.len(), 1, "{build:?}");
    assert!(
        ["aes-256-gcm", "chacha20-poly1305"]
            .contains(&build[0]["metric"]["cipher"].as_str().unwrap_or("")),
        "{build:?}"
    );

    // The exposition itself: promtool's lint, and the dashboard's names.
    let (status, text) = http_get(edge.http_addr(), "/metrics").expect("GET /metrics");
    assert_eq!(status, 200);
    let promtool = bin.with_file_name("promtool");
    if promtool.is_file() {
        let mut check = Command::new(&promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("promtool");
        check
            .stdin
            .take()
            .expect("stdin")
            .write_all(text_format(&text).as_bytes())
            .expect("feed promtool");
        let out = check.wait_with_output().expect("promtool");
        assert!(
            out.status.success(),
            "promtool check metrics:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let names = exported_names(&text);
    for (panel, expr) in dashboard_exprs() {
        for name in metric_names(&expr) {
            assert!(
                names.contains(&name),
                "panel {panel:?}: {name} (in {expr}) is not exported"
            );
        }
        // A rate needs two scrapes of a series inside its window: poll.
        prom.wait_for(&format!("panel {panel:?}: {expr} returns a series"), || {
            (!prom.query(&expr).is_empty()).then_some(())
        });
    }

    drop(held.stdin.take());
    let status = held.wait().expect("MQTT workload");
    assert!(status.success(), "MQTT workload exited with {status}");
    drop(central);
    eprintln!("prometheus test: {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
fn promql_names() {
    assert_eq!(
        metric_names(r#"sum by (topic) (rate(rill_x_total{a="b"}[5m])) / ignoring(le) rill_y"#),
        BTreeSet::from(["rill_x_total".to_string(), "rill_y".to_string()])
    );
    assert_eq!(
        metric_names(
            "histogram_quantile(0.99, sum by (le, api) (rate(a_bucket[1m]))) or vector(0)"
        ),
        BTreeSet::from(["a_bucket".to_string()])
    );
}

#[test]
fn metrics_disabled_answers_404_and_health_stays() {
    let conf_dir = tempfile::tempdir().expect("tempdir");
    let conf = conf_dir.path().join("node.toml");
    std::fs::write(&conf, "[metrics]\nenabled = false\n").expect("config");
    let node = Node::start_with(&["--config", &conf.display().to_string()]);
    let (status, body) = http_get(node.http_addr(), "/metrics").expect("GET /metrics");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("[metrics] enabled = false"), "{body}");
    let (status, body) = http_get(node.http_addr(), "/health").expect("GET /health");
    assert_eq!((status, body.trim()), (200, "ok"));
}
