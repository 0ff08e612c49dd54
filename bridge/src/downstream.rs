//! Downstream (pull) mirrors: topics of a remote cluster (e.g. central `commands`) copied into
//! local topics of this node, so MQTT devices at the edge receive what was sent centrally.
//!
//! The edge still dials out. Every few seconds the remote topics a pull mirror selects are
//! listed; each remote partition gets one pull task ([`crate::pull`]). Pulled records name
//! another node as their origin, so this node's push mirrors never send them back (and pulled
//! topics are not selected by push mirrors at all).

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rill_core::broker::{Broker, BrokerError};
use tokio_util::sync::CancellationToken;

use crate::mirror::Mirror;
use crate::pull::{until_stop, DownstreamError, PartitionPull};
use crate::supervisor::Backoff;

/// How often the remote topic list is refreshed (new topics for a regex, new partitions).
const REFRESH: Duration = Duration::from_secs(5);

/// Local topics written by pull mirrors. Push mirrors skip them: their records came from
/// elsewhere and are never sent on (see `docs/bridge.md`, "Cycles").
#[derive(Debug, Default)]
pub struct PulledTopics(RwLock<HashSet<String>>);

impl PulledTopics {
    /// Whether `topic` is (or will be) written by a pull mirror.
    pub fn contains(&self, topic: &str) -> bool {
        self.0.read().map(|s| s.contains(topic)).unwrap_or(false)
    }

    fn insert(&self, topic: String) {
        if let Ok(mut s) = self.0.write() {
            s.insert(topic);
        }
    }
}

/// The pull mirrors of a node.
pub struct Downstream {
    broker: Arc<Broker>,
    node: String,
    mirrors: Vec<Arc<Mirror>>,
    shutdown: CancellationToken,
    pulled: Arc<PulledTopics>,
}

/// (local topic, remote alias, remote topic, remote partition): one pull task each.
type TaskKey = (String, String, String, i32);

impl Downstream {
    /// Pull mirrors `mirrors` into `broker`. The local names of literally named topics are
    /// registered in `pulled` at once, so push mirrors never pick them up.
    pub fn new(
        broker: Arc<Broker>,
        node: String,
        mirrors: Vec<Arc<Mirror>>,
        shutdown: CancellationToken,
        pulled: Arc<PulledTopics>,
    ) -> Downstream {
        let mut keep = Vec::new();
        for m in mirrors {
            if let Err(e) = m.config.validate_for_node(&node) {
                tracing::error!(target = %m.config.target, error = %e, "pull mirror not started");
                continue;
            }
            for t in &m.config.topics {
                pulled.insert(m.config.target_topic(&node, t));
            }
            keep.push(m);
        }
        Downstream {
            broker,
            node,
            mirrors: keep,
            shutdown,
            pulled,
        }
    }

    /// Run until shutdown: discover the remote topics of every pull mirror (every few seconds)
    /// and run one task per remote partition.
    pub async fn run(self) {
        let tasks = tokio_util::task::TaskTracker::new();
        let running: Arc<Mutex<HashSet<TaskKey>>> = Arc::default();
        let this = Arc::new(self);
        for m in &this.mirrors {
            let (this, m, running, t2) = (this.clone(), m.clone(), running.clone(), tasks.clone());
            tasks.spawn(async move { this.discover(m, running, t2).await });
        }
        tasks.close();
        tasks.wait().await;
    }

