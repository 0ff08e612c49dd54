//! `rill serve`: start a node (storage, Kafka listener, admin HTTP), run until SIGINT/SIGTERM, then
//! shut down gracefully: stop accepting, let in-flight requests finish (bounded), flush, exit 0.
//!
//! [`Node`] is the same thing as a library value, so integration tests start nodes in-process.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use rill_core::broker::{Broker, BrokerError, EncryptionSetting};
use rill_core::liveness::Liveness;
use rill_core::log::FlushPolicy;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{ConfigFileError, FileConfig, NodeSettings, Overrides};
use crate::kafka::{self, Context};
use crate::memory_budget::{MemoryBudget, Reservation};
use crate::metrics::Metrics;
use crate::{admin_http, tls};

/// How long shutdown waits for in-flight requests before closing anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Flags of `rill serve`.
#[derive(clap::Args, Debug, Default)]
// Later flags win (the test harness appends its own listener flags).
#[command(args_override_self = true)]
pub struct ServeArgs {
    /// TOML configuration file (flags override it).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory [default: ./rill-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Kafka listener address; port 0 picks a free port [default: 127.0.0.1:9092].
    #[arg(long, value_name = "ADDR")]
    pub kafka_listen: Option<SocketAddr>,
    /// MQTT listener address [default: 127.0.0.1:1883].
    #[arg(long, value_name = "ADDR")]
    pub mqtt_listen: Option<SocketAddr>,
    /// MQTT over WebSocket listener address [default: off].
    #[arg(long, value_name = "ADDR")]
    pub mqtt_ws_listen: Option<SocketAddr>,
    /// Admin HTTP listener address [default: 127.0.0.1:9644].
    #[arg(long, value_name = "ADDR")]
    pub http_listen: Option<SocketAddr>,
    /// Kafka broker id [default: 0].
    #[arg(long, value_name = "N")]
    pub node_id: Option<i32>,
    /// Readable node name [default: the host name].
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
    /// host:port advertised to Kafka clients [default: the bound address, 0.0.0.0 as 127.0.0.1].
    #[arg(long, value_name = "ADDR")]
    pub advertised_kafka: Option<String>,
    /// Master key file [default: ./rill-master.key]; the RILL_MASTER_KEY variable wins.
    #[arg(long, value_name = "PATH")]
    pub key_file: Option<PathBuf>,
    /// Mirror every non-internal, non-mirrored topic to this Kafka cluster (bootstrap servers),
    /// renamed `{node_name}.{topic}` (the bridge; see docs/bridge.md).
    #[arg(long, value_name = "BOOTSTRAP")]
    pub mirror_to: Option<String>,
    /// Bridge configuration (`[[mirror]]` entries) run inside this node, besides the
    /// `[[mirror]]` entries of `--config` (a mirror defined in both is an error).
    #[arg(long, value_name = "FILE")]
    pub bridge_config: Option<PathBuf>,
    /// Require SASL on the Kafka listener with these mechanisms (comma separated: PLAIN,
    /// SCRAM-SHA-256, SCRAM-SHA-512); users come from `rill user add` (docs/security.md).
    #[arg(long, value_name = "MECHANISMS", value_delimiter = ',')]
    pub kafka_sasl: Option<Vec<String>>,
    /// Cluster listener address (inter-node traffic) of a data directory formatted by `rill
    /// cluster format` [default: `[listeners] cluster`].
    #[arg(long, value_name = "ADDR")]
    pub cluster_listen: Option<SocketAddr>,
    /// Check every Kafka request against the ACLs (as `[kafka] authorizer = true`; super users
    /// from `[kafka] super_users`); see docs/security.md.
    #[arg(long)]
    pub kafka_authorizer: bool,
}

/// Errors starting or stopping a node.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigFileError),
    /// The storage layer failed to open or close.
    #[error("storage: {0}")]
    Broker(#[from] BrokerError),
    /// A listener could not be bound.
    #[error("cannot bind {what} listener on {addr}: {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// TLS material could not be loaded.
    #[error("Kafka TLS: {0}")]
    Tls(#[from] tls::TlsError),
    /// A background task panicked.
    #[error("task failed: {0}")]
    Task(String),
    /// The SASL user store could not be opened.
    #[error("Kafka SASL: {0}")]
    Sasl(#[from] rill_core::credentials::CredentialError),
    /// The admin tokens file is unusable.
    #[error(transparent)]
    AdminTokens(#[from] crate::admin_tokens::TokensError),
    /// The ACLs could not be loaded.
    #[error("Kafka authorizer: {0}")]
    Acl(#[from] rill_core::authorizer::store::AclStoreError),
    /// The MQTT front end could not start.
    #[error(transparent)]
    Mqtt(#[from] crate::mqtt::MqttError),
    /// Cluster mode could not start.
    #[cfg(feature = "cluster")]
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    /// The memory budget leaves no room once the node is up.
    #[error(
        "[node] memory_budget_bytes {budget} leaves less than one MQTT packet of \
         mqtt.max_packet_size ({packet}) once the node is up: it holds {footprint} bytes \
         resident at start (raise the budget)"
    )]
    MemoryBudget {
        /// The budget.
        budget: u64,
        /// Resident memory at start.
        footprint: u64,
        /// `[mqtt] max_packet_size`.
        packet: usize,
    },
    /// The data directory was formatted for a cluster, and this build has none.
    #[cfg(not(feature = "cluster"))]
    #[error(
        "{}: {path} was written by `rill cluster format`",
        crate::cluster::NO_CLUSTER_SUPPORT
    )]
    NoClusterSupport {
        /// `meta.properties` of the data directory.
        path: std::path::PathBuf,
    },
}

/// A running node.
pub struct Node {
    /// The bound Kafka address.
    pub kafka_addr: SocketAddr,
    /// The bound admin HTTP address.
    pub http_addr: SocketAddr,
    /// The node's storage.
    pub broker: Arc<Broker>,
    /// The node's metrics.
    pub metrics: Arc<Metrics>,
    /// The consumer group coordinator (the bridge checkpoints its committed offsets).
    pub groups: Arc<rill_core::group::GroupCoordinator>,
    /// The bridge's status registry, served at `GET /bridge/status`.
    pub bridge_status: Arc<rill_bridge::BridgeStatus>,
    /// Marked by the Kafka accept loop.
    pub kafka_liveness: Liveness,
    /// Marked by the MQTT accept loops.
    pub mqtt_liveness: Liveness,
    /// The bound cluster listener address (cluster mode).
    pub cluster_addr: Option<SocketAddr>,
    /// The cluster handle (cluster mode: the data directory was formatted by `rill cluster
    /// format`).
    #[cfg(feature = "cluster")]
    pub cluster: Option<crate::cluster::ClusterNode>,
    /// The memory budget every connection reserves from before it reads.
    pub memory: Arc<MemoryBudget>,
    /// The start-up footprint counted against [`Self::memory`] for the node's life.
    _footprint: Reservation,
    shutdown: CancellationToken,
    connections: TaskTracker,
    listeners: TaskTracker,
}

/// The address clients should use for a bound address: unspecified becomes 127.0.0.1.
pub fn advertised_for(bound: SocketAddr) -> (String, u16) {
    let ip = if bound.ip().is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        bound.ip()
    };
    (ip.to_string(), bound.port())
}

