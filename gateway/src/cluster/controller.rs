//! The controller in `rill serve`: openraft on the redb log store and the state machine under
//! `<data dir>/controller/`, its [`RaftNetworkFactory`] over the cluster listener
//! ([`super::peer`]), and the active controller's duties (KIP-631): broker registration and
//! heartbeats, session timers that fence silent brokers, controlled shutdown, and the command
//! forwarding every node's `submit` uses (KIP-590).
//!
//! Nodes formatted with the same `--voters` initialize with identical membership on first
//! start (each voter calls `initialize` while its log is empty), with the voters' directory ids
//! still unknown; the first leader binds each voter to the directory id it presents in the
//! handshake ([`ChangeMembers::SetNodes`]). From then on a node that presents another directory
//! id under a voter's node id (wiped and re-formatted) gets no Raft RPCs and its own are
//! refused: it does not vote.
//!
//! Timers are `Instant`s, never wall time. Liveness stays out of the image: a silent broker
//! reaches it only as a `FenceBroker` command.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    BrokerHeartbeatRequest, BrokerHeartbeatResponse, BrokerRegistrationRequest,
    BrokerRegistrationResponse,
};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{ChangeMembers, Config, Raft, RaftMetrics, ServerState};
use rill_core::controller::bootstrap_metadata::BootstrapMetadata;
use rill_core::controller::log_store::{LogStore, LogStoreError};
use rill_core::controller::meta_properties::{kafka_uuid_string, MetaProperties};
use rill_core::controller::state_machine::{StateMachineError, StateMachineStore};
use rill_core::controller::{
    Command, CommandOutcome, CommandResult, ControllerError, ControllerRequest, ControllerResponse,
    ControllerTypes, Endpoint, MetadataImage, VoterNode,
};
use rill_core::sync::LockExt;
use tokio::sync::watch;
use uuid::Uuid;

use super::peer::{Identity, PeerClient, PeerError};
use super::rpc::{self, Refusal};

/// openraft over the controller's types.
pub type ControllerRaft = Raft<ControllerTypes>;

/// Raft heartbeat interval (Kafka's controller fetches about as often).
pub const RAFT_HEARTBEAT_MS: u64 = 250;
/// Raft election timeout range (Kafka's `controller.quorum.election.timeout.ms` is 1000).
pub const RAFT_ELECTION_TIMEOUT_MS: (u64, u64) = (1000, 2000);
/// How often the active controller checks broker sessions.
pub const SESSION_CHECK_EVERY: Duration = Duration::from_millis(200);
/// How long `submit` keeps retrying (leader changes, forwarding failures) before giving up.
pub const SUBMIT_TIMEOUT: Duration = Duration::from_secs(15);

