//! SASL's legacy flow (SaslHandshake v0, then raw length-prefixed tokens instead of
//! SaslAuthenticate requests) on an in-process node, PLAIN and SCRAM, and its failure.
//! The KIP-152 flow is tested with real clients in `tests/tests/kafka_sasl.rs`.

mod common;

use std::sync::Arc;

use kafka_protocol::messages::{
    MetadataRequest, MetadataResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use rill_client::Connection;
use rill_core::credentials::CredentialStore;
use rill_core::metadata::MetaStore;
use rill_core::scram::{ScramClient, ScramCredential, ScramMechanism};
use rill_gateway::kafka::auth::Mechanism;
use rill_gateway::serve::Node;

async fn node(dir: &std::path::Path) -> Node {
    // Users are written before the node opens (and locks) the metadata database.
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    {
        let store = CredentialStore::open(Arc::new(MetaStore::open(&data).unwrap())).unwrap();
        for m in ScramMechanism::ALL {
            let c = ScramCredential::generate(m, b"pw", 4096).unwrap();
            store.upsert("alice", m, c).unwrap();
        }
    }
    let mut settings = common::settings(dir, None);
    settings.kafka_sasl = Some(vec![
        Mechanism::Plain,
        Mechanism::Scram(ScramMechanism::Sha256),
    ]);
    Node::start(settings).await.unwrap()
}

async fn handshake_v0(c: &mut Connection, mechanism: &'static str) -> i16 {
    let resp: SaslHandshakeResponse = c
        .send_with_version(
            &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism)),
            0,
        )
        .await
        .unwrap();
    resp.error_code
}

#[tokio::test]
async fn legacy_raw_token_flow() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path()).await;

    // PLAIN: one raw token, an empty raw answer, then requests are served.
    let mut c = common::connect(node.kafka_addr).await;
    assert_eq!(handshake_v0(&mut c, "PLAIN").await, 0);
    c.send_frame(b"\0alice\0pw").await.unwrap();
    assert_eq!(c.read_frame().await.unwrap().len(), 0);
    let md: MetadataResponse = c
        .send_with_version(&MetadataRequest::default(), 12)
        .await
        .unwrap();
    assert_eq!(md.brokers.len(), 1);

    // SCRAM-SHA-256 over raw tokens, with the server's signature checked.
    let mut c = common::connect(node.kafka_addr).await;
    assert_eq!(handshake_v0(&mut c, "SCRAM-SHA-256").await, 0);
    let (mut scram, first) = ScramClient::start(ScramMechanism::Sha256, "alice", b"pw").unwrap();
    c.send_frame(&first).await.unwrap();
    let server_first = c.read_frame().await.unwrap();
    c.send_frame(&scram.respond(&server_first).unwrap())
        .await
        .unwrap();
    let server_final = c.read_frame().await.unwrap();
    scram.finish(&server_final).unwrap();
    let md: MetadataResponse = c
        .send_with_version(&MetadataRequest::default(), 12)
        .await
        .unwrap();
    assert_eq!(md.brokers.len(), 1);

    // A wrong password closes the connection without an answer; the others keep working.
    let mut bad = common::connect(node.kafka_addr).await;
    assert_eq!(handshake_v0(&mut bad, "PLAIN").await, 0);
    bad.send_frame(b"\0alice\0wrong").await.unwrap();
    assert!(bad.is_closed(common::CLOSE_WAIT).await);
    // SCRAM-SHA-512 is not enabled here: UNSUPPORTED_SASL_MECHANISM, then the connection closes.
    let mut other = common::connect(node.kafka_addr).await;
    assert_eq!(handshake_v0(&mut other, "SCRAM-SHA-512").await, 33);
    assert!(other.is_closed(common::CLOSE_WAIT).await);
    let md: MetadataResponse = c
        .send_with_version(&MetadataRequest::default(), 12)
        .await
        .unwrap();
    assert_eq!(md.brokers.len(), 1);
    node.shutdown().await.unwrap();
}