/// Kafka's security protocol name of the Kafka listener.
fn security_protocol(settings: &NodeSettings) -> &'static str {
    match (settings.kafka_tls.is_some(), settings.kafka_sasl.is_some()) {
        (true, true) => "SASL_SSL",
        (true, false) => "SSL",
        (false, true) => "SASL_PLAINTEXT",
        (false, false) => "PLAINTEXT",
    }
}

/// Kafka broker-config names of node-level topic defaults.
fn broker_name_of_topic_key(key: &str) -> Option<&'static str> {
    Some(match key {
        "retention.ms" => "log.retention.ms",
        "retention.bytes" => "log.retention.bytes",
        "segment.bytes" => "log.segment.bytes",
        "segment.ms" => "log.roll.ms",
        "cleanup.policy" => "log.cleanup.policy",
        "max.message.bytes" => "message.max.bytes",
        "message.timestamp.type" => "log.message.timestamp.type",
        "min.cleanable.dirty.ratio" => "log.cleaner.min.cleanable.ratio",
        "delete.retention.ms" => "log.cleaner.delete.retention.ms",
        "min.compaction.lag.ms" => "log.cleaner.min.compaction.lag.ms",
        "index.interval.bytes" => "log.index.interval.bytes",
        _ => return None,
    })
}

/// The node's settings as DescribeConfigs(BROKER) shows them (`cluster_mode`: with the
/// `[cluster]` settings).
fn broker_configs(
    settings: &NodeSettings,
    bound: SocketAddr,
    advertised: &(String, u16),
    extra: &[(SocketAddr, (String, u16))],
    cluster_mode: bool,
) -> Vec<(String, String)> {
    let b = &settings.broker;
    let scheme = security_protocol(settings);
    let mut listeners = vec![format!("{scheme}://{bound}")];
    let mut advertised_listeners = vec![format!("{scheme}://{}:{}", advertised.0, advertised.1)];
    let mut protocols = vec![format!("{scheme}:{scheme}")];
    for (l, (bound, adv)) in settings.kafka_extra.iter().zip(extra) {
        listeners.push(format!("{}://{bound}", l.name));
        advertised_listeners.push(format!("{}://{}:{}", l.name, adv.0, adv.1));
        protocols.push(format!("{}:{}", l.name, l.security.name()));
    }
    let mut out = vec![
        ("broker.id".to_string(), settings.node_id.to_string()),
        ("node.id".to_string(), settings.node_id.to_string()),
        ("rill.node.name".to_string(), settings.node_name.clone()),
        ("listeners".to_string(), listeners.join(",")),
        (
            "advertised.listeners".to_string(),
            advertised_listeners.join(","),
        ),
        (
            "listener.security.protocol.map".to_string(),
            protocols.join(","),
        ),
        (
            "auto.create.topics.enable".to_string(),
            b.auto_create_topics.to_string(),
        ),
        (
            "num.partitions".to_string(),
            b.default_partitions.to_string(),
        ),
        (
            "default.replication.factor".to_string(),
            if cluster_mode {
                settings.cluster.default_replication_factor.to_string()
            } else {
                "1".to_string()
            },
        ),
        (
            "socket.request.max.bytes".to_string(),
            settings.socket_request_max_bytes.to_string(),
        ),
        ("log.dirs".to_string(), b.data_dir.display().to_string()),
        (
            "rill.encryption".to_string(),
            match b.encryption {
                EncryptionSetting::Auto => "auto".to_string(),
                EncryptionSetting::Cipher(c) => format!("{c:?}"),
                EncryptionSetting::Off => "off".to_string(),
            },
        ),
    ];
    if let Some(mechanisms) = &settings.kafka_sasl {
        let names: Vec<&str> = mechanisms.iter().map(|m| m.name()).collect();
        out.push(("sasl.enabled.mechanisms".to_string(), names.join(",")));
    }
    match b.flush {
        FlushPolicy::Always => out.push(("rill.flush".to_string(), "always".to_string())),
        FlushPolicy::Interval { ms } => {
            out.push(("log.flush.interval.ms".to_string(), ms.to_string()))
        }
    }
    if cluster_mode {
        let c = &settings.cluster;
        for (k, v) in [
            ("min.insync.replicas", i64::from(c.min_insync_replicas)),
            ("replica.lag.time.max.ms", c.replica_lag_time_max_ms as i64),
            (
                "broker.session.timeout.ms",
                c.broker_session_timeout_ms as i64,
            ),
            (
                "broker.heartbeat.interval.ms",
                c.broker_heartbeat_interval_ms as i64,
            ),
        ] {
            out.push((k.to_string(), v.to_string()));
        }
        if let Some(rack) = &c.rack {
            out.push(("broker.rack".to_string(), rack.clone()));
        }
    }
    if let Some(budget) = b.disk_budget_bytes {
        out.push(("rill.disk.budget.bytes".to_string(), budget.to_string()));
    }
    for e in b.default_topic_config.describe(&BTreeMap::new()) {
        if let Some(name) = broker_name_of_topic_key(&e.name) {
            out.push((name.to_string(), e.value));
        }
    }
    out
}

