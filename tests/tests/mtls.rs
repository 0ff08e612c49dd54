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
//!   file as well the token is still required (401 without);
//! - certificate revocation lists (`crl_files`, a PEM CRL on the Kafka listener, a DER one on the
//!   admin listener) revoking one of two client certificates: the revoked one fails the TLS
//!   handshake (the node logs the revocation), the valid one keeps producing, consuming and
//!   reading `/health`, and the MQTT TLS listener refuses the revoked one and serves the valid one
//!   (`tests/py/crl_clients.py`, curl, `tests/py/mqtt_crl.py`); the failpoint build with
//!   `tls_ignore_crls` (broken on purpose) lets the revoked one in, so the test can fail; a CRL
//!   file that is not a CRL stops the node naming the file, and `crl_files` without `client_ca`
//!   is reported by `rill config validate` with its line.

mod sasl_common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, RevocationReason,
    RevokedCertParams, SerialNumber,
};
use rill_tests::{
    rill_bin, rill_cli, rill_failpoints_bin, run_python, run_with_timeout, Launch, Node,
};
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

/// What a certificate is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The node's (server authentication, for localhost and 127.0.0.1).
    Server,
    /// A client's, valid now.
    Client,
    /// A client's, expired in 2021.
    ExpiredClient,
}

/// A certificate of `ca` for `subject` with serial number `serial` (one byte, so it is the same
/// in the certificate and in a CRL) written to `dir/name.pem` and `dir/name.key`.
fn issue(
    dir: &Path,
    name: &str,
    ca: &Ca,
    subject: &[(DnType, &str)],
    kind: Kind,
    serial: u8,
) -> (PathBuf, PathBuf) {
    let key = KeyPair::generate().expect("key");
    let server = kind == Kind::Server;
    let sans = if server {
        vec!["localhost".to_string(), "127.0.0.1".to_string()]
    } else {
        Vec::new()
    };
    let mut p = CertificateParams::new(sans).expect("params");
    p.distinguished_name = dn(subject);
    p.serial_number = Some(SerialNumber::from(vec![serial]));
    p.extended_key_usages = vec![if server {
        ExtendedKeyUsagePurpose::ServerAuth
    } else {
        ExtendedKeyUsagePurpose::ClientAuth
    }];
    if kind == Kind::ExpiredClient {
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

/// The serial number of the certificate the CRLs revoke.
const REVOKED_SERIAL: u8 = 0x66;

/// Every certificate the tests use, in `dir`, and the CRL of the test CA revoking `revoked` (as
/// PEM and as DER).
struct Certs {
    ca: PathBuf,
    server: (PathBuf, PathBuf),
    edge: (PathBuf, PathBuf),
    ops: (PathBuf, PathBuf),
    rogue: (PathBuf, PathBuf),
    expired: (PathBuf, PathBuf),
    revoked: (PathBuf, PathBuf),
    crl_pem: PathBuf,
    crl_der: PathBuf,
}

/// A CRL of `ca` revoking the certificates with these serial numbers.
fn crl(ca: &Ca, serials: &[u8]) -> rcgen::CertificateRevocationList {
    CertificateRevocationListParams {
        this_update: rcgen::date_time_ymd(2025, 1, 1),
        next_update: rcgen::date_time_ymd(2099, 1, 1),
        crl_number: SerialNumber::from(vec![1]),
        issuing_distribution_point: None,
        revoked_certs: serials
            .iter()
            .map(|s| RevokedCertParams {
                serial_number: SerialNumber::from(vec![*s]),
                revocation_time: rcgen::date_time_ymd(2025, 6, 1),
                reason_code: Some(RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&ca.cert, &ca.key)
    .expect("CRL")
}

fn certs(dir: &Path) -> Certs {
    let ca_ = ca("rill test CA");
    let other = ca("another CA");
    let edge_dn = [
        (DnType::OrganizationName, "Acme"),
        (DnType::OrganizationalUnitName, "devices"),
        (DnType::CommonName, "Edge-01"),
    ];
    let revoked = issue(dir, "revoked", &ca_, &edge_dn, Kind::Client, REVOKED_SERIAL);
    let list = crl(&ca_, &[REVOKED_SERIAL]);
    let (crl_pem, crl_der) = (dir.join("revoked.crl.pem"), dir.join("revoked.crl"));
    std::fs::write(&crl_pem, list.pem().expect("CRL PEM")).expect("write CRL");
    std::fs::write(&crl_der, list.der()).expect("write CRL");
    let server_dn = [(DnType::CommonName, "localhost")];
    let ops_dn = [
        (DnType::OrganizationName, "Acme"),
        (DnType::CommonName, "ops"),
    ];
    Certs {
        ca: write_ca(dir, "ca", &ca_),
        server: issue(dir, "server", &ca_, &server_dn, Kind::Server, 1),
        edge: issue(dir, "edge", &ca_, &edge_dn, Kind::Client, 2),
        ops: issue(dir, "ops", &ca_, &ops_dn, Kind::Client, 3),
        rogue: issue(dir, "rogue", &other, &edge_dn, Kind::Client, 4),
        expired: issue(dir, "expired", &ca_, &edge_dn, Kind::ExpiredClient, 5),
        revoked,
        crl_pem,
        crl_der,
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

/// The config of a node whose Kafka listener checks the PEM CRL and whose admin listener the DER
/// one.
fn crl_config(dir: &Path, c: &Certs) -> PathBuf {
    let (cert, key, ca) = (s(&c.server.0), s(&c.server.1), s(&c.ca));
    let config = format!(
        "[listeners]\n\
         kafka_tls = {{ cert = {cert:?}, key = {key:?}, client_ca = {ca:?}, crl_files = [{:?}] }}\n\
         http_tls = {{ cert = {cert:?}, key = {key:?}, client_ca = {ca:?}, crl_files = [{:?}] }}\n\
         [mqtt.tls]\nlisten = \"127.0.0.1:0\"\ncert = {cert:?}\nkey = {key:?}\nclient_ca = {ca:?}\n\
         crl_files = [{:?}]\n",
        s(&c.crl_pem),
        s(&c.crl_der),
        s(&c.crl_pem),
    );
    let path = dir.join("crl.toml");
    std::fs::write(&path, config).expect("write config");
    path
}

/// `crl_clients.py` (Kafka) and `mqtt_crl.py` (MQTT TLS) against `node` (`expect`: `refused` or
/// `accepted`), then curl on the admin listener with the valid and the revoked certificate:
/// (curl exit code, body) of each.
fn crl_round(node: &Node, c: &Certs, topic: &str, expect: &str) -> ((i32, String), (i32, String)) {
    let (ca, valid, valid_key) = (s(&c.ca), s(&c.edge.0), s(&c.edge.1));
    let (revoked, revoked_key) = (s(&c.revoked.0), s(&c.revoked.1));
    let args = [
        "--bootstrap",
        node.kafka_addr(),
        "--ca",
        &ca,
        "--topic",
        topic,
        "--valid-cert",
        &valid,
        "--valid-key",
        &valid_key,
        "--revoked-cert",
        &revoked,
        "--revoked-key",
        &revoked_key,
        "--expect-revoked",
        expect,
    ];
    if let Err(report) = run_python("crl_clients.py", &args) {
        panic!("{report}\nnode log:\n{}", node.log());
    }
    let log = node.log();
    let mqtt_tls = log
        .lines()
        .find(|l| l.contains("MQTT TLS listener"))
        .and_then(|l| l.split_whitespace().find_map(|t| t.strip_prefix("addr=")))
        .unwrap_or_else(|| panic!("no MQTT TLS listener in the log:\n{log}"))
        .to_string();
    // The same arguments without --topic (args[4..6]), with the MQTT TLS address.
    let mqtt_args = [&args[..4], &["--tls-addr", &mqtt_tls], &args[6..]].concat();
    if let Err(report) = run_python("mqtt_crl.py", &mqtt_args) {
        panic!("{report}\nnode log:\n{}", node.log());
    }
    let url = format!("https://{}/health", node.http_addr());
    let get = |cert: &str, key: &str| {
        let (code, body, err) = curl(&[
            "--cacert",
            &ca,
            "--cert",
            cert,
            "--key",
            key,
            "-w",
            "%{http_code}",
            &url,
        ]);
        (code, format!("{body}{err}"))
    };
    let valid_get = get(&valid, &valid_key);
    let revoked_get = get(&revoked, &revoked_key);
    (valid_get, revoked_get)
}

#[test]
fn revoked_client_certificates_fail_the_handshake() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = certs(dir.path());
    let path = crl_config(dir.path(), &c);
    let out = rill_cli("", &["config", "validate", &s(&path)], b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let node = Node::start_with(&["--config", &s(&path)]);
    let (valid, revoked) = crl_round(&node, &c, "crl-a", "refused");
    assert!(valid.0 == 0 && valid.1.ends_with("200"), "valid: {valid:?}");
    assert_ne!(
        revoked.0, 0,
        "the revoked certificate was served: {revoked:?}"
    );
    assert!(
        revoked.1.contains("certificate revoked"),
        "curl names the alert: {revoked:?}"
    );
    let log = node.log();
    assert!(
        log.contains("certificate revocation list loaded")
            && log.contains("revoked.crl.pem")
            && log.contains("revoked=1"),
        "the CRLs are logged at start:\n{log}"
    );
    // Each refusal is logged; a line may follow the client's failure by a moment.
    let logged = |prefix: &str| {
        node.wait_log_line(Duration::from_secs(10), |l| {
            l.contains(prefix) && l.contains("revoked by a CRL")
        })
        .is_some()
    };
    assert!(
        logged("kafka::server: TLS handshake failed"),
        "no Kafka revocation logged:\n{}",
        node.log()
    );
    assert!(
        logged("admin HTTPS handshake failed"),
        "no admin HTTPS revocation logged:\n{}",
        node.log()
    );
    assert!(
        logged("MQTT TLS handshake failed"),
        "no MQTT revocation logged:\n{}",
        node.log()
    );
    // The node still serves the valid certificate after the refusals.
    let (ca, cert, key) = (s(&c.ca), s(&c.edge.0), s(&c.edge.1));
    let url = format!("https://{}/health", node.http_addr());
    let (code, body, err) = curl(&["--cacert", &ca, "--cert", &cert, "--key", &key, &url]);
    assert_eq!(code, 0, "{err}\n{}", node.log());
    assert!(!body.is_empty(), "empty /health");
    drop(node);

    // Broken on purpose: a node that drops its CRLs lets the revoked certificate in.
    let broken = Launch {
        program: Some(rill_failpoints_bin()),
        env: vec![("RILL_FAILPOINTS".into(), "tls_ignore_crls".into())],
        ..Launch::default()
    };
    let node = Node::start_launched(broken, &["--config", &s(&path)]);
    let (valid, revoked) = crl_round(&node, &c, "crl-b", "accepted");
    assert!(valid.0 == 0 && valid.1.ends_with("200"), "valid: {valid:?}");
    assert!(
        revoked.0 == 0 && revoked.1.ends_with("200"),
        "the broken node refused the revoked certificate: {revoked:?}\n{}",
        node.log()
    );
    assert!(
        node.log().contains("failpoint tls_ignore_crls"),
        "{}",
        node.log()
    );
}

#[test]
fn bad_crl_settings_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = certs(dir.path());
    let (cert, key) = (s(&c.server.0), s(&c.server.1));

    // crl_files without client_ca: `rill config validate` names the line, `serve` refuses.
    let no_ca = dir.path().join("no-ca.toml");
    std::fs::write(
        &no_ca,
        format!(
            "[listeners]\nhttp = \"127.0.0.1:0\"\n\
             kafka_tls = {{ cert = {cert:?}, key = {key:?}, crl_files = [{:?}] }}\n",
            s(&c.crl_pem)
        ),
    )
    .expect("write config");
    let out = rill_cli("", &["config", "validate", &s(&no_ca)], b"");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("no-ca.toml:3:")
            && stderr.contains("listeners.kafka_tls.crl_files")
            && stderr.contains("needs client_ca"),
        "{stderr}"
    );
    let serve = |config: &Path| {
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("data dir");
        let mut cmd = Command::new(rill_bin());
        cmd.args(["serve", "--config", &s(config), "--data-dir", &s(&data)])
            .args(["--key-file", &s(&dir.path().join("k.key"))])
            .args([
                "--kafka-listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
            ])
            .args(["--mqtt-listen", "127.0.0.1:0"]);
        let out = run_with_timeout(cmd, b"", Duration::from_secs(30)).expect("rill serve");
        assert!(!out.status.success(), "started with {}", config.display());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let stderr = serve(&no_ca);
    assert!(stderr.contains("needs client_ca"), "{stderr}");

    // A CRL file that is not a CRL (a certificate, DER-less garbage): start fails naming it.
    let garbage = dir.path().join("garbage.crl");
    std::fs::write(&garbage, b"\x30\x03\x02\x01\x01").expect("write");
    for bad in [&garbage, &c.ca, &dir.path().join("missing.crl")] {
        let config = dir.path().join("bad-crl.toml");
        std::fs::write(
            &config,
            format!(
                "[listeners]\n\
                 kafka_tls = {{ cert = {cert:?}, key = {key:?}, client_ca = {:?}, crl_files = [{:?}] }}\n",
                s(&c.ca),
                s(bad)
            ),
        )
        .expect("write config");
        let stderr = serve(&config);
        assert!(
            stderr.contains(&s(bad)),
            "{} not named:\n{stderr}",
            bad.display()
        );
    }
}
