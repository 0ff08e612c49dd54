//! Client certificates (mTLS) and several Kafka listeners against the real binary, with
//! certificates made here by rcgen (a CA, the node's certificate, client certificates of that
//! CA, of another CA and an expired one):
//! - one node with `[listeners] kafka` SSL + `client_ca`, an extra PLAINTEXT listener and an extra
//!   SASL_SSL listener, the authorizer on, `ssl_principal_mapping_rules` and a DN super user:
//!   confluent-kafka sees each listener's own address in Metadata, a certificate's mapped
//!   principal is allowed/refused by the ACLs, the DN super user may do everything, the
//!   PLAINTEXT listener is anonymous, and untrusted, expired or missing certificates fail the
//!   handshake (`tests/py/mtls_clients.py`);
//! - the admin API over HTTPS with `http_tls.client_ca`: curl with a client certificate reads
//!   `/bridge/status`, without one (or with one of another CA) the handshake fails, `rill bridge
//!   status --admin https://...` works with `--admin-ca-file`/`--admin-cert-file`, bound on
//!   0.0.0.0 the certificate is the authentication (no restricted mode), and with a tokens
//!   file as well the token is still required (401 without).

mod sasl_common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use rill_tests::{rill_cli, run_python, Node};
use sasl_common::add_user;

const ADMIN_PASSWORD: &str = "mtls-admin-s3cret";

/// A CA: its certificate (for signing) and key.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn dn(parts: &[(DnType, &str)]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    for (t, v) in parts {
        dn.push(t.clone(), *v);
    }
    dn
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name = dn(&[(DnType::CommonName, name)]);
    let cert = p.self_signed(&key).expect("CA");
    Ca { cert, key }
}

/// A certificate of `ca` for `subject` written to `dir/name.pem` and `dir/name.key`.
fn issue(
    dir: &Path,
    name: &str,
    ca: &Ca,
    subject: &[(DnType, &str)],
    server: bool,
    expired: bool,
) -> (PathBuf, PathBuf) {
    let key = KeyPair::generate().expect("key");
    let sans = if server {
        vec!["localhost".to_string(), "127.0.0.1".to_string()]
    } else {
        Vec::new()
    };
    let mut p = CertificateParams::new(sans).expect("params");
    p.distinguished_name = dn(subject);
    p.extended_key_usages = vec![if server {
        ExtendedKeyUsagePurpose::ServerAuth
    } else {
        ExtendedKeyUsagePurpose::ClientAuth
    }];
    if expired {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let cert = p.signed_by(&key, &ca.cert, &ca.key).expect("sign");
    let (cert_path, key_path) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&cert_path, cert.pem()).expect("write cert");
    std::fs::write(&key_path, key.serialize_pem()).expect("write key");
    (cert_path, key_path)
}