/// Errors starting the controller.
#[derive(Debug, thiserror::Error)]
pub enum ControllerStartError {
    /// The Raft log store does not open.
    #[error(transparent)]
    LogStore(#[from] LogStoreError),
    /// The state machine does not open.
    #[error(transparent)]
    StateMachine(#[from] StateMachineError),
    /// The controller directory cannot be created.
    #[error("cannot create {path}: {source}")]
    Dir {
        /// The directory.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// openraft refused its configuration or failed to start.
    #[error("controller: {0}")]
    Raft(String),
    /// `bootstrap.json` (the first users, from `rill cluster format --add-scram`) is unreadable.
    #[error(transparent)]
    Bootstrap(#[from] rill_core::controller::bootstrap_metadata::BootstrapError),
    /// The node is not one of the formatted voters.
    #[error(
        "node {node_id} is not one of the voters this data directory was formatted with \
         ({voters}); starting a node as a learner (`rill cluster format --join`) is not built yet"
    )]
    NotInVoters {
        /// This node.
        node_id: i32,
        /// The formatted voters.
        voters: String,
    },
}

/// The peers this node talks to: one client per cluster address, and the directory ids peers
/// presented in handshakes (either direction).
#[derive(Default)]
pub struct Peers {
    clients: Mutex<HashMap<String, Arc<PeerClient>>>,
    directories: Mutex<HashMap<i32, Uuid>>,
}

impl Peers {
    /// The client of the cluster listener at `addr`.
    pub fn client(&self, identity: &Arc<Identity>, addr: &str) -> Arc<PeerClient> {
        self.clients
            .lock_unpoisoned()
            .entry(addr.to_string())
            .or_insert_with(|| Arc::new(PeerClient::new(identity.clone(), addr.to_string())))
            .clone()
    }

    /// Records the directory id `node_id` presented.
    pub fn saw_directory(&self, node_id: i32, directory_id: Uuid) {
        self.directories
            .lock_unpoisoned()
            .insert(node_id, directory_id);
    }

    fn directory_of(&self, node_id: i32) -> Option<Uuid> {
        self.directories.lock_unpoisoned().get(&node_id).copied()
    }
}

/// Incarnations replaced by a newer registration of the same node (from the image): RPCs
/// carrying one are refused.
#[derive(Default)]
pub struct Incarnations {
    current: HashMap<i32, Uuid>,
    retired: HashMap<i32, HashSet<Uuid>>,
}

impl Incarnations {
    /// Takes in the registrations of `image`.
    pub fn update(&mut self, image: &MetadataImage) {
        for (id, b) in image.brokers() {
            let prev = self.current.insert(*id, b.incarnation_id);
            if let Some(old) = prev.filter(|old| *old != b.incarnation_id) {
                self.retired.entry(*id).or_default().insert(old);
            }
        }
    }

    /// Whether `incarnation` of `node_id` was replaced.
    pub fn is_retired(&self, node_id: i32, incarnation: &Uuid) -> bool {
        self.retired
            .get(&node_id)
            .is_some_and(|r| r.contains(incarnation))
    }
}

/// A broker's session as the active controller tracks it.
#[derive(Debug, Clone, Copy)]
struct BrokerSession {
    broker_epoch: i64,
    last_heartbeat: Instant,
}

/// The controller of this node.
pub struct Controller {
    /// openraft.
    pub raft: ControllerRaft,
    /// The state machine (the applied image).
    pub sm: StateMachineStore,
    /// This node on the wire.
    pub identity: Arc<Identity>,
    /// Peer connections.
    pub peers: Arc<Peers>,
    /// Retired incarnations (from the image).
    pub incarnations: Mutex<Incarnations>,
    sessions: Mutex<HashMap<i32, BrokerSession>>,
    leader_since: Mutex<Option<Instant>>,
    session_timeout: Duration,
    not_a_voter_logged: Arc<AtomicBool>,
    /// What this node bootstraps the cluster with if it is the first active controller.
    bootstrap: BootstrapMetadata,
}

/// The Raft network: RPCs over [`PeerClient`]s.
#[derive(Clone)]
pub struct Network {
    identity: Arc<Identity>,
    peers: Arc<Peers>,
    metrics: Arc<OnceLock<watch::Receiver<RaftMetrics<u64, VoterNode>>>>,
    warned: Arc<Mutex<HashSet<(u64, Uuid)>>>,
    not_a_voter_logged: Arc<AtomicBool>,
}

/// The link to one peer.
pub struct Link {
    target: u64,
    client: Arc<PeerClient>,
    net: Network,
}

impl RaftNetworkFactory<ControllerTypes> for Network {
    type Network = Link;

    async fn new_client(&mut self, target: u64, node: &VoterNode) -> Link {
        Link {
            target,
            client: self.peers.client(&self.identity, &node.cluster_address),
            net: self.clone(),
        }
    }
}

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<u64, VoterNode, RaftError<u64, E>>>;

/// Logs, once, that this node is not a voter and how to make it one.
fn log_not_a_voter(flag: &AtomicBool, identity: &Identity, why: &str) {
    if !flag.swap(true, Ordering::Relaxed) {
        tracing::error!(
            node_id = identity.node_id,
            directory_id = %kafka_uuid_string(&identity.directory_id),
            cluster_id = %identity.cluster_id,
            "this node is not a voter of cluster {}: {why}. A wiped and re-formatted node \
             does not vote; to make it a voter again remove the old voter and add this one \
             (`rill cluster remove-voter --node-id {n}`, then `rill cluster add-voter --node-id \
             {n}`; those commands are not built yet)",
            identity.cluster_id,
            n = identity.node_id,
        );
    }
}

impl Link {
    async fn rpc<Req, Resp, E>(&self, api_key: i16, req: &Req) -> RpcResult<Resp, E>
    where
        Req: serde::Serialize,
        Resp: serde::de::DeserializeOwned,
        E: serde::de::DeserializeOwned + std::error::Error,
    {
        let transport = |e: PeerError| {
            if e.is_unreachable() {
                RPCError::Unreachable(Unreachable::new(&e))
            } else {
                RPCError::Network(NetworkError::new(&e))
            }
        };
        let info = self.client.peer_info().await.map_err(transport)?;
        let node_id = i32::try_from(self.target).unwrap_or(i32::MAX);
        self.net.peers.saw_directory(node_id, info.directory_id);
        let expected = self.net.metrics.get().and_then(|m| {
            m.borrow()
                .membership_config
                .membership()
                .get_node(&self.target)
                .map(|n| n.directory_id)
        });
        if let Some(expected) = expected.filter(|d| !d.is_nil()) {
            if expected != info.directory_id {
                let refusal = Refusal::NotAVoter {
                    node_id,
                    expected: kafka_uuid_string(&expected),
                    got: kafka_uuid_string(&info.directory_id),
                };
                if self
                    .net
                    .warned
                    .lock_unpoisoned()
                    .insert((self.target, info.directory_id))
                {
                    tracing::warn!(peer = %self.client.addr(), %refusal, "no Raft RPCs to a node that is not the voter it claims to be");
                }
                return Err(RPCError::Unreachable(Unreachable::new(&refusal)));
            }
        }
        match self
            .client
            .call::<Req, Result<Resp, RaftError<u64, E>>>(api_key, req)
            .await
        {
            Ok(Ok(Ok(resp))) => Ok(resp),
            Ok(Ok(Err(e))) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            Ok(Err(refusal)) => {
                if matches!(refusal, Refusal::NotAVoter { .. }) {
                    log_not_a_voter(
                        &self.net.not_a_voter_logged,
                        &self.net.identity,
                        &refusal.to_string(),
                    );
                }
                Err(RPCError::Network(NetworkError::new(&refusal)))
            }
            Err(e) => Err(transport(e)),
        }
    }
}

impl RaftNetwork<ControllerTypes> for Link {
    /// After a failed replication RPC: 200 ms, doubling up to 2 s (a peer that is down is not
    /// retried, and logged, twice a second).
    fn backoff(&self) -> openraft::network::Backoff {
        openraft::network::Backoff::new(
            [200, 400, 800, 1600]
                .into_iter()
                .chain(std::iter::repeat(2000))
                .map(Duration::from_millis),
        )
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<ControllerTypes>,
        _option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<u64>> {
        self.rpc(rpc::RAFT_APPEND_ENTRIES, &rpc).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<ControllerTypes>,
        _option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<u64>, InstallSnapshotError> {
        self.rpc(rpc::RAFT_INSTALL_SNAPSHOT, &rpc).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        _option: RPCOption,
    ) -> RpcResult<VoteResponse<u64>> {
        self.rpc(rpc::RAFT_VOTE, &rpc).await
    }
}

fn security_protocol_name(code: i16) -> &'static str {
    match code {
        1 => "SSL",
        2 => "SASL_PLAINTEXT",
        3 => "SASL_SSL",
        _ => "PLAINTEXT",
    }
}

fn controller_error_code(e: &ControllerError) -> i16 {
    match e {
        ControllerError::StaleBrokerEpoch { .. } => ResponseError::StaleBrokerEpoch.code(),
        ControllerError::InconsistentClusterId { .. } => {
            ResponseError::InconsistentClusterId.code()
        }
        _ => ResponseError::UnknownServerError.code(),
    }
}

impl Controller {
    /// Opens the stores under `<data_dir>/controller/`, starts openraft and, on a voter whose
    /// log is empty, initializes the formatted membership.
    pub async fn start(
        data_dir: &Path,
        meta: &MetaProperties,
        identity: Arc<Identity>,
        session_timeout: Duration,
    ) -> Result<Arc<Controller>, ControllerStartError> {
        if !meta
            .initial_voters
            .iter()
            .any(|v| v.node_id == meta.node_id)
        {
            let voters: Vec<String> = meta.initial_voters.iter().map(|v| v.to_string()).collect();
            return Err(ControllerStartError::NotInVoters {
                node_id: meta.node_id,
                voters: voters.join(","),
            });
        }
        let bootstrap = BootstrapMetadata::read(data_dir)?;
        let dir = data_dir.join("controller");
        std::fs::create_dir_all(&dir).map_err(|source| ControllerStartError::Dir {
            path: dir.clone(),
            source,
        })?;
        let log = LogStore::open(&dir.join("raft-log.redb"))?;
        let sm = StateMachineStore::open(&dir.join("state"))?;
        let config = Config {
            cluster_name: meta.cluster_id.clone(),
            heartbeat_interval: RAFT_HEARTBEAT_MS,
            election_timeout_min: RAFT_ELECTION_TIMEOUT_MS.0,
            election_timeout_max: RAFT_ELECTION_TIMEOUT_MS.1,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(5000),
            ..Default::default()
        }
        .validate()
        .map_err(|e| ControllerStartError::Raft(e.to_string()))?;
        let peers = Arc::new(Peers::default());
        let network = Network {
            identity: identity.clone(),
            peers: peers.clone(),
            metrics: Arc::new(OnceLock::new()),
            warned: Arc::default(),
            not_a_voter_logged: Arc::default(),
        };
        let not_a_voter_logged = network.not_a_voter_logged.clone();
        let metrics_slot = network.metrics.clone();
        let node_id = u64::try_from(meta.node_id).unwrap_or_default();
        let raft = Raft::new(node_id, Arc::new(config), network, log, sm.clone())
            .await
            .map_err(|e| ControllerStartError::Raft(e.to_string()))?;
        let _ = metrics_slot.set(raft.metrics());
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| ControllerStartError::Raft(e.to_string()))?;
        if !initialized {
            let members: BTreeMap<u64, VoterNode> = meta
                .initial_voters
                .iter()
                .map(|v| {
                    let address = if v.host.contains(':') {
                        format!("[{}]:{}", v.host, v.port)
                    } else {
                        format!("{}:{}", v.host, v.port)
                    };
                    (
                        u64::try_from(v.node_id).unwrap_or_default(),
                        VoterNode {
                            cluster_address: address,
                            // Bound by the first leader to what each voter presents.
                            directory_id: Uuid::nil(),
                        },
                    )
                })
                .collect();
            tracing::info!(
                voters = members.len(),
                "initializing the controller quorum with the formatted voters"
            );
            if let Err(e) = raft.initialize(members).await {
                // Another voter's initialization may have reached this node first.
                tracing::debug!(error = %e, "initialize");
            }
        }
        let mut incarnations = Incarnations::default();
        sm.with_image(|i| incarnations.update(i));
        Ok(Arc::new(Controller {
            raft,
            sm,
            identity,
            peers,
            incarnations: Mutex::new(incarnations),
            sessions: Mutex::new(HashMap::new()),
            leader_since: Mutex::new(None),
            session_timeout,
            not_a_voter_logged,
            bootstrap,
        }))
    }

    /// This node's id.
    pub fn node_id(&self) -> i32 {
        self.identity.node_id
    }

    /// The active controller as this node knows it.
    pub fn leader(&self) -> Option<i32> {
        self.raft
            .metrics()
            .borrow()
            .current_leader
            .and_then(|l| i32::try_from(l).ok())
    }

    /// Whether this node is the active controller.
    pub fn is_leader(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(m.id)
    }

    /// The cluster address of a member, from the membership.
    pub fn address_of(&self, node_id: i32) -> Option<String> {
        let id = u64::try_from(node_id).ok()?;
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.cluster_address.clone())
    }

    /// Refuses a Raft RPC from a node that presents another directory id than its voter's.
    pub fn check_voter(&self, node_id: i32, directory_id: Uuid) -> Result<(), Refusal> {
        let Ok(id) = u64::try_from(node_id) else {
            return Ok(());
        };
        let expected = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.directory_id);
        match expected {
            Some(d) if !d.is_nil() && d != directory_id => Err(Refusal::NotAVoter {
                node_id,
                expected: kafka_uuid_string(&d),
                got: kafka_uuid_string(&directory_id),
            }),
            _ => Ok(()),
        }
    }

