//! SASL on the Kafka listener against the real binary: confluent-kafka (SCRAM-SHA-256,
//! SCRAM-SHA-512, PLAIN) and kafka-python (SCRAM-SHA-512, PLAIN) produce and consume; a wrong
//! password gets an authentication error while an authenticated client keeps working; requests
//! before authentication close the connection; SASL_SSL (TLS listener + SCRAM); `rill user`;
//! AdminClient's alter/describe_user_scram_credentials on a running node; the `rill` CLI over
//! SASL_SSL with its connection flags, `-X` and `-F`.

mod sasl_common;

use std::time::Duration;

use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, MetadataRequest};
use rill_client::security::{
    client_config, SaslCredentials, SaslMechanism, TargetSecurity, TlsSettings,
};
use rill_client::{ClientError, ConnectOptions, Connection};
use rill_core::scram::ScramMechanism;
use rill_tests::{rill_cli, Node};
use sasl_common::{node_with_user, sasl_ssl_config, script, self_signed, PASSWORD, USER};

const TIMEOUT: Duration = Duration::from_secs(30);

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Connect to `addr` with `security`.
async fn connect_with(addr: &str, security: &TargetSecurity) -> Result<Connection, ClientError> {
    let opts = ConnectOptions::default()
        .with_security(security.clone())
        .with_timeout(TIMEOUT);
    Connection::connect(addr, &opts).await
}

fn scram(mechanism: ScramMechanism, password: &str) -> TargetSecurity {
    TargetSecurity {
        tls: None,
        sasl: Some(SaslCredentials {
            mechanism: SaslMechanism::Scram(mechanism),
            username: USER.to_string(),
            password: password.to_string(),
        }),
    }
}

#[test]
fn real_clients_authenticate_with_every_mechanism() {
    let node = node_with_user(&["--kafka-sasl", "SCRAM-SHA-256,SCRAM-SHA-512,PLAIN"]);
    let log = || node.log();
    for (client, mechanism) in [
        ("confluent", "SCRAM-SHA-256"),
        ("confluent", "SCRAM-SHA-512"),
        ("confluent", "PLAIN"),
        ("kafka-python", "SCRAM-SHA-512"),
        ("kafka-python", "PLAIN"),
    ] {
        let out = script(
            node.kafka_addr(),
            &[
                "--phase",
                "roundtrip",
                "--client",
                client,
                "--mechanism",
                mechanism,
                "--username",
                USER,
                "--password",
                PASSWORD,
            ],
            log,
        );
        assert!(out.contains("round-tripped"), "{client} {mechanism}: {out}");
    }
}

#[test]
fn wrong_password_is_refused_while_others_keep_working() {
    let node = node_with_user(&["--kafka-sasl", "SCRAM-SHA-256"]);
    let out = script(
        node.kafka_addr(),
        &[
            "--phase",
            "wrong-password",
            "--mechanism",
            "SCRAM-SHA-256",
            "--username",
            USER,
            "--password",
            PASSWORD,
        ],
        || node.log(),
    );
    assert!(out.contains("OK"), "{out}");
    assert!(
        node.log().contains("SASL authentication failed"),
        "the node logs the failure:\n{}",
        node.log()
    );
}

#[test]
fn requests_before_authentication_close_the_connection() {
    let node = node_with_user(&["--kafka-sasl", "SCRAM-SHA-512,SCRAM-SHA-256"]);
    let addr = node.kafka_addr().to_string();
    rt().block_on(async {
        // ApiVersions is allowed and advertises the SASL APIs.
        let mut c = Connection::connect(&addr, &ConnectOptions::default().with_timeout(TIMEOUT))
            .await
            .unwrap();
        let versions = c
            .send_with_version(&ApiVersionsRequest::default(), 3)
            .await
            .unwrap();
        let range = |key: ApiKey| {
            versions
                .api_keys
                .iter()
                .find(|k| k.api_key == key as i16)
                .map(|k| (k.min_version, k.max_version))
        };
        assert_eq!(range(ApiKey::SaslHandshake), Some((0, 1)));
        assert_eq!(range(ApiKey::SaslAuthenticate), Some((0, 2)));
        // Metadata before authentication: the node closes the connection.
        let refused = c.send_with_version(&MetadataRequest::default(), 12).await;
        assert!(
            matches!(refused, Err(ClientError::Io { .. })),
            "{refused:?}"
        );

        // A wrong password: SASL_AUTHENTICATION_FAILED with Kafka's message.
        let err = connect_with(&addr, &scram(ScramMechanism::Sha512, "nope"))
            .await
            .err()
            .expect("wrong password must fail");
        let msg = err.to_string();
        assert!(matches!(err, ClientError::Auth { .. }), "{msg}");
        assert!(msg.contains("error code 58"), "{msg}");
        assert!(msg.contains("invalid credentials"), "{msg}");

        // The right password (both hashes): Metadata works.
        for m in ScramMechanism::ALL {
            let mut c = connect_with(&addr, &scram(m, PASSWORD)).await.unwrap();
            let md = c
                .send_with_version(&MetadataRequest::default(), 12)
                .await
                .unwrap();
            assert_eq!(md.brokers.len(), 1);
        }
    });
    assert!(
        node.log().contains("before SASL authentication"),
        "{}",
        node.log()
    );
}

