//! Kafka ACLs against the real binary with the authorizer on and a SASL/SCRAM listener:
//! confluent-kafka's AdminClient and kafka-python's KafkaAdminClient create, describe and delete
//! ACLs; PREFIXED WRITE, DENY over ALLOW, GROUP READ, hidden metadata, the super user and an open
//! producer that starts delivering once its ACL exists (`tests/py/acl_clients.py`); on one open
//! connection a refused Produce succeeds after an ACL is added (and fails again once removed),
//! Metadata auto-creation needs CREATE and reports the caller's authorized operations (KIP-430);
//! malformed ACL filters get
//! INVALID_REQUEST and change nothing; `rill acl add|list|remove`; denials are counted in
//! `/metrics`.

mod sasl_common;

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest, ProduceRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rill_client::security::{SaslCredentials, SaslMechanism, TargetSecurity};
use rill_client::{ConnectOptions, Connection};
use rill_core::batch::BatchBuilder;
use rill_core::scram::ScramMechanism;
use rill_tests::Node;
use sasl_common::add_user;

const PASSWORD: &str = "acl-test-s3cret";

/// A node with the authorizer on (`[kafka] authorizer = true` from `config`, or the flag),
/// SCRAM-SHA-512 required, users admin (super user), alice and bob.
fn node(config_text: &str, flags: &[&str]) -> (Node, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("node.toml");
    std::fs::write(&config, config_text).expect("write config");
    let config = config.display().to_string();
    let mut args = vec!["--config", config.as_str()];
    args.extend_from_slice(flags);
    let mut node = Node::start_with(&args);
    node.terminate();
    for user in ["admin", "alice", "bob"] {
        add_user(&node.data_dir(), user, PASSWORD, &[]);
    }
    node.restart();
    (node, dir)
}

const CONFIG: &str = "[kafka]\nsasl = true\nsasl_mechanisms = [\"SCRAM-SHA-512\"]\n\
                      authorizer = true\nsuper_users = [\"User:admin\"]\n";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

async fn connect(addr: &str, user: &str) -> Connection {
    let security = TargetSecurity {
        tls: None,
        sasl: Some(SaslCredentials {
            mechanism: SaslMechanism::Scram(ScramMechanism::Sha512),
            username: user.to_string(),
            password: PASSWORD.to_string(),
        }),
    };
    let opts = ConnectOptions::default()
        .with_security(security)
        .with_timeout(Duration::from_secs(30));
    Connection::connect(addr, &opts).await.expect("connect")
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// The error code of a one-record Produce to partition 0 of `topic` on `conn`.
async fn produce_code(conn: &mut Connection, topic: &str) -> i16 {
    let mut b = BatchBuilder::new();
    b.push(None, Some(Bytes::from_static(b"v")), 0);
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(s(topic)))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(b.build().expect("batch")))])]);
    let resp = conn.send(&req).await.expect("produce");
    resp.responses[0].partition_responses[0].error_code
}

/// A CreateAcls creation with wire codes.
fn creation(rt: i8, name: &str, pt: i8, principal: &str, op: i8, perm: i8) -> AclCreation {
    AclCreation::default()
        .with_resource_type(rt)
        .with_resource_name(s(name))
        .with_resource_pattern_type(pt)
        .with_principal(s(principal))
        .with_host(s("*"))
        .with_operation(op)
        .with_permission_type(perm)
}

fn describe_all() -> DescribeAclsRequest {
    DescribeAclsRequest::default()
        .with_resource_name_filter(None)
        .with_principal_filter(None)
        .with_host_filter(None)
        .with_resource_type_filter(1)
        .with_pattern_type_filter(1)
        .with_operation(1)
        .with_permission_type(1)
}

