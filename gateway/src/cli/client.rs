//! A small Kafka-protocol client for the CLI: connections, request/response correlation, API
//! version negotiation, and cluster metadata to route requests to partition leaders.
//!
//! Every message goes through the kafka-protocol crate. One [`Connection`] carries one request at a
//! time and checks that each response carries the correlation id of its request. The [`Client`]
//! bootstraps from a list of `HOST:PORT` addresses, learns the brokers from Metadata, and opens one
//! connection per broker on demand, so it works against a Rill node and a multi-broker Kafka
//! cluster alike.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic},
    metadata_request::MetadataRequestTopic,
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, BrokerId, ListOffsetsRequest,
    ListOffsetsResponse, MetadataRequest, MetadataResponse, RequestHeader, ResponseHeader,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The client id this CLI sends in every request header.
pub const CLIENT_ID: &str = "rill-cli";

/// Largest response frame accepted (a guard against garbage length prefixes).
const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

/// How long to wait for a TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long to wait for one response (fetch long polls are far shorter).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);

/// Errors of the client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The TCP connection failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// Address tried.
        addr: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Reading or writing a connection failed.
    #[error("connection to {addr} failed: {source}")]
    Io {
        /// Peer address.
        addr: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The broker did not answer in time.
    #[error("timed out waiting for {addr}")]
    Timeout {
        /// Peer address.
        addr: String,
    },
    /// A frame could not be encoded or decoded.
    #[error("protocol error talking to {addr}: {message}")]
    Protocol {
        /// Peer address.
        addr: String,
        /// What went wrong.
        message: String,
    },
    /// The broker does not support any version of an API this client speaks.
    #[error("broker {addr} does not support a usable version of {api:?} (broker: {broker}, client: {client})")]
    UnsupportedApi {
        /// Peer address.
        addr: String,
        /// The API.
        api: ApiKey,
        /// Versions the broker advertised, if any.
        broker: String,
        /// Versions this client speaks.
        client: String,
    },
    /// The broker answered with a Kafka error code.
    #[error("{context}: {} ({}){}", error_name(*code), code.code(), message.as_ref().map(|m| format!(": {m}")).unwrap_or_default())]
    Kafka {
        /// What was being done.
        context: String,
        /// The error code.
        code: ResponseError,
        /// The broker's error message, when it sent one.
        message: Option<String>,
    },
    /// Something the user asked for does not exist or is not valid.
    #[error("{0}")]
    Usage(String),
}

