//! The web console and its JSON API against a real `rill serve`: a node with a topic, a consumer
//! group whose member (confluent-kafka) committed offsets and stays connected, an MQTT 5 client
//! (paho) with a subscription and a retained message, and a mirror to a second node. Headless
//! Chromium (Debian's `/usr/bin/chromium`, driven by playwright-core from npm, installed here into
//! the target temp dir) loads every page; the test asserts that the numbers it shows equal the
//! API's, clicks through the message browser, produces a test message from the page and checks
//! that the browser logged no error and fetched nothing beyond the node. Screenshots stay in
//! `target/tmp/console-screenshots/`. API tests: writes refused without `[admin]
//! console_writes`, read and admin tokens.
//!
//! With `CI=true` a missing chromium, node or npm fails the test instead of skipping it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use rill_tests::{free_port, repo_root, start_central, venv_python, Node};
use serde_json::{json, Value};

const TOPIC: &str = "orders";
const GROUP: &str = "console-group";
const CHROMIUM: &str = "/usr/bin/chromium";

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// One HTTP/1.0 request to the admin listener: `(status, body)`.
fn http(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, String) {
    let mut s =
        std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    if body.is_some() {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            payload.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(&payload);
    s.write_all(req.as_bytes()).expect("send");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad response {text:?}"));
    (status, body.to_string())
}

fn api(node: &Node, path: &str) -> Value {
    let (status, body) = http(
        node.http_addr(),
        "GET",
        &format!("/api/v1{path}"),
        None,
        None,
    );
    assert_eq!(status, 200, "GET /api/v1{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET /api/v1{path}: {e}: {body}"))
}

/// A node with `config` (TOML) and `extra` flags; the config file lives in the returned dir.
fn node_with(config: &str, extra: &[&str]) -> (Node, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path: PathBuf = dir.path().join("rill.toml");
    std::fs::write(&path, config).expect("write config");
    let mut args = vec!["--config", path.to_str().expect("utf-8 path")];
    args.extend_from_slice(extra);
    (Node::start_with(&args), dir)
}

