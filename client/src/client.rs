//! A client of a cluster: bootstrap from a list of `HOST:PORT` addresses, learn the brokers and
//! partition leaders from Metadata, open one connection per broker on demand, find group
//! coordinators, and recover from stale routing.
//!
//! Recovery: an error for which [`ClientError::is_retriable`] holds (NOT_LEADER_OR_FOLLOWER,
//! FENCED_LEADER_EPOCH, NOT_COORDINATOR, a broken connection, ...) makes the caller's operation
//! call [`Client::recover`]: the broken connection is dropped and the cached leaders of the
//! topic (or the group's coordinator) are forgotten, so the next attempt refreshes metadata.
//! A KIP-951 leader hint in a Produce or Fetch response ([`Client::apply_leader_hint`]) updates
//! the cache without a Metadata round trip.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    FindCoordinatorRequest, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::connection::{ConnectOptions, Connection};
use crate::connector::{Connector, Target, TcpConnector};
use crate::error::{check, ClientError};
use crate::metadata::{BrokerInfo, ClusterMetadata, TopicInfo};

/// How often an operation is tried when the errors are retriable.
pub const ATTEMPTS: u32 = 5;

/// How long to wait before retry `attempt` (1-based): 50 ms doubling, at most 1 s.
pub fn retry_backoff(attempt: u32) -> Duration {
    Duration::from_millis((50u64 << attempt.min(5)).min(1000))
}

/// A client of a cluster: a bootstrap connection plus one connection per broker, opened lazily.
pub struct Client {
    bootstrap: Vec<String>,
    opts: ConnectOptions,
    /// How connections are opened ([`TcpConnector`] unless [`Client::with_connector`]).
    connector: Arc<dyn Connector>,
    bootstrap_conn: Option<Connection>,
    brokers: BTreeMap<i32, BrokerInfo>,
    controller_id: i32,
    conns: HashMap<i32, Connection>,
    /// Topics as last described by Metadata (or corrected by leader hints).
    topics: HashMap<String, TopicInfo>,
    /// Coordinator broker id of each group looked up.
    coordinators: HashMap<String, i32>,
}

