//! The request context: everything a request handler may use, one per listener of the node,
//! shared by every connection of that listener.

use std::sync::Arc;

use kafka_protocol::protocol::StrBytes;
use rill_core::broker::Broker;
use rill_core::group::{GroupCoordinator, GroupError};
use rill_core::replica::ReplicaManager;
use tokio_util::sync::CancellationToken;

use super::auth;
use super::authorization::{Authorization, Caller};
use super::cluster_view::ClusterView;
use crate::cluster::coordinator_runtime::CoordinatorRuntime;
use crate::metrics::Metrics;
use rill_core::authorizer::acl::{AclOperation, ResourceType, CLUSTER_NAME};

/// Which listener a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListenerKind {
    /// A client listener (`[listeners] kafka`): clients only; a Fetch with a replica id is
    /// refused.
    #[default]
    Client,
    /// The cluster listener (`[listeners] cluster`): inter-node traffic, e.g. follower fetches.
    Cluster,
}

/// Everything a request handler may use; one per listener, shared by its connections (the
/// cluster listener's is a copy of the client listener's with another [`ListenerKind`]).
#[derive(Clone)]
pub struct Context {
    /// The node's storage.
    pub broker: Arc<Broker>,
    /// The consumer group coordinator of a node alone (every group is coordinated by this node,
    /// over its redb offset store). In a cluster group requests go to [`Self::coordinators`].
    pub groups: Arc<GroupCoordinator>,
    /// In a cluster: the coordinator shards of the `__consumer_offsets` partitions this node
    /// leads (`None` for a node alone).
    pub coordinators: Option<Arc<CoordinatorRuntime>>,
    /// Kafka broker id of this node.
    pub node_id: i32,
    /// Host advertised to clients of this listener in Metadata / DescribeCluster.
    pub advertised_host: String,
    /// Port advertised to clients of this listener.
    pub advertised_port: u16,
    /// The listener's name in broker registrations: `KAFKA` for `[listeners] kafka`, else the
    /// `[[listeners.kafka_extra]]` name (in a cluster, Metadata answers with every broker's
    /// endpoint of this listener).
    pub listener_name: String,
    /// The cluster id (fixed when the data directory was created).
    pub cluster_id: String,
    /// `socket.request.max.bytes`.
    pub socket_request_max_bytes: usize,
    /// The node's memory budget: a request frame is counted against it until its response is
    /// written, and the connection waits for room before it reads the next one.
    pub memory: Arc<crate::memory_budget::MemoryBudget>,
    /// The node's settings as DescribeConfigs shows them for the BROKER resource.
    pub broker_configs: Vec<(String, String)>,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Cancelled when the node shuts down (long polls return early).
    pub shutdown: CancellationToken,
    /// Producer ids for InitProducerId (idempotent producers).
    pub producer_ids: Arc<super::producer_id_manager::ProducerIdManager>,
    /// SASL settings and users when the listener requires SASL (None: no authentication).
    pub sasl: Option<Arc<auth::Authenticator>>,
    /// The SASL users (SCRAM credentials), also when the listener does not require SASL.
    pub credentials: Arc<rill_core::credentials::CredentialStore>,
    /// The cluster this node belongs to; `None` for a node alone (no `[cluster]` settings).
    pub cluster: Option<Arc<dyn ClusterView>>,
    /// The listener this context serves.
    pub listener: ListenerKind,
    /// The partitions this node hosts as a replica of a cluster (`None` for a node alone):
    /// follower fetches are answered through it.
    pub replicas: Option<Arc<ReplicaManager>>,
    /// The authorizer (`[kafka] authorizer = true`); `None`: every action is allowed.
    pub authorization: Option<Arc<Authorization>>,
}

