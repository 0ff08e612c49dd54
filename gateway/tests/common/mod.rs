//! Shared helpers of the gateway integration tests: an in-process node on free ports and a tiny
//! Kafka client built on the kafka-protocol crate.
#![allow(dead_code)]

use std::path::Path;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::Compression;
use rill_core::batch::{BatchBuilder, Headers};
use rill_gateway::config::{FileConfig, NodeSettings, Overrides, TlsFiles};
use rill_gateway::serve::Node;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

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

/// One Kafka connection.
pub struct Client<S> {
    pub stream: S,
    next_correlation: i32,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    pub fn new(stream: S) -> Self {
        Client {
            stream,
            next_correlation: 1,
        }
    }

    /// Write one raw frame (length prefix added).
    pub async fn send_raw(&mut self, payload: &[u8]) -> std::io::Result<()> {
        let mut buf = BytesMut::with_capacity(payload.len() + 4);
        buf.put_i32(payload.len() as i32);
        buf.put_slice(payload);
        self.stream.write_all(&buf).await?;
        self.stream.flush().await
    }

    /// Read one response frame; `None` when the server closed the connection.
    pub async fn read_frame(&mut self) -> Option<Bytes> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).await.ok()?;
        let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut body).await.ok()?;
        Some(Bytes::from(body))
    }

    /// Encode and send a request; returns its correlation id.
    pub async fn send<T: Encodable>(&mut self, key: ApiKey, version: i16, body: &T) -> i32 {
        let correlation_id = self.next_correlation;
        self.next_correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("rill-test")));
        let mut buf = BytesMut::new();
        header
            .encode(&mut buf, key.request_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        self.send_raw(&buf).await.unwrap();
        correlation_id
    }

    /// Read and decode a response to `key` at `version`, checking the correlation id.
    pub async fn recv<R: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        correlation_id: i32,
    ) -> R {
        let mut frame = self.read_frame().await.expect("connection closed");
        let header_version = key.response_header_version(version);
        let got = frame.get_i32();
        assert_eq!(got, correlation_id, "correlation id");
        if header_version >= 1 {
            // Tagged fields of the flexible header: none are sent.
            assert_eq!(frame.get_u8(), 0);
        }
        R::decode(&mut frame, version).unwrap()
    }

    /// Send and wait for the response.
    pub async fn call<T: Encodable, R: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        body: &T,
    ) -> R {
        let id = self.send(key, version, body).await;
        self.recv(key, version, id).await
    }

    /// True when the server closes the connection (EOF or reset) within 10 s; bytes sent before
    /// the close (a TLS alert, say) are skipped.
    pub async fn is_closed(&mut self) -> bool {
        let mut b = [0u8; 512];
        let drained = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            loop {
                match self.stream.read(&mut b).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue,
                }
            }
        });
        drained.await.is_ok()
    }
}

/// Connect over plain TCP.
pub async fn connect(addr: std::net::SocketAddr) -> Client<tokio::net::TcpStream> {
    Client::new(tokio::net::TcpStream::connect(addr).await.unwrap())
}

/// A v2 batch of `values` (keys `k<i>`, one header), with `compression`.
pub fn batch(values: &[&str], compression: Compression) -> Bytes {
    let mut b = BatchBuilder::new().compression(compression.into());
    for (i, v) in values.iter().enumerate() {
        let mut headers = Headers::new();
        headers.insert(
            StrBytes::from_static_str("h"),
            Some(Bytes::from_static(b"hv")),
        );
        b.push_with_headers(
            Some(Bytes::from(format!("k{i}"))),
            Some(Bytes::from(v.to_string())),
            1_700_000_000_000 + i as i64,
            headers,
        );
    }
    b.build().unwrap()
}