/// `GET /metrics` on the node's admin listener.
fn metrics(node: &Node) -> String {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(node.http_addr()).expect("connect admin HTTP");
    c.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(c, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").expect("request");
    let mut out = String::new();
    c.read_to_string(&mut out).expect("read");
    out
}

#[test]
fn real_clients_manage_acls_and_are_held_to_them() {
    let (node, _dir) = node(CONFIG, &[]);
    for phase in ["admin-confluent", "admin-kafka-python", "scenario"] {
        let out = node.python(
            "acl_clients.py",
            &["--phase", phase, "--password", PASSWORD],
        );
        assert!(out.trim_end().ends_with("OK"), "{phase}: {out}");
    }
    let text = metrics(&node);
    let denied = text
        .lines()
        .find(|l| {
            l.starts_with("rill_kafka_authorization_denials_total{")
                && l.contains("operation=\"WRITE\"")
                && l.contains("resource_type=\"TOPIC\"")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(denied >= 1.0, "WRITE TOPIC denials not counted:\n{text}");
    assert!(
        node.log().contains("authorization denied"),
        "no denial logged:\n{}",
        node.log()
    );
}

#[test]
fn acl_change_takes_effect_on_an_open_connection_and_bad_filters_change_nothing() {
    let (node, _dir) = node(CONFIG, &[]);
    let addr = node.kafka_addr().to_string();
    rt().block_on(async {
        let mut admin = connect(&addr, "admin").await;
        let create = admin
            .send(
                &kafka_protocol::messages::CreateTopicsRequest::default()
                    .with_topics(vec![
                        kafka_protocol::messages::create_topics_request::CreatableTopic::default()
                            .with_name(TopicName(s("live.t")))
                            .with_num_partitions(1)
                            .with_replication_factor(1),
                    ])
                    .with_timeout_ms(10_000),
            )
            .await
            .expect("create topic");
        assert_eq!(create.topics[0].error_code, 0);

        // bob's connection stays open across the ACL change.
        let mut bob = connect(&addr, "bob").await;
        assert_eq!(
            produce_code(&mut bob, "live.t").await,
            ResponseError::TopicAuthorizationFailed.code()
        );
        // ALLOW User:bob WRITE on TOPIC live.t (LITERAL).
        let resp = admin
            .send(
                &CreateAclsRequest::default()
                    .with_creations(vec![creation(2, "live.t", 3, "User:bob", 4, 3)]),
            )
            .await
            .expect("create acls");
        assert_eq!(resp.results[0].error_code, 0);
        assert_eq!(produce_code(&mut bob, "live.t").await, 0);
        // bob may not manage ACLs.
        let resp = bob
            .send(
                &CreateAclsRequest::default()
                    .with_creations(vec![creation(2, "*", 3, "User:bob", 2, 3)]),
            )
            .await
            .expect("create acls as bob");
        assert_eq!(
            resp.results[0].error_code,
            ResponseError::ClusterAuthorizationFailed.code()
        );

        // Malformed bindings and filters: INVALID_REQUEST, nothing changes.
        let before = admin.send(&describe_all()).await.expect("describe");
        assert_eq!(before.error_code, 0);
        assert_eq!(before.resources.len(), 1, "{before:?}");
        let resp = admin
            .send(&CreateAclsRequest::default().with_creations(vec![
                creation(2, "t", 2, "User:x", 3, 3), // MATCH is for filters only
                creation(0, "t", 3, "User:x", 3, 3), // UNKNOWN resource type
                creation(2, "t", 3, "nobody", 3, 3), // no principal type
                creation(4, "other", 3, "User:x", 7, 3), // CLUSTER is kafka-cluster
                creation(2, "t", 3, "User:x", 1, 3), // ANY operation
            ]))
            .await
            .expect("create malformed");
        for r in &resp.results {
            assert_eq!(r.error_code, ResponseError::InvalidRequest.code(), "{r:?}");
            assert!(r.error_message.is_some(), "{r:?}");
        }
        let resp = admin
            .send(&describe_all().with_pattern_type_filter(0))
            .await
            .expect("describe unknown pattern");
        assert_eq!(resp.error_code, ResponseError::InvalidRequest.code());
        let resp = admin
            .send(&describe_all().with_operation(77))
            .await
            .expect("describe unknown operation");
        assert_eq!(resp.error_code, ResponseError::InvalidRequest.code());
        let everything = DeleteAclsFilter::default()
            .with_resource_name_filter(None)
            .with_principal_filter(None)
            .with_host_filter(None)
            .with_resource_type_filter(1)
            .with_pattern_type_filter(1)
            .with_operation(1)
            .with_permission_type(1);
        let resp = admin
            .send(&DeleteAclsRequest::default().with_filters(vec![
                everything.clone().with_resource_type_filter(0),
                everything.clone().with_permission_type(9),
            ]))
            .await
            .expect("delete malformed");
        for r in &resp.filter_results {
            assert_eq!(r.error_code, ResponseError::InvalidRequest.code(), "{r:?}");
            assert!(r.matching_acls.is_empty());
        }
        let after = admin.send(&describe_all()).await.expect("describe");
        assert_eq!(
            after.resources, before.resources,
            "malformed requests changed ACLs"
        );
        assert_eq!(produce_code(&mut bob, "live.t").await, 0);

        // Auto-creation through Metadata needs CREATE; authorized operations are bob's (KIP-430).
        let metadata = |name: &str| {
            kafka_protocol::messages::MetadataRequest::default()
                .with_topics(Some(vec![
                    kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                        .with_name(Some(TopicName(s(name)))),
                ]))
                .with_allow_auto_topic_creation(true)
                .with_include_topic_authorized_operations(true)
        };
        let resp = admin
            .send(
                &CreateAclsRequest::default()
                    .with_creations(vec![creation(2, "auto.", 4, "User:bob", 8, 3)]),
            )
            .await
            .expect("allow DESCRIBE auto.*");
        assert_eq!(resp.results[0].error_code, 0);
        let resp = bob.send(&metadata("auto.t")).await.expect("metadata");
        assert_eq!(
            resp.topics[0].error_code,
            ResponseError::TopicAuthorizationFailed.code(),
            "auto-created without CREATE"
        );
        let resp = admin
            .send(
                &CreateAclsRequest::default()
                    .with_creations(vec![creation(2, "auto.", 4, "User:bob", 5, 3)]),
            )
            .await
            .expect("allow CREATE auto.*");
        assert_eq!(resp.results[0].error_code, 0);
        let resp = bob.send(&metadata("auto.t")).await.expect("metadata");
        assert_eq!(resp.topics[0].error_code, 0, "{resp:?}");
        assert_eq!(
            resp.topics[0].topic_authorized_operations,
            (1 << 5) | (1 << 8),
            "bob's operations on auto.t: CREATE and DESCRIBE"
        );
        let resp = bob.send(&metadata("live.t")).await.expect("metadata");
        assert_eq!(
            resp.topics[0].topic_authorized_operations,
            (1 << 4) | (1 << 8),
            "bob's operations on live.t: WRITE and the DESCRIBE it implies"
        );

        // Removing the ACL takes effect on the same connection too.
        let resp = admin
            .send(&DeleteAclsRequest::default().with_filters(vec![everything
                        .with_principal_filter(Some(s("User:bob")))
                        .with_resource_name_filter(Some(s("live.t")))]))
            .await
            .expect("delete");
        assert_eq!(resp.filter_results[0].matching_acls.len(), 1);
        assert_eq!(
            produce_code(&mut bob, "live.t").await,
            ResponseError::TopicAuthorizationFailed.code()
        );
    });
}

fn cli(node: &Node, user: &str, args: &[&str]) -> std::process::Output {
    let password = format!("sasl.password={PASSWORD}");
    let mut full = vec![
        "acl",
        "--sasl-mechanism",
        "SCRAM-SHA-512",
        "--sasl-username",
        user,
        "-X",
        &password,
    ];
    full.extend_from_slice(args);
    node.cli(&full, b"")
}

fn cli_ok(node: &Node, args: &[&str]) -> String {
    let out = cli(node, "admin", args);
    assert!(
        out.status.success(),
        "rill acl {}: {}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn rill_acl_add_list_remove_round_trip() {
    // The flag turns the authorizer on; the file only names the super user.
    let config = "[kafka]\nsasl = true\nsasl_mechanisms = [\"SCRAM-SHA-512\"]\n\
                  super_users = [\"User:admin\"]\n";
    let (node, _dir) = node(config, &["--kafka-authorizer"]);
    let out = cli_ok(
        &node,
        &[
            "add",
            "--principal",
            "User:carol",
            "--operation",
            "READ,DESCRIBE",
            "--topic",
            "sensors.",
            "--pattern",
            "prefixed",
        ],
    );
    assert!(out.contains("added 2 ACL(s)"), "{out}");
    cli_ok(
        &node,
        &[
            "add",
            "--principal",
            "User:carol",
            "--operation",
            "READ",
            "--group",
            "g1",
            "--deny",
        ],
    );
    let out = cli_ok(&node, &["list", "--json"]);
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(rows.len(), 3, "{out}");
    assert!(rows
        .iter()
        .any(|r| r["resource_type"] == "GROUP" && r["permission"] == "DENY" && r["name"] == "g1"));
    let out = cli_ok(
        &node,
        &["list", "--topic", "sensors.x", "--pattern", "match"],
    );
    assert!(
        out.contains("PREFIXED") && out.contains("User:carol"),
        "{out}"
    );
    assert!(!out.contains("GROUP"), "{out}");

    // A user who is not a super user and has no ACL may not list.
    let out = cli(&node, "alice", &["list"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("CLUSTER_AUTHORIZATION_FAILED"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // An unfiltered remove is refused by the CLI before it asks the broker.
    assert!(!cli(&node, "admin", &["remove"]).status.success());

    let out = cli_ok(
        &node,
        &["remove", "--topic", "sensors.", "--pattern", "prefixed"],
    );
    assert!(out.contains("removed 2 ACL(s)"), "{out}");
    let out = cli_ok(&node, &["remove", "--principal", "User:carol"]);
    assert!(out.contains("removed 1 ACL(s)"), "{out}");
    let out = cli_ok(&node, &["list", "--json"]);
    assert!(out.trim().is_empty(), "{out}");

    // ACLs survive a restart (they live in the metadata database).
    cli_ok(
        &node,
        &[
            "add",
            "--principal",
            "User:dave",
            "--operation",
            "ALTER",
            "--cluster",
        ],
    );
    let mut node = node;
    node.restart();
    let out = cli_ok(&node, &["list", "--cluster"]);
    assert!(
        out.contains("User:dave") && out.contains("kafka-cluster"),
        "{out}"
    );
}
