//! One connection to one broker: TCP or TLS, Kafka framing (a 4-byte length, then header and
//! body), request/response correlation, ApiVersions negotiation (with optional version pinning)
//! and SASL authentication (SaslHandshake v1 + SaslAuthenticate, the tokens from
//! [`crate::sasl`]).
//!
//! One [`Connection`] carries one request at a time and checks that each response carries the
//! correlation id of its request. For hostile-input tests it also writes raw frames and bytes
//! ([`Connection::send_frame`], [`Connection::write_bytes`]) and tells when the peer closed it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
    SaslAuthenticateRequest, SaslHandshakeRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{check, ClientError};
use crate::sasl::{Exchange, Step};
use crate::security::{self, SaslCredentials, TargetSecurity};

/// Largest response frame accepted (a guard against garbage length prefixes).
const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

/// How to open connections: security, client id, timeouts and pinned API versions.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// TLS and SASL (default: plaintext, no authentication).
    pub security: TargetSecurity,
    /// The client id sent in every request header.
    pub client_id: String,
    /// How long to wait for the TCP connection and for the TLS handshake.
    pub connect_timeout: Duration,
    /// How long to wait for one response.
    pub request_timeout: Duration,
    /// API versions to use instead of the negotiated ones (api key -> version); a version the
    /// broker does not advertise fails with [`ClientError::UnsupportedApi`].
    pub pinned_versions: Arc<BTreeMap<i16, i16>>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            security: TargetSecurity::default(),
            client_id: "rill-client".into(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            pinned_versions: Arc::default(),
        }
    }
}

impl ConnectOptions {
    /// These options with `security`.
    pub fn with_security(mut self, security: TargetSecurity) -> ConnectOptions {
        self.security = security;
        self
    }

    /// These options with client id `id`.
    pub fn with_client_id(mut self, id: &str) -> ConnectOptions {
        self.client_id = id.to_string();
        self
    }

    /// These options with both timeouts set to `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> ConnectOptions {
        self.connect_timeout = timeout;
        self.request_timeout = timeout;
        self
    }

    /// These options with `api` pinned to `version`.
    pub fn pin_version(mut self, api: ApiKey, version: i16) -> ConnectOptions {
        Arc::make_mut(&mut self.pinned_versions).insert(api as i16, version);
        self
    }
}

/// The highest version of each API this client knows how to fill in and read. Newer versions
/// change field meanings (for example topic ids instead of names in Fetch 13+ and Produce 13+,
/// batched coordinator keys in FindCoordinator 4+), so the client caps what it negotiates.
fn client_max_version(api: ApiKey) -> i16 {
    match api {
        ApiKey::Produce => 11,
        ApiKey::Fetch => 12,
        ApiKey::ListOffsets => 8,
        ApiKey::Metadata => 12,
        ApiKey::ApiVersions => 3,
        ApiKey::CreateTopics => 7,
        ApiKey::DeleteTopics => 6,
        ApiKey::CreatePartitions => 3,
        ApiKey::DescribeConfigs => 4,
        ApiKey::IncrementalAlterConfigs => 1,
        ApiKey::InitProducerId => 4,
        ApiKey::FindCoordinator => 3,
        ApiKey::OffsetFetch => 7,
        ApiKey::ListGroups => 5,
        ApiKey::DescribeGroups => 5,
        ApiKey::OffsetCommit => 8,
        ApiKey::SaslHandshake => 1,
        ApiKey::SaslAuthenticate => 2,
        ApiKey::DescribeCluster => 1,
        ApiKey::DescribeQuorum => 2,
        ApiKey::ElectLeaders => 2,
        ApiKey::DescribeAcls | ApiKey::CreateAcls | ApiKey::DeleteAcls => 3,
        _ => 0,
    }
}

/// A byte stream to a broker: TCP, or TLS over TCP.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// One connection to one broker, with the API versions it advertised.
pub struct Connection {
    addr: String,
    stream: Box<dyn Stream>,
    next_correlation_id: i32,
    versions: HashMap<i16, (i16, i16)>,
    pinned: Arc<BTreeMap<i16, i16>>,
    client_id: StrBytes,
    timeout: Duration,
}