/// The TLS of a Kafka listener with `files` (None: plaintext); client certificates give the
/// principal when `client_ca` is set and the listener does not require SASL (SASL wins, as in
/// Kafka).
fn listener_tls(
    files: Option<&crate::config::TlsFiles>,
    sasl: bool,
    mapper: &Arc<kafka::ssl_principal_mapper::SslPrincipalMapper>,
) -> Result<Option<kafka::server::ListenerTls>, ServeError> {
    let Some(files) = files else {
        return Ok(None);
    };
    Ok(Some(kafka::server::ListenerTls {
        acceptor: TlsAcceptor::from(tls::server_config(files)?),
        principal_mapper: (files.client_ca.is_some() && !sasl).then(|| mapper.clone()),
    }))
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { what, addr, source })
}

/// The node's memory budget (`[node] memory_budget_bytes`, else
/// [`crate::memory_budget::default_budget`]) with the resident memory of the process now (code,
/// runtime, open logs: called once storage is open) counted against it for the node's life.
/// Under the `memory_budget_off` failpoint the budget is unlimited.
fn memory_budget(settings: &NodeSettings) -> Result<(Arc<MemoryBudget>, Reservation), ServeError> {
    let (budget, source) = match settings.memory_budget_bytes {
        Some(b) => (b, "[node] memory_budget_bytes"),
        None => crate::memory_budget::default_budget(),
    };
    // What the process holds now, plus the blocking pool once all its threads run (they start
    // on demand; each keeps its stack and allocator state resident).
    let footprint = crate::process_metrics::ProcessStats::read()
        .resident_bytes
        .unwrap_or(0)
        + (MAX_BLOCKING_THREADS * BLOCKING_THREAD_BYTES) as u64;
    if rill_core::failpoints::is_set(rill_core::failpoints::MEMORY_BUDGET_OFF) {
        tracing::warn!("failpoint memory_budget_off: the memory budget is unlimited");
        let memory = MemoryBudget::unlimited();
        let held = memory.charge(footprint as usize);
        return Ok((memory, held));
    }
    let packet = settings.mqtt.max_packet_size;
    let needed = footprint + (packet + crate::memory_budget::READ_ALLOWANCE) as u64;
    if budget < needed {
        return Err(ServeError::MemoryBudget {
            budget,
            footprint,
            packet,
        });
    }
    tracing::info!(
        budget_bytes = budget,
        source,
        footprint_bytes = footprint,
        "memory budget"
    );
    let memory = MemoryBudget::new(usize::try_from(budget).unwrap_or(usize::MAX >> 1));
    let held = memory.charge(footprint as usize);
    Ok((memory, held))
}

/// Register the scrape-time collectors and the storage and MQTT metrics of a node (see
/// `docs/metrics.md`; the cluster's under-replicated / ISR metrics will be registered here too).
fn register_node_metrics(
    metrics: &mut Metrics,
    broker: &Arc<Broker>,
    groups: &Arc<rill_core::group::GroupCoordinator>,
    coordinators: Option<&Arc<crate::cluster::coordinator_runtime::CoordinatorRuntime>>,
    mqtt: &crate::mqtt::MqttServer,
    storage: &crate::storage_metrics::StorageMetrics,
) {
    let per_partition = metrics.config().per_partition;
    let cipher = broker.cipher().map_or("off", |c| c.name());
    let (mqtt_metrics, retained) = mqtt.metrics();
    let r = metrics.rill_registry();
    storage.register(r);
    mqtt_metrics.register(r, retained);
    r.register_collector(Box::new(crate::storage_metrics::LogCollector(
        broker.clone(),
    )));
    r.register_collector(Box::new(crate::group_metrics::GroupCollector {
        groups: groups.clone(),
        coordinators: coordinators.cloned(),
        broker: broker.clone(),
        per_partition,
    }));
    r.register_collector(Box::new(crate::process_metrics::BuildInfoCollector {
        cipher,
    }));
    metrics.register_unprefixed_collector(Box::new(crate::process_metrics::ProcessCollector));
}

