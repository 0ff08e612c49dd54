//! Shared helpers of the gateway integration tests: an in-process node on free ports, raw
//! connections of `rill-client` and record batches.
#![allow(dead_code)]

use std::path::Path;

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;
use rill_client::{ConnectOptions, Connection};
use rill_core::batch::{BatchBuilder, Headers};
use rill_gateway::config::{FileConfig, NodeSettings, Overrides, TlsFiles};
use rill_gateway::serve::Node;

/// A fixed test master key (64 hex chars).
pub const TEST_KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// Settings for a node in `dir` on loopback port 0.
pub fn settings(dir: &Path, tls: Option<TlsFiles>) -> NodeSettings {
    let flags = Overrides {
        data_dir: Some(dir.join("data")),
        kafka_listen: Some("127.0.0.1:0".parse().unwrap()),
        http_listen: Some("127.0.0.1:0".parse().unwrap()),
        mqtt_listen: Some("127.0.0.1:0".parse().unwrap()),
        node_id: Some(0),
        node_name: Some("test".into()),
        master_key_env: Some(TEST_KEY.into()),
        ..Overrides::default()
    };
    let mut s = NodeSettings::resolve(&FileConfig::default(), &flags).unwrap();
    s.kafka_tls = tls;
    s.socket_request_max_bytes = 1024 * 1024;
    s
}

/// Start a node in `dir`.
pub async fn start(dir: &Path) -> Node {
    Node::start(settings(dir, None)).await.unwrap()
}

/// How long a test waits for the node to close a connection.
pub const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// A raw connection over plain TCP (nothing sent yet: no ApiVersions, no SASL).
pub async fn connect(addr: std::net::SocketAddr) -> Connection {
    Connection::open(
        &addr.to_string(),
        &ConnectOptions::default().with_client_id("rill-test"),
    )
    .await
    .unwrap()
}

/// A v2 batch of `values` (keys `k<i>`, one header), with `compression`.
pub fn batch(values: &[&str], compression: Compression) -> Bytes {
    let mut b = BatchBuilder::new().compression(compression.into());
    for (i, v) in values.iter().enumerate() {
        let headers: Headers = vec![(
            StrBytes::from_static_str("h"),
            Some(Bytes::from_static(b"hv")),
        )];
        b.push_with_headers(
            Some(Bytes::from(format!("k{i}"))),
            Some(Bytes::from(v.to_string())),
            1_700_000_000_000 + i as i64,
            headers,
        );
    }
    b.build().unwrap()
}
