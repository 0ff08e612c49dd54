//! A small Kafka-protocol client for the bridge: one TCP connection to one broker, typed
//! requests with fixed versions that Kafka 2.8+ and Rill both accept. [`Connection::connect_with`]
//! adds TLS and SASL ([`crate::security`]); [`Connection::connect`] is plaintext.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    RequestHeader, ResponseHeader, SaslAuthenticateRequest, SaslHandshakeRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use rill_core::scram::ScramClient;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::security::{self, SaslCredentials, SaslMechanism, TargetSecurity};

/// Errors talking to a target cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting or I/O failed.
    #[error("connection to {addr}: {source}")]
    Io {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// The peer did not answer in time.
    #[error("request to {0} timed out")]
    Timeout(String),
    /// Encoding or decoding failed.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The broker answered with an error code.
    #[error("{what}: error code {code}")]
    Kafka { what: String, code: i16 },
    /// The TLS handshake failed (untrusted certificate, wrong name, not a TLS listener, ...).
    #[error("TLS handshake with {addr} failed: {message}")]
    Tls { addr: String, message: String },
    /// SASL authentication was refused (wrong user or password, mechanism not enabled, ...).
    #[error("SASL {mechanism} authentication to {addr} failed: {message}")]
    Auth {
        addr: String,
        mechanism: &'static str,
        message: String,
    },
}

/// A byte stream to a broker: TCP, or TLS over TCP.
trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// Largest response accepted.
const MAX_FRAME: usize = 256 << 20;

/// One connection to a broker.
pub struct Connection {
    addr: String,
    stream: Box<dyn Stream>,
    correlation: i32,
    timeout: Duration,
}

impl Connection {
    /// Connect to `addr` (host:port) within `timeout`, plaintext and unauthenticated.
    pub async fn connect(addr: &str, timeout: Duration) -> Result<Connection, ClientError> {
        Connection::connect_with(addr, &TargetSecurity::default(), timeout).await
    }

    /// Connect to `addr` (host:port) with `security` (TLS handshake, then SASL authentication);
    /// each step within `timeout`.
    pub async fn connect_with(
        addr: &str,
        security: &TargetSecurity,
        timeout: Duration,
    ) -> Result<Connection, ClientError> {
        let io = |source| ClientError::Io {
            addr: addr.to_string(),
            source,
        };
        let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout(addr.to_string()))?
            .map_err(io)?;
        tcp.set_nodelay(true).map_err(io)?;
        let stream: Box<dyn Stream> = match &security.tls {
            None => Box::new(tcp),
            Some(tls) => {
                let tls_err = |message: String| ClientError::Tls {
                    addr: addr.to_string(),
                    message,
                };
                let name = security::server_name(addr, tls.server_name.as_deref())
                    .map_err(|e| tls_err(e.to_string()))?;
                let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
                let stream = tokio::time::timeout(timeout, connector.connect(name, tcp))
                    .await
                    .map_err(|_| tls_err("timed out".to_string()))?
                    .map_err(|e| tls_err(e.to_string()))?;
                Box::new(stream)
            }
        };
        let mut conn = Connection {
            addr: addr.to_string(),
            stream,
            correlation: 0,
            timeout,
        };
        if let Some(sasl) = &security.sasl {
            conn.authenticate(sasl).await?;
        }
        Ok(conn)
    }

    /// SaslHandshake v1, then SaslAuthenticate v1 rounds until the mechanism is done.
    async fn authenticate(&mut self, sasl: &SaslCredentials) -> Result<(), ClientError> {
        let mechanism = sasl.mechanism.name();
        let failed = |addr: &str, message: String| ClientError::Auth {
            addr: addr.to_string(),
            mechanism,
            message,
        };
        let hs = self
            .call(
                &SaslHandshakeRequest::default()
                    .with_mechanism(StrBytes::from_static_str(mechanism)),
                1,
            )
            .await?;
        if hs.error_code != 0 {
            let enabled: Vec<&str> = hs.mechanisms.iter().map(|m| m.as_str()).collect();
            return Err(failed(
                &self.addr,
                format!(
                    "SaslHandshake error code {} (enabled mechanisms: [{}])",
                    hs.error_code,
                    enabled.join(", ")
                ),
            ));
        }
        match sasl.mechanism {
            SaslMechanism::Plain => {
                let mut token = Vec::new();
                token.push(0);
                token.extend_from_slice(sasl.username.as_bytes());
                token.push(0);
                token.extend_from_slice(sasl.password.as_bytes());
                self.sasl_round(mechanism, token).await?;
            }
            SaslMechanism::Scram(m) => {
                let (mut client, first) =
                    ScramClient::start(m, &sasl.username, sasl.password.as_bytes())
                        .map_err(|e| failed(&self.addr, e.to_string()))?;
                let server_first = self.sasl_round(mechanism, first).await?;
                let client_final = client
                    .respond(&server_first)
                    .map_err(|e| failed(&self.addr, e.to_string()))?;
                let server_final = self.sasl_round(mechanism, client_final).await?;
                client
                    .finish(&server_final)
                    .map_err(|e| failed(&self.addr, e.to_string()))?;
            }
        }
        tracing::debug!(addr = %self.addr, mechanism, user = %sasl.username, "SASL authenticated");
        Ok(())
    }

    /// One SaslAuthenticate exchange: our token out, the server's back.
    async fn sasl_round(
        &mut self,
        mechanism: &'static str,
        token: Vec<u8>,
    ) -> Result<Bytes, ClientError> {
        let resp = self
            .call(
                &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token)),
                1,
            )
            .await?;
        if resp.error_code != 0 {
            let message = resp
                .error_message
                .as_ref()
                .map(|m| m.as_str().to_string())
                .unwrap_or_default();
            return Err(ClientError::Auth {
                addr: self.addr.clone(),
                mechanism,
                message: format!("error code {}: {message}", resp.error_code),
            });
        }
        Ok(resp.auth_bytes)
    }

    /// The address this connection talks to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Send `req` at `version` and wait for its response.
    pub async fn call<R: Request>(
        &mut self,
        req: &R,
        version: i16,
    ) -> Result<R::Response, ClientError> {
        self.correlation = self.correlation.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("rill-bridge")));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, R::header_version(version))
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        req.encode(&mut body, version)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_i32(body.len() as i32);
        frame.extend_from_slice(&body);
        let addr = self.addr.clone();
        let io = |source| ClientError::Io {
            addr: addr.clone(),
            source,
        };
        let work = async {
            self.stream.write_all(&frame).await.map_err(io)?;
            let mut len = [0u8; 4];
            self.stream.read_exact(&mut len).await.map_err(io)?;
            let len = i32::from_be_bytes(len);
            if len < 0 || len as usize > MAX_FRAME {
                return Err(ClientError::Protocol(format!("bad frame length {len}")));
            }
            let mut buf = vec![0u8; len as usize];
            self.stream.read_exact(&mut buf).await.map_err(io)?;
            Ok(Bytes::from(buf))
        };
        let mut buf = tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| ClientError::Timeout(self.addr.clone()))??;
        let rh = ResponseHeader::decode(&mut buf, R::Response::header_version(version))
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        if rh.correlation_id != self.correlation {
            return Err(ClientError::Protocol(format!(
                "correlation id {} != {}",
                rh.correlation_id, self.correlation
            )));
        }
        let resp = R::Response::decode(&mut buf, version)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        if buf.has_remaining() {
            tracing::debug!(left = buf.remaining(), "trailing bytes in response");
        }
        Ok(resp)
    }
}