impl ClientError {
    /// The Kafka error code carried by this error, if any.
    pub fn kafka_code(&self) -> Option<ResponseError> {
        match self {
            ClientError::Kafka { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// The Kafka name of an error code, e.g. `UNKNOWN_TOPIC_OR_PARTITION`.
pub fn error_name(code: ResponseError) -> String {
    match code {
        ResponseError::Unknown(c) => format!("UNKNOWN_ERROR_CODE_{c}"),
        other => {
            let camel = format!("{other:?}");
            let mut out = String::with_capacity(camel.len() + 8);
            for (i, ch) in camel.chars().enumerate() {
                if ch.is_ascii_uppercase() && i > 0 {
                    out.push('_');
                }
                out.push(ch.to_ascii_uppercase());
            }
            out
        }
    }
}

/// Turns a response error code into a [`ClientError::Kafka`] when it is not 0.
pub fn check(
    code: i16,
    message: Option<&StrBytes>,
    context: impl FnOnce() -> String,
) -> Result<(), ClientError> {
    match ResponseError::try_from_code(code) {
        None => Ok(()),
        Some(code) => Err(ClientError::Kafka {
            context: context(),
            code,
            message: message.map(|m| m.to_string()).filter(|m| !m.is_empty()),
        }),
    }
}

/// The highest version of each API this client knows how to fill in and read. Newer versions
/// change field meanings (for example topic ids instead of names in Fetch 13+ and Produce 13+),
/// so the client caps what it negotiates.
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
        _ => 0,
    }
}

/// One TCP connection to one broker, with the API versions it advertised.
pub struct Connection {
    addr: String,
    stream: TcpStream,
    next_correlation_id: i32,
    versions: HashMap<i16, (i16, i16)>,
}

impl Connection {
    /// Connects to `addr` and negotiates API versions with ApiVersions.
    pub async fn connect(addr: &str) -> Result<Connection, ClientError> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout {
                addr: addr.to_string(),
            })?
            .map_err(|source| ClientError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        // Small requests (fetch polls, metadata) should not wait for Nagle.
        let _ = stream.set_nodelay(true);
        let mut conn = Connection {
            addr: addr.to_string(),
            stream,
            next_correlation_id: 1,
            versions: HashMap::new(),
        };
        conn.negotiate().await?;
        Ok(conn)
    }

    /// The address this connection was opened to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// ApiVersions: ask with the newest version this client speaks; a broker that does not know
    /// it answers in v0 format with UNSUPPORTED_VERSION and its own range, and we retry with that.
    async fn negotiate(&mut self) -> Result<(), ClientError> {
        let mut version = client_max_version(ApiKey::ApiVersions);
        for _ in 0..2 {
            let req = ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str(CLIENT_ID))
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

    /// The version of request `R` to use with this broker: the highest both sides support.
    pub fn version<R: Request>(&self) -> Result<i16, ClientError> {
        let api = ApiKey::try_from(R::KEY).map_err(|_| ClientError::Protocol {
            addr: self.addr.clone(),
            message: format!("unknown api key {}", R::KEY),
        })?;
        let ours = (
            R::VERSIONS.min,
            client_max_version(api).min(R::VERSIONS.max),
        );
        let unsupported = |broker: String| ClientError::UnsupportedApi {
            addr: self.addr.clone(),
            api,
            broker,
            client: format!("{}..{}", ours.0, ours.1),
        };
        let Some(&(min, max)) = self.versions.get(&R::KEY) else {
            return Err(unsupported("none".into()));
        };
        let v = max.min(ours.1);
        if v < min.max(ours.0) {
            return Err(unsupported(format!("{min}..{max}")));
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
        let addr = self.addr.clone();
        let mut frame = tokio::time::timeout(RESPONSE_TIMEOUT, self.read_frame())
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

    async fn write_request<R: Request>(
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
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
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
        self.stream
            .write_all(&buf)
            .await
            .map_err(|source| ClientError::Io {
                addr: self.addr.clone(),
                source,
            })?;
        Ok(correlation_id)
    }

    async fn read_frame(&mut self) -> Result<Bytes, ClientError> {
        let io = |source| ClientError::Io {
            addr: self.addr.clone(),
            source,
        };
        let len = self.stream.read_i32().await.map_err(io)?;
        if len < 4 || len as usize > MAX_RESPONSE_BYTES {
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

    /// Flushes and closes the write side, so everything sent reaches the broker before exit.
    pub async fn shutdown(&mut self) {
        let _ = self.stream.flush().await;
        let _ = self.stream.shutdown().await;
    }
}

/// A partition as the cluster metadata describes it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PartitionInfo {
    /// Partition index.
    pub partition: i32,
    /// Leader broker id (-1 when there is none).
    pub leader: i32,
    /// Replica broker ids.
    pub replicas: Vec<i32>,
    /// In-sync replica broker ids.
    pub isr: Vec<i32>,
    /// Error code of the partition in the metadata (0 when fine).
    #[serde(skip)]
    pub error_code: i16,
}

/// A topic as the cluster metadata describes it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TopicInfo {
    /// Topic name.
    pub name: String,
    /// Topic id (all zeros when the broker does not send one).
    pub topic_id: String,
    /// Whether the topic is internal.
    pub internal: bool,
    /// Partitions, sorted by index.
    pub partitions: Vec<PartitionInfo>,
}

impl TopicInfo {
    /// `partitions` grouped by the broker id of their leader (-1 for a partition without a
    /// leader or missing from the metadata), in the given order within each group.
    pub fn by_leader(&self, partitions: impl IntoIterator<Item = i32>) -> BTreeMap<i32, Vec<i32>> {
        let mut groups: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for p in partitions {
            let leader = self
                .partitions
                .iter()
                .find(|i| i.partition == p)
                .map_or(-1, |i| i.leader);
            groups.entry(leader).or_default().push(p);
        }
        groups
    }
}

/// A broker as the cluster metadata describes it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BrokerInfo {
    /// Broker id.
    pub node_id: i32,
    /// Host.
    pub host: String,
    /// Port.
    pub port: i32,
}

/// The cluster metadata: brokers, controller and topics.
#[derive(Debug, Clone, Default)]
pub struct ClusterMetadata {
    /// Cluster id, when the broker sends one.
    pub cluster_id: Option<String>,
    /// Controller broker id (-1 unknown).
    pub controller_id: i32,
    /// Brokers by id.
    pub brokers: BTreeMap<i32, BrokerInfo>,
    /// Topics by name.
    pub topics: BTreeMap<String, TopicInfo>,
    /// Error codes of topics the broker reported an error for, by name.
    pub topic_errors: BTreeMap<String, i16>,
}

/// A client of a cluster: a bootstrap connection plus one connection per broker, opened lazily.
pub struct Client {
    bootstrap: Vec<String>,
    bootstrap_conn: Option<Connection>,
    brokers: BTreeMap<i32, BrokerInfo>,
    controller_id: i32,
    conns: HashMap<i32, Connection>,
}

impl Client {
    /// Connects to the first reachable bootstrap address of a comma-separated list.
    pub async fn connect(brokers: &str) -> Result<Client, ClientError> {
        let bootstrap: Vec<String> = brokers
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if bootstrap.is_empty() {
            return Err(ClientError::Usage(
                "no broker address given (-b HOST:PORT)".into(),
            ));
        }
        let mut last_err = None;
        for addr in &bootstrap {
            match Connection::connect(addr).await {
                Ok(conn) => {
                    return Ok(Client {
                        bootstrap: bootstrap.clone(),
                        bootstrap_conn: Some(conn),
                        brokers: BTreeMap::new(),
                        controller_id: -1,
                        conns: HashMap::new(),
                    })
                }
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| ClientError::Usage("no broker address given".into())))
    }

    /// The bootstrap addresses.
    pub fn bootstrap(&self) -> &[String] {
        &self.bootstrap
    }

    /// Some connection to the cluster (the bootstrap one when open, else any broker's).
    pub async fn any(&mut self) -> Result<&mut Connection, ClientError> {
        if self.bootstrap_conn.is_none() {
            let mut last = None;
            for addr in self.bootstrap.clone() {
                match Connection::connect(&addr).await {
                    Ok(c) => {
                        self.bootstrap_conn = Some(c);
                        break;
                    }
                    Err(e) => last = Some(e),
                }
            }
            if self.bootstrap_conn.is_none() {
                return Err(last.unwrap_or_else(|| ClientError::Usage("no brokers".into())));
            }
        }
        self.bootstrap_conn
            .as_mut()
            .ok_or_else(|| ClientError::Usage("no brokers".into()))
    }

    /// The connection to broker `id`, opened on first use from the last metadata.
    pub async fn broker(&mut self, id: i32) -> Result<&mut Connection, ClientError> {
        if !self.conns.contains_key(&id) {
            let info = self.brokers.get(&id).cloned().ok_or_else(|| {
                ClientError::Usage(format!("broker {id} is not in the cluster metadata"))
            })?;
            let addr = format!("{}:{}", info.host, info.port);
            let conn = match Connection::connect(&addr).await {
                Ok(c) => c,
                // A single-node setup reached through a different address than it advertises
                // (for example a port forward): fall back to the bootstrap address.
                Err(e) if self.brokers.len() == 1 => {
                    match Connection::connect(&self.bootstrap[0]).await {
                        Ok(c) => c,
                        Err(_) => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            };
            self.conns.insert(id, conn);
        }
        self.conns
            .get_mut(&id)
            .ok_or_else(|| ClientError::Usage(format!("broker {id} unavailable")))
    }

    /// The connection to the controller (admin requests), or any broker when it is unknown.
    pub async fn controller(&mut self) -> Result<&mut Connection, ClientError> {
        if self.controller_id < 0 || !self.brokers.contains_key(&self.controller_id) {
            self.metadata(Some(&[]), false).await?;
        }
        let id = self.controller_id;
        if id >= 0 && self.brokers.contains_key(&id) {
            self.broker(id).await
        } else {
            self.any().await
        }
    }

    /// Metadata for `topics` (`None`: all topics). Updates the broker list used for routing.
    pub async fn metadata(
        &mut self,
        topics: Option<&[&str]>,
        allow_auto_create: bool,
    ) -> Result<ClusterMetadata, ClientError> {
        let conn = self.any().await?;
        let version = conn.version::<MetadataRequest>()?;
        let mut req = MetadataRequest::default();
        req.allow_auto_topic_creation = allow_auto_create;
        req.topics = match topics {
            None if version == 0 => Some(vec![]),
            None => None,
            Some(names) => Some(
                names
                    .iter()
                    .map(|n| {
                        MetadataRequestTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_string(n.to_string()))))
                    })
                    .collect(),
            ),
        };
        let resp: MetadataResponse = conn.send(&req).await?;
        let md = ClusterMetadata::from_response(resp);
        self.brokers = md.brokers.clone();
        self.controller_id = md.controller_id;
        Ok(md)
    }

    /// Metadata for one topic, waiting briefly while its leaders are being elected (a topic just
    /// created or auto-created reports LEADER_NOT_AVAILABLE for a moment on Kafka).
    pub async fn topic(
        &mut self,
        name: &str,
        allow_auto_create: bool,
    ) -> Result<TopicInfo, ClientError> {
        let mut delay = Duration::from_millis(50);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let md = self.metadata(Some(&[name]), allow_auto_create).await?;
            let retry = match md.topics.get(name) {
                Some(t)
                    if t.partitions.iter().all(|p| p.leader >= 0) && !t.partitions.is_empty() =>
                {
                    return Ok(t.clone())
                }
                Some(_) => true,
                None => false,
            };
            let code = md.topic_errors.get(name).copied().unwrap_or(0);
            let err = ResponseError::try_from_code(code);
            let retriable = retry || err.map(|e| e.is_retriable()).unwrap_or(false);
            let unknown = matches!(err, Some(ResponseError::UnknownTopicOrPartition));
            if !retriable
                || (unknown && !allow_auto_create)
                || tokio::time::Instant::now() >= deadline
            {
                return Err(match err {
                    Some(code) => ClientError::Kafka {
                        context: format!("topic {name}"),
                        code,
                        message: None,
                    },
                    None => ClientError::Usage(format!("topic {name} has no partition leaders")),
                });
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(500));
        }
    }

    /// ListOffsets for `partitions` of `topic` at `timestamp` (-2 earliest, -1 latest, otherwise
    /// ms since the epoch: the earliest offset whose timestamp is at least that, -1 when none), each
    /// asked of the partition's leader.
    pub async fn list_offsets(
        &mut self,
        topic: &TopicInfo,
        partitions: &[i32],
        timestamp: i64,
    ) -> Result<BTreeMap<i32, i64>, ClientError> {
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for &p in partitions {
            let info = topic
                .partitions
                .iter()
                .find(|i| i.partition == p)
                .ok_or_else(|| {
                    ClientError::Usage(format!("topic {} has no partition {p}", topic.name))
                })?;
            by_leader.entry(info.leader).or_default().push(p);
        }
        let mut out = BTreeMap::new();
        for (leader, parts) in by_leader {
            let mut req = ListOffsetsRequest::default();
            req.replica_id = BrokerId(-1);
            req.timeout_ms = 30_000;
            req.topics = vec![ListOffsetsTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.name.clone())))
                .with_partitions(
                    parts
                        .iter()
                        .map(|&p| {
                            ListOffsetsPartition::default()
                                .with_partition_index(p)
                                .with_current_leader_epoch(-1)
                                .with_timestamp(timestamp)
                        })
                        .collect(),
                )];
            let conn = self.broker(leader).await?;
            let resp: ListOffsetsResponse = conn.send(&req).await?;
            for t in resp.topics {
                for p in t.partitions {
                    check(p.error_code, None, || {
                        format!("list offsets of {}/{}", topic.name, p.partition_index)
                    })?;
                    out.insert(p.partition_index, p.offset);
                }
            }
        }
        for p in partitions {
            if !out.contains_key(p) {
                return Err(ClientError::Usage(format!(
                    "broker sent no offset for {}/{p}",
                    topic.name
                )));
            }
        }
        Ok(out)
    }

    /// Closes all connections gracefully.
    pub async fn close(&mut self) {
        if let Some(c) = self.bootstrap_conn.as_mut() {
            c.shutdown().await;
        }
        for c in self.conns.values_mut() {
            c.shutdown().await;
        }
    }
}