    /// The command that bootstraps the cluster: its id and this node's first users.
    fn bootstrap_command(&self) -> Command {
        Command::Bootstrap {
            cluster_id: self.identity.cluster_id.clone(),
            scram_credentials: self.bootstrap.scram_credentials.clone(),
        }
    }

    /// Applies `request` if this node is the active controller.
    pub async fn write_local(&self, request: ControllerRequest) -> Result<CommandResult, Refusal> {
        match self.raft.client_write(request).await {
            Ok(resp) => match resp.data {
                ControllerResponse::Applied(result) => Ok(result),
                ControllerResponse::NoCommand => {
                    Err(Refusal::Unavailable("the entry applied no command".into()))
                }
            },
            Err(e) => match e.forward_to_leader::<VoterNode>() {
                Some(f) => Err(Refusal::NotController {
                    leader: f.leader_id.and_then(|l| i32::try_from(l).ok()),
                }),
                None => Err(Refusal::Unavailable(e.to_string())),
            },
        }
    }

    /// Commits `request` through the active controller, forwarding it when that is another
    /// node; retries (same request id, so at most once) across leader changes until
    /// [`SUBMIT_TIMEOUT`].
    pub async fn submit(
        &self,
        request: ControllerRequest,
    ) -> Result<CommandOutcome, SubmitFailure> {
        let deadline = Instant::now() + SUBMIT_TIMEOUT;
        let mut metrics = self.raft.metrics();
        let mut last = String::from("no active controller is known");
        loop {
            let leader = self.leader();
            let attempt = match leader {
                None => Err(Refusal::Unavailable(last.clone())),
                Some(l) if l == self.node_id() => self.write_local(request.clone()).await,
                Some(l) => match self.address_of(l) {
                    None => Err(Refusal::Unavailable(format!("no address of node {l}"))),
                    Some(addr) => {
                        let client = self.peers.client(&self.identity, &addr);
                        match client
                            .call::<ControllerRequest, CommandResult>(
                                rpc::CONTROLLER_FORWARD,
                                &request,
                            )
                            .await
                        {
                            Ok(r) => r,
                            Err(e) => Err(Refusal::Unavailable(e.to_string())),
                        }
                    }
                },
            };
            match attempt {
                Ok(Ok(outcome)) => return Ok(outcome),
                Ok(Err(rejected)) => return Err(SubmitFailure::Rejected(rejected)),
                Err(refusal) => last = refusal.to_string(),
            }
            if Instant::now() >= deadline {
                return Err(SubmitFailure::Unavailable(last));
            }
            // A leader change wakes this up early; otherwise retry shortly.
            let _ = tokio::time::timeout(Duration::from_millis(200), metrics.changed()).await;
        }
    }