impl Connection {
    /// Connects to `addr` (`host:port`): TCP, TLS when configured, ApiVersions, then SASL when
    /// configured.
    pub async fn connect(addr: &str, opts: &ConnectOptions) -> Result<Connection, ClientError> {
        let conn = Connection::open(addr, opts).await?;
        conn.ready(opts).await
    }

    /// A connection to `addr` over `stream`, a transport the caller opened (and secured or
    /// authenticated) itself, for example an authenticated inter-node connection: the client id,
    /// timeout and pinned versions of `opts`, ApiVersions, then SASL when `opts` ask for it
    /// (`opts.security.tls` is not applied: the stream is used as it is).
    pub async fn over(
        addr: &str,
        stream: impl Stream + 'static,
        opts: &ConnectOptions,
    ) -> Result<Connection, ClientError> {
        let conn = Connection::from_stream(addr, stream).with_options(opts);
        conn.ready(opts).await
    }

    /// ApiVersions, then SASL when configured.
    async fn ready(mut self, opts: &ConnectOptions) -> Result<Connection, ClientError> {
        self.negotiate().await?;
        if let Some(sasl) = &opts.security.sasl {
            self.authenticate(sasl).await?;
        }
        Ok(self)
    }

    /// This connection with the client id, timeout and pinned versions of `opts`.
    fn with_options(mut self, opts: &ConnectOptions) -> Connection {
        self.pinned = opts.pinned_versions.clone();
        self.client_id = StrBytes::from_string(opts.client_id.clone());
        self.timeout = opts.request_timeout;
        self
    }

    /// Opens the transport to `addr` (TCP, then TLS when configured) without sending anything:
    /// for tests that speak first themselves.
    pub async fn open(addr: &str, opts: &ConnectOptions) -> Result<Connection, ClientError> {
        let tcp = tokio::time::timeout(opts.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout {
                addr: addr.to_string(),
            })?
            .map_err(|source| ClientError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        // Small requests (fetch polls, metadata) should not wait for Nagle.
        let _ = tcp.set_nodelay(true);
        let stream: Box<dyn Stream> = match &opts.security.tls {
            None => Box::new(tcp),
            Some(tls) => {
                let name = security::server_name(addr, tls.server_name.as_deref())?;
                let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
                let stream =
                    tokio::time::timeout(opts.connect_timeout, connector.connect(name, tcp))
                        .await
                        .map_err(|_| ClientError::Timeout {
                            addr: addr.to_string(),
                        })?
                        .map_err(|source| ClientError::Tls {
                            addr: addr.to_string(),
                            source,
                        })?;
                Box::new(stream)
            }
        };
        Ok(Connection::from_stream(addr, stream).with_options(opts))
    }

    /// A connection over an already open `stream` (no negotiation: the API versions are unknown
    /// until [`Connection::negotiate`]).
    pub fn from_stream(addr: &str, stream: impl Stream + 'static) -> Connection {
        Connection {
            addr: addr.to_string(),
            stream: Box::new(stream),
            next_correlation_id: 1,
            versions: HashMap::new(),
            pinned: Arc::default(),
            client_id: StrBytes::from_static_str("rill-client"),
            timeout: Duration::from_secs(60),
        }
    }

    /// The address this connection was opened to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// ApiVersions: ask with the newest version this client speaks; a broker that does not know
    /// it answers in v0 format with UNSUPPORTED_VERSION and its own range, and we retry with that.
    pub async fn negotiate(&mut self) -> Result<(), ClientError> {
        let mut version = client_max_version(ApiKey::ApiVersions);
        for _ in 0..2 {
            let req = ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str("rill-client"))
                .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
            let resp: ApiVersionsResponse = self.send_with_version(&req, version).await?;
            if resp.error_code == ResponseError::UnsupportedVersion.code() {
                let theirs = resp
                    .api_keys
                    .iter()
                    .find(|k| k.api_key == ApiKey::ApiVersions as i16)
                    .map(|k| k.max_version)
                    .unwrap_or(0);
                if theirs >= version {
                    break;
                }
                version = theirs.max(0);
                continue;
            }
            check(resp.error_code, None, || {
                format!("ApiVersions with {}", self.addr)
            })?;
            self.versions = resp
                .api_keys
                .iter()
                .map(|k| (k.api_key, (k.min_version, k.max_version)))
                .collect();
            return Ok(());
        }
        Err(ClientError::UnsupportedApi {
            addr: self.addr.clone(),
            api: ApiKey::ApiVersions,
            broker: "?".into(),
            client: format!("0..{}", client_max_version(ApiKey::ApiVersions)),
        })
    }

