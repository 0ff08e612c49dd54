//! [`ClusterNode`]: one node in cluster mode, tying the controller, the broker lifecycle, the
//! cluster listener and the replica fetchers' connections together; the [`ClusterView`] the
//! Kafka handlers use. Also the settings checks of cluster mode ([`check_settings`]) and
//! [`ClusterError`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rill_core::controller::meta_properties::{MetaProperties, MetaPropertiesError};
use rill_core::controller::{Command, ControllerRequest, Endpoint, MetadataImage};
use rill_core::log::FlushPolicy;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use super::broker_lifecycle::{BrokerLifecycle, BrokerState};
use super::controller::{Controller, ControllerStartError, SubmitFailure};
use super::peer::Identity;
use super::CLUSTER_LISTENER_NAME;
use super::{auth, listener, peer, replica_fetcher};
use crate::config::NodeSettings;
use crate::kafka::cluster_view::{
    ClusterView, QuorumInfo, QuorumMember, SubmitError, SubmitFuture,
};
use crate::kafka::Context;

/// Errors starting cluster mode.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// `meta.properties` does not read.
    #[error(transparent)]
    MetaProperties(#[from] MetaPropertiesError),
    /// `--node-id` differs from the formatted one.
    #[error(
        "--node-id {given} does not match node.id {formatted} in {path} (the data directory was \
         formatted by `rill cluster format --node-id {formatted}`)"
    )]
    NodeIdMismatch {
        /// The node id of the flags / file.
        given: i32,
        /// The formatted one.
        formatted: i32,
        /// `meta.properties`.
        path: PathBuf,
    },
    /// Interval flushing without KIP-966's unclean-shutdown exclusion.
    #[error(
        "flush = {{ interval_ms = {0} }} is refused in cluster mode: acknowledged records could \
         be lost when several nodes lose power, because a node restarting after an unclean \
         shutdown is not yet kept out of leadership and the ISR until it caught up (KIP-966, not \
         built yet); use flush = \"always\""
    )]
    IntervalFlush(u64),
    /// No cluster listener address.
    #[error(
        "cluster mode needs a cluster listener: set --cluster-listen or [listeners] cluster \
         (this node's voter address is {0})"
    )]
    NoClusterListener(String),
    /// Secret or insecure setup.
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
    /// The cluster listener does not bind.
    #[error("cannot bind the cluster listener on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The controller does not start.
    #[error(transparent)]
    Controller(#[from] ControllerStartError),
}

/// Reads `meta.properties` of `data_dir`: `Some` means cluster mode.
pub fn formatted(data_dir: &Path) -> Result<Option<MetaProperties>, ClusterError> {
    Ok(MetaProperties::read(data_dir)?)
}

/// The settings checks of cluster mode (before anything is opened).
pub fn check_settings(settings: &NodeSettings, meta: &MetaProperties) -> Result<(), ClusterError> {
    if settings.node_id != meta.node_id {
        return Err(ClusterError::NodeIdMismatch {
            given: settings.node_id,
            formatted: meta.node_id,
            path: settings
                .broker
                .data_dir
                .join(rill_core::controller::meta_properties::META_PROPERTIES_FILE),
        });
    }
    if let FlushPolicy::Interval { ms } = settings.broker.flush {
        return Err(ClusterError::IntervalFlush(ms));
    }
    Ok(())
}

/// A node in cluster mode: the controller, the broker lifecycle and the image they maintain.
#[derive(Clone)]
pub struct ClusterNode {
    controller: Arc<Controller>,
    lifecycle: Arc<BrokerLifecycle>,
    image: watch::Receiver<Arc<MetadataImage>>,
    /// `[cluster] default_replication_factor`.
    default_replication_factor: i16,
    /// This node's cluster listener as it advertises it (`host:port`).
    cluster_address: String,
}

/// A started (not yet serving) cluster node and its bound listener.
pub struct StartedCluster {
    /// The handle.
    pub node: ClusterNode,
    /// The bound cluster listener address.
    pub addr: SocketAddr,
    listener: TcpListener,
}

