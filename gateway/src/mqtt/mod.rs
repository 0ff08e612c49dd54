//! The MQTT 3.1.1 / 5 front end: devices publish into the durable log and subscribe to it.
//!
//! rumqttc's codecs do the bytes ([`codec`]); everything above them is Rill's:
//! - [`listener`]: TCP, TLS and WebSocket accept loops, [`websocket`]: MQTT over WebSocket,
//! - [`connection`]: one client's session state machine (CONNECT, publish pipeline with
//!   acks after durability, subscriptions, keepalive, will),
//! - [`mapping`]: MQTT topic patterns <-> log topics and keys,
//! - [`ingest`]: publishes into partition logs, [`records`]: MQTT messages as Kafka records,
//! - [`delivery`], [`source`], [`shared`]: subscriptions served from the log,
//! - [`session_store`], [`retained`]: durable sessions, cursors and retained messages (redb),
//! - [`will`]: will messages, delayed ones kept with their session across restarts,
//! - [`auth`]: credentials and ACL templates, [`enhanced_auth`]: AUTH with SCRAM-SHA-256,
//!   [`topic`]: names and filters,
//! - [`sys_topics`]: the `$SYS` topics (node counters, never in the log),
//! - [`config`]: the `[mqtt]` configuration section, [`metrics`]: its Prometheus metrics.

pub mod auth;
pub mod codec;
pub mod config;
pub mod connection;
pub mod delivery;
pub mod enhanced_auth;
pub mod ingest;
pub mod listener;
pub mod mapping;
pub mod metrics;
pub mod records;
pub mod retained;
pub mod session_store;
pub mod shared;
pub mod source;
pub mod sys_topics;
pub mod topic;
pub mod websocket;
pub mod will;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rill_core::broker::Broker;
use rill_core::log::PartitionLog;

pub use config::MqttConfig;

use auth::CredentialStore;
use ingest::Ingest;
use mapping::Mapping;
use retained::RetainedStore;
use session_store::{SessionStore, StoreError};

/// Errors setting up the MQTT front end.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error(transparent)]
    Mapping(#[from] mapping::MappingError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("MQTT TLS setup: {0}")]
    Tls(String),
    /// The client CA or a CRL file of `[mqtt.tls]` (named in the message).
    #[error("MQTT TLS setup: {0}")]
    TlsFiles(#[from] crate::tls::TlsError),
    #[error("MQTT listener on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

/// A connected client as the server tracks it (for session takeover and the web console).
pub(crate) struct LiveClient {
    pub conn_id: u64,
    pub kick: tokio::sync::mpsc::Sender<()>,
    pub finished: tokio::sync::watch::Receiver<bool>,
    /// What the console shows of it (its connection keeps the subscriptions current).
    pub info: Arc<ClientInfo>,
}

/// A connected client as the web console shows it.
#[derive(Debug)]
pub struct ClientInfo {
    /// The client's address.
    pub peer: std::net::SocketAddr,
    /// "3.1.1" or "5".
    pub protocol: &'static str,
    /// When it connected (Unix ms).
    pub connected_at_ms: i64,
    /// Its subscriptions as (filter as subscribed, maximum QoS).
    pub subscriptions: Mutex<Vec<(String, u8)>>,
}

/// One connected client at the time of [`MqttServer::clients`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClientSummary {
    /// The client id.
    pub client_id: String,
    /// The client's address.
    pub peer: String,
    /// "3.1.1" or "5".
    pub protocol: &'static str,
    /// When it connected (Unix ms).
    pub connected_at_ms: i64,
    /// Its subscriptions.
    pub subscriptions: Vec<SubscriptionSummary>,
}

/// One subscription of a connected client.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SubscriptionSummary {
    /// The filter as subscribed (with `$share/...` for a shared subscription).
    pub filter: String,
    /// Maximum QoS granted.
    pub qos: u8,
}

/// State shared by all MQTT connections of the node.
pub struct MqttServer {
    pub(crate) broker: Arc<Broker>,
    pub(crate) config: MqttConfig,
    pub(crate) mapping: Arc<Mapping>,
    pub(crate) ingest: Ingest,
    pub(crate) sessions: SessionStore,
    pub(crate) retained: RetainedStore,
    pub(crate) credentials: CredentialStore,
    pub(crate) shared: shared::SharedGroups,
    pub(crate) live: Mutex<HashMap<String, LiveClient>>,
    /// QoS 2 packet ids received (PUBREC sent) and not yet released, per client id (in memory;
    /// after a restart recognised from the `mqtt.packet_id` of records, see `connection`).
    pub(crate) qos2_incoming: Mutex<HashMap<String, HashSet<u16>>>,
    /// Will messages waiting out their Will Delay Interval (MQTT 5 §3.1.3.2.2).
    pub(crate) delayed_wills: will::DelayedWills,
    /// `$SYS` counters and values.
    pub(crate) sys: sys_topics::SysTopics,
    next_conn: AtomicU64,
    pub(crate) metrics: metrics::MqttMetrics,
    /// The node's memory budget (unlimited until [`MqttServer::set_memory_budget`]).
    memory: std::sync::OnceLock<Arc<crate::memory_budget::MemoryBudget>>,
}

