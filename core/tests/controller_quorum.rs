//! Three controllers in one process, connected by an in-process Raft network, on the real redb
//! log store and state machine: the metadata log replicates, survives the loss of its leader, and
//! a restarted controller catches up from its own disk plus the new leader.
//!
//! The network here is a test fixture (a map of node id to Raft handle); the cluster listener that
//! carries these RPCs between processes is not built yet.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{InstallSnapshotError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{Config, Raft};
use rill_core::controller::log_store::LogStore;
use rill_core::controller::placement::{assign_replicas, PlacementBroker, PlacementStart};
use rill_core::controller::state_machine::StateMachineStore;
use rill_core::controller::{
    Command, CommandOutcome, ControllerRequest, ControllerResponse, ControllerTypes, MetadataImage,
    VoterNode,
};
use rill_core::sync::LockExt;
use tempfile::TempDir;
use uuid::Uuid;

type ControllerRaft = Raft<ControllerTypes>;

/// Generous: these are readiness waits, not timing assertions.
const WAIT: Option<Duration> = Some(Duration::from_secs(60));

#[derive(Clone, Default)]
struct Router {
    nodes: Arc<Mutex<BTreeMap<u64, ControllerRaft>>>,
}

impl Router {
    fn get(&self, id: u64) -> Result<ControllerRaft, Unreachable> {
        self.nodes
            .lock_unpoisoned()
            .get(&id)
            .cloned()
            .ok_or_else(|| Unreachable::new(&io::Error::from(io::ErrorKind::ConnectionRefused)))
    }
}

struct Link {
    target: u64,
    router: Router,
}

impl RaftNetworkFactory<ControllerTypes> for Router {
    type Network = Link;

    async fn new_client(&mut self, target: u64, _node: &VoterNode) -> Link {
        Link {
            target,
            router: self.clone(),
        }
    }
}

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<u64, VoterNode, RaftError<u64, E>>>;