impl ClusterNode {
    /// Binds the cluster listener and starts the controller. `kafka`: the Kafka endpoints
    /// advertised to clients (`KAFKA`, then each extra listener), registered with the controller
    /// beside the cluster listener's.
    pub async fn start(
        settings: &NodeSettings,
        meta: &MetaProperties,
        kafka: Vec<Endpoint>,
    ) -> Result<StartedCluster, ClusterError> {
        let me = meta
            .initial_voters
            .iter()
            .find(|v| v.node_id == meta.node_id);
        let listen = match settings.cluster.listen {
            Some(a) => a,
            None => {
                let voter = me.map_or_else(|| "none".to_string(), |v| v.to_string());
                return Err(ClusterError::NoClusterListener(voter));
            }
        };
        let secret = settings
            .cluster
            .secret_file
            .as_deref()
            .map(auth::Secret::load)
            .transpose()?;
        let tls = settings
            .cluster
            .tls
            .as_ref()
            .map(auth::ClusterTls::load)
            .transpose()?;
        auth::check_plaintext(secret.as_ref(), tls.is_some(), listen)?;
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| ClusterError::Bind {
                addr: listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ClusterError::Bind {
            addr: listen,
            source,
        })?;
        let identity = Arc::new(Identity {
            cluster_id: meta.cluster_id.clone(),
            node_id: meta.node_id,
            incarnation: Uuid::new_v4(),
            directory_id: meta.directory_id,
            secret,
            source_ip: (!addr.ip().is_unspecified()).then_some(addr.ip()),
            tls,
        });
        let controller = Controller::start(
            &settings.broker.data_dir,
            meta,
            identity,
            Duration::from_millis(settings.cluster.broker_session_timeout_ms),
        )
        .await?;
        let (adv_host, adv_port) = settings
            .cluster
            .advertised
            .clone()
            .unwrap_or_else(|| crate::serve::advertised_for(addr));
        let mut listeners = kafka;
        let cluster_address = endpoint_address(&adv_host, adv_port);
        listeners.push(Endpoint {
            name: CLUSTER_LISTENER_NAME.to_string(),
            host: adv_host,
            port: adv_port,
            security_protocol: if settings.cluster.tls.is_some() {
                "SSL"
            } else {
                "PLAINTEXT"
            }
            .to_string(),
        });
        let lifecycle = BrokerLifecycle::new(
            controller.clone(),
            listeners,
            settings.cluster.rack.clone(),
            Duration::from_millis(settings.cluster.broker_heartbeat_interval_ms),
        );
        let image = controller.sm.subscribe();
        Ok(StartedCluster {
            node: ClusterNode {
                controller,
                lifecycle,
                image,
                default_replication_factor: settings.cluster.default_replication_factor,
                cluster_address,
            },
            addr,
            listener,
        })
    }

    /// The controller (Raft handle, state machine).
    pub fn controller(&self) -> &Arc<Controller> {
        &self.controller
    }

    /// This broker's registration state.
    pub fn broker_state(&self) -> watch::Receiver<BrokerState> {
        self.lifecycle.state()
    }

    /// A new connection (its own, so long polls do not hold up other RPCs) to the cluster
    /// listener of broker `broker_id` as its registration in the image advertises it; `None`
    /// when the broker is not registered or has no cluster endpoint. Use
    /// [`peer::PeerClient::kafka`] on it (e.g. a replica Fetch).
    pub fn broker_client(&self, broker_id: i32) -> Option<peer::PeerClient> {
        let image = self.image.borrow().clone();
        let endpoint = image
            .broker(broker_id)?
            .listeners
            .iter()
            .find(|l| l.name == CLUSTER_LISTENER_NAME)?
            .clone();
        Some(peer::PeerClient::new(
            self.controller.identity.clone(),
            endpoint_address(&endpoint.host, endpoint.port),
        ))
    }

    /// Asks the active controller for a controlled shutdown and waits for it (bounded).
    pub async fn controlled_shutdown(&self) {
        self.lifecycle.controlled_shutdown().await;
    }