    /// The active controller's answer to BrokerRegistration (62).
    pub async fn handle_registration(
        &self,
        req: BrokerRegistrationRequest,
    ) -> BrokerRegistrationResponse {
        let fail = |code: i16| BrokerRegistrationResponse::default().with_error_code(code);
        if !self.is_leader() {
            return fail(ResponseError::NotController.code());
        }
        if req.cluster_id.as_str() != self.identity.cluster_id {
            tracing::warn!(broker = req.broker_id.0, cluster_id = %req.cluster_id.as_str(), "registration for another cluster refused");
            return fail(ResponseError::InconsistentClusterId.code());
        }
        if self.sm.with_image(|i| i.cluster_id().is_none()) {
            let bootstrap = self.bootstrap_command();
            if let Err(e) = self.write_local(ControllerRequest::new(bootstrap)).await {
                tracing::debug!(error = %e, "bootstrap before registration");
                return fail(ResponseError::NotController.code());
            }
        }
        let listeners = req
            .listeners
            .iter()
            .map(|l| Endpoint {
                name: l.name.to_string(),
                host: l.host.to_string(),
                port: l.port,
                security_protocol: security_protocol_name(l.security_protocol).to_string(),
            })
            .collect();
        let command = Command::RegisterBroker {
            broker_id: req.broker_id.0,
            incarnation_id: req.incarnation_id,
            cluster_id: req.cluster_id.to_string(),
            listeners,
            rack: req.rack.as_ref().map(|r| r.to_string()),
        };
        match self.write_local(ControllerRequest::new(command)).await {
            Ok(Ok(CommandOutcome::BrokerRegistered { broker_epoch })) => {
                self.sessions.lock_unpoisoned().insert(
                    req.broker_id.0,
                    BrokerSession {
                        broker_epoch,
                        last_heartbeat: Instant::now(),
                    },
                );
                tracing::info!(broker = req.broker_id.0, broker_epoch, incarnation = %req.incarnation_id, "broker registered");
                BrokerRegistrationResponse::default().with_broker_epoch(broker_epoch)
            }
            Ok(Ok(other)) => {
                tracing::error!(?other, "unexpected outcome of RegisterBroker");
                fail(ResponseError::UnknownServerError.code())
            }
            Ok(Err(e)) => fail(controller_error_code(&e)),
            Err(Refusal::NotController { .. }) => fail(ResponseError::NotController.code()),
            Err(e) => {
                tracing::debug!(error = %e, "registration not committed");
                fail(ResponseError::RequestTimedOut.code())
            }
        }
    }