impl RaftNetwork<ControllerTypes> for Link {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<ControllerTypes>,
        _option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<u64>> {
        let raft = self.router.get(self.target)?;
        raft.append_entries(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<ControllerTypes>,
        _option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<u64>, InstallSnapshotError> {
        let raft = self.router.get(self.target)?;
        raft.install_snapshot(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        _option: RPCOption,
    ) -> RpcResult<VoteResponse<u64>> {
        let raft = self.router.get(self.target)?;
        raft.vote(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

struct Controller {
    raft: ControllerRaft,
    sm: StateMachineStore,
}

async fn start(id: u64, dir: &Path, router: &Router) -> Controller {
    let config = Config {
        cluster_name: "test".into(),
        heartbeat_interval: 100,
        election_timeout_min: 400,
        election_timeout_max: 800,
        // Snapshot often and keep little log, so restarts go through snapshots.
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(5),
        max_in_snapshot_log_to_keep: 0,
        ..Default::default()
    }
    .validate()
    .unwrap();
    let log = LogStore::open(&dir.join("raft-log.redb")).unwrap();
    let sm = StateMachineStore::open(&dir.join("state")).unwrap();
    let raft = Raft::new(id, Arc::new(config), router.clone(), log, sm.clone())
        .await
        .unwrap();
    router.nodes.lock_unpoisoned().insert(id, raft.clone());
    Controller { raft, sm }
}

async fn leader_of(nodes: &BTreeMap<u64, Controller>) -> u64 {
    let any = nodes.values().next().unwrap();
    let m = any
        .raft
        .wait(WAIT)
        .metrics(
            |m| m.current_leader.is_some_and(|l| nodes.contains_key(&l)),
            "a live leader",
        )
        .await
        .unwrap();
    m.current_leader.unwrap()
}

async fn write(raft: &ControllerRaft, command: Command) -> (u64, CommandOutcome) {
    let resp = raft
        .client_write(ControllerRequest::new(command))
        .await
        .unwrap();
    match resp.data {
        ControllerResponse::Applied(Ok(outcome)) => (resp.log_id.index, outcome),
        other => panic!("command not applied: {other:?}"),
    }
}

async fn wait_applied(nodes: &BTreeMap<u64, Controller>, index: u64) {
    for c in nodes.values() {
        c.raft
            .wait(WAIT)
            .applied_index_at_least(Some(index), "entry applied everywhere")
            .await
            .unwrap();
    }
}

fn images(nodes: &BTreeMap<u64, Controller>) -> Vec<MetadataImage> {
    nodes
        .values()
        .map(|c| c.sm.with_image(MetadataImage::clone))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_quorum_replicates_fails_over_and_catches_up() {
    let dirs: BTreeMap<u64, TempDir> = (1..=3).map(|id| (id, TempDir::new().unwrap())).collect();
    let router = Router::default();
    let mut nodes = BTreeMap::new();
    for (id, dir) in &dirs {
        nodes.insert(*id, start(*id, dir.path(), &router).await);
    }
    let voters: BTreeMap<u64, VoterNode> = (1..=3)
        .map(|id| {
            (
                id,
                VoterNode {
                    cluster_address: format!("127.0.0.1:{}", 9090 + id),
                    directory_id: Uuid::new_v4(),
                },
            )
        })
        .collect();
    nodes[&1].raft.initialize(voters).await.unwrap();

    let leader = leader_of(&nodes).await;
    let raft = nodes[&leader].raft.clone();
    write(
        &raft,
        Command::Bootstrap {
            cluster_id: "c1".into(),
            scram_credentials: vec![],
        },
    )
    .await;
    let mut epochs = BTreeMap::new();
    for b in 1..=3 {
        let (_, outcome) = write(
            &raft,
            Command::RegisterBroker {
                broker_id: b,
                incarnation_id: Uuid::new_v4(),
                cluster_id: "c1".into(),
                listeners: vec![],
                rack: None,
            },
        )
        .await;
        let CommandOutcome::BrokerRegistered { broker_epoch } = outcome else {
            panic!("{outcome:?}")
        };
        write(
            &raft,
            Command::UnfenceBroker {
                broker_id: b,
                broker_epoch,
            },
        )
        .await;
        epochs.insert(b, broker_epoch);
    }
    // Place like the active controller will: from the image, over usable brokers.
    let usable: Vec<PlacementBroker> = nodes[&leader].sm.with_image(|i| {
        i.usable_brokers()
            .map(|b| PlacementBroker {
                broker_id: b.broker_id,
                rack: b.rack.clone(),
            })
            .collect()
    });
    let assignments = assign_replicas(&usable, 6, 3, 0, PlacementStart::random()).unwrap();
    let (index, _) = write(
        &raft,
        Command::CreateTopic {
            name: "events".into(),
            topic_id: Uuid::new_v4(),
            configs: BTreeMap::new(),
            assignments,
        },
    )
    .await;
    wait_applied(&nodes, index).await;
    let all = images(&nodes);
    assert!(
        all.windows(2).all(|w| w[0] == w[1]),
        "the three images differ"
    );
    let leaders: BTreeSet<i32> = all[0]
        .topic("events")
        .unwrap()
        .partitions
        .values()
        .map(|p| p.leader)
        .collect();
    assert_eq!(leaders.len(), 3, "leaders are spread over the brokers");

    // The leader controller dies; the other two elect a new one and keep accepting commands.
    let old = leader;
    let dead = nodes.remove(&old).unwrap();
    router.nodes.lock_unpoisoned().remove(&old);
    dead.raft.shutdown().await.unwrap();
    drop(dead);
    let leader = leader_of(&nodes).await;
    assert_ne!(leader, old);
    let raft = nodes[&leader].raft.clone();
    let broker = i32::try_from(old).unwrap();
    let (fenced_at, outcome) = write(
        &raft,
        Command::FenceBroker {
            broker_id: broker,
            broker_epoch: epochs[&broker],
        },
    )
    .await;
    assert!(matches!(
        outcome,
        CommandOutcome::BrokerStateChanged {
            partitions_changed: 6
        }
    ));
    let mut last = 0;
    for i in 0..6 {
        // Enough entries to make both survivors snapshot and purge their logs.
        let (index, _) = write(
            &raft,
            Command::AlterTopicConfigs {
                topic: "events".into(),
                set: [("retention.ms".to_string(), (1000 + i).to_string())].into(),
                delete: BTreeSet::new(),
            },
        )
        .await;
        last = index;
    }

    // The leader snapshots and purges its log past the fencing, so the restarted node, which
    // missed it, can only catch up through a snapshot.
    raft.wait(WAIT)
        .metrics(
            |m| m.purged.is_some_and(|p| p.index >= fenced_at),
            "log purged past the fencing",
        )
        .await
        .unwrap();

    // The old leader restarts from its own disk and catches up.
    let restarted = start(old, dirs[&old].path(), &router).await;
    nodes.insert(old, restarted);
    wait_applied(&nodes, last).await;
    let all = images(&nodes);
    assert!(
        all.windows(2).all(|w| w[0] == w[1]),
        "the restarted image differs"
    );
    let image = &all[0];
    assert!(image.broker(broker).unwrap().fenced);
    for p in image.topic("events").unwrap().partitions.values() {
        assert_ne!(p.leader, broker, "a fenced broker leads nothing");
        assert!(!p.isr.contains(&broker), "a fenced broker is in no ISR");
        assert_eq!(p.isr.len(), 2);
    }
    for c in nodes.values() {
        c.raft.shutdown().await.unwrap();
    }
}
