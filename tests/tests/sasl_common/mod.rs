//! Shared by the SASL black-box tests: nodes that require SASL, users made with `rill user add`,
//! a self-signed certificate for SASL_SSL, and the `sasl_clients.py` real-client script.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use rill_tests::{rill_cli, run_python, Node};

/// The test user's name and password.
pub const USER: &str = "alice";
/// The test user's password.
pub const PASSWORD: &str = "alice-s3cret";

/// `rill user add NAME --data-dir DIR --password-stdin` on a stopped node's data directory.
pub fn add_user(data_dir: &Path, name: &str, password: &str, extra: &[&str]) -> String {
    let dir = data_dir.display().to_string();
    let mut args = vec!["user", "add", name, "--data-dir", &dir, "--password-stdin"];
    args.extend_from_slice(extra);
    let out = rill_cli("", &args, format!("{password}\n").as_bytes());
    assert!(
        out.status.success(),
        "rill user add failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Start a node with `args`, stop it, add [`USER`], start it again (users are added offline).
pub fn node_with_user(args: &[&str]) -> Node {
    let mut node = Node::start_with(args);
    node.terminate();
    add_user(&node.data_dir(), USER, PASSWORD, &[]);
    node.restart();
    node
}

/// A self-signed certificate for `localhost` and 127.0.0.1 in `dir`: (cert, key) PEM paths. The
/// certificate is its own CA.
pub fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("rcgen");
    let cert_path = dir.join("server.pem");
    let key_path = dir.join("server.key");
    std::fs::write(&cert_path, cert.cert.pem()).expect("write cert");
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).expect("write key");
    (cert_path, key_path)
}

/// A node config file for a SASL_SSL listener (TLS with `cert`/`key`, SASL `mechanisms`).
pub fn sasl_ssl_config(dir: &Path, cert: &Path, key: &Path, mechanisms: &[&str]) -> PathBuf {
    let list: Vec<String> = mechanisms.iter().map(|m| format!("{m:?}")).collect();
    let text = format!(
        "[listeners]\nkafka_tls = {{ cert = {:?}, key = {:?} }}\n\n[kafka]\nsasl = true\nsasl_mechanisms = [{}]\n",
        cert.display().to_string(),
        key.display().to_string(),
        list.join(", ")
    );
    let path = dir.join("sasl-ssl.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// Run `sasl_clients.py` against `bootstrap`; fails the test with `log` on error.
pub fn script(bootstrap: &str, args: &[&str], log: impl Fn() -> String) -> String {
    let mut full = vec!["--bootstrap", bootstrap];
    full.extend_from_slice(args);
    match run_python("sasl_clients.py", &full) {
        Ok(out) => out,
        Err(report) => panic!("{report}\nnode log:\n{}", log()),
    }
}