#[test]
fn user_command_manages_credentials_offline() {
    let mut node = Node::start_with(&["--kafka-sasl", "SCRAM-SHA-256"]);
    let dir = node.data_dir().display().to_string();
    // The running node holds the database: the CLI says to stop it.
    let out = rill_cli(
        "",
        &["user", "add", "bob", "--data-dir", &dir, "--password", "pw"],
        b"",
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("stop it first"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    node.terminate();
    sasl_common::add_user(&node.data_dir(), "bob", "pw-bob", &[]);
    sasl_common::add_user(
        &node.data_dir(),
        "carol",
        "pw-carol",
        &["--mechanism", "SCRAM-SHA-512", "--iterations", "4096"],
    );
    let list = rill_cli("", &["user", "list", "--data-dir", &dir, "--json"], b"");
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).expect("json");
    assert_eq!(list[0]["name"], "bob");
    assert_eq!(list[0]["credentials"].as_array().map(Vec::len), Some(2));
    assert_eq!(list[1]["name"], "carol");
    assert_eq!(list[1]["credentials"][0]["mechanism"], "SCRAM-SHA-512");
    assert_eq!(list[1]["credentials"][0]["iterations"], 4096);
    let del = rill_cli("", &["user", "delete", "carol", "--data-dir", &dir], b"");
    assert!(del.status.success());
    let again = rill_cli("", &["user", "delete", "carol", "--data-dir", &dir], b"");
    assert!(!again.status.success());
    let low = rill_cli(
        "",
        &[
            "user",
            "add",
            "dave",
            "--data-dir",
            &dir,
            "--password",
            "x",
            "--iterations",
            "10",
        ],
        b"",
    );
    assert!(!low.status.success());
    node.restart();
    let addr = node.kafka_addr().to_string();
    rt().block_on(async {
        let bob = TargetSecurity {
            tls: None,
            sasl: Some(SaslCredentials {
                mechanism: SaslMechanism::Scram(ScramMechanism::Sha256),
                username: "bob".into(),
                password: "pw-bob".into(),
            }),
        };
        connect_with(&addr, &bob).await.unwrap();
        let carol = TargetSecurity {
            tls: None,
            sasl: Some(SaslCredentials {
                mechanism: SaslMechanism::Scram(ScramMechanism::Sha256),
                username: "carol".into(),
                password: "pw-carol".into(),
            }),
        };
        let err = connect_with(&addr, &carol).await.err();
        assert!(matches!(err, Some(ClientError::Auth { .. })), "{err:?}");
    });
}

#[test]
fn admin_client_manages_scram_users_on_a_running_node() {
    let node = node_with_user(&["--kafka-sasl", "SCRAM-SHA-256,SCRAM-SHA-512"]);
    let out = script(
        node.kafka_addr(),
        &[
            "--phase",
            "admin",
            "--mechanism",
            "SCRAM-SHA-512",
            "--username",
            USER,
            "--password",
            PASSWORD,
        ],
        || node.log(),
    );
    assert!(out.contains("SCRAM users altered"), "{out}");
}

#[test]
fn sasl_ssl_with_scram() {
    let scratch = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(scratch.path());
    let config = sasl_ssl_config(scratch.path(), &cert, &key, &["SCRAM-SHA-512"]);
    let config = config.display().to_string();
    let node = node_with_user(&["--config", &config]);
    let ca = cert.display().to_string();
    let out = script(
        node.kafka_addr(),
        &[
            "--phase",
            "roundtrip",
            "--mechanism",
            "SCRAM-SHA-512",
            "--username",
            USER,
            "--password",
            PASSWORD,
            "--ca",
            &ca,
        ],
        || node.log(),
    );
    assert!(out.contains("round-tripped"), "{out}");
    let addr = node.kafka_addr().to_string();
    rt().block_on(async {
        let tls = TlsSettings {
            config: client_config(Some(&cert)).unwrap(),
            server_name: Some("localhost".into()),
        };
        let mut security = scram(ScramMechanism::Sha512, PASSWORD);
        security.tls = Some(tls);
        let mut c = connect_with(&addr, &security).await.unwrap();
        c.send_with_version(&MetadataRequest::default(), 12)
            .await
            .unwrap();
        // Plaintext SASL on the TLS port fails, and so does TLS with a CA that did not sign the
        // node's certificate: a clear handshake error.
        let plain = connect_with(&addr, &scram(ScramMechanism::Sha512, PASSWORD)).await;
        assert!(plain.is_err());
        let other = tempfile::tempdir().unwrap();
        let (other_ca, _) = self_signed(other.path());
        let mut untrusted = scram(ScramMechanism::Sha512, PASSWORD);
        untrusted.tls = Some(TlsSettings {
            config: client_config(Some(&other_ca)).unwrap(),
            server_name: None,
        });
        let err = connect_with(&addr, &untrusted)
            .await
            .err()
            .expect("an untrusted certificate must fail");
        assert!(matches!(err, ClientError::Tls { .. }), "{err}");
        assert!(
            err.to_string().contains("invalid peer certificate"),
            "{err}"
        );
    });
}

/// `rill` with the connection options: `args` plus `env`, its stdout and stderr.
fn rill(args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> (bool, String, String) {
    let mut cmd = std::process::Command::new(rill_tests::rill_bin());
    cmd.args(args)
        .env("NO_COLOR", "1")
        .env_remove("RILL_BROKERS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = rill_tests::run_with_timeout(cmd, stdin, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("rill {}: {e}", args.join(" ")));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn cli_reaches_a_sasl_ssl_listener_with_flags_and_properties() {
    let scratch = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(scratch.path());
    let config = sasl_ssl_config(scratch.path(), &cert, &key, &["SCRAM-SHA-512"]);
    let config = config.display().to_string();
    let node = node_with_user(&["--config", &config]);
    let addr = node.kafka_addr().to_string();
    let ca = cert.display().to_string();

    // Flags (the password from a variable); the server name is the certificate's DNS name.
    let flags = [
        "-b",
        &addr,
        "--tls",
        "--tls-ca-file",
        &ca,
        "--tls-server-name",
        "localhost",
        "--sasl-mechanism",
        "SCRAM-SHA-512",
        "--sasl-username",
        USER,
        "--sasl-password-env",
        "CLI_TEST_PASSWORD",
    ];
    let pw = [("CLI_TEST_PASSWORD", PASSWORD)];
    let with = |cmd: &[&str]| -> Vec<String> {
        cmd.iter()
            .chain(flags.iter())
            .map(|s| s.to_string())
            .collect()
    };
    let run = |args: Vec<String>, env: &[(&str, &str)], stdin: &[u8]| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        rill(&args, env, stdin)
    };
    let (ok, _, err) = run(with(&["topic", "create", "secure", "-p", "1"]), &pw, b"");
    assert!(ok, "topic create over SASL_SSL: {err}\n{}", node.log());
    let (ok, _, err) = run(with(&["produce", "secure"]), &pw, b"one\ntwo\n");
    assert!(ok, "produce over SASL_SSL: {err}");

    // kcat's -X with librdkafka names (the certificate also names 127.0.0.1).
    let props = [
        "-X",
        "security.protocol=SASL_SSL",
        "-X",
        &format!("ssl.ca.location={ca}"),
        "-X",
        "sasl.mechanism=SCRAM-SHA-512",
        "-X",
        &format!("sasl.username={USER}"),
    ];
    let right = format!("sasl.password={PASSWORD}");
    let consume = |extra: &[&str]| {
        let mut args = vec![
            "consume",
            "secure",
            "-o",
            "beginning",
            "-e",
            "-f",
            "%s\\n",
            "-b",
            &addr,
        ];
        args.extend_from_slice(&props);
        args.extend_from_slice(extra);
        rill(&args, &[], b"")
    };
    let (ok, out, err) = consume(&["-X", &right]);
    assert!(ok, "consume with -X: {err}");
    assert_eq!(out, "one\ntwo\n");

    // -F with a properties file; -X wins over -F, a flag over -X.
    let file = scratch.path().join("client.properties");
    std::fs::write(
        &file,
        format!(
            "# kcat -F\nbootstrap.servers={addr}\nsecurity.protocol=SASL_SSL\nssl.ca.location={ca}\n\
             sasl.mechanisms=SCRAM-SHA-512\nsasl.username={USER}\nsasl.password={PASSWORD}\n"
        ),
    )
    .unwrap();
    let file = file.display().to_string();
    let (ok, out, err) = rill(&["topic", "list", "-F", &file], &[], b"");
    assert!(
        ok && out.contains("secure"),
        "topic list with -F: {err}{out}"
    );
    let wrong_file = scratch.path().join("wrong.properties");
    std::fs::write(
        &wrong_file,
        std::fs::read_to_string(&file)
            .unwrap()
            .replace(PASSWORD, "wrong"),
    )
    .unwrap();
    let wrong_file = wrong_file.display().to_string();
    let (ok, _, err) = rill(
        &["topic", "list", "-F", &wrong_file, "-X", &right],
        &[],
        b"",
    );
    assert!(ok, "-X wins over -F: {err}");
    let (ok, _, err) = rill(
        &[
            "topic",
            "list",
            "-F",
            &file,
            "-X",
            "sasl.username=mallory",
            "--sasl-username",
            USER,
        ],
        &[],
        b"",
    );
    assert!(ok, "a flag wins over -X: {err}");

    // A wrong password: non-zero exit naming the Kafka error.
    let (ok, _, err) = consume(&["-X", "sasl.password=wrong"]);
    assert!(!ok, "a wrong password must fail");
    assert!(err.contains("SASL_AUTHENTICATION_FAILED"), "{err}");
    let (ok, _, err) = rill(&["topic", "list", "-F", &wrong_file], &[], b"");
    assert!(!ok && err.contains("SASL_AUTHENTICATION_FAILED"), "{err}");
    // Plaintext on the TLS listener fails too.
    let (ok, _, _) = rill(&["topic", "list", "-b", &addr], &[], b"");
    assert!(!ok);
}