impl ClusterMetadata {
    fn from_response(resp: MetadataResponse) -> ClusterMetadata {
        let mut md = ClusterMetadata {
            cluster_id: resp.cluster_id.map(|s| s.to_string()),
            controller_id: resp.controller_id.0,
            ..Default::default()
        };
        for b in resp.brokers {
            md.brokers.insert(
                b.node_id.0,
                BrokerInfo {
                    node_id: b.node_id.0,
                    host: b.host.to_string(),
                    port: b.port,
                },
            );
        }
        for t in resp.topics {
            let Some(name) = t.name.map(|n| n.0.to_string()) else {
                continue;
            };
            if t.error_code != 0 {
                md.topic_errors.insert(name.clone(), t.error_code);
                if t.partitions.is_empty() {
                    continue;
                }
            }
            let mut partitions: Vec<PartitionInfo> = t
                .partitions
                .into_iter()
                .map(|p| PartitionInfo {
                    partition: p.partition_index,
                    leader: p.leader_id.0,
                    replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                    isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                    error_code: p.error_code,
                })
                .collect();
            partitions.sort_by_key(|p| p.partition);
            md.topics.insert(
                name.clone(),
                TopicInfo {
                    name,
                    topic_id: t.topic_id.to_string(),
                    internal: t.is_internal,
                    partitions,
                },
            );
        }
        md
    }
}

