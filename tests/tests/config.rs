//! The node's TOML file with the real binary: `rill config validate` reports every error at once
//! with its line, and `[[mirror]]` sections in the node's file are mirrored (a mirror also in
//! `--bridge-config` is refused at start); every shipped `deploy/*.toml` starts a node.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use rill_tests::{free_port, repo_root, rill_bin, run_with_timeout, start_central, Node};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write config");
    p
}

fn validate(file: &Path) -> Output {
    let mut cmd = Command::new(rill_bin());
    cmd.args(["config", "validate"]).arg(file);
    run_with_timeout(cmd, b"", Duration::from_secs(60)).expect("rill config validate")
}

/// Unknown keys in three sections (lines 3, 6, 9), a bad `[topic_defaults]` value (line 11) and
/// a bad `[[mirror]]` rename (line 15).
const FIVE_ERRORS: &str = r#"[node]
id = 1
nmae = "edge-01"
[listeners]
kafka = "127.0.0.1:9092"
kafak = "127.0.0.1:9093"
[storage]
flush = "always"
fluhs = 1
[topic_defaults]
"retention.ms" = "soon"
[[mirror]]
topics = ["alarms"]
target = "central:9092"
rename = "edge"
"#;

#[test]
fn validate_prints_every_error_with_its_line_and_exits_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(dir.path(), "node.toml", FIVE_ERRORS);
    let out = validate(&file);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let prefix = format!("{}:", file.display());
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 5, "five errors expected:\n{stderr}");
    let at: Vec<usize> = lines
        .iter()
        .map(|l| {
            let rest = l
                .strip_prefix(&prefix)
                .unwrap_or_else(|| panic!("not FILE:LINE: {l}"));
            rest.split(':')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no line number: {l}"))
        })
        .collect();
    assert_eq!(at, [3, 6, 9, 11, 15], "{stderr}");
    for (line, needle) in lines.iter().zip([
        "unknown key 'node.nmae'",
        "unknown key 'listeners.kafak'",
        "unknown key 'storage.fluhs'",
        "invalid value for 'topic_defaults.\"retention.ms\"'",
        "invalid value for 'mirror[0].rename'",
    ]) {
        assert!(line.contains(needle), "{line} lacks {needle}");
    }
}

#[test]
fn validate_accepts_clean_files_and_reports_a_syntax_error_alone() {
    for name in ["edge.toml", "central.toml"] {
        let out = validate(&repo_root().join("deploy").join(name));
        assert!(out.status.success(), "{name}: {out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "OK", "{out:?}");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let with_mirror = write(
        dir.path(),
        "m.toml",
        "[node]\nname = \"edge-01\"\n[[mirror]]\ntopics = [\"alarms\"]\ntarget = \"central:9092\"\n",
    );
    let out = validate(&with_mirror);
    assert!(out.status.success(), "{out:?}");
    let broken = write(
        dir.path(),
        "s.toml",
        &FIVE_ERRORS.replace("[storage]", "[storage"),
    );
    let out = validate(&broken);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!("{}:7:", broken.display())),
        "{stderr}"
    );
}

#[test]
fn mirrors_in_the_node_toml_are_mirrored() {
    let port = free_port();
    let central = start_central(port);
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write(
        dir.path(),
        "edge.toml",
        &format!(
            "[node]\nname = \"edge7\"\n\n[[mirror]]\ntopics = [\"orders\"]\n\
             target = \"127.0.0.1:{port}\"\n"
        ),
    );
    let edge = Node::start_with(&["--config", &cfg.to_string_lossy()]);
    edge.python(
        "bridge_produce.py",
        &["--topic", "orders", "--partitions", "2", "--count", "500"],
    );
    let out = central.python(
        "bridge_verify.py",
        &[
            "--topic",
            "edge7.orders",
            "--count",
            "500",
            "--node",
            "edge7",
            "--source",
            "orders",
        ],
    );
    assert!(out.contains("OK"), "{out}\nedge log:\n{}", edge.log());
}

#[test]
fn a_mirror_in_the_node_toml_and_in_bridge_config_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mirror = "[[mirror]]\ntopics = [\"orders\"]\ntarget = \"127.0.0.1:1\"\n";
    let node = write(
        dir.path(),
        "node.toml",
        &format!("[node]\nname = \"edge8\"\n{mirror}"),
    );
    let bridge = write(
        dir.path(),
        "bridge.toml",
        &format!("{mirror}bandwidth_bytes_per_sec = 1000\n"),
    );
    let mut cmd = Command::new(rill_bin());
    cmd.arg("serve")
        .arg("--config")
        .arg(&node)
        .arg("--bridge-config")
        .arg(&bridge)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--key-file")
        .arg(dir.path().join("k.key"))
        .args([
            "--kafka-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--mqtt-listen",
            "127.0.0.1:0",
        ])
        .env_remove("RILL_MASTER_KEY");
    let out = run_with_timeout(cmd, b"", Duration::from_secs(60)).expect("rill serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stderr.contains(&format!(
            "the mirror push of [\"orders\"] to 127.0.0.1:1 is defined both in {}",
            node.display()
        )) && stderr.contains(&bridge.display().to_string()),
        "{stderr}"
    );
    assert!(!stderr.contains("listening"), "the node started: {stderr}");
}

/// `(status, body)` of `GET path` on the node's admin listener.
fn http_get(addr: &str, path: &str) -> u16 {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(addr).expect("connect admin HTTP");
    c.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(c, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").expect("request");
    let mut out = String::new();
    c.read_to_string(&mut out).expect("read");
    out.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Every shipped `deploy/*.toml` starts a node (listeners on port 0, the data directory and key
/// in a temporary directory, central's TLS files replaced by a generated certificate); the admin
/// listener keeps its file's reach (`0.0.0.0` for central), so without tokens it serves only
/// `/health` and `/metrics`.
#[test]
fn every_deploy_file_starts_a_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("rcgen");
    let pem = write(dir.path(), "server.pem", &cert.cert.pem());
    let key = write(dir.path(), "server.key", &cert.key_pair.serialize_pem());
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_root().join("deploy"))
        .expect("deploy/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "{files:?}");
    for file in files {
        let name = file
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(&file)
            .expect("read deploy file")
            .replace("/etc/rill/tls/server.pem", &pem.display().to_string())
            .replace("/etc/rill/tls/server.key", &key.display().to_string());
        let http_beyond_loopback = text.contains("http = \"0.0.0.0:");
        let copy = write(dir.path(), &name, &text);
        let copy = copy.display().to_string();
        let mut args = vec!["--config", copy.as_str()];
        if http_beyond_loopback {
            args.extend(["--http-listen", "0.0.0.0:0"]);
        }
        let mut node = Node::start_with(&args);
        let port = node
            .http_addr()
            .rsplit(':')
            .next()
            .expect("port")
            .to_string();
        let http = format!("127.0.0.1:{port}");
        assert_eq!(http_get(&http, "/health"), 200, "{name}");
        assert_eq!(http_get(&http, "/metrics"), 200, "{name}");
        let status = http_get(&http, "/bridge/status");
        assert_eq!(
            status,
            if http_beyond_loopback { 403 } else { 200 },
            "{name}: /bridge/status"
        );
        let status = node.terminate();
        assert!(status.success(), "{name}: {status:?}\n{}", node.log());
    }
}