impl Context {
    /// The coordinator of `group` on this node: the node's own coordinator when alone; in a
    /// cluster the shard of the group's `__consumer_offsets` partition, or NOT_COORDINATOR /
    /// COORDINATOR_LOAD_IN_PROGRESS / COORDINATOR_NOT_AVAILABLE.
    pub fn coordinator(&self, group: &str) -> Result<Arc<GroupCoordinator>, GroupError> {
        match &self.coordinators {
            None => Ok(self.groups.clone()),
            Some(runtime) => runtime.coordinator(group),
        }
    }

    /// Every coordinator serving on this node (ListGroups, metrics, a deleted topic's offsets).
    pub fn all_coordinators(&self) -> Vec<Arc<GroupCoordinator>> {
        match &self.coordinators {
            None => vec![self.groups.clone()],
            Some(runtime) => runtime.coordinators(),
        }
    }

    /// The advertised host as a protocol string.
    pub fn host(&self) -> StrBytes {
        StrBytes::from_string(self.advertised_host.clone())
    }

    /// Whether `caller` may do `operation` on `(resource_type, name)` (always, with the
    /// authorizer off); denials are counted and logged.
    pub fn authorize(
        &self,
        caller: &Caller,
        operation: AclOperation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        self.authorization
            .as_ref()
            .is_none_or(|a| a.allows(caller, operation, resource_type, name))
    }

    /// A client's read (Fetch, ListOffsets) of `topic`-`partition` under `current_leader_epoch`
    /// (`-1`: not checked). In a cluster only the partition's leader answers, after Kafka's
    /// leader epoch check (KIP-320: FENCED_LEADER_EPOCH for an older epoch, UNKNOWN_LEADER_EPOCH
    /// for a newer one, NOT_LEADER_OR_FOLLOWER on a follower); a node alone answers every read.
    /// A cluster member that does not host the partition as a replica (yet: a node starting
    /// up holds logs before the controller's image assigns them) answers NOT_LEADER_OR_FOLLOWER
    /// too, so a client never reads a local log that replication does not govern. The error is a
    /// Kafka code.
    pub fn check_client_read(
        &self,
        topic: &str,
        partition: i32,
        current_leader_epoch: i32,
    ) -> Result<(), i16> {
        let Some(replicas) = &self.replicas else {
            return Ok(());
        };
        let Some(part) = replicas.partition(topic, partition) else {
            return match self.broker.partition(topic, partition) {
                Ok(_) => Err(kafka_protocol::error::ResponseError::NotLeaderOrFollower.code()),
                Err(e) => Err(super::error_codes::broker_error_code(&e)),
            };
        };
        part.check_leader(current_leader_epoch)
            .map(|_| ())
            .map_err(|e| super::error_codes::replica_error_code(&e))
    }

    /// Whether `caller` may do `operation` on the cluster.
    pub fn authorize_cluster(&self, caller: &Caller, operation: AclOperation) -> bool {
        self.authorize(caller, operation, ResourceType::Cluster, CLUSTER_NAME)
    }

    /// Whether `caller` may do `operation` on some resource of `resource_type` (KIP-679).
    pub fn authorize_any(
        &self,
        caller: &Caller,
        operation: AclOperation,
        resource_type: ResourceType,
    ) -> bool {
        self.authorization
            .as_ref()
            .is_none_or(|a| a.allows_any(caller, operation, resource_type))
    }

    /// KIP-430's authorized operations of `caller` on `(resource_type, name)`; `None` with the
    /// authorizer off (every operation).
    pub fn authorized_operations(
        &self,
        caller: &Caller,
        resource_type: ResourceType,
        name: &str,
    ) -> Option<i32> {
        self.authorization
            .as_ref()
            .map(|a| a.authorized_operations(caller, resource_type, name))
    }

    /// [`authorize`](Self::authorize) without counting or logging a denial (filtering listings).
    pub fn authorize_quietly(
        &self,
        caller: &Caller,
        operation: AclOperation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        self.authorization
            .as_ref()
            .is_none_or(|a| a.allows_quietly(caller, operation, resource_type, name))
    }
}