impl Node {
    /// Open storage, bind the listeners and start serving. Logs one `listening` event with the
    /// bound addresses.
    pub async fn start(settings: NodeSettings) -> Result<Node, ServeError> {
        let tls = listener_tls(
            settings.kafka_tls.as_ref(),
            settings.kafka_sasl.is_some(),
            &settings.ssl_principal_mapper,
        )?;
        let http_tls = settings
            .http_tls
            .as_ref()
            .map(|files| tls::server_config(files).map(TlsAcceptor::from))
            .transpose()?;
        let extra_tls = settings
            .kafka_extra
            .iter()
            .map(|l| {
                listener_tls(
                    l.tls.as_ref(),
                    l.sasl.is_some(),
                    &settings.ssl_principal_mapper,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !settings.kafka_listen.ip().is_loopback() && settings.kafka_sasl.is_none() {
            tracing::warn!(
                listener = "Kafka",
                addr = %settings.kafka_listen,
                "binding a non-loopback address without authentication: anyone who can reach it can read and write"
            );
        }
        let admin_tokens = settings
            .admin_tokens_file
            .as_deref()
            .map(crate::admin_tokens::AdminTokens::load)
            .transpose()?;
        #[cfg(feature = "cluster")]
        let formatted = crate::cluster::formatted(&settings.broker.data_dir)?;
        #[cfg(feature = "cluster")]
        if let Some(meta) = &formatted {
            crate::cluster::check_settings(&settings, meta)?;
        }
        #[cfg(not(feature = "cluster"))]
        let formatted: Option<rill_core::controller::meta_properties::MetaProperties> = {
            let path = settings
                .broker
                .data_dir
                .join(rill_core::controller::meta_properties::META_PROPERTIES_FILE);
            if path.exists() {
                return Err(ServeError::NoClusterSupport { path });
            }
            None
        };
        let mut broker_config = settings.broker.clone();
        if formatted.is_some() {
            // A cluster member keeps only the replicas the metadata image assigns to it.
            broker_config.hosting = rill_core::broker::Hosting::Assigned;
        }
        let storage_metrics = crate::storage_metrics::StorageMetrics::default();
        if settings.metrics.enabled {
            broker_config.observer = Arc::new(storage_metrics.clone());
        }
        let broker = tokio::task::spawn_blocking(move || Broker::open(broker_config))
            .await
            .map_err(|e| ServeError::Task(e.to_string()))??;
        let kafka_listener = bind("Kafka", settings.kafka_listen).await?;
        let mut extra_listeners = Vec::new();
        for l in &settings.kafka_extra {
            let listener = bind("Kafka (extra)", l.listen).await?;
            let addr = listener.local_addr().map_err(|source| ServeError::Bind {
                what: "Kafka (extra)",
                addr: l.listen,
                source,
            })?;
            let advertised = l.advertised.clone().unwrap_or_else(|| advertised_for(addr));
            if !l.listen.ip().is_loopback() && l.sasl.is_none() {
                tracing::warn!(
                    listener = %l.name,
                    addr = %l.listen,
                    "binding a non-loopback address without SASL: only the ACLs (and client \
                     certificates, if required) stand between clients and the data"
                );
            }
            extra_listeners.push((listener, addr, advertised));
        }
        let http_listener = bind("admin HTTP", settings.http_listen).await?;
        let kafka_addr = kafka_listener
            .local_addr()
            .map_err(|source| ServeError::Bind {
                what: "Kafka",
                addr: settings.kafka_listen,
                source,
            })?;
        let http_addr = http_listener
            .local_addr()
            .map_err(|source| ServeError::Bind {
                what: "admin HTTP",
                addr: settings.http_listen,
                source,
            })?;
        let advertised = settings
            .advertised_kafka
            .clone()
            .unwrap_or_else(|| advertised_for(kafka_addr));
        #[cfg(feature = "cluster")]
        let cluster = match &formatted {
            Some(meta) => {
                let mut endpoints = vec![rill_core::controller::Endpoint {
                    name: crate::cluster::KAFKA_LISTENER_NAME.to_string(),
                    host: advertised.0.clone(),
                    port: advertised.1,
                    security_protocol: security_protocol(&settings).to_string(),
                }];
                for (l, (_, _, adv)) in settings.kafka_extra.iter().zip(&extra_listeners) {
                    endpoints.push(rill_core::controller::Endpoint {
                        name: l.name.clone(),
                        host: adv.0.clone(),
                        port: adv.1,
                        security_protocol: l.security.name().to_string(),
                    });
                }
                Some(crate::cluster::ClusterNode::start(&settings, meta, endpoints).await?)
            }
            None => None,
        };
        let bridge_status = rill_bridge::BridgeStatus::new();
        let mut metrics = Metrics::new(&settings.metrics);
        metrics.register_collector(Box::new(crate::bridge_metrics::BridgeCollector(
            bridge_status.clone(),
        )));
        metrics.export_backlog(broker.clone());
        let shutdown = CancellationToken::new();
        let groups_config = settings.groups.clone();
        let groups_broker = broker.clone();
        let groups =
            tokio::task::spawn_blocking(move || kafka::groups::open(groups_broker, groups_config))
                .await
                .map_err(|e| ServeError::Task(e.to_string()))?
                .map_err(|e| ServeError::Task(format!("group coordinator: {e}")))?;
        let (memory, footprint) = memory_budget(&settings)?;
        metrics.register_collector(Box::new(crate::memory_budget::BudgetCollector(
            memory.clone(),
        )));
        let mqtt_server = crate::mqtt::MqttServer::with_metrics(
            broker.clone(),
            settings.mqtt.clone(),
            crate::mqtt::metrics::MqttMetrics::new(settings.metrics.enabled),
        )?;
        mqtt_server.set_memory_budget(memory.clone());
        // In a cluster: the replicas this node hosts, their ISR changes going to the controller.
        #[cfg(feature = "cluster")]
        let replicas = cluster.as_ref().map(|c| {
            let view: Arc<dyn crate::kafka::cluster_view::ClusterView> = Arc::new(c.node.clone());
            rill_core::replica::ReplicaManager::new(
                rill_core::replica::ReplicaManagerConfig {
                    broker_id: settings.node_id,
                    replica_lag_time_max: std::time::Duration::from_millis(
                        settings.cluster.replica_lag_time_max_ms,
                    ),
                },
                rill_core::clock::system_clock(),
                Arc::new(
                    crate::cluster::alter_partition::ControllerAlterPartitionManager::new(view),
                ),
            )
        });
        #[cfg(not(feature = "cluster"))]
        let replicas: Option<Arc<rill_core::replica::ReplicaManager>> = None;
        #[cfg(feature = "cluster")]
        if let (Some(c), Some(r)) = (&cluster, &replicas) {
            metrics.register_collector(Box::new(
                crate::replication_metrics::ReplicationCollector {
                    replicas: r.clone(),
                    cluster: Arc::new(c.node.clone()),
                },
            ));
        }
        // In a cluster: the group coordinator shards of the `__consumer_offsets` partitions led
        // here (the redb offset store above is then not used for groups).
        #[cfg(feature = "cluster")]
        let coordinators = replicas.as_ref().zip(cluster.as_ref()).map(|(r, c)| {
            crate::cluster::coordinator_runtime::CoordinatorRuntime::new(
                settings.groups.clone(),
                r.clone(),
                tokio::runtime::Handle::current(),
                settings.cluster.offsets_topic_num_partitions,
                c.node.incarnation(),
            )
        });
        #[cfg(not(feature = "cluster"))]
        let coordinators: Option<
            Arc<crate::cluster::coordinator_runtime::CoordinatorRuntime>,
        > = None;
        register_node_metrics(
            &mut metrics,
            &broker,
            &groups,
            coordinators.as_ref(),
            &mqtt_server,
            &storage_metrics,
        );
        let metrics = Arc::new(metrics);
        let credentials = Arc::new(rill_core::credentials::CredentialStore::open(
            broker.metadata_handle(),
        )?);
        // A cluster member's users are the cluster's (the metadata image's): none until the
        // metadata publisher has caught up, never the ones of this node's own table.
        if formatted.is_some() {
            credentials.mirror(&Default::default());
        }
        let sasl = settings.kafka_sasl.as_ref().map(|mechanisms| {
            Arc::new(crate::kafka::auth::open(
                credentials.clone(),
                mechanisms.clone(),
                settings.kafka_tls.is_some(),
            ))
        });
        let authorization = match &settings.kafka_authorizer {
            None => None,
            Some(config) => {
                let store: Box<dyn rill_core::authorizer::store::AclStore> = {
                    #[cfg(feature = "cluster")]
                    let through_controller = cluster.as_ref().map(|c| {
                        crate::cluster::controller_acl_store::ControllerAclStore::new(
                            Arc::new(c.node.clone()),
                            tokio::runtime::Handle::current(),
                        )
                    });
                    #[cfg(not(feature = "cluster"))]
                    let through_controller: Option<
                        rill_core::authorizer::store::MetaAclStore,
                    > = None;
                    match through_controller {
                        Some(s) => Box::new(s),
                        None => Box::new(rill_core::authorizer::store::MetaAclStore::open(
                            broker.metadata_handle(),
                        )?),
                    }
                };
                let authorizer =
                    rill_core::authorizer::StandardAuthorizer::open(store, config.clone())?;
                tracing::info!(
                    super_users = ?config.super_users,
                    allow_everyone_if_no_acl_found = config.allow_everyone_if_no_acl_found,
                    "Kafka authorizer on"
                );
                Some(Arc::new(crate::kafka::authorization::Authorization::new(
                    authorizer,
                    metrics.clone(),
                )))
            }
        };
        let ctx = Arc::new(Context {
            broker: broker.clone(),
            groups: groups.clone(),
            coordinators: coordinators.clone(),
            node_id: settings.node_id,
            advertised_host: advertised.0.clone(),
            advertised_port: advertised.1,
            listener_name: kafka::cluster_view::KAFKA_LISTENER.to_string(),
            cluster_id: formatted
                .as_ref()
                .map_or_else(|| broker.cluster_id(), |m| m.cluster_id.clone()),
            socket_request_max_bytes: settings.socket_request_max_bytes,
            memory: memory.clone(),
            broker_configs: broker_configs(
                &settings,
                kafka_addr,
                &advertised,
                &extra_listeners
                    .iter()
                    .map(|(_, addr, adv)| (*addr, adv.clone()))
                    .collect::<Vec<_>>(),
                formatted.is_some(),
            ),
            metrics: metrics.clone(),
            shutdown: shutdown.clone(),
            producer_ids: Arc::new(crate::kafka::producer_id_manager::ProducerIdManager::new(
                Arc::new(rill_core::producer_state::ProducerIdAllocator::new(
                    broker.metadata_handle(),
                )),
            )),
            sasl,
            credentials,
            #[cfg(feature = "cluster")]
            cluster: cluster.as_ref().map(|c| {
                Arc::new(c.node.clone()) as Arc<dyn crate::kafka::cluster_view::ClusterView>
            }),
            #[cfg(not(feature = "cluster"))]
            cluster: None,
            listener: kafka::context::ListenerKind::Client,
            replicas: replicas.clone(),
            authorization,
        });
        #[cfg(feature = "console")]
        let console_cluster = ctx.cluster.clone();
        #[cfg(feature = "console")]
        let console_cluster_id = ctx.cluster_id.clone();
        let connections = TaskTracker::new();
        let listeners = TaskTracker::new();
        listeners.spawn(kafka::groups::run_ticker(groups.clone(), shutdown.clone()));
        let kafka_liveness = Liveness::new();
        let mqtt_liveness = Liveness::new();
        #[cfg(feature = "cluster")]
        let cluster_addr = cluster.as_ref().map(|c| c.addr);
        #[cfg(not(feature = "cluster"))]
        let cluster_addr: Option<SocketAddr> = None;
        #[cfg(feature = "cluster")]
        let cluster = cluster.map(|c| {
            // The cluster listener's connections are inter-node: replica fetches are served there.
            let cluster_ctx = Arc::new(Context {
                listener: kafka::context::ListenerKind::Cluster,
                ..(*ctx).clone()
            });
            c.serve(cluster_ctx, shutdown.clone(), &listeners, &connections)
        });
        #[cfg(feature = "cluster")]
        if let (Some(node), Some(replicas), Some(coordinators)) =
            (&cluster, &replicas, &coordinators)
        {
            listeners.spawn(crate::cluster::metadata_publisher::run(
                node.images(),
                node.incarnation(),
                crate::cluster::metadata_publisher::Subscribers {
                    broker: broker.clone(),
                    replicas: replicas.clone(),
                    coordinators: coordinators.clone(),
                    credentials: ctx.credentials.clone(),
                    authorization: ctx.authorization.clone(),
                },
                shutdown.clone(),
            ));
            listeners.spawn(crate::cluster::local_state_import::run(
                Arc::new(node.clone()),
                node.images(),
                node.incarnation(),
                ctx.credentials.clone(),
                broker.metadata_handle(),
                shutdown.clone(),
            ));
            listeners.spawn(coordinators.clone().run_ticker(shutdown.clone()));
            listeners.spawn(crate::cluster::replica_fetcher::run(
                replicas.clone(),
                Arc::new(node.clone()),
                crate::cluster::replica_fetcher::ReplicaFetcherConfig::default(),
                shutdown.clone(),
            ));
            let (expiring, stop) = (replicas.clone(), shutdown.clone());
            listeners
                .spawn(async move { expiring.run_isr_expiration(stop.cancelled_owned()).await });
        }
        let mut extra_addrs = Vec::new();
        for ((l, (listener, addr, adv)), tls) in settings
            .kafka_extra
            .iter()
            .zip(extra_listeners)
            .zip(extra_tls)
        {
            let sasl = l.sasl.as_ref().map(|mechanisms| {
                Arc::new(crate::kafka::auth::open(
                    ctx.credentials.clone(),
                    mechanisms.clone(),
                    l.tls.is_some(),
                ))
            });
            let extra_ctx = Arc::new(Context {
                advertised_host: adv.0.clone(),
                advertised_port: adv.1,
                listener_name: l.name.clone(),
                sasl,
                ..(*ctx).clone()
            });
            listeners.spawn(kafka::server::run(
                extra_ctx,
                listener,
                tls,
                shutdown.clone(),
                connections.clone(),
                Liveness::new(),
            ));
            extra_addrs.push(format!("{}={addr}", l.name));
        }
        listeners.spawn(kafka::server::run(
            ctx,
            kafka_listener,
            tls,
            shutdown.clone(),
            connections.clone(),
            kafka_liveness.clone(),
        ));
        let mqtt_ws_listen = settings.mqtt_ws_listen.map(|a| a.to_string());
        #[cfg(feature = "console")]
        let console_mqtt = mqtt_server.clone();
        let mqtt = crate::mqtt::listener::start(
            mqtt_server,
            &settings.mqtt_listen.to_string(),
            mqtt_ws_listen.as_deref(),
            shutdown.clone(),
            mqtt_liveness.clone(),
        )
        .await?;
        let (mqtt_addr, mqtt_tasks) = (mqtt.mqtt, mqtt.tasks);
        let mqtt_ws = mqtt
            .mqtt_ws
            .map_or_else(|| "off".to_string(), |a| a.to_string());
        listeners.spawn(async move {
            for task in mqtt_tasks {
                let _ = task.await;
            }
        });
        // In cluster mode the console reads every group through the cluster listeners, as a
        // peer (no Kafka credentials needed, whatever the Kafka listener requires).
        #[cfg(all(feature = "console", feature = "cluster"))]
        let console_kafka = cluster.as_ref().and_then(|node| {
            node.kafka_client(crate::console::kafka_options())
                .map_err(|e| {
                    tracing::warn!(error = %e, "console: no Kafka client; group pages show this node's groups only");
                })
                .ok()
        });
        #[cfg(all(feature = "console", not(feature = "cluster")))]
        let console_kafka = None;
        #[cfg(feature = "console")]
        let console = crate::console::Console::new(
            broker.clone(),
            groups.clone(),
            console_mqtt,
            bridge_status.clone(),
            console_cluster,
            console_kafka,
            crate::console::NodeIdentity {
                node_id: settings.node_id,
                node_name: settings.node_name.clone(),
                cluster_id: console_cluster_id,
                version: env!("CARGO_PKG_VERSION"),
                kafka_listen: kafka_addr.to_string(),
                mqtt_listen: mqtt_addr.to_string(),
            },
            settings.console_writes,
        );
        #[cfg(feature = "console")]
        listeners.spawn(crate::console::run_sampler(
            console.clone(),
            shutdown.clone(),
        ));
        let router = admin_http::router(
            metrics.clone(),
            bridge_status.clone(),
            #[cfg(feature = "console")]
            console,
            admin_http::Access::for_listener(
                http_addr,
                admin_tokens,
                settings
                    .http_tls
                    .as_ref()
                    .is_some_and(|t| t.client_ca.is_some()),
            ),
        );
        let http_shutdown = shutdown.clone();
        match http_tls {
            None => listeners.spawn(async move {
                let served = axum::serve(http_listener, router)
                    .with_graceful_shutdown(http_shutdown.cancelled_owned())
                    .await;
                if let Err(e) = served {
                    tracing::error!(error = %e, "admin HTTP server failed");
                }
            }),
            Some(acceptor) => {
                let tls_listener =
                    admin_http::TlsListener::new(http_listener, acceptor, shutdown.clone())
                        .map_err(|source| ServeError::Bind {
                            what: "admin HTTP",
                            addr: settings.http_listen,
                            source,
                        })?;
                listeners.spawn(async move {
                    let served = axum::serve(tls_listener, router)
                        .with_graceful_shutdown(http_shutdown.cancelled_owned())
                        .await;
                    if let Err(e) = served {
                        tracing::error!(error = %e, "admin HTTPS server failed");
                    }
                })
            }
        };
        let cluster_listen = cluster_addr.map_or_else(|| "off".to_string(), |a| a.to_string());
        tracing::info!(
            kafka = %kafka_addr,
            kafka_extra = %extra_addrs.join(","),
            http = %http_addr,
            http_tls = settings.http_tls.is_some(),
            mqtt = %mqtt_addr,
            mqtt_ws = %mqtt_ws,
            cluster = %cluster_listen,
            node_id = settings.node_id,
            node_name = %settings.node_name,
            advertised = %format!("{}:{}", advertised.0, advertised.1),
            tls = settings.kafka_tls.is_some(),
            sasl = settings.kafka_sasl.is_some(),
            "listening"
        );
        Ok(Node {
            kafka_addr,
            http_addr,
            broker,
            metrics,
            groups,
            bridge_status,
            kafka_liveness,
            mqtt_liveness,
            cluster_addr,
            #[cfg(feature = "cluster")]
            cluster,
            memory,
            _footprint: footprint,
            shutdown,
            connections,
            listeners,
        })
    }

    /// The loops a service watchdog requires to be alive: storage maintenance and the Kafka and
    /// MQTT accept loops.
    pub fn watched_loops(&self) -> Vec<crate::systemd::Watched> {
        use crate::systemd::Watched;
        vec![
            Watched {
                name: "storage maintenance",
                liveness: self.broker.maintenance_liveness().clone(),
            },
            Watched {
                name: "Kafka accept",
                liveness: self.kafka_liveness.clone(),
            },
            Watched {
                name: "MQTT accept",
                liveness: self.mqtt_liveness.clone(),
            },
        ]
    }

    /// Stop accepting, let in-flight requests finish (at most [`SHUTDOWN_GRACE`]), flush storage.
    pub async fn shutdown(self) -> Result<(), ServeError> {
        #[cfg(feature = "cluster")]
        if let Some(cluster) = &self.cluster {
            // Leadership moves away while this node still serves (Kafka's controlled shutdown).
            cluster.controlled_shutdown().await;
        }
        self.shutdown.cancel();
        self.listeners.close();
        self.connections.close();
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            self.listeners.wait().await;
            self.connections.wait().await;
        })
        .await;
        if drained.is_err() {
            tracing::warn!("in-flight requests did not finish in time; closing anyway");
        }
        #[cfg(feature = "cluster")]
        if let Some(cluster) = &self.cluster {
            cluster.stop().await;
        }
        let broker = self.broker.clone();
        tokio::task::spawn_blocking(move || broker.shutdown())
            .await
            .map_err(|e| ServeError::Task(e.to_string()))??;
        tracing::info!("shut down");
        Ok(())
    }
}

/// Resolve settings from `--config` and the flags.
pub fn settings_from_args(args: &ServeArgs) -> Result<NodeSettings, ConfigFileError> {
    let file = match &args.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let flags = Overrides {
        data_dir: args.data_dir.clone(),
        kafka_listen: args.kafka_listen,
        mqtt_listen: args.mqtt_listen,
        mqtt_ws_listen: args.mqtt_ws_listen,
        http_listen: args.http_listen,
        node_id: args.node_id,
        node_name: args.node_name.clone(),
        advertised_kafka: args.advertised_kafka.clone(),
        key_file: args.key_file.clone(),
        master_key_env: std::env::var("RILL_MASTER_KEY")
            .ok()
            .filter(|k| !k.is_empty()),
        kafka_sasl: args.kafka_sasl.clone(),
        cluster_listen: args.cluster_listen,
        kafka_authorizer: args.kafka_authorizer,
    };
    NodeSettings::resolve(&file, &flags)
}

/// The mirrors of the node's TOML file (`[[mirror]]`) followed by those of `--bridge-config`; a
/// mirror defined in both files is an error (it would copy the same records twice).
pub fn mirror_configs(
    args: &ServeArgs,
    settings: &NodeSettings,
) -> anyhow::Result<Vec<rill_bridge::MirrorConfig>> {
    let mut mirrors = settings.mirrors.clone();
    if let Some(path) = &args.bridge_config {
        let cfg = rill_bridge::BridgeConfig::load(path)?;
        for (i, m) in cfg.mirror.into_iter().enumerate() {
            if let Some(j) = mirrors.iter().position(|n| n.is_same_mirror(&m)) {
                let node_file = args
                    .config
                    .as_deref()
                    .map_or_else(|| "--config".to_string(), |p| p.display().to_string());
                anyhow::bail!(
                    "the mirror {} is defined both in {node_file} ([[mirror]] number {}) and in \
                     {} ([[mirror]] number {}); define each mirror in one file",
                    m.describe(),
                    j + 1,
                    path.display(),
                    i + 1
                );
            }
            mirrors.push(m);
        }
    }
    Ok(mirrors)
}

/// The failpoint `power_cut_on_sigusr1` (debug test builds only): SIGUSR1 cuts the power.
#[cfg(all(unix, feature = "failpoints"))]
fn power_cut_on_sigusr1() {
    use rill_core::failpoints::{is_set, power_cut, POWER_CUT_ON_SIGUSR1};
    if !is_set(POWER_CUT_ON_SIGUSR1) {
        return;
    }
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1()) {
        Ok(mut usr1) => {
            tokio::spawn(async move {
                if usr1.recv().await.is_some() {
                    power_cut("power_cut_on_sigusr1");
                }
            });
        }
        Err(e) => tracing::error!(error = %e, "cannot listen for SIGUSR1"),
    }
}