    /// The active controller's answer to BrokerHeartbeat (63): renews the session; unfences a
    /// broker that caught up with the metadata log; starts a requested controlled shutdown.
    pub async fn handle_heartbeat(&self, req: BrokerHeartbeatRequest) -> BrokerHeartbeatResponse {
        let fail = |code: i16| BrokerHeartbeatResponse::default().with_error_code(code);
        if !self.is_leader() {
            return fail(ResponseError::NotController.code());
        }
        let broker_id = req.broker_id.0;
        let Some(reg) = self.sm.with_image(|i| i.broker(broker_id).cloned()) else {
            return fail(ResponseError::StaleBrokerEpoch.code());
        };
        if reg.broker_epoch != req.broker_epoch {
            return fail(ResponseError::StaleBrokerEpoch.code());
        }
        self.sessions.lock_unpoisoned().insert(
            broker_id,
            BrokerSession {
                broker_epoch: reg.broker_epoch,
                last_heartbeat: Instant::now(),
            },
        );
        // The broker has caught up once it applied its own registration.
        let caught_up = req.current_metadata_offset >= reg.broker_epoch;
        let command = if req.want_shut_down && !reg.in_controlled_shutdown {
            Some(Command::ControlledShutdown {
                broker_id,
                broker_epoch: reg.broker_epoch,
            })
        } else if !req.want_shut_down && reg.fenced && caught_up {
            Some(Command::UnfenceBroker {
                broker_id,
                broker_epoch: reg.broker_epoch,
            })
        } else {
            None
        };
        if let Some(command) = command {
            match self.write_local(ControllerRequest::new(command)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return fail(controller_error_code(&e)),
                Err(Refusal::NotController { .. }) => {
                    return fail(ResponseError::NotController.code())
                }
                Err(e) => {
                    tracing::debug!(error = %e, "heartbeat command not committed");
                }
            }
        }
        let (fenced, shutting_down, leads) = self.sm.with_image(|i| {
            let b = i.broker(broker_id);
            let leads = i
                .topics()
                .values()
                .flat_map(|t| t.partitions.values())
                .any(|p| p.leader == broker_id);
            (
                b.is_none_or(|b| b.fenced),
                b.is_some_and(|b| b.in_controlled_shutdown),
                leads,
            )
        });
        BrokerHeartbeatResponse::default()
            .with_is_caught_up(caught_up)
            .with_is_fenced(fenced)
            .with_should_shut_down(req.want_shut_down && shutting_down && !leads)
    }

