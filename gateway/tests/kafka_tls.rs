//! The Kafka listener over TLS (rustls, ring), with a self-signed certificate made by rcgen.

mod common;

use std::sync::Arc;

use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use rill_client::Connection;
use rill_gateway::config::TlsFiles;
use rill_gateway::serve::Node;
use rustls_pki_types::{CertificateDer, ServerName};

#[tokio::test]
async fn tls_listener_serves_kafka() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_path = dir.path().join("server.pem");
    let key_path = dir.path().join("server.key");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let settings = common::settings(
        dir.path(),
        Some(TlsFiles {
            cert: cert_path,
            key: key_path,
            client_ca: None,
            crl_files: Vec::new(),
        }),
    );
    let node = Node::start(settings).await.unwrap();

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(cert.cert.der().to_vec()))
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(node.kafka_addr)
        .await
        .unwrap();
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let mut c = Connection::from_stream("localhost", tls);
    let resp: ApiVersionsResponse = c
        .send_with_version(&ApiVersionsRequest::default(), 3)
        .await
        .unwrap();
    assert_eq!(resp.error_code, 0);

    // A plaintext client on the TLS port gets nowhere, and the node keeps serving TLS clients.
    let mut plain = common::connect(node.kafka_addr).await;
    plain
        .write_request(&ApiVersionsRequest::default(), 3)
        .await
        .unwrap();
    assert!(plain.is_closed(common::CLOSE_WAIT).await);
    let resp: ApiVersionsResponse = c
        .send_with_version(&ApiVersionsRequest::default(), 3)
        .await
        .unwrap();
    assert_eq!(resp.error_code, 0);
    node.shutdown().await.unwrap();
}