fn write_ca(dir: &Path, name: &str, ca: &Ca) -> PathBuf {
    let path = dir.join(format!("{name}.pem"));
    std::fs::write(&path, ca.cert.pem()).expect("write CA");
    path
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// Every certificate the tests use, in `dir`.
struct Certs {
    ca: PathBuf,
    server: (PathBuf, PathBuf),
    edge: (PathBuf, PathBuf),
    ops: (PathBuf, PathBuf),
    rogue: (PathBuf, PathBuf),
    expired: (PathBuf, PathBuf),
}

fn certs(dir: &Path) -> Certs {
    let ca_ = ca("rill test CA");
    let other = ca("another CA");
    let edge_dn = [
        (DnType::OrganizationName, "Acme"),
        (DnType::OrganizationalUnitName, "devices"),
        (DnType::CommonName, "Edge-01"),
    ];
    Certs {
        ca: write_ca(dir, "ca", &ca_),
        server: issue(
            dir,
            "server",
            &ca_,
            &[(DnType::CommonName, "localhost")],
            true,
            false,
        ),
        edge: issue(dir, "edge", &ca_, &edge_dn, false, false),
        ops: issue(
            dir,
            "ops",
            &ca_,
            &[
                (DnType::OrganizationName, "Acme"),
                (DnType::CommonName, "ops"),
            ],
            false,
            false,
        ),
        rogue: issue(dir, "rogue", &other, &edge_dn, false, false),
        expired: issue(dir, "expired", &ca_, &edge_dn, false, true),
    }
}

#[test]
fn client_certificates_map_to_principals_on_their_listener() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = certs(dir.path());
    let config = format!(
        "[listeners]\n\
         kafka_tls = {{ cert = {cert:?}, key = {key:?}, client_ca = {ca:?} }}\n\
         [[listeners.kafka_extra]]\nname = \"local\"\nlisten = \"127.0.0.1:0\"\nsecurity = \"PLAINTEXT\"\n\
         [[listeners.kafka_extra]]\nname = \"LAN\"\nlisten = \"127.0.0.1:0\"\nsecurity = \"SASL_SSL\"\n\
         tls = {{ cert = {cert:?}, key = {key:?} }}\nsasl_mechanisms = [\"SCRAM-SHA-512\"]\n\
         [kafka]\nauthorizer = true\nsuper_users = [\"User:admin\", \"User:CN=ops,O=Acme\"]\n\
         ssl_principal_mapping_rules = \"RULE:^CN=(.*?),OU=devices,.*$/$1/L,DEFAULT\"\n",
        cert = s(&c.server.0),
        key = s(&c.server.1),
        ca = s(&c.ca),
    );
    let path = dir.path().join("node.toml");
    std::fs::write(&path, &config).expect("write config");
    let out = rill_cli("", &["config", "validate", &s(&path)], b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut node = Node::start_with(&["--config", &s(&path)]);
    node.terminate();
    add_user(&node.data_dir(), "admin", ADMIN_PASSWORD, &[]);
    node.restart();
    let extra = node.listening_field("kafka_extra");
    let addr_of = |name: &str| {
        extra
            .split(',')
            .find_map(|e| e.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} in kafka_extra={extra}"))
            .to_string()
    };
    let (local, lan) = (addr_of("LOCAL"), addr_of("LAN"));
    let args = [
        "--bootstrap",
        node.kafka_addr(),
        "--local",
        &local,
        "--lan",
        &lan,
        "--ca",
        &s(&c.ca),
        "--admin-password",
        ADMIN_PASSWORD,
        "--edge-cert",
        &s(&c.edge.0),
        "--edge-key",
        &s(&c.edge.1),
        "--ops-cert",
        &s(&c.ops.0),
        "--ops-key",
        &s(&c.ops.1),
        "--rogue-cert",
        &s(&c.rogue.0),
        "--rogue-key",
        &s(&c.rogue.1),
        "--expired-cert",
        &s(&c.expired.0),
        "--expired-key",
        &s(&c.expired.1),
    ];
    if let Err(report) = run_python("mtls_clients.py", &args) {
        panic!("{report}\nnode log:\n{}", node.log());
    }
    let log = node.log();
    assert!(
        log.contains("principal=User:edge-01") && log.contains("resource=\"other\""),
        "the denial names the certificate's principal:\n{log}"
    );
    assert!(
        log.contains("principal=User:ANONYMOUS"),
        "the PLAINTEXT listener is anonymous:\n{log}"
    );
    let failed = log.matches("TLS handshake failed").count();
    assert!(failed >= 3, "{failed} failed handshakes logged:\n{log}");
    // librdkafka sends no certificate the server's CA list does not name (the other CA's).
    assert!(
        log.contains("certificate expired") && log.contains("peer sent no certificates"),
        "the reasons are logged:\n{log}"
    );
}

fn curl(args: &[&str]) -> (i32, String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .expect("run curl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn admin_api_over_https_with_client_certificates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = certs(dir.path());
    let tls = format!(
        "[listeners]\nhttp_tls = {{ cert = {:?}, key = {:?}, client_ca = {:?} }}\n",
        s(&c.server.0),
        s(&c.server.1),
        s(&c.ca)
    );
    let path = dir.path().join("node.toml");
    std::fs::write(&path, &tls).expect("write config");
    // Bound beyond loopback: the client certificate is the authentication.
    let node = Node::start_with(&["--config", &s(&path), "--http-listen", "0.0.0.0:0"]);
    let port = node
        .http_addr()
        .rsplit(':')
        .next()
        .expect("port")
        .to_string();
    let url = |p: &str| format!("https://127.0.0.1:{port}{p}");
    assert!(
        !node
            .log()
            .contains("bound beyond loopback without authentication"),
        "{}",
        node.log()
    );
    let (ca, cert, key) = (s(&c.ca), s(&c.edge.0), s(&c.edge.1));
    let with_cert = ["--cacert", &ca, "--cert", &cert, "--key", &key];
    let (code, body, err) = curl(&[&with_cert[..], &[&url("/bridge/status")]].concat());
    assert_eq!(code, 0, "{err}\n{}", node.log());
    assert!(body.contains("\"partitions\""), "{body}");

    // No certificate, or one of another CA: the handshake fails, nothing is served.
    let (code, body, err) = curl(&["--cacert", &ca, &url("/health")]);
    assert_ne!(code, 0, "served without a client certificate: {body}");
    let (rogue_cert, rogue_key) = (s(&c.rogue.0), s(&c.rogue.1));
    let (code2, body2, _) = curl(&[
        "--cacert",
        &ca,
        "--cert",
        &rogue_cert,
        "--key",
        &rogue_key,
        &url("/health"),
    ]);
    assert_ne!(code2, 0, "served with another CA's certificate: {body2}");
    assert!(
        node.log().contains("admin HTTPS handshake failed"),
        "{err}\n{}",
        node.log()
    );

    // The CLI over https with a client certificate.
    let admin = url("");
    let out = rill_cli(
        "",
        &[
            "bridge",
            "status",
            "--admin",
            &admin,
            "--admin-ca-file",
            &ca,
            "--admin-cert-file",
            &cert,
            "--admin-key-file",
            &key,
        ],
        b"",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("no mirrors"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Without the client certificate the CLI reports the TLS failure.
    let out = rill_cli(
        "",
        &[
            "bridge",
            "status",
            "--admin",
            &admin,
            "--admin-ca-file",
            &ca,
        ],
        b"",
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("TLS"), "{stderr}");
    drop(node);

    // mTLS and tokens: the token still decides.
    let token = "mtls-token-0123456789";
    let tokens = dir.path().join("tokens");
    let digest = {
        let mut cmd = Command::new("sha256sum");
        cmd.arg("-");
        let out = rill_tests::run_with_timeout(cmd, token.as_bytes(), Duration::from_secs(10))
            .expect("sha256sum");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .expect("digest")
            .to_string()
    };
    std::fs::write(&tokens, format!("read:{digest}\n")).expect("write tokens");
    let both = dir.path().join("both.toml");
    std::fs::write(
        &both,
        format!("{tls}[admin]\ntokens_file = {:?}\n", s(&tokens)),
    )
    .expect("write config");
    let node = Node::start_with(&["--config", &s(&both)]);
    let port = node
        .http_addr()
        .rsplit(':')
        .next()
        .expect("port")
        .to_string();
    let url = format!("https://127.0.0.1:{port}/bridge/status");
    let (code, body, err) = curl(&[&with_cert[..], &["-w", "%{http_code}", &url]].concat());
    assert_eq!(code, 0, "{err}");
    assert!(body.ends_with("401"), "{body}");
    let auth = format!("Authorization: Bearer {token}");
    let (code, body, err) =
        curl(&[&with_cert[..], &["-H", &auth, "-w", "%{http_code}", &url]].concat());
    assert_eq!(code, 0, "{err}");
    assert!(body.ends_with("200"), "{body}");
}