/// One partition to fetch (see [`Connection::fetch_partition`]).
#[derive(Debug, Clone)]
pub struct PartitionFetch<'a> {
    /// Topic name.
    pub topic: &'a str,
    /// Partition index.
    pub partition: i32,
    /// First offset wanted.
    pub offset: i64,
    /// Most bytes of this partition.
    pub max_bytes: i32,
    /// How long the broker may wait for `min_bytes`.
    pub max_wait_ms: i32,
    /// Bytes to wait for (0: answer at once).
    pub min_bytes: i32,
    /// 0 read_uncommitted, 1 read_committed.
    pub isolation_level: i8,
}

/// One partition of a Fetch response; `error_code` is left to the caller (e.g.
/// OFFSET_OUT_OF_RANGE means different things to different callers).
#[derive(Debug, Clone)]
pub struct FetchedPartition {
    /// The partition's error code (0: none).
    pub error_code: i16,
    /// High watermark.
    pub high_watermark: i64,
    /// Last stable offset (-1 when the broker does not say).
    pub last_stable_offset: i64,
    /// The record batches, as sent.
    pub records: Bytes,
    /// Aborted transactions in the range (read_committed), if the broker listed them.
    pub aborted_transactions:
        Option<Vec<kafka_protocol::messages::fetch_response::AbortedTransaction>>,
}

impl Connection {
    /// ListOffsets of one partition: `timestamp` -1 is the end, -2 the start. An error code
    /// becomes [`ClientError::Kafka`].
    pub async fn list_offset(
        &mut self,
        topic: &str,
        partition: i32,
        timestamp: i64,
        isolation_level: i8,
    ) -> Result<i64, ClientError> {
        use kafka_protocol::messages::list_offsets_request::{
            ListOffsetsPartition, ListOffsetsTopic,
        };
        use kafka_protocol::messages::{BrokerId, ListOffsetsRequest, TopicName};
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_isolation_level(isolation_level)
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(partition)
                    .with_timestamp(timestamp)])]);
        let r = self.call(&req, 5).await?;
        let p = r
            .topics
            .first()
            .and_then(|t| t.partitions.first())
            .ok_or_else(|| ClientError::Protocol("empty ListOffsets response".into()))?;
        if p.error_code != 0 {
            return Err(ClientError::Kafka {
                what: format!("ListOffsets {topic}[{partition}]"),
                code: p.error_code,
            });
        }
        Ok(p.offset)
    }

    /// Fetch (v11) of one partition.
    pub async fn fetch_partition(
        &mut self,
        f: &PartitionFetch<'_>,
    ) -> Result<FetchedPartition, ClientError> {
        use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
        use kafka_protocol::messages::{BrokerId, FetchRequest, TopicName};
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(f.max_wait_ms)
            .with_min_bytes(f.min_bytes)
            .with_max_bytes(f.max_bytes)
            .with_isolation_level(f.isolation_level)
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(f.topic.to_string())))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(f.partition)
                    .with_current_leader_epoch(-1)
                    .with_fetch_offset(f.offset)
                    .with_log_start_offset(-1)
                    .with_partition_max_bytes(f.max_bytes)])]);
        let r = self.call(&req, 11).await?;
        let p = r
            .responses
            .first()
            .and_then(|t| t.partitions.first())
            .ok_or_else(|| ClientError::Protocol("empty Fetch response".into()))?;
        Ok(FetchedPartition {
            error_code: p.error_code,
            high_watermark: p.high_watermark,
            last_stable_offset: p.last_stable_offset,
            records: p.records.clone().unwrap_or_default(),
            aborted_transactions: p.aborted_transactions.clone(),
        })
    }
}
