//! Outgoing inter-node connections: connect from the node's own cluster address (so one link
//! can be cut with iptables), authenticate ([`super::auth`]), then send RPCs one at a time:
//! private CBOR RPCs ([`super::rpc`]) and Kafka's own (BrokerRegistration, BrokerHeartbeat).
//!
//! A [`PeerClient`] holds at most one connection and reconnects on the next call after a
//! failure; callers decide about retries.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Mutex;
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use uuid::Uuid;

use super::auth::{self, ClusterTls, Secret};
use super::rpc::{self, Envelope, Hello, HelloAccepted, Proof, Refusal, WireError};

/// How long connecting (TCP plus the handshake) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The largest response frame accepted (snapshots travel in one frame).
pub const MAX_FRAME: usize = 256 << 20;

/// A connection's byte stream: TCP, or TLS over TCP.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}
/// A boxed [`Io`].
pub type BoxedIo = Box<dyn Io>;

/// Who this node is on the wire.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The cluster id (from `meta.properties`).
    pub cluster_id: String,
    /// This node's id.
    pub node_id: i32,
    /// Random per process start.
    pub incarnation: Uuid,
    /// From `meta.properties`.
    pub directory_id: Uuid,
    /// The shared secret, if configured.
    pub secret: Option<Secret>,
    /// The source address of outgoing connections (the cluster listener's IP), if specific.
    pub source_ip: Option<IpAddr>,
    /// mTLS (`[cluster] tls`), if configured.
    pub tls: Option<ClusterTls>,
}

impl Identity {
    /// Wraps an RPC body with this node's identity.
    pub fn envelope<T>(&self, body: T) -> Envelope<T> {
        Envelope {
            cluster_id: self.cluster_id.clone(),
            node_id: self.node_id,
            incarnation: self.incarnation,
            body,
        }
    }
}

/// Errors of an outgoing RPC.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The address does not resolve or the TCP connection failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The peer.
        addr: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Connecting or the handshake took longer than [`CONNECT_TIMEOUT`].
    #[error("connecting to {0} timed out")]
    ConnectTimeout(String),
    /// The peer refused the handshake or the RPC.
    #[error("{addr} refused: {refusal}")]
    Refused {
        /// The peer.
        addr: String,
        /// Why.
        refusal: Refusal,
    },
    /// The peer could not prove it knows the cluster secret (or has none while this node has).
    #[error("{addr}: {reason}")]
    Authentication {
        /// The peer.
        addr: String,
        /// What failed.
        reason: String,
    },
    /// Reading or writing failed, or the peer closed the connection.
    #[error("connection to {addr} failed: {reason}")]
    Io {
        /// The peer.
        addr: String,
        /// What failed.
        reason: String,
    },
    /// A frame did not encode or decode.
    #[error("{addr}: {source}")]
    Wire {
        /// The peer.
        addr: String,
        /// The cause.
        #[source]
        source: WireError,
    },
    /// A Kafka message did not encode or decode.
    #[error("{addr}: Kafka {api:?}: {reason}")]
    Kafka {
        /// The peer.
        addr: String,
        /// The API.
        api: ApiKey,
        /// What failed.
        reason: String,
    },
}

impl PeerError {
    /// Whether the connection never came up (the peer is down or unreachable).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            PeerError::Connect { .. } | PeerError::ConnectTimeout(_)
        )
    }
}

/// The peer as its handshake answer describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerInfo {
    /// Its node id.
    pub node_id: i32,
    /// Its directory id.
    pub directory_id: Uuid,
    /// Its incarnation.
    pub incarnation: Uuid,
}

struct Connection {
    framed: Framed<BoxedIo, LengthDelimitedCodec>,
    next_correlation: i32,
    peer: PeerInfo,
}

/// One peer's connection, opened on first use and after a failure.
pub struct PeerClient {
    identity: Arc<Identity>,
    addr: String,
    conn: Mutex<Option<Connection>>,
}

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(4)
        .max_frame_length(MAX_FRAME)
        .new_codec()
}

impl PeerClient {
    /// A client of the cluster listener at `addr` (`host:port`); nothing is connected yet.
    pub fn new(identity: Arc<Identity>, addr: String) -> PeerClient {
        PeerClient {
            identity,
            addr,
            conn: Mutex::new(None),
        }
    }

