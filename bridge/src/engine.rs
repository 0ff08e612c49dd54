//! The bridge inside a node: watches the topics and runs one push task per mirrored
//! partition ([`crate::push`]), the pull mirrors ([`crate::downstream`]), heartbeats and
//! checkpoints.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use rill_core::broker::Broker;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::GroupOffsets;
use crate::config::Direction;
use crate::floor::FloorRegistry;
use crate::mirror::Mirror;
use crate::priority::Scheduler;
use crate::push::PartitionMirror;
use crate::status::BridgeStatus;

/// The bridge inside a node: watches the topics and runs one task per mirrored partition.
pub struct Bridge {
    broker: Arc<Broker>,
    node_name: String,
    mirrors: Vec<Arc<Mirror>>,
    shutdown: CancellationToken,
    scheduler: Arc<Scheduler>,
    status: Arc<BridgeStatus>,
    group_offsets: Option<Arc<dyn GroupOffsets>>,
    floors: Arc<FloorRegistry>,
}

impl Bridge {
    /// Report status into `status` (e.g. the registry the admin HTTP API serves).
    pub fn with_status(mut self, status: Arc<BridgeStatus>) -> Bridge {
        self.status = status;
        self
    }

    /// Translate and checkpoint the committed offsets of these consumer groups.
    pub fn with_group_offsets(mut self, groups: Arc<dyn GroupOffsets>) -> Bridge {
        self.group_offsets = Some(groups);
        self
    }

    /// A bridge over the node's broker.
    pub fn new(
        broker: Arc<Broker>,
        node_name: String,
        mirrors: Vec<Mirror>,
        shutdown: CancellationToken,
    ) -> Bridge {
        let mut mirrors: Vec<Arc<Mirror>> = mirrors.into_iter().map(Arc::new).collect();
        mirrors.sort_by_key(|m| -m.config.priority);
        let scheduler = Scheduler::for_priorities(
            mirrors
                .iter()
                .filter(|m| m.config.direction != Direction::Pull)
                .map(|m| m.config.priority),
        );
        Bridge {
            floors: FloorRegistry::new(broker.clone()),
            broker,
            node_name,
            mirrors,
            shutdown,
            scheduler,
            status: BridgeStatus::new(),
            group_offsets: None,
        }
    }

    /// Run until shutdown: start a task for every mirrored partition (new topics and
    /// partitions are picked up every second); pull mirrors run in [`crate::downstream`].
    pub async fn run(self) {
        let tasks = tokio_util::task::TaskTracker::new();
        let mut running: HashSet<(usize, String, i32)> = HashSet::new();
        self.status.set_node(&self.node_name);
        crate::heartbeats::start(&tasks, &self.mirrors, &self.node_name, &self.shutdown);
        crate::checkpoint::start(
            &tasks,
            &self.mirrors,
            &self.node_name,
            &self.status,
            self.group_offsets.clone(),
            &self.shutdown,
        );
        // Pull (downstream) mirrors run beside; the topics they write are never pushed.
        let pulled = Arc::new(crate::downstream::PulledTopics::default());
        let pulls: Vec<Arc<Mirror>> = self
            .mirrors
            .iter()
            .filter(|m| m.config.direction == Direction::Pull)
            .cloned()
            .collect();
        if !pulls.is_empty() {
            let (b, n, s) = (
                self.broker.clone(),
                self.node_name.clone(),
                self.shutdown.clone(),
            );
            tasks.spawn(crate::downstream::Downstream::new(b, n, pulls, s, pulled.clone()).run());
        }
        loop {
            for (i, m) in self.mirrors.iter().enumerate() {
                if m.config.direction == Direction::Pull {
                    continue;
                }
                for t in self.broker.topics() {
                    if t.internal || !m.selects(&t.name) || pulled.contains(&t.name) {
                        continue;
                    }
                    for p in 0..t.partitions {
                        if running.insert((i, t.name.clone(), p)) {
                            let task = PartitionMirror {
                                broker: self.broker.clone(),
                                node: self.node_name.clone(),
                                mirror: m.clone(),
                                topic: t.name.clone(),
                                partition: p,
                                source_partitions: t.partitions,
                                shutdown: self.shutdown.clone(),
                                scheduler: self.scheduler.clone(),
                                status: self.status.register(
                                    i,
                                    &m.config.target,
                                    &t.name,
                                    p,
                                    &m.config.target_topic(&self.node_name, &t.name),
                                    self.broker.partition(&t.name, p).ok(),
                                ),
                                floor: self.floors.register(&t.name, p),
                            };
                            tasks.spawn(task.run());
                        }
                    }
                }
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        tasks.close();
        tasks.wait().await;
    }
}