    /// SaslHandshake, then SaslAuthenticate rounds until the mechanism is done.
    async fn authenticate(&mut self, sasl: &SaslCredentials) -> Result<(), ClientError> {
        let mechanism = sasl.mechanism.name();
        let hs = self
            .send(
                &SaslHandshakeRequest::default()
                    .with_mechanism(StrBytes::from_static_str(mechanism)),
            )
            .await?;
        if let Some(code) = ResponseError::try_from_code(hs.error_code) {
            return Err(ClientError::Auth {
                addr: self.addr.clone(),
                mechanism,
                code,
                message: None,
                enabled: hs.mechanisms.iter().map(|m| m.to_string()).collect(),
            });
        }
        let scram = |addr: &str, source| ClientError::Scram {
            addr: addr.to_string(),
            source,
        };
        let (mut exchange, mut token) = Exchange::start(sasl).map_err(|e| scram(&self.addr, e))?;
        loop {
            let resp = self
                .send(&SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token)))
                .await?;
            if let Some(code) = ResponseError::try_from_code(resp.error_code) {
                return Err(ClientError::Auth {
                    addr: self.addr.clone(),
                    mechanism,
                    code,
                    message: resp
                        .error_message
                        .map(|m| m.to_string())
                        .filter(|m| !m.is_empty()),
                    enabled: Vec::new(),
                });
            }
            match exchange
                .step(&resp.auth_bytes)
                .map_err(|e| scram(&self.addr, e))?
            {
                Step::Send(next) => token = next,
                Step::Done => break,
            }
        }
        tracing::debug!(addr = %self.addr, mechanism, user = %sasl.username, "SASL authenticated");
        Ok(())
    }

    /// The version of request `R` to use with this broker: the pinned one, else the highest
    /// both sides support.
    pub fn version<R: Request>(&self) -> Result<i16, ClientError> {
        let api = ApiKey::try_from(R::KEY).map_err(|_| ClientError::Protocol {
            addr: self.addr.clone(),
            message: format!("unknown api key {}", R::KEY),
        })?;
        let ours = (
            R::VERSIONS.min,
            client_max_version(api).min(R::VERSIONS.max),
        );
        let unsupported = |broker: String, client: String| ClientError::UnsupportedApi {
            addr: self.addr.clone(),
            api,
            broker,
            client,
        };
        let Some(&(min, max)) = self.versions.get(&R::KEY) else {
            return Err(unsupported(
                "none".into(),
                format!("{}..{}", ours.0, ours.1),
            ));
        };
        if let Some(&pinned) = self.pinned.get(&R::KEY) {
            if pinned < min.max(R::VERSIONS.min) || pinned > max.min(R::VERSIONS.max) {
                return Err(unsupported(
                    format!("{min}..{max}"),
                    format!("{pinned} (pinned)"),
                ));
            }
            return Ok(pinned);
        }
        let v = max.min(ours.1);
        if v < min.max(ours.0) {
            return Err(unsupported(
                format!("{min}..{max}"),
                format!("{}..{}", ours.0, ours.1),
            ));
        }
        Ok(v)
    }

    /// Sends `req` with the negotiated version and waits for its response.
    pub async fn send<R: Request>(&mut self, req: &R) -> Result<R::Response, ClientError> {
        let version = self.version::<R>()?;
        self.send_with_version(req, version).await
    }

    /// Sends `req` with the negotiated version without waiting for a response (Produce with
    /// acks=0, where the broker sends none).
    pub async fn send_no_response<R: Request>(&mut self, req: &R) -> Result<(), ClientError> {
        let version = self.version::<R>()?;
        self.write_request(req, version).await?;
        Ok(())
    }

    /// Sends `req` as `version` and reads the response with the matching correlation id.
    pub async fn send_with_version<R: Request>(
        &mut self,
        req: &R,
        version: i16,
    ) -> Result<R::Response, ClientError> {
        let correlation_id = self.write_request(req, version).await?;
        self.read_response::<R>(version, correlation_id).await
    }

    /// Reads the response to a request `R` sent as `version` with `correlation_id` (with
    /// [`Connection::write_request`], several requests may be in flight).
    pub async fn read_response<R: Request>(
        &mut self,
        version: i16,
        correlation_id: i32,
    ) -> Result<R::Response, ClientError> {
        let addr = self.addr.clone();
        let mut frame = tokio::time::timeout(self.timeout, self.read_frame())
            .await
            .map_err(|_| ClientError::Timeout { addr: addr.clone() })??;
        let protocol = |message: String| ClientError::Protocol {
            addr: addr.clone(),
            message,
        };
        let header = ResponseHeader::decode(&mut frame, R::Response::header_version(version))
            .map_err(|e| protocol(format!("bad response header: {e}")))?;
        if header.correlation_id != correlation_id {
            return Err(protocol(format!(
                "response correlation id {} does not match request {}",
                header.correlation_id, correlation_id
            )));
        }
        R::Response::decode(&mut frame, version).map_err(|e| {
            protocol(format!(
                "cannot decode {:?} v{version} response: {e}",
                ApiKey::try_from(R::KEY)
            ))
        })
    }

    /// Writes `req` as `version`; returns its correlation id.
    pub async fn write_request<R: Request>(
        &mut self,
        req: &R,
        version: i16,
    ) -> Result<i32, ClientError> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1).max(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let mut buf = BytesMut::with_capacity(256);
        buf.put_i32(0);
        let protocol = |message: String| ClientError::Protocol {
            addr: self.addr.clone(),
            message,
        };
        header
            .encode(&mut buf, R::header_version(version))
            .map_err(|e| protocol(format!("cannot encode request header: {e}")))?;
        req.encode(&mut buf, version)
            .map_err(|e| protocol(format!("cannot encode request v{version}: {e}")))?;
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        self.write_bytes(&buf).await?;
        Ok(correlation_id)
    }

    /// Writes one raw frame: `payload` with its length prefix (hostile-input tests).
    pub async fn send_frame(&mut self, payload: &[u8]) -> Result<(), ClientError> {
        let mut buf = BytesMut::with_capacity(payload.len() + 4);
        buf.put_i32(payload.len() as i32);
        buf.put_slice(payload);
        self.write_bytes(&buf).await
    }

    /// Writes `bytes` as they are (partial frames, bad length prefixes) and flushes.
    pub async fn write_bytes(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        let io = |source| ClientError::Io {
            addr: self.addr.clone(),
            source,
        };
        self.stream.write_all(bytes).await.map_err(io)?;
        self.stream.flush().await.map_err(io)
    }

    /// Reads one response frame (without its length prefix).
    pub async fn read_frame(&mut self) -> Result<Bytes, ClientError> {
        let io = |source| ClientError::Io {
            addr: self.addr.clone(),
            source,
        };
        let len = self.stream.read_i32().await.map_err(io)?;
        if len < 0 || len as usize > MAX_RESPONSE_BYTES {
            return Err(ClientError::Protocol {
                addr: self.addr.clone(),
                message: format!("bad response length {len}"),
            });
        }
        let mut buf = vec![0u8; len as usize];
        self.stream
            .read_exact(&mut buf)
            .await
            .map_err(|source| ClientError::Io {
                addr: self.addr.clone(),
                source,
            })?;
        Ok(Bytes::from(buf))
    }

    /// True when the peer closes the connection (EOF or reset) within `within`; bytes sent
    /// before the close (a TLS alert, say) are skipped.
    pub async fn is_closed(&mut self, within: Duration) -> bool {
        let mut b = [0u8; 512];
        let drained = tokio::time::timeout(within, async {
            loop {
                match self.stream.read(&mut b).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue,
                }
            }
        });
        drained.await.is_ok()
    }

    /// Flushes and closes the write side, so everything sent reaches the broker.
    pub async fn shutdown(&mut self) {
        let _ = self.stream.flush().await;
        let _ = self.stream.shutdown().await;
    }
}