/// playwright-core from npm, installed on first use into the target temp dir; `None` (skip)
/// when chromium, node or npm are missing outside CI.
fn playwright() -> Option<PathBuf> {
    let have = |cmd: &str| {
        Command::new(cmd)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let missing: Vec<&str> = [CHROMIUM, "node", "npm"]
        .into_iter()
        .filter(|c| !have(c))
        .collect();
    if !missing.is_empty() {
        assert!(
            !in_ci(),
            "the console test needs {missing:?} (CI=true; scripts/test.sh installs chromium)"
        );
        eprintln!("skipping the browser test: {missing:?} not installed");
        return None;
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("npm-playwright");
    if !dir
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        std::fs::create_dir_all(&dir).expect("npm dir");
        let out = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&dir)
            .arg("playwright-core@1")
            // playwright-core downloads no browser; this keeps any hook from trying.
            .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
            .output()
            .expect("run npm");
        assert!(
            out.status.success(),
            "npm install playwright-core failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Some(dir.join("node_modules"))
}

/// The `RESULT <name> <json>` lines of a script's output, by name.
fn results(out: &str) -> HashMap<String, Value> {
    out.lines()
        .filter_map(|l| l.strip_prefix("RESULT "))
        .filter_map(|r| r.split_once(' '))
        .map(|(name, v)| {
            let v = serde_json::from_str(v).unwrap_or_else(|e| panic!("bad RESULT {v}: {e}"));
            (name.to_string(), v)
        })
        .collect()
}

/// The clients of tests/py/console_clients.py; dropping this closes their stdin (they disconnect
/// and exit) and, should they hang, kills them.
struct Clients(std::process::Child);

impl Drop for Clients {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts tests/py/console_clients.py and waits for its READY line; the clients stay connected
/// until the returned value is dropped.
fn clients(node: &Node) -> Clients {
    let mut child = Command::new(venv_python())
        .current_dir(repo_root().join("tests/py"))
        .arg("console_clients.py")
        .args([
            "--bootstrap",
            node.kafka_addr(),
            "--mqtt",
            &node.mqtt_addr(),
        ])
        .args(["--topic", TOPIC, "--group", GROUP])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start console_clients.py");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("clients output");
    assert!(
        line.starts_with("READY "),
        "console_clients.py said {line:?}\n{}",
        node.log()
    );
    child.stdout = Some(stdout.into_inner());
    Clients(child)
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The page's data-k values that must equal the API's.
fn assert_shown(view: &Value, key: &str, want: &Value, page: &str) {
    assert_eq!(
        view[key].as_str(),
        Some(text(want).as_str()),
        "{page}: {key} shown vs API ({view})"
    );
}

#[test]
fn console_pages_show_the_api_numbers_in_chromium() {
    let Some(node_modules) = playwright() else {
        return;
    };
    let port = free_port();
    let central = start_central(port);
    let (node, _cfg) = node_with(
        "[node]\nname = \"edge\"\n[admin]\nconsole_writes = true\n",
        &["--mirror-to", &format!("127.0.0.1:{port}")],
    );
    let holder = clients(&node);

    // The mirror catches up with every partition of the topic.
    wait_until("the mirror to catch up", Duration::from_secs(60), || {
        let b = api(&node, "/bridge");
        let parts: Vec<&Value> = b["partitions"]
            .as_array()
            .map(|a| a.iter().filter(|p| p["topic"] == TOPIC).collect())
            .unwrap_or_default();
        parts.len() == 3 && parts.iter().all(|p| p["lag_records"] == 0)
    });
    // The member's assignment is visible (the group is Stable).
    wait_until("the group to be stable", Duration::from_secs(30), || {
        api(&node, &format!("/groups/{GROUP}"))["state"] == "Stable"
    });

    // The history ring samples every 10 s: wait for one taken after the commits, so the
    // lag-over-time plot has a point.
    wait_until(
        "a history sample with the group",
        Duration::from_secs(25),
        || {
            api(&node, &format!("/groups/{GROUP}"))["lag_history"]
                .as_array()
                .and_then(|h| h.last())
                .is_some_and(|h| h["lag_records"] == 9)
        },
    );

    let overview = api(&node, "/overview");
    let topics = api(&node, "/topics");
    let topic = api(&node, &format!("/topics/{TOPIC}"));
    let groups = api(&node, "/groups");
    let group = api(&node, &format!("/groups/{GROUP}"));
    let bridge = api(&node, "/bridge");
    let mqtt = api(&node, "/mqtt");
    assert_eq!(api(&node, "/cluster"), json!({"cluster_mode": false}));

    // What the workload did, through the API.
    assert_eq!(overview["mqtt_clients"], 1, "{overview}");
    assert_eq!(overview["groups"], 1, "{overview}");
    let lags: Vec<(i64, i64)> = group["offsets"]
        .as_array()
        .expect("offsets")
        .iter()
        .filter(|o| o["topic"] == TOPIC)
        .map(|o| {
            (
                o["committed"].as_i64().unwrap(),
                o["lag_records"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(lags, vec![(4, 6), (7, 3), (11, 0)], "{group}");
    let sensor = &mqtt["clients"][0];
    assert_eq!(sensor["client_id"], "console-sensor", "{mqtt}");
    assert_eq!(sensor["protocol"], "5", "{mqtt}");
    assert_eq!(
        sensor["subscriptions"],
        json!([{"filter": "sensors/+/temp", "qos": 1}])
    );
    assert_eq!(
        mqtt["retained"],
        json!([{"topic": "sensors/s1/temp", "payload_bytes": 4}])
    );

    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let base = format!("http://{}", node.http_addr());
    let mut cmd = Command::new("node");
    cmd.arg(repo_root().join("tests/js/console.js"))
        .args([base.as_str(), shots.to_str().expect("utf-8"), TOPIC, GROUP])
        .env("NODE_PATH", &node_modules);
    let out = rill_tests::run_with_timeout(cmd, b"", Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{e}\nnode log:\n{}", node.log()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("OK"),
        "console.js failed:\n{stdout}\n{}\nnode log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        node.log()
    );
    let r = results(&stdout);
    let views = &r["views"];

    // Overview.
    let o = &views["overview"];
    for key in ["topics", "partitions", "groups", "mqtt_clients"] {
        assert_shown(o, &format!("overview.{key}"), &overview[key], "overview");
    }
    assert!(
        o["overview.node_name"]
            .as_str()
            .unwrap_or("")
            .starts_with("edge"),
        "{o}"
    );
    assert!(views["throughput_points"]
        .as_str()
        .is_some_and(|p| p.parse::<usize>().unwrap_or(0) >= 1));
    // Topics.
    let row = topics["topics"]
        .as_array()
        .and_then(|a| a.iter().find(|t| t["name"] == TOPIC))
        .expect("topic row");
    for key in ["partitions", "records"] {
        assert_shown(
            &views["topics"],
            &format!("topic.{TOPIC}.{key}"),
            &row[key],
            "topics",
        );
    }
    assert_eq!(row["records"], 31);
    // Topic detail.
    for p in topic["partitions"].as_array().expect("partitions") {
        let n = p["partition"].as_i64().unwrap();
        for key in ["log_start_offset", "high_watermark", "log_end_offset"] {
            assert_shown(
                &views["topic"],
                &format!("partition.{n}.{key}"),
                &p[key],
                "topic",
            );
        }
    }
    assert_eq!(views["config_retention"], "604800000");
    // Groups and the group.
    let g = &groups["groups"][0];
    for key in ["members", "lag_records", "state"] {
        assert_shown(
            &views["groups"],
            &format!("group.{GROUP}.{key}"),
            &g[key],
            "groups",
        );
    }
    assert_eq!(g["lag_records"], 9);
    for o in group["offsets"].as_array().expect("offsets") {
        let id = format!("offset.{}.{}", o["topic"].as_str().unwrap(), o["partition"]);
        for key in ["committed", "high_watermark", "lag_records"] {
            assert_shown(&views["group"], &format!("{id}.{key}"), &o[key], "group");
        }
    }
    assert_eq!(views["assignment"], json!([format!("{TOPIC}: 0,1,2")]));
    let history = group["lag_history"].as_array().expect("history");
    assert_eq!(views["group_lag_points"], json!(history.len().to_string()));
    assert_eq!(
        history.last().map(|h| &h["lag_records"]),
        Some(&json!(9)),
        "{group}"
    );
    // Bridge.
    let mirrored: Vec<&Value> = bridge["partitions"]
        .as_array()
        .expect("bridge partitions")
        .iter()
        .filter(|p| p["topic"] == TOPIC)
        .collect();
    for p in &mirrored {
        let id = format!("bridge.{TOPIC}.{}", p["partition"]);
        for key in ["lag_records", "records_mirrored", "state"] {
            assert_shown(&views["bridge"], &format!("{id}.{key}"), &p[key], "bridge");
        }
    }
    assert_eq!(
        mirrored
            .iter()
            .map(|p| p["records_mirrored"].as_u64().unwrap())
            .sum::<u64>(),
        31
    );
    // MQTT and cluster.
    assert_shown(&views["mqtt"], "mqtt.clients", &json!(1), "mqtt");
    assert_shown(&views["mqtt"], "mqtt.retained", &json!(1), "mqtt");
    assert_eq!(
        views["mqtt_subscriptions"],
        json!({"console-sensor": "sensors/+/temp (QoS 1)"})
    );
    assert_eq!(views["mqtt_retained"], json!(["sensors/s1/temp"]));
    assert_eq!(views["cluster_alone"], true);
    assert_eq!(views["cluster_nav_hidden"], true);

    // The message browser.
    let b = &r["browse"];
    assert_eq!(
        b["initial"],
        json!((0..10).collect::<Vec<i64>>()),
        "latest of partition 0"
    );
    assert_eq!(b["p2"], json!([9, 10]), "partition 2 from offset 9");
    let api_msgs = api(
        &node,
        &format!("/topics/{TOPIC}/partitions/2/messages?offset=9&limit=3"),
    );
    let b64 = base64::engine::general_purpose::STANDARD;
    let decode = |v: &Value| b64.decode(v.as_str().expect("base64")).expect("base64");
    let m9 = &api_msgs["messages"][0];
    assert_eq!(decode(&m9["key_b64"]), b"device-2-9");
    assert_eq!(b["text_key"], "device-2-9");
    let value9 = String::from_utf8(decode(&m9["value_b64"])).expect("utf-8");
    assert_eq!(b["text_value"], value9.as_str());
    let pretty =
        serde_json::to_string_pretty(&serde_json::from_str::<Value>(&value9).unwrap()).unwrap();
    assert_eq!(b["json_value"], pretty.as_str(), "JSON view");
    assert_eq!(
        b["headers"],
        json!([["source", "console-test"], ["seq", "9"]])
    );
    assert!(
        b["hex_key"]
            .as_str()
            .unwrap_or("")
            .starts_with("00000000  64 65 76 69 63 65"),
        "hex view of the key: {}",
        b["hex_key"]
    );
    assert_eq!(b["binary_offset"], "10");
    let hex = b["binary_value"].as_str().unwrap_or("");
    assert!(
        hex.starts_with("00000000  d8 d9 da db dc dd de df e0 e1 e2 e3 e4 e5 e6 e7")
            && hex.contains("\n00000020  f8 f9 fa fb fc fd fe ff"),
        "a binary value is shown in hex: {hex}"
    );
    assert_eq!(
        decode(&api_msgs["messages"][1]["value_b64"]),
        (0xd8u8..=0xff).collect::<Vec<_>>()
    );

    // The test message produced from the page is in the log as typed.
    let offset = r["produce"]["offset"].as_i64().expect("produced offset");
    assert_eq!(offset, 10, "appended after the ten records of partition 1");
    let m = api(
        &node,
        &format!("/topics/{TOPIC}/partitions/1/messages?offset={offset}&limit=1"),
    );
    let m = &m["messages"][0];
    assert_eq!(m["offset"], offset);
    assert_eq!(decode(&m["key_b64"]), b"console-key");
    assert_eq!(decode(&m["value_b64"]), br#"{"from":"console"}"#);
    let headers: Vec<(String, Vec<u8>)> = m["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .map(|h| {
            (
                h["key"].as_str().unwrap().to_string(),
                decode(&h["value_b64"]),
            )
        })
        .collect();
    assert_eq!(
        headers,
        vec![
            ("via".to_string(), b"browser".to_vec()),
            ("n".to_string(), b"1".to_vec())
        ]
    );

    assert_eq!(r["errors"], json!([]), "browser console errors");
    assert_eq!(r["external"], json!([]), "requests beyond the node");
    for shot in [
        "overview",
        "topics",
        "topic",
        "groups",
        "group",
        "bridge",
        "mqtt",
        "cluster",
        "message-browser",
        "produced",
    ] {
        let p = shots.join(format!("{shot}.png"));
        assert!(
            std::fs::metadata(&p).is_ok_and(|m| m.len() > 1000),
            "screenshot {}",
            p.display()
        );
    }
    drop(holder);
    drop(central);
}

/// SHA-256 of `token` in hex, as a tokens file line wants it.
fn sha256_hex(dir: &Path, token: &str) -> String {
    let f = dir.join("t");
    std::fs::write(&f, token).expect("write");
    let out = Command::new("sha256sum")
        .arg(&f)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("digest")
        .to_string()
}

#[test]
fn console_writes_are_off_by_default() {
    let node = Node::start();
    node.cli_ok(&["topic", "create", "t", "--partitions", "1"], b"");
    let body = json!({"value": "v"});
    let (status, text) = http(
        node.http_addr(),
        "POST",
        "/api/v1/topics/t/messages",
        None,
        Some(&body),
    );
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("console_writes"), "{text}");
    let t = api(&node, "/topics/t");
    assert_eq!(
        t["partitions"][0]["log_end_offset"], 0,
        "nothing was written"
    );
    assert_eq!(api(&node, "/overview")["console_writes"], false);
    // The page itself is served (and says where the API is).
    let (status, html) = http(node.http_addr(), "GET", "/", None, None);
    assert_eq!(status, 200);
    assert!(html.contains("/console.js"), "{html}");
}

#[test]
fn console_needs_a_read_token_and_writes_an_admin_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = dir.path().join("tokens");
    std::fs::write(
        &tokens,
        format!(
            "read:{}\nadmin:{}\n",
            sha256_hex(dir.path(), "reader-token"),
            sha256_hex(dir.path(), "admin-token")
        ),
    )
    .expect("tokens");
    let (node, _cfg) = node_with(
        &format!(
            "[admin]\ntokens_file = {:?}\nconsole_writes = true\n",
            tokens.display().to_string()
        ),
        &[],
    );
    let addr = node.http_addr();
    assert_eq!(http(addr, "GET", "/health", None, None).0, 200);
    // The page's assets carry no data and need no token; the API does.
    for asset in ["/", "/console.js", "/console.css"] {
        assert_eq!(http(addr, "GET", asset, None, None).0, 200, "{asset}");
    }
    assert_eq!(http(addr, "GET", "/api/v1/overview", None, None).0, 401);
    assert_eq!(
        http(addr, "GET", "/api/v1/overview", Some("guess"), None).0,
        401
    );
    let (status, body) = http(addr, "GET", "/api/v1/overview", Some("reader-token"), None);
    assert_eq!(status, 200, "{body}");
    let overview: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(overview["console_writes"], true);
    // Creating the topic needs no HTTP; writing through the console needs an admin token.
    node.cli_ok(&["topic", "create", "t", "--partitions", "1"], b"");
    let msg = json!({"value": "hello", "key": "k"});
    let path = "/api/v1/topics/t/messages";
    assert_eq!(http(addr, "POST", path, None, Some(&msg)).0, 401);
    assert_eq!(
        http(addr, "POST", path, Some("reader-token"), Some(&msg)).0,
        403
    );
    let (status, body) = http(addr, "POST", path, Some("admin-token"), Some(&msg));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("json")["offset"],
        0
    );
    let (status, body) = http(
        addr,
        "GET",
        "/api/v1/topics/t/partitions/0/messages?offset=0",
        Some("reader-token"),
        None,
    );
    assert_eq!(status, 200, "{body}");
    let m: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(m["messages"][0]["value_b64"], "aGVsbG8=");
    assert_eq!(m["messages"].as_array().map(Vec::len), Some(1));

    // The page in Chromium: it asks for the token, then works with it and shows a refused write.
    let Some(node_modules) = playwright() else {
        return;
    };
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let mut cmd = Command::new("node");
    cmd.arg(repo_root().join("tests/js/console_token.js"))
        .args([
            &format!("http://{addr}"),
            "reader-token",
            "t",
            shots.to_str().expect("utf-8"),
        ])
        .env("NODE_PATH", &node_modules);
    let out = rill_tests::run_with_timeout(cmd, b"", Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{e}\nnode log:\n{}", node.log()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("OK"),
        "console_token.js failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = &results(&stdout)["token"];
    assert!(r["asked"].as_str().unwrap_or("").contains("token"), "{r}");
    assert_eq!(r["topics"], "1", "{r}");
    assert!(
        r["write_error"]
            .as_str()
            .unwrap_or("")
            .contains("a read token may not"),
        "{r}"
    );
    // The first call went without a token (401), every later one with it.
    let auth = r["auth"].as_array().expect("auth");
    assert_eq!(auth[0], Value::Null, "{r}");
    assert!(auth[1..].iter().all(|a| a == "Bearer reader-token"), "{r}");
    // The browser logs the refused calls (401 before the token, 403 for the write), nothing else.
    for e in r["errors"].as_array().expect("errors") {
        let e = e.as_str().unwrap_or("");
        assert!(
            e.contains("status of 401") || e.contains("status of 403"),
            "unexpected browser error {e:?}"
        );
    }
}

/// Cluster mode: three formatted nodes; every node's `/api/v1/cluster` lists the three brokers and
/// each partition of a replicated topic with its leader, replicas and a full ISR, and the cluster
/// page in Chromium shows the same.
#[test]
fn console_cluster_page_shows_brokers_and_isr() {
    use rill_tests::cluster::{ClusterOptions, TestCluster};
    let cluster = TestCluster::start(&ClusterOptions::default());
    for id in 1..=3 {
        cluster.wait_describe(
            id,
            Duration::from_secs(30),
            "3 brokers and a controller",
            |c, b| c > 0 && b == [1, 2, 3],
        );
    }
    let out = rill_tests::rill_cli(
        &cluster.kafka_addr(1),
        &["topic", "create", "replicated", "-p", "3", "-r", "3"],
        b"",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let http = |id: i32| {
        cluster
            .member(id)
            .node
            .as_ref()
            .expect("running")
            .http_addr()
            .to_string()
    };
    let cluster_view = |id: i32| {
        let (status, body) = http_of(&http(id), "/api/v1/cluster");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<Value>(&body).expect("json")
    };
    let replicated = |v: &Value| -> Vec<Value> {
        v["partitions"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|p| p["topic"] == "replicated")
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut views = Vec::new();
    for id in 1..=3 {
        let mut v = Value::Null;
        wait_until("three in-sync partitions", Duration::from_secs(30), || {
            v = cluster_view(id);
            let parts = replicated(&v);
            parts.len() == 3
                && parts
                    .iter()
                    .all(|p| p["isr"].as_array().map(Vec::len) == Some(3))
        });
        assert_eq!(v["cluster_mode"], true);
        assert_eq!(v["node_id"], id);
        let brokers: Vec<&Value> = v["brokers"]
            .as_array()
            .expect("brokers")
            .iter()
            .map(|b| &b["broker_id"])
            .collect();
        assert_eq!(brokers, vec![&json!(1), &json!(2), &json!(3)], "{v}");
        assert!(
            v["controller_id"]
                .as_i64()
                .is_some_and(|c| (1..=3).contains(&c)),
            "{v}"
        );
        for p in replicated(&v) {
            assert_eq!(p["under_replicated"], false, "{p}");
            assert!(
                p["replicas"]
                    .as_array()
                    .is_some_and(|r| r.contains(&p["leader"])),
                "{p}"
            );
        }
        views.push(replicated(&v));
    }
    assert!(
        views.windows(2).all(|w| w[0] == w[1]),
        "the nodes disagree: {views:?}"
    );
    let overview: Value =
        serde_json::from_str(&http_of(&http(1), "/api/v1/overview").1).expect("json");
    assert_eq!(overview["cluster_mode"], true);

    let Some(node_modules) = playwright() else {
        return;
    };
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let mut cmd = Command::new("node");
    cmd.arg(repo_root().join("tests/js/console_page.js"))
        .arg(format!("http://{}", http(2)))
        .args(["/cluster", "cluster"])
        .arg(shots.join("cluster-mode.png"))
        .env("NODE_PATH", &node_modules);
    let out = rill_tests::run_with_timeout(cmd, b"", Duration::from_secs(120)).expect("node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("OK"),
        "console_page.js failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = &results(&stdout)["page"];
    assert_eq!(page["errors"], json!([]), "{page}");
    assert_eq!(page["cluster_tab"], true, "{page}");
    assert_eq!(page["values"]["cluster.brokers"], "3", "{page}");
    // The partitions table: topic, partition, leader, replicas, ISR as the API has them.
    let rows: Vec<Vec<String>> = serde_json::from_value(page["tables"][1].clone()).expect("rows");
    let want: Vec<Vec<String>> = replicated(&cluster_view(2))
        .iter()
        .map(|p| {
            let list = |k: &str| {
                p[k].as_array()
                    .expect("list")
                    .iter()
                    .map(|x| x.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            vec![
                "replicated".to_string(),
                p["partition"].to_string(),
                p["leader"].to_string(),
                list("replicas"),
                list("isr"),
            ]
        })
        .collect();
    let shown: Vec<Vec<String>> = rows.into_iter().filter(|r| r[0] == "replicated").collect();
    assert_eq!(shown, want, "{page}");
}

fn http_of(addr: &str, path: &str) -> (u16, String) {
    http(addr, "GET", path, None, None)
}

/// A KIP-848 group (confluent-kafka with `group.protocol=consumer`): the API shows its type,
/// its member with the server-side assignment and the committed offsets with their lag.
#[test]
fn console_api_shows_a_kip848_group_with_its_assignment() {
    let (node, _cfg) = node_with(
        "[groups]\nconsumer_session_timeout_ms = 6000\nconsumer_heartbeat_interval_ms = 500\n",
        &[],
    );
    node.cli_ok(&["topic", "create", "k848", "-p", "2"], b"");
    let lines: String = (0..20).map(|i| format!("v{i}\n")).collect();
    node.cli_ok(&["produce", "k848", "-p", "0"], lines.as_bytes());
    node.cli_ok(&["produce", "k848", "-p", "1"], lines.as_bytes());
    let mut child = Command::new(venv_python())
        .current_dir(repo_root().join("tests/py"))
        .arg("groups_hold.py")
        .args(["--bootstrap", node.kafka_addr()])
        .args(["--group", "g848", "--topic", "k848", "--count", "15"])
        .args(["--protocol", "consumer"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start groups_hold.py");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("holder output");
    assert_eq!(line.trim(), "READY", "holder said {line:?}\n{}", node.log());
    child.stdout = Some(stdout.into_inner());
    let holder = Clients(child);

    let listed = api(&node, "/groups");
    let row = &listed["groups"][0];
    assert_eq!(
        (&row["group"], &row["type"], &row["members"]),
        (&json!("g848"), &json!("consumer"), &json!(1)),
        "{listed}"
    );
    let g = api(&node, "/groups/g848");
    assert_eq!(g["members"].as_array().map(Vec::len), Some(1), "{g}");
    assert_eq!(
        g["members"][0]["assignment"],
        json!({"k848": [0, 1]}),
        "{g}"
    );
    let committed: i64 = g["offsets"]
        .as_array()
        .expect("offsets")
        .iter()
        .map(|o| o["committed"].as_i64().unwrap())
        .sum();
    let lag: i64 = g["offsets"]
        .as_array()
        .expect("offsets")
        .iter()
        .map(|o| o["lag_records"].as_i64().unwrap())
        .sum();
    // Partitions with a commit are listed (20 records each), as the lag metrics count them.
    let listed_parts = g["offsets"].as_array().map_or(0, Vec::len) as i64;
    assert_eq!(committed, 15, "{g}");
    assert_eq!(lag, 20 * listed_parts - 15, "{g}");
    assert_eq!(row["lag_records"], lag, "{listed}");
    drop(holder);
}