/// Splits a fetched records section into whole batches, dropping a trailing partial batch (a
/// broker may cut the last batch at the size limit).
pub fn whole_batches(mut records: Bytes) -> Bytes {
    let total = records.len();
    let mut used = 0usize;
    let mut view = records.clone();
    while view.remaining() >= 12 {
        let _base = view.get_i64();
        let len = view.get_i32();
        if len < 0 || (len as usize) > view.remaining() {
            break;
        }
        view.advance(len as usize);
        used += 12 + len as usize;
    }
    debug_assert!(used <= total);
    records.truncate(used);
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_are_kafka_style() {
        assert_eq!(
            error_name(ResponseError::UnknownTopicOrPartition),
            "UNKNOWN_TOPIC_OR_PARTITION"
        );
        assert_eq!(
            error_name(ResponseError::TopicAlreadyExists),
            "TOPIC_ALREADY_EXISTS"
        );
        assert_eq!(
            error_name(ResponseError::Unknown(999)),
            "UNKNOWN_ERROR_CODE_999"
        );
    }

    #[test]
    fn check_maps_codes() {
        assert!(check(0, None, || "x".into()).is_ok());
        let err = check(36, Some(&StrBytes::from_static_str("exists")), || {
            "create t".into()
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "create t: TOPIC_ALREADY_EXISTS (36): exists"
        );
    }

    #[test]
    fn whole_batches_drops_partial_tail() {
        let mut b = BytesMut::new();
        b.put_i64(0);
        b.put_i32(3);
        b.put_slice(&[1, 2, 3]);
        b.put_i64(3);
        b.put_i32(10);
        b.put_slice(&[1, 2]);
        let out = whole_batches(b.freeze());
        assert_eq!(out.len(), 15);
    }
}