    /// Stops openraft.
    pub async fn stop(&self) {
        if let Err(e) = self.controller.raft.shutdown().await {
            tracing::warn!(error = %e, "controller did not stop cleanly");
        }
    }
}

impl StartedCluster {
    /// Serves the cluster listener and starts the broker lifecycle and the controller duties on
    /// `tracker`, until `shutdown`.
    pub fn serve(
        self,
        ctx: Arc<Context>,
        shutdown: CancellationToken,
        listeners: &TaskTracker,
        connections: &TaskTracker,
    ) -> ClusterNode {
        let node = self.node;
        listeners.spawn(listener::run(
            self.listener,
            node.controller.clone(),
            ctx,
            shutdown.clone(),
            connections.clone(),
        ));
        listeners.spawn(node.controller.clone().run_duties(shutdown.clone()));
        listeners.spawn(node.lifecycle.clone().run(shutdown));
        node
    }
}

/// `host:port` of an endpoint (an IPv6 host in brackets).
fn endpoint_address(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A replica fetcher's channel to a leader: a [`peer::PeerClient`] (authenticated, bound to this
/// node's cluster address) carrying Kafka Fetch requests.
struct PeerChannel {
    leader: i32,
    client: peer::PeerClient,
}

impl replica_fetcher::LeaderChannel for PeerChannel {
    fn fetch<'a>(
        &'a mut self,
        version: i16,
        req: &'a kafka_protocol::messages::FetchRequest,
    ) -> replica_fetcher::FetchFuture<'a> {
        Box::pin(async move {
            self.client
                .kafka(kafka_protocol::messages::ApiKey::Fetch, version, req)
                .await
                .map_err(|e| replica_fetcher::FetcherError::Transport {
                    leader: self.leader,
                    source: Box::new(e),
                })
        })
    }
}

impl replica_fetcher::LeaderConnector for ClusterNode {
    fn connect(&self, broker_id: i32) -> replica_fetcher::ConnectFuture {
        let client = self.broker_client(broker_id);
        Box::pin(async move {
            let client = client.ok_or(replica_fetcher::FetcherError::UnknownBroker(broker_id))?;
            Ok(Box::new(PeerChannel {
                leader: broker_id,
                client,
            }) as Box<dyn replica_fetcher::LeaderChannel>)
        })
    }
}

/// Kafka clients of this node (the console's group pages) reach the brokers of the cluster
/// through their cluster listeners, as a peer: each connection is a [`peer::PeerClient`]'s
/// authenticated stream (cluster secret and/or mTLS), on which the broker serves Kafka requests
/// with a cluster peer's rights, whatever its Kafka listener requires (SASL, mTLS). A broker is
/// reached at the cluster endpoint the metadata image has for its id: Metadata and
/// FindCoordinator answer Kafka endpoints even on the cluster listener, so the advertised
/// address of a [`rill_client::Target::Broker`] is not used.
impl rill_client::Connector for ClusterNode {
    fn connect<'a>(
        &'a self,
        target: rill_client::Target<'a>,
        opts: &'a rill_client::ConnectOptions,
    ) -> rill_client::connector::ConnectFuture<'a> {
        let client = match target {
            rill_client::Target::Bootstrap(addr) => Some(peer::PeerClient::new(
                self.controller.identity.clone(),
                addr.to_string(),
            )),
            rill_client::Target::Broker { id, .. } => self.broker_client(id),
        };
        Box::pin(async move {
            let client = client.ok_or_else(|| {
                rill_client::ClientError::Usage(format!(
                    "{target:?} has no cluster endpoint in the metadata image"
                ))
            })?;
            let addr = client.addr().to_string();
            let stream =
                client
                    .into_stream()
                    .await
                    .map_err(|e| rill_client::ClientError::Transport {
                        addr: addr.clone(),
                        source: Box::new(e),
                    })?;
            rill_client::Connection::over(&addr, stream, opts).await
        })
    }
}

