//! The admin HTTP API's protection against the real binary: with `[admin] tokens_file`, a
//! request without a token or with a wrong one gets 401, a `read` token reads `/metrics` and
//! `/bridge/status` but may not write (403), `/health` needs nothing, and `rill bridge status`
//! sends the token from `--admin-token-env`; bound beyond loopback without tokens, the node warns
//! and serves only `/health` and `/metrics`.

use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

use rill_tests::{rill_bin, run_with_timeout, Node};

/// `(status, body)` of `method path` on `addr`, with a bearer `token`.
fn http(addr: &str, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut c = std::net::TcpStream::connect(addr).expect("connect admin HTTP");
    c.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        c,
        "{method} {path} HTTP/1.0\r\nHost: x\r\nContent-Length: 0\r\n{auth}\r\n"
    )
    .expect("request");
    let mut out = String::new();
    c.read_to_string(&mut out).expect("read");
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// SHA-256 in hex, with the system's `sha256sum` (what docs/security.md tells operators to use).
fn sha256_hex(token: &str) -> String {
    let mut cmd = Command::new("sha256sum");
    cmd.arg("-");
    let out = run_with_timeout(cmd, token.as_bytes(), Duration::from_secs(10)).expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("digest")
        .to_string()
}

fn bridge_status(admin: &str, token: Option<&str>) -> std::process::Output {
    let mut cmd = Command::new(rill_bin());
    cmd.args([
        "bridge",
        "status",
        "--admin",
        admin,
        "--admin-token-env",
        "TEST_ADMIN_TOKEN",
    ])
    .env_remove("TEST_ADMIN_TOKEN")
    .env("NO_COLOR", "1");
    if let Some(t) = token {
        cmd.env("TEST_ADMIN_TOKEN", t);
    }
    run_with_timeout(cmd, b"", Duration::from_secs(30)).expect("rill bridge status")
}

#[test]
fn tokens_guard_every_endpoint_but_health() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = dir.path().join("admin-tokens");
    std::fs::write(
        &tokens,
        format!(
            "# Prometheus\nread:{}\nadmin:{}\n",
            sha256_hex("scrape-token"),
            sha256_hex("ops-token")
        ),
    )
    .expect("write tokens");
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "[admin]\ntokens_file = {:?}\n",
            tokens.display().to_string()
        ),
    )
    .expect("write config");
    let node = Node::start_with(&["--config", &config.display().to_string()]);
    let addr = node.http_addr().to_string();

    assert_eq!(http(&addr, "GET", "/health", None).0, 200);
    let (status, body) = http(&addr, "GET", "/metrics", None);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("missing bearer token"), "{body}");
    assert_eq!(http(&addr, "GET", "/metrics", Some("guess")).0, 401);
    assert_eq!(http(&addr, "GET", "/bridge/status", None).0, 401);
    let (status, body) = http(&addr, "GET", "/metrics", Some("scrape-token"));
    assert_eq!(status, 200);
    assert!(body.contains("rill_kafka_connections_total"), "{body}");
    assert_eq!(
        http(&addr, "GET", "/bridge/status", Some("scrape-token")).0,
        200
    );
    assert_eq!(http(&addr, "GET", "/metrics", Some("ops-token")).0, 200);
    // A read token may not call anything but GET; an admin token gets past the check.
    assert_eq!(http(&addr, "POST", "/metrics", Some("scrape-token")).0, 403);
    assert_eq!(http(&addr, "POST", "/metrics", Some("ops-token")).0, 405);

    let out = bridge_status(&format!("http://{addr}"), Some("scrape-token"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = bridge_status(&addr, None);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = bridge_status(&format!("https://{addr}"), Some("scrape-token"));
    assert!(!out.status.success());
}

#[test]
fn beyond_loopback_without_tokens_only_health_and_metrics() {
    let node = Node::start_with(&["--http-listen", "0.0.0.0:0"]);
    let port = node
        .http_addr()
        .rsplit(':')
        .next()
        .expect("port")
        .to_string();
    let addr = format!("127.0.0.1:{port}");
    assert!(
        node.log()
            .contains("admin HTTP API is bound beyond loopback without authentication"),
        "{}",
        node.log()
    );
    assert_eq!(http(&addr, "GET", "/health", None).0, 200);
    assert_eq!(http(&addr, "GET", "/metrics", None).0, 200);
    let (status, body) = http(&addr, "GET", "/bridge/status", None);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("tokens_file"), "{body}");
}

#[test]
fn a_bad_tokens_file_stops_the_node_with_the_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = dir.path().join("admin-tokens");
    std::fs::write(&tokens, "write:abc\n").expect("write tokens");
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "[admin]\ntokens_file = {:?}\n",
            tokens.display().to_string()
        ),
    )
    .expect("write config");
    let mut cmd = Command::new(rill_bin());
    cmd.args(["serve", "--config", &config.display().to_string()])
        .args(["--data-dir", &dir.path().join("data").display().to_string()])
        .args([
            "--key-file",
            &dir.path().join("k.key").display().to_string(),
        ])
        .args([
            "--kafka-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .args(["--mqtt-listen", "127.0.0.1:0"])
        .env_remove("RILL_MASTER_KEY");
    let out = run_with_timeout(cmd, b"", Duration::from_secs(30)).expect("rill serve");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 1") && err.contains("write"), "{err}");
}