/// What a retriable error was about, for [`Client::recover`].
#[derive(Debug, Clone, Copy)]
pub enum Route<'a> {
    /// The leader of a partition of this topic.
    Topic(&'a str),
    /// The coordinator of this group.
    Group(&'a str),
    /// Any broker.
    Any,
}

impl Client {
    /// A client of the cluster at `brokers` (comma-separated `HOST:PORT`); nothing is opened yet.
    pub fn new(brokers: &str, opts: ConnectOptions) -> Result<Client, ClientError> {
        Client::with_connector(brokers, opts, Arc::new(TcpConnector))
    }

    /// A client of the cluster at `brokers` whose connections `connector` opens (the bootstrap
    /// ones as [`Target::Bootstrap`], those to a broker of the metadata as [`Target::Broker`]).
    pub fn with_connector(
        brokers: &str,
        opts: ConnectOptions,
        connector: Arc<dyn Connector>,
    ) -> Result<Client, ClientError> {
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
        Ok(Client {
            bootstrap,
            opts,
            connector,
            bootstrap_conn: None,
            brokers: BTreeMap::new(),
            controller_id: -1,
            conns: HashMap::new(),
            topics: HashMap::new(),
            coordinators: HashMap::new(),
        })
    }

    /// [`Client::new`], then connect to the first reachable bootstrap address.
    pub async fn connect(brokers: &str, opts: ConnectOptions) -> Result<Client, ClientError> {
        let mut client = Client::new(brokers, opts)?;
        client.any().await?;
        Ok(client)
    }

    /// The bootstrap addresses.
    pub fn bootstrap(&self) -> &[String] {
        &self.bootstrap
    }

    /// The connection options.
    pub fn options(&self) -> &ConnectOptions {
        &self.opts
    }

    /// Some connection to the cluster (the bootstrap one, opened to the first reachable
    /// bootstrap address when needed).
    pub async fn any(&mut self) -> Result<&mut Connection, ClientError> {
        if self.bootstrap_conn.is_none() {
            let mut last = None;
            for addr in &self.bootstrap {
                match self
                    .connector
                    .connect(Target::Bootstrap(addr), &self.opts)
                    .await
                {
                    Ok(c) => {
                        self.bootstrap_conn = Some(c);
                        break;
                    }
                    Err(e) => last = Some(e),
                }
            }
            if let Some(e) = last.filter(|_| self.bootstrap_conn.is_none()) {
                return Err(e);
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
            let addr = info.addr();
            let target = Target::Broker { id, addr: &addr };
            let conn = match self.connector.connect(target, &self.opts).await {
                Ok(c) => c,
                // A single-node setup reached through a different address than it advertises
                // (for example a port forward): fall back to the bootstrap address.
                Err(e) if self.brokers.len() == 1 && !e.is_auth_failure() => {
                    let bootstrap = Target::Bootstrap(&self.bootstrap[0]);
                    match self.connector.connect(bootstrap, &self.opts).await {
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

    /// Metadata for `topics` (`None`: all topics). Updates the brokers and leaders used for
    /// routing.
    pub async fn metadata(
        &mut self,
        topics: Option<&[&str]>,
        allow_auto_create: bool,
    ) -> Result<ClusterMetadata, ClientError> {
        let resp = match self.metadata_once(topics, allow_auto_create).await {
            Err(e) if e.is_connection_error() => {
                // The bootstrap connection broke: one more try on a fresh one.
                self.bootstrap_conn = None;
                self.metadata_once(topics, allow_auto_create).await?
            }
            r => r?,
        };
        let md = ClusterMetadata::from_response(resp);
        self.brokers = md.brokers.clone();
        self.controller_id = md.controller_id;
        for (name, t) in &md.topics {
            self.topics.insert(name.clone(), t.clone());
        }
        for name in md.topic_errors.keys() {
            if !md.topics.contains_key(name) {
                self.topics.remove(name);
            }
        }
        Ok(md)
    }

    async fn metadata_once(
        &mut self,
        topics: Option<&[&str]>,
        allow_auto_create: bool,
    ) -> Result<MetadataResponse, ClientError> {
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
        conn.send_with_version(&req, version).await
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
                Some(t) if t.has_leaders() => return Ok(t.clone()),
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

    /// The topic from the cache, or from Metadata when not cached.
    pub async fn cached_topic(&mut self, name: &str) -> Result<TopicInfo, ClientError> {
        match self.topics.get(name) {
            Some(t) if t.has_leaders() => Ok(t.clone()),
            _ => self.topic(name, false).await,
        }
    }

    /// The broker id leading `topic[partition]` (cached metadata, refreshed when unknown).
    pub async fn leader_id(&mut self, topic: &str, partition: i32) -> Result<i32, ClientError> {
        let info = self.cached_topic(topic).await?;
        let p = info
            .partition(partition)
            .ok_or_else(|| ClientError::Kafka {
                context: format!("topic {topic} has no partition {partition}"),
                code: ResponseError::UnknownTopicOrPartition,
                message: None,
            })?;
        if p.leader < 0 {
            self.topics.remove(topic);
            return Err(ClientError::Kafka {
                context: format!("{topic}[{partition}]"),
                code: ResponseError::LeaderNotAvailable,
                message: None,
            });
        }
        Ok(p.leader)
    }

    /// The connection to the leader of `topic[partition]`.
    pub async fn leader(
        &mut self,
        topic: &str,
        partition: i32,
    ) -> Result<&mut Connection, ClientError> {
        let id = self.leader_id(topic, partition).await?;
        self.broker(id).await
    }

    /// The connection to the coordinator of consumer group `group` (FindCoordinator, cached).
    pub async fn coordinator(&mut self, group: &str) -> Result<&mut Connection, ClientError> {
        if let Some(&id) = self.coordinators.get(group) {
            if self.brokers.contains_key(&id) {
                return self.broker(id).await;
            }
        }
        if self.brokers.is_empty() {
            self.metadata(Some(&[]), false).await?;
        }
        let req = FindCoordinatorRequest::default()
            .with_key(StrBytes::from_string(group.to_string()))
            .with_key_type(0);
        let resp = self.any().await?.send(&req).await?;
        check(resp.error_code, resp.error_message.as_ref(), || {
            format!("find coordinator of group {group}")
        })?;
        let id = resp.node_id.0;
        // The coordinator may be a broker the last metadata did not list.
        self.brokers.entry(id).or_insert_with(|| BrokerInfo {
            node_id: id,
            host: resp.host.to_string(),
            port: resp.port,
        });
        self.coordinators.insert(group.to_string(), id);
        self.broker(id).await
    }

    /// After a retriable error `err` about `route`: drop a broken connection and forget the
    /// cached leaders or coordinator, so the next attempt looks them up again.
    pub fn recover(&mut self, err: &ClientError, route: Route<'_>) {
        if err.is_connection_error() {
            let addr = match err {
                ClientError::Connect { addr, .. }
                | ClientError::Io { addr, .. }
                | ClientError::Timeout { addr }
                | ClientError::Protocol { addr, .. }
                | ClientError::Tls { addr, .. }
                | ClientError::Transport { addr, .. } => Some(addr.clone()),
                _ => None,
            };
            if let Some(addr) = addr {
                self.conns.retain(|_, c| c.addr() != addr);
                if self
                    .bootstrap_conn
                    .as_ref()
                    .is_some_and(|c| c.addr() == addr)
                {
                    self.bootstrap_conn = None;
                }
            }
        }
        match route {
            Route::Topic(t) => {
                self.topics.remove(t);
            }
            Route::Group(g) => {
                self.coordinators.remove(g);
            }
            Route::Any => {}
        }
    }

    /// KIP-951: a Produce or Fetch response named the current leader of `topic[partition]`
    /// (and maybe its endpoint). Updates the cache when the hint is newer than what it holds;
    /// returns whether it did (then the caller retries at once, without a Metadata refresh).
    pub fn apply_leader_hint(
        &mut self,
        topic: &str,
        partition: i32,
        leader_id: i32,
        leader_epoch: i32,
        endpoint: Option<BrokerInfo>,
    ) -> bool {
        if leader_id < 0 {
            return false;
        }
        if let Some(b) = endpoint {
            self.brokers.insert(b.node_id, b);
        }
        if !self.brokers.contains_key(&leader_id) {
            return false;
        }
        let Some(p) = self
            .topics
            .get_mut(topic)
            .and_then(|t| t.partitions.iter_mut().find(|p| p.partition == partition))
        else {
            return false;
        };
        if leader_epoch < p.leader_epoch
            || (p.leader == leader_id && leader_epoch == p.leader_epoch)
        {
            return false;
        }
        p.leader = leader_id;
        p.leader_epoch = leader_epoch;
        true
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

impl ClientError {
    /// An authentication or TLS failure: retrying another address of the same broker will not
    /// help.
    fn is_auth_failure(&self) -> bool {
        matches!(
            self,
            ClientError::Auth { .. } | ClientError::Scram { .. } | ClientError::Tls { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::PartitionInfo;

    fn client_with(topic: &str, leader: i32, epoch: i32) -> Client {
        let mut c = Client::new("h:1", ConnectOptions::default()).unwrap();
        for id in [1, 2] {
            c.brokers.insert(
                id,
                BrokerInfo {
                    node_id: id,
                    host: format!("b{id}"),
                    port: 9092,
                },
            );
        }
        c.topics.insert(
            topic.into(),
            TopicInfo {
                name: topic.into(),
                topic_id: String::new(),
                internal: false,
                partitions: vec![PartitionInfo {
                    partition: 0,
                    leader,
                    leader_epoch: epoch,
                    replicas: vec![1, 2],
                    isr: vec![1, 2],
                    offline_replicas: vec![],
                    error_code: 0,
                }],
            },
        );
        c
    }

    #[test]
    fn leader_hints_move_the_cached_leader_forward_only() {
        let mut c = client_with("t", 1, 5);
        assert!(!c.apply_leader_hint("t", 0, 2, 4, None), "older epoch");
        assert!(!c.apply_leader_hint("t", 0, 3, 6, None), "unknown broker");
        assert!(c.apply_leader_hint("t", 0, 2, 6, None));
        assert_eq!(c.topics["t"].partitions[0].leader, 2);
        assert!(!c.apply_leader_hint("t", 0, 2, 6, None), "already known");
        let endpoint = BrokerInfo {
            node_id: 3,
            host: "b3".into(),
            port: 9092,
        };
        assert!(c.apply_leader_hint("t", 0, 3, 7, Some(endpoint)));
        assert_eq!(c.brokers[&3].addr(), "b3:9092");
        assert!(
            !c.apply_leader_hint("other", 0, 1, 9, None),
            "uncached topic"
        );
    }

    /// Records what it is asked to connect to and refuses.
    #[derive(Default)]
    struct Recording(std::sync::Mutex<Vec<String>>);

    impl Connector for Recording {
        fn connect<'a>(
            &'a self,
            target: Target<'a>,
            _opts: &'a ConnectOptions,
        ) -> crate::connector::ConnectFuture<'a> {
            self.0.lock().unwrap().push(format!("{target:?}"));
            let addr = target.addr().to_string();
            Box::pin(async move {
                Err(ClientError::Transport {
                    addr,
                    source: "refused by the test connector".into(),
                })
            })
        }
    }

    #[tokio::test]
    async fn connections_are_opened_by_the_connector_by_target() {
        let recording = Arc::new(Recording::default());
        let mut c = client_with("t", 1, 0);
        c.bootstrap = vec!["boot:1".into(), "boot:2".into()];
        c.connector = recording.clone();
        let err = c.any().await.err().expect("refused");
        assert!(err.is_connection_error(), "{err}");
        assert!(c.leader("t", 0).await.is_err());
        assert_eq!(
            *recording.0.lock().unwrap(),
            vec![
                r#"Bootstrap("boot:1")"#,
                r#"Bootstrap("boot:2")"#,
                r#"Broker { id: 1, addr: "b1:9092" }"#,
            ]
        );
    }

    #[test]
    fn recover_forgets_routes() {
        let mut c = client_with("t", 1, 0);
        c.coordinators.insert("g".into(), 1);
        let stale = check(6, None, || "produce".into()).unwrap_err();
        c.recover(&stale, Route::Topic("t"));
        assert!(!c.topics.contains_key("t"));
        c.recover(&stale, Route::Group("g"));
        assert!(!c.coordinators.contains_key("g"));
        assert!(Client::new(" , ", ConnectOptions::default()).is_err());
        assert_eq!(retry_backoff(1), Duration::from_millis(100));
        assert_eq!(retry_backoff(9), Duration::from_millis(1000));
    }
}