impl ClusterNode {
    /// A Kafka client of the whole cluster that connects as this node, through the cluster
    /// listeners (see the [`rill_client::Connector`] impl): bootstrapped at this node's own
    /// advertised cluster address, it reads whatever a cluster peer may, independent of the
    /// Kafka listeners' SASL or TLS. `opts`' security is not used (the peer handshake
    /// authenticates).
    pub fn kafka_client(
        &self,
        opts: rill_client::ConnectOptions,
    ) -> Result<rill_client::Client, rill_client::ClientError> {
        let opts = opts.with_security(rill_client::TargetSecurity::default());
        rill_client::Client::with_connector(&self.cluster_address, opts, Arc::new(self.clone()))
    }

    /// The metadata images this node's state machine applies, newest first.
    pub fn images(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.image.clone()
    }

    /// This process's incarnation id (its BrokerRegistration's).
    pub fn incarnation(&self) -> Uuid {
        self.controller.identity.incarnation
    }
}

impl ClusterView for ClusterNode {
    fn node_id(&self) -> i32 {
        self.controller.node_id()
    }

    fn image(&self) -> Arc<MetadataImage> {
        self.image.borrow().clone()
    }

    fn submit(&self, command: Command) -> SubmitFuture {
        let controller = self.controller.clone();
        Box::pin(async move {
            match controller.submit(ControllerRequest::new(command)).await {
                Ok(outcome) => Ok(outcome),
                Err(SubmitFailure::Rejected(e)) => Err(SubmitError::Rejected(e)),
                Err(SubmitFailure::Unavailable(reason)) => {
                    Err(SubmitError::ControllerUnavailable(reason))
                }
            }
        })
    }

    fn default_replication_factor(&self) -> i16 {
        self.default_replication_factor
    }