    /// Runs the active controller's timers until `stop`: bootstrap, directory-id binding and
    /// broker session expiry (`FenceBroker`).
    pub async fn run_duties(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let mut image = self.sm.subscribe();
        let mut tick = tokio::time::interval(SESSION_CHECK_EVERY);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
                changed = image.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let img = image.borrow_and_update().clone();
                    self.incarnations.lock_unpoisoned().update(&img);
                    continue;
                }
            }
            self.check_self_is_voter();
            if !self.is_leader() {
                *self.leader_since.lock_unpoisoned() = None;
                continue;
            }
            let since = *self
                .leader_since
                .lock_unpoisoned()
                .get_or_insert_with(Instant::now);
            if self.sm.with_image(|i| i.cluster_id().is_none()) {
                let bootstrap = self.bootstrap_command();
                match self.write_local(ControllerRequest::new(bootstrap)).await {
                    Ok(Ok(_)) => {
                        tracing::info!(cluster_id = %self.identity.cluster_id, "cluster bootstrapped")
                    }
                    Ok(Err(e)) => tracing::error!(error = %e, "bootstrap rejected"),
                    Err(e) => tracing::debug!(error = %e, "bootstrap not committed"),
                }
            }
            self.bind_directories().await;
            self.expire_sessions(since).await;
        }
    }

    fn check_self_is_voter(&self) {
        if let Err(refusal) = self.check_voter(self.identity.node_id, self.identity.directory_id) {
            log_not_a_voter(
                &self.not_a_voter_logged,
                &self.identity,
                &refusal.to_string(),
            );
        }
    }

    /// Binds voters whose directory id is still unknown to the one they presented.
    async fn bind_directories(&self) {
        let membership = self.raft.metrics().borrow().membership_config.clone();
        let mut bind = BTreeMap::new();
        for (id, node) in membership.nodes() {
            if !node.directory_id.is_nil() {
                continue;
            }
            let node_id = i32::try_from(*id).unwrap_or(i32::MAX);
            let seen = if node_id == self.identity.node_id {
                Some(self.identity.directory_id)
            } else {
                self.peers.directory_of(node_id)
            };
            if let Some(directory_id) = seen {
                bind.insert(
                    *id,
                    VoterNode {
                        cluster_address: node.cluster_address.clone(),
                        directory_id,
                    },
                );
            }
        }
        if bind.is_empty() {
            return;
        }
        let ids: Vec<String> = bind
            .iter()
            .map(|(id, n)| format!("{id}={}", kafka_uuid_string(&n.directory_id)))
            .collect();
        match self
            .raft
            .change_membership(ChangeMembers::SetNodes(bind), true)
            .await
        {
            Ok(_) => tracing::info!(voters = %ids.join(","), "voters bound to their directory ids"),
            Err(e) => tracing::debug!(error = %e, "binding voter directory ids"),
        }
    }

    /// Fences unfenced brokers whose session expired (no heartbeat for the session timeout
    /// since the later of their last heartbeat and this node becoming leader).
    async fn expire_sessions(&self, leader_since: Instant) {
        let now = Instant::now();
        let live: Vec<(i32, i64)> = self.sm.with_image(|i| {
            i.brokers()
                .values()
                .filter(|b| !b.fenced)
                .map(|b| (b.broker_id, b.broker_epoch))
                .collect()
        });
        for (broker_id, broker_epoch) in live {
            let last = self
                .sessions
                .lock_unpoisoned()
                .get(&broker_id)
                .filter(|s| s.broker_epoch == broker_epoch)
                .map_or(leader_since, |s| s.last_heartbeat.max(leader_since));
            let silent = now.saturating_duration_since(last);
            if silent < self.session_timeout {
                continue;
            }
            let command = Command::FenceBroker {
                broker_id,
                broker_epoch,
            };
            match self.write_local(ControllerRequest::new(command)).await {
                Ok(Ok(CommandOutcome::BrokerStateChanged { partitions_changed })) => {
                    tracing::info!(
                        broker = broker_id,
                        broker_epoch,
                        silent_ms = silent.as_millis() as u64,
                        partitions_changed,
                        "broker fenced: its session expired"
                    )
                }
                Ok(r) => tracing::debug!(?r, "fencing"),
                Err(e) => tracing::debug!(error = %e, "fencing not committed"),
            }
        }
    }
}

/// Why a submitted command has no outcome.
#[derive(Debug, thiserror::Error)]
pub enum SubmitFailure {
    /// Applied and rejected.
    #[error(transparent)]
    Rejected(ControllerError),
    /// No active controller answered in time.
    #[error("{0}")]
    Unavailable(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaced_incarnations_are_retired() {
        let mut image = MetadataImage::default();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let register = |image: &mut MetadataImage, index, incarnation_id| {
            let r = ControllerRequest::new(Command::RegisterBroker {
                broker_id: 1,
                incarnation_id,
                cluster_id: "c".into(),
                listeners: vec![],
                rack: None,
            });
            image.apply(index, &r).unwrap();
        };
        image
            .apply(
                1,
                &ControllerRequest::new(Command::Bootstrap {
                    cluster_id: "c".into(),
                    scram_credentials: vec![],
                }),
            )
            .unwrap();
        let mut inc = Incarnations::default();
        register(&mut image, 2, a);
        inc.update(&image);
        assert!(!inc.is_retired(1, &a));
        register(&mut image, 3, b);
        inc.update(&image);
        assert!(inc.is_retired(1, &a));
        assert!(!inc.is_retired(1, &b));
    }
}