    async fn discover(
        &self,
        mirror: Arc<Mirror>,
        running: Arc<Mutex<HashSet<TaskKey>>>,
        tasks: tokio_util::task::TaskTracker,
    ) {
        let mut backoff = Backoff::default();
        let mut missing_logged: HashSet<String> = HashSet::new();
        loop {
            let wait = match remote_topics(&mirror, &self.shutdown).await {
                Ok(topics) => {
                    backoff.reset();
                    for (topic, partitions) in topics {
                        if partitions == 0 {
                            if missing_logged.insert(topic.clone()) {
                                tracing::info!(target = %mirror.config.target, topic = %topic,
                                    "remote topic to pull does not exist (yet)");
                            }
                            continue;
                        }
                        self.start_topic(&mirror, &topic, partitions, &running, &tasks)
                            .await;
                    }
                    REFRESH
                }
                Err(DownstreamError::Stopped) => return,
                Err(e) => {
                    tracing::warn!(target = %mirror.config.target, error = %e,
                        backoff_ms = backoff.current().as_millis() as u64,
                        "pull mirror: cannot list remote topics; retrying");
                    backoff.next_wait()
                }
            };
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Create the local topic if missing and start a task for every new remote partition.
    async fn start_topic(
        &self,
        mirror: &Arc<Mirror>,
        topic: &str,
        partitions: i32,
        running: &Mutex<HashSet<TaskKey>>,
        tasks: &tokio_util::task::TaskTracker,
    ) {
        // Topics that came from this node (e.g. `edge-01.telemetry` at central) are never
        // pulled back; their records would be skipped anyway.
        if topic.starts_with(&format!("{}.", self.node)) || !mirror.selects(topic) {
            return;
        }
        let local = mirror.config.target_topic(&self.node, topic);
        if local.starts_with("__") {
            tracing::error!(topic, local = %local, "pull mirror would write an internal topic; skipped");
            return;
        }
        self.pulled.insert(local.clone());
        if self.broker.topic(&local).is_none() {
            let (broker, name) = (self.broker.clone(), local.clone());
            let created = tokio::task::spawn_blocking(move || {
                broker.create_topic(&name, partitions, &BTreeMap::new(), false)
            })
            .await;
            match created {
                Ok(Ok(_)) => {
                    tracing::info!(local = %local, partitions, "created the local topic of a pull mirror");
                }
                Ok(Err(BrokerError::TopicAlreadyExists(_))) => {}
                Ok(Err(e)) => {
                    tracing::warn!(local = %local, error = %e, "cannot create the local topic of a pull mirror");
                    return;
                }
                Err(e) => {
                    tracing::warn!(local = %local, error = %e, "creating a local topic panicked");
                    return;
                }
            }
        }
        let alias = mirror.config.remote_alias().to_string();
        for p in 0..partitions {
            let key = (local.clone(), alias.clone(), topic.to_string(), p);
            let fresh = running.lock().map(|mut r| r.insert(key)).unwrap_or(false);
            if !fresh {
                continue;
            }
            let task = PartitionPull {
                broker: self.broker.clone(),
                node: self.node.clone(),
                mirror: mirror.clone(),
                alias: alias.clone(),
                remote_topic: topic.to_string(),
                partition: p,
                local_topic: local.clone(),
                shutdown: self.shutdown.clone(),
            };
            tasks.spawn(task.run());
        }
    }
}

/// The remote topics a pull mirror selects, with their partition counts (0: does not exist).
async fn remote_topics(
    mirror: &Mirror,
    shutdown: &CancellationToken,
) -> Result<Vec<(String, i32)>, DownstreamError> {
    until_stop(shutdown, async {
        let want = if mirror.config.topics_regex.is_some() {
            None
        } else {
            Some(mirror.config.topics.clone())
        };
        let names: Option<Vec<&str>> = want
            .as_ref()
            .map(|ts| ts.iter().map(String::as_str).collect());
        let mut client = mirror.client()?;
        let md = client.metadata(names.as_deref(), false).await?;
        client.close().await;
        let mut out = Vec::new();
        for (name, t) in &md.topics {
            if t.internal || !mirror.selects(name) {
                continue;
            }
            let n = if md.topic_errors.contains_key(name) {
                0
            } else {
                t.partitions.len() as i32
            };
            out.push((name.clone(), n));
        }
        for name in md.topic_errors.keys() {
            if !md.topics.contains_key(name) && mirror.selects(name) {
                out.push((name.clone(), 0));
            }
        }
        Ok(out)
    })
    .await
}