    fn quorum(&self) -> QuorumInfo {
        let m = self.controller.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership().clone();
        let replication = m.replication.clone().unwrap_or_default();
        let member = |id: u64| {
            let directory_id = membership
                .get_node(&id)
                .map(|n| n.directory_id)
                .unwrap_or_default();
            let log_end_offset = if id == m.id {
                m.last_log_index.map_or(-1, |i| i as i64 + 1)
            } else {
                replication
                    .get(&id)
                    .and_then(|l| l.as_ref())
                    .map_or(-1, |l| l.index as i64 + 1)
            };
            QuorumMember {
                node_id: i32::try_from(id).unwrap_or(-1),
                directory_id,
                log_end_offset,
                last_fetch_ago_ms: None,
                last_caught_up_ago_ms: None,
            }
        };
        let voters: Vec<u64> = membership.voter_ids().collect();
        let observers: Vec<QuorumMember> = membership
            .nodes()
            .map(|(id, _)| *id)
            .filter(|id| !voters.contains(id))
            .map(member)
            .collect();
        QuorumInfo {
            leader_id: m.current_leader.and_then(|l| i32::try_from(l).ok()),
            leader_epoch: i32::try_from(m.current_term).unwrap_or(i32::MAX),
            high_watermark: m.last_applied.map_or(-1, |l| l.index as i64 + 1),
            voters: voters.into_iter().map(member).collect(),
            observers,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rill_core::controller::meta_properties::parse_voters;
    use rill_core::controller::CommandOutcome;

    use super::*;
    use crate::cluster::rpc;
    use crate::config::{FileConfig, Overrides};
    use crate::serve::Node;

    fn free_port(ip: &str) -> u16 {
        std::net::TcpListener::bind((ip, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    async fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !ok() {
            assert!(std::time::Instant::now() < deadline, "{what} not reached");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Three in-process nodes: a command submitted on a node that is not the active controller
    /// is forwarded (KIP-590), applied once, and every node's image shows it; a rejected command
    /// comes back as the controller's error.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn submit_forwards_to_the_active_controller() {
        let dir = tempfile::tempdir().unwrap();
        let ips = ["127.0.0.31", "127.0.0.32", "127.0.0.33"];
        let voters: Vec<String> = ips
            .iter()
            .enumerate()
            .map(|(i, ip)| format!("{}@{ip}:{}", i + 1, free_port(ip)))
            .collect();
        let voters = voters.join(",");
        let mut nodes = Vec::new();
        for (i, ip) in ips.iter().enumerate() {
            let id = i as i32 + 1;
            let data_dir = dir.path().join(format!("n{id}"));
            MetaProperties {
                cluster_id: "c1".into(),
                node_id: id,
                directory_id: Uuid::new_v4(),
                initial_voters: parse_voters(&voters).unwrap(),
            }
            .write_new(&data_dir)
            .unwrap();
            let cluster_addr = voters.split(',').nth(i).unwrap().split('@').nth(1).unwrap();
            let flags = Overrides {
                data_dir: Some(data_dir),
                node_id: Some(id),
                kafka_listen: Some(format!("{ip}:0").parse().unwrap()),
                http_listen: Some(format!("{ip}:0").parse().unwrap()),
                mqtt_listen: Some(format!("{ip}:0").parse().unwrap()),
                cluster_listen: Some(cluster_addr.parse().unwrap()),
                key_file: Some(dir.path().join(format!("k{id}"))),
                ..Overrides::default()
            };
            let settings = NodeSettings::resolve(&FileConfig::default(), &flags).unwrap();
            nodes.push(Node::start(settings).await.unwrap());
        }
        let views: Vec<ClusterNode> = nodes.iter().map(|n| n.cluster.clone().unwrap()).collect();
        wait_for("3 unfenced brokers on every node", || {
            views.iter().all(|v| {
                let image = v.image();
                image.brokers().values().filter(|b| !b.fenced).count() == 3
            })
        })
        .await;
        let leader = views[0].quorum().leader_id.unwrap();
        let follower = views.iter().find(|v| v.node_id() != leader).unwrap();
        let created = follower
            .submit(Command::CreateTopic {
                name: "forwarded".into(),
                topic_id: Uuid::new_v4(),
                configs: BTreeMap::new(),
                assignments: vec![vec![1, 2, 3]],
            })
            .await
            .unwrap();
        assert!(matches!(created, CommandOutcome::TopicCreated { .. }));
        wait_for("the topic in every image", || {
            views.iter().all(|v| v.image().topic("forwarded").is_some())
        })
        .await;
        let again = follower
            .submit(Command::CreateTopic {
                name: "forwarded".into(),
                topic_id: Uuid::new_v4(),
                configs: BTreeMap::new(),
                assignments: vec![vec![1]],
            })
            .await;
        assert!(
            matches!(
                again,
                Err(SubmitError::Rejected(
                    rill_core::controller::ControllerError::TopicAlreadyExists(_)
                ))
            ),
            "{again:?}"
        );
        // The cluster listener advertises the private APIs and 62/63; the Kafka listener does not.
        let other = views
            .iter()
            .find(|v| v.node_id() != follower.node_id())
            .unwrap();
        let client = follower.broker_client(other.node_id()).unwrap();
        let versions: kafka_protocol::messages::ApiVersionsResponse = client
            .kafka(
                kafka_protocol::messages::ApiKey::ApiVersions,
                3,
                &kafka_protocol::messages::ApiVersionsRequest::default(),
            )
            .await
            .unwrap();
        let keys: Vec<i16> = versions.api_keys.iter().map(|k| k.api_key).collect();
        for k in rpc::PRIVATE_APIS.into_iter().chain([62, 63, 1]) {
            assert!(
                keys.contains(&k),
                "{k} not advertised on the cluster listener: {keys:?}"
            );
        }
        // The Kafka listener advertises exactly the API table, which has none of them.
        assert!(crate::kafka::api_support::SUPPORTED_APIS.iter().all(|a| {
            let k = a.key as i16;
            !rpc::PRIVATE_API_KEYS.contains(&k) && k != 62 && k != 63
        }));

        let q = follower.quorum();
        assert_eq!(q.voters.len(), 3);
        assert_eq!(q.leader_id, Some(leader));
        for n in nodes {
            n.shutdown().await.unwrap();
        }
    }
}