/// Default credential file inside the data directory.
pub fn default_credentials_file(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("mqtt-credentials")
}

impl MqttServer {
    /// The MQTT state of a node whose storage is `broker` (metrics recorded).
    pub fn new(broker: Arc<Broker>, config: MqttConfig) -> Result<Arc<MqttServer>, MqttError> {
        Self::with_metrics(broker, config, metrics::MqttMetrics::new(true))
    }

    /// [`Self::new`] recording into `metrics` (see [`Self::metrics`]).
    pub fn with_metrics(
        broker: Arc<Broker>,
        config: MqttConfig,
        metrics: metrics::MqttMetrics,
    ) -> Result<Arc<MqttServer>, MqttError> {
        let mapping = Arc::new(Mapping::new(&config.rules)?);
        let db = broker.metadata_handle();
        let sessions = SessionStore::open(db.clone())?;
        let retained = RetainedStore::open(db)?;
        let purged = sessions.purge_expired(rill_core::clock::now_ms())?;
        if purged > 0 {
            tracing::info!(purged, "expired MQTT sessions removed");
        }
        let cred_path = config
            .auth
            .credentials_file
            .clone()
            .unwrap_or_else(|| default_credentials_file(&broker.config().data_dir));
        Ok(Arc::new(MqttServer {
            ingest: Ingest::new(broker.clone(), mapping.clone()),
            broker,
            mapping,
            sessions,
            retained,
            credentials: CredentialStore::new(cred_path),
            shared: shared::SharedGroups::default(),
            live: Mutex::new(HashMap::new()),
            qos2_incoming: Mutex::new(HashMap::new()),
            delayed_wills: will::DelayedWills::default(),
            sys: sys_topics::SysTopics::new(config.sys_interval_s),
            next_conn: AtomicU64::new(1),
            metrics,
            config,
            memory: std::sync::OnceLock::new(),
        }))
    }

    /// Count connections, read buffers and unacknowledged publishes against `budget` (once;
    /// before the listeners start).
    pub fn set_memory_budget(&self, budget: Arc<crate::memory_budget::MemoryBudget>) {
        if self.memory.set(budget).is_err() {
            tracing::warn!("MQTT memory budget set twice; the first one stays");
        }
    }

    /// The memory budget connections reserve from.
    pub(crate) fn memory(&self) -> &Arc<crate::memory_budget::MemoryBudget> {
        self.memory
            .get_or_init(crate::memory_budget::MemoryBudget::unlimited)
    }

    /// The configuration in force.
    pub fn config(&self) -> &MqttConfig {
        &self.config
    }

    /// The front end's metrics and the retained store they count (for the node's registry).
    pub fn metrics(&self) -> (&metrics::MqttMetrics, RetainedStore) {
        (&self.metrics, self.retained.clone())
    }

    /// The clients connected to this node now, sorted by client id.
    pub fn clients(&self) -> Vec<ClientSummary> {
        use rill_core::sync::LockExt;
        let live = self.live.lock_unpoisoned();
        let mut out: Vec<ClientSummary> = live
            .iter()
            .map(|(id, c)| ClientSummary {
                client_id: id.clone(),
                peer: c.info.peer.to_string(),
                protocol: c.info.protocol,
                connected_at_ms: c.info.connected_at_ms,
                subscriptions: c
                    .info
                    .subscriptions
                    .lock_unpoisoned()
                    .iter()
                    .map(|(filter, qos)| SubscriptionSummary {
                        filter: filter.clone(),
                        qos: *qos,
                    })
                    .collect(),
            })
            .collect();
        out.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        out
    }

    /// The retained messages stored on this node as (topic, payload bytes), sorted by topic.
    pub fn retained_topics(&self) -> Result<Vec<(String, usize)>, StoreError> {
        let mut out: Vec<(String, usize)> = self
            .retained
            .matching("#")?
            .into_iter()
            .map(|m| (m.topic, m.payload.len()))
            .collect();
        out.sort();
        Ok(out)
    }

    pub(crate) fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Existing log partitions that may hold messages for `filter`.
    pub(crate) fn discover(&self, filter: &str) -> Vec<(String, i32, Arc<PartitionLog>)> {
        let mut out = Vec::new();
        for t in self.mapping.log_topics_for_filter(filter) {
            let Some(meta) = self.broker.topic(&t) else {
                continue;
            };
            for p in 0..meta.partitions {
                match self.broker.partition(&t, p) {
                    Ok(log) => out.push((t.clone(), p, log)),
                    Err(e) => {
                        tracing::debug!(topic = %t, partition = p, error = %e, "partition not readable")
                    }
                }
            }
        }
        out
    }
}