/// Resolves on SIGINT or SIGTERM. The SIGTERM handler is installed when this is called (not when
/// first polled), so a SIGTERM right after the node logs `listening` still shuts it down
/// gracefully instead of killing it.
fn termination() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    async move {
        #[cfg(unix)]
        match term {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the node");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Under systemd (`NOTIFY_SOCKET`): sends READY=1 (the node listens) and starts the watchdog
/// task when `WATCHDOG_USEC` asks for one. Returns the notifier and the watchdog task.
fn notify_ready(
    node: &Node,
) -> Option<(
    Arc<crate::systemd::Notifier>,
    Option<tokio::task::JoinHandle<()>>,
)> {
    let notifier = match crate::systemd::Notifier::from_env() {
        Ok(Some(n)) => Arc::new(n),
        Ok(None) => return None,
        Err(e) => {
            tracing::warn!(error = %e, "NOTIFY_SOCKET is set but unusable; systemd is not notified");
            return None;
        }
    };
    let status = format!("STATUS=listening: kafka {}", node.kafka_addr);
    if let Err(e) = notifier.send(&format!("READY=1\n{status}")) {
        tracing::warn!(error = %e, "cannot tell systemd the node is ready");
    }
    let watchdog = crate::systemd::watchdog_interval_from_env().map(|interval| {
        tracing::info!(
            interval_ms = interval.as_millis() as u64,
            "systemd watchdog enabled"
        );
        tokio::spawn(crate::systemd::run_watchdog(
            notifier.clone(),
            interval,
            node.watched_loops(),
        ))
    });
    Some((notifier, watchdog))
}

/// Threads for blocking work (fsync waits, metadata store, authentication hashing). Tokio's
/// default of 512 lets 1,000 connections waiting on a slow fsync start 512 threads, each with
/// its stack and allocator state resident (about 130 KiB each in a debug build, 65 MiB in all);
/// beyond this many, blocking work queues instead (issue 16). Not in cluster mode: there the
/// controller's Raft log appends and replication waits also run on the blocking pool, and
/// queueing them behind fsync waiters would stall heartbeats and fence healthy brokers; a cluster
/// member keeps Tokio's default ([`CLUSTER_MAX_BLOCKING_THREADS`]).
pub const MAX_BLOCKING_THREADS: usize = 64;

/// The blocking pool of a cluster member (Tokio's default).
pub const CLUSTER_MAX_BLOCKING_THREADS: usize = 512;

/// What one blocking thread is counted for in the memory budget (its resident stack and
/// allocator state, measured at about 130 KiB in a debug build).
pub const BLOCKING_THREAD_BYTES: usize = 128 << 10;

/// Run a node until SIGINT/SIGTERM.
pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let settings = settings_from_args(&args)?;
    let mut mirrors = Vec::new();
    for m in mirror_configs(&args, &settings)? {
        m.validate_for_node(&settings.node_name)?;
        mirrors.push(rill_bridge::Mirror::new(m)?);
    }
    if let Some(target) = &args.mirror_to {
        mirrors.push(rill_bridge::Mirror::new(
            rill_bridge::MirrorConfig::all_to(target),
        )?);
    }
    let cluster_member = settings
        .broker
        .data_dir
        .join(rill_core::controller::meta_properties::META_PROPERTIES_FILE)
        .exists();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("rill")
        .max_blocking_threads(if cluster_member {
            CLUSTER_MAX_BLOCKING_THREADS
        } else {
            MAX_BLOCKING_THREADS
        })
        .build()?;
    // The OTLP exporter (feature `otlp`) is a task on this runtime; the guard flushes it after
    // the node stopped.
    let telemetry = {
        let _entered = runtime.enter();
        crate::telemetry::init(&settings.tracing)?
    };
    let served = runtime.block_on(async move {
        let node_name = settings.node_name.clone();
        let stop = termination();
        #[cfg(all(unix, feature = "failpoints"))]
        power_cut_on_sigusr1();
        let node = Node::start(settings).await?;
        let service = notify_ready(&node);
        let bridge_stop = CancellationToken::new();
        let bridge = (!mirrors.is_empty()).then(|| {
            tokio::spawn(
                rill_bridge::Bridge::new(
                    node.broker.clone(),
                    node_name,
                    mirrors,
                    bridge_stop.clone(),
                )
                .with_status(node.bridge_status.clone())
                .with_group_offsets(node.groups.clone())
                .run(),
            )
        });
        stop.await;
        tracing::info!("signal received; shutting down");
        if let Some((notifier, watchdog)) = service {
            if let Some(w) = watchdog {
                w.abort();
            }
            if let Err(e) = notifier.send("STOPPING=1") {
                tracing::warn!(error = %e, "cannot tell systemd the node is stopping");
            }
        }
        bridge_stop.cancel();
        if let Some(b) = bridge {
            let _ = b.await;
        }
        node.shutdown().await?;
        Ok(ExitCode::SUCCESS)
    });
    drop(telemetry);
    served
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mirror_in_both_files_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let node = dir.path().join("node.toml");
        let bridge = dir.path().join("bridge.toml");
        let mirror = "[[mirror]]\ntopics = [\"a\"]\ntarget = \"c:1\"\n";
        std::fs::write(&node, format!("[node]\nname = \"e\"\n{mirror}")).unwrap();
        let args = |bridge_text: &str| {
            std::fs::write(&bridge, bridge_text).unwrap();
            ServeArgs {
                config: Some(node.clone()),
                bridge_config: Some(bridge.clone()),
                ..ServeArgs::default()
            }
        };
        let other = args("[[mirror]]\ntopics = [\"b\"]\ntarget = \"c:1\"\n");
        let settings = settings_from_args(&other).unwrap();
        let both = mirror_configs(&other, &settings).unwrap();
        assert_eq!(both.len(), 2);
        let same = args(&format!("{mirror}compression = \"none\"\n"));
        let err = mirror_configs(&same, &settings).unwrap_err().to_string();
        assert!(err.contains("defined both in"), "{err}");
        assert!(err.contains("push of [\"a\"] to c:1"), "{err}");
    }

    #[test]
    fn advertised_address_defaults() {
        assert_eq!(
            advertised_for("0.0.0.0:9092".parse().unwrap()),
            ("127.0.0.1".to_string(), 9092)
        );
        assert_eq!(
            advertised_for("[::]:1".parse().unwrap()),
            ("127.0.0.1".to_string(), 1)
        );
        assert_eq!(
            advertised_for("10.1.2.3:5".parse().unwrap()),
            ("10.1.2.3".to_string(), 5)
        );
    }
}