    /// The peer's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    async fn connect_tcp(&self) -> Result<TcpStream, PeerError> {
        let connect_err = |source| PeerError::Connect {
            addr: self.addr.clone(),
            source,
        };
        let targets: Vec<SocketAddr> = tokio::net::lookup_host(&self.addr)
            .await
            .map_err(connect_err)?
            .collect();
        let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
        for target in targets {
            let socket = if target.is_ipv4() {
                TcpSocket::new_v4()
            } else {
                TcpSocket::new_v6()
            }
            .map_err(connect_err)?;
            if let Some(ip) = self.identity.source_ip {
                if ip.is_ipv4() == target.is_ipv4() {
                    socket.bind(SocketAddr::new(ip, 0)).map_err(connect_err)?;
                }
            }
            match socket.connect(target).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Err(e) => last = e,
            }
        }
        Err(connect_err(last))
    }

    async fn exchange(
        &self,
        framed: &mut Framed<BoxedIo, LengthDelimitedCodec>,
        frame: Bytes,
    ) -> Result<Bytes, PeerError> {
        let io = |reason: String| PeerError::Io {
            addr: self.addr.clone(),
            reason,
        };
        framed.send(frame).await.map_err(|e| io(e.to_string()))?;
        match framed.next().await {
            Some(Ok(f)) => Ok(f.freeze()),
            Some(Err(e)) => Err(io(e.to_string())),
            None => Err(io("closed by the peer".to_string())),
        }
    }

    fn wire(&self, source: WireError) -> PeerError {
        PeerError::Wire {
            addr: self.addr.clone(),
            source,
        }
    }

    fn body_of<T: DeserializeOwned>(&self, mut frame: Bytes) -> Result<T, PeerError> {
        if frame.len() < 4 {
            return Err(self.wire(WireError::TooShort(frame.len())));
        }
        frame.advance(4);
        rpc::from_cbor(&frame).map_err(|e| self.wire(e))
    }

    /// TCP, then TLS when configured (the peer's certificate must name the host of its
    /// address).
    async fn connect_stream(&self) -> Result<BoxedIo, PeerError> {
        let stream = self.connect_tcp().await?;
        let Some(tls) = &self.identity.tls else {
            return Ok(Box::new(stream));
        };
        let host = self
            .addr
            .rsplit_once(':')
            .map_or(self.addr.as_str(), |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let name = rustls_pki_types::ServerName::try_from(host).map_err(|e| {
            PeerError::Authentication {
                addr: self.addr.clone(),
                reason: format!("not a TLS server name: {e}"),
            }
        })?;
        let stream =
            tls.connector
                .connect(name, stream)
                .await
                .map_err(|e| PeerError::Authentication {
                    addr: self.addr.clone(),
                    reason: format!("TLS: {e}"),
                })?;
        Ok(Box::new(stream))
    }

    async fn handshake(&self) -> Result<Connection, PeerError> {
        let stream = self.connect_stream().await?;
        let mut framed = Framed::new(stream, codec());
        let id = &self.identity;
        let client_nonce = auth::nonce();
        let hello = Hello {
            cluster_id: id.cluster_id.clone(),
            node_id: id.node_id,
            incarnation: id.incarnation,
            directory_id: id.directory_id,
            nonce: client_nonce.clone(),
            with_secret: id.secret.is_some(),
        };
        let frame = rpc::request_frame(rpc::CLUSTER_HELLO, 0, &hello).map_err(|e| self.wire(e))?;
        let reply = self.exchange(&mut framed, frame).await?;
        let accepted: HelloAccepted = self
            .body_of::<Result<HelloAccepted, Refusal>>(reply)?
            .map_err(|refusal| PeerError::Refused {
                addr: self.addr.clone(),
                refusal,
            })?;
        let auth_err = |reason: &str| PeerError::Authentication {
            addr: self.addr.clone(),
            reason: reason.to_string(),
        };
        let proof = match (&id.secret, &accepted.proof) {
            (Some(secret), Some(p)) => {
                if !secret.verify_listener(&id.cluster_id, &client_nonce, &accepted.nonce, p) {
                    let reject = Proof {
                        proof: None,
                        listener_rejected: true,
                    };
                    if let Ok(frame) = rpc::request_frame(rpc::CLUSTER_PROOF, 1, &reject) {
                        let _ = framed.send(frame).await;
                    }
                    return Err(auth_err(
                        "wrong cluster secret: the peer could not prove it knows this node's \
                         cluster secret",
                    ));
                }
                Some(secret.node_proof(&id.cluster_id, id.node_id, &client_nonce, &accepted.nonce))
            }
            (Some(_), None) => {
                return Err(auth_err(
                    "the peer has no cluster secret while this node has one ([cluster] \
                     secret_file must be set on every node)",
                ))
            }
            (None, _) => None,
        };
        let frame = rpc::request_frame(
            rpc::CLUSTER_PROOF,
            1,
            &Proof {
                proof,
                listener_rejected: false,
            },
        )
        .map_err(|e| self.wire(e))?;
        let reply = self.exchange(&mut framed, frame).await?;
        self.body_of::<Result<(), Refusal>>(reply)?
            .map_err(|refusal| PeerError::Refused {
                addr: self.addr.clone(),
                refusal,
            })?;
        Ok(Connection {
            framed,
            next_correlation: 2,
            peer: PeerInfo {
                node_id: accepted.node_id,
                directory_id: accepted.directory_id,
                incarnation: accepted.incarnation,
            },
        })
    }

    /// Connects (TCP and handshake) unless connected.
    async fn connected<'a>(
        &self,
        guard: &'a mut Option<Connection>,
    ) -> Result<&'a mut Connection, PeerError> {
        if guard.is_none() {
            let conn = tokio::time::timeout(CONNECT_TIMEOUT, self.handshake())
                .await
                .map_err(|_| PeerError::ConnectTimeout(self.addr.clone()))??;
            *guard = Some(conn);
        }
        guard.as_mut().ok_or_else(|| PeerError::Io {
            addr: self.addr.clone(),
            reason: "not connected".into(),
        })
    }

    /// Sends one request frame made by `make(correlation_id)` and returns the response frame,
    /// connecting first if needed. Any failure drops the connection.
    async fn call_frame(
        &self,
        make: impl FnOnce(i32) -> Result<Bytes, PeerError>,
    ) -> Result<Bytes, PeerError> {
        let mut guard = self.conn.lock().await;
        let conn = self.connected(&mut guard).await?;
        let correlation = conn.next_correlation;
        conn.next_correlation = conn.next_correlation.wrapping_add(1);
        let result = match make(correlation) {
            Ok(frame) => self.exchange(&mut conn.framed, frame).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(f) if f.len() >= 4 && (&f[..4]).get_i32() == correlation => Ok(f),
            Ok(_) => {
                *guard = None;
                Err(PeerError::Io {
                    addr: self.addr.clone(),
                    reason: "response with another correlation id".into(),
                })
            }
            Err(e) => {
                *guard = None;
                Err(e)
            }
        }
    }

    /// Connects and authenticates a new connection (TCP, TLS when configured, the cluster
    /// handshake) and hands over its byte stream, for a Kafka client that speaks on it itself
    /// (the peer serves Kafka requests on it with a cluster peer's rights).
    pub async fn into_stream(self) -> Result<BoxedIo, PeerError> {
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, self.handshake())
            .await
            .map_err(|_| PeerError::ConnectTimeout(self.addr.clone()))??;
        let parts = conn.framed.into_parts();
        if !parts.read_buf.is_empty() {
            // The listener says nothing after accepting the proof; bytes here are not ours to
            // drop.
            return Err(PeerError::Io {
                addr: self.addr,
                reason: format!(
                    "{} unexpected bytes after the cluster handshake",
                    parts.read_buf.len()
                ),
            });
        }
        Ok(parts.io)
    }

    /// The peer of the current connection, connecting if needed.
    pub async fn peer_info(&self) -> Result<PeerInfo, PeerError> {
        let mut guard = self.conn.lock().await;
        Ok(self.connected(&mut guard).await?.peer)
    }

    /// A private RPC: `body` in this node's [`Envelope`]; the peer's answer or its refusal.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        api_key: i16,
        body: &Req,
    ) -> Result<Result<Resp, Refusal>, PeerError> {
        let envelope = self.identity.envelope(body);
        let frame = self
            .call_frame(|c| rpc::request_frame(api_key, c, &envelope).map_err(|e| self.wire(e)))
            .await?;
        self.body_of(frame)
    }

    /// A Kafka RPC (BrokerRegistration, BrokerHeartbeat, ...) at `version`.
    pub async fn kafka<Req: Encodable, Resp: Decodable>(
        &self,
        api: ApiKey,
        version: i16,
        req: &Req,
    ) -> Result<Resp, PeerError> {
        let kafka_err = |reason: String| PeerError::Kafka {
            addr: self.addr.clone(),
            api,
            reason,
        };
        let mut frame = self
            .call_frame(|c| {
                let header = RequestHeader::default()
                    .with_request_api_key(api as i16)
                    .with_request_api_version(version)
                    .with_correlation_id(c)
                    .with_client_id(Some(StrBytes::from_string(format!(
                        "rill-node-{}",
                        self.identity.node_id
                    ))));
                let mut buf = BytesMut::new();
                header
                    .encode(&mut buf, api.request_header_version(version))
                    .map_err(|e| kafka_err(e.to_string()))?;
                req.encode(&mut buf, version)
                    .map_err(|e| kafka_err(e.to_string()))?;
                Ok(buf.freeze())
            })
            .await?;
        ResponseHeader::decode(&mut frame, api.response_header_version(version))
            .map_err(|e| kafka_err(e.to_string()))?;
        Resp::decode(&mut frame, version).map_err(|e| kafka_err(e.to_string()))
    }
}
