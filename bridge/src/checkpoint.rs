//! Consumer group checkpoints and offset translation, as MirrorMaker 2's
//! MirrorCheckpointConnector does.
//!
//! Each mirror task learns from every Produce response which target offset each mirrored source
//! record got and keeps those offset syncs in memory ([`OffsetSyncs`]: runs of consecutive
//! offsets, bounded). After a restart the resume point (the last mirrored record found in the
//! target) gives the first sync again. Every `checkpoint_interval_ms` the checkpoint task of a
//! mirror reads the committed offsets of the edge node's consumer groups on mirrored topics,
//! translates each to the target and writes a [`Checkpoint`] record to
//! `{node_name}.checkpoints.internal` on the target (one partition, compacted). With
//! `sync_group_offsets` it also commits the translated offsets for the same group on the target
//! (only forward, and only while that group has no active members there), so a consumer that
//! fails over to central continues where it stopped at the edge. A group behind the oldest sync
//! (e.g. behind the resume point after a restart) is translated by bisecting the target
//! partition on the records' `rill.origin` offsets.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rill_core::group::{GroupCoordinator, OffsetStore, RedbOffsetStore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use kafka_protocol::records::Record;

use crate::config::Direction;
use crate::control_topics::TargetClient;
use crate::mirror::{parse_origin, Mirror, ORIGIN_HEADER};
use crate::mm2::Checkpoint;
use crate::status::{BridgeStatus, PartitionStatus};

/// Most runs kept per source partition (the oldest are forgotten first).
pub const MAX_RUNS: usize = 4096;

/// Name of the checkpoints topic on the target (MM2's `{source}.checkpoints.internal`).
pub fn checkpoints_topic(node_name: &str) -> String {
    format!("{node_name}.checkpoints.internal")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    source: i64,
    target: i64,
    len: i64,
}

impl Run {
    fn last_source(&self) -> i64 {
        self.source + self.len - 1
    }
    fn last_target(&self) -> i64 {
        self.target + self.len - 1
    }
}

/// Source offset -> target offset of the mirrored records of one source partition whose target
/// partition receives only that source partition, as runs of consecutive offsets.
#[derive(Debug, Default, Clone)]
pub struct OffsetSyncs {
    runs: VecDeque<Run>,
    /// The next source offset the mirror will process: everything below it is either in the
    /// target or was skipped (filters, cycles).
    processed: Option<i64>,
}

impl OffsetSyncs {
    /// Source record `source` is at `target` in the target partition. Offsets must grow; an
    /// out-of-order sync (the target was replaced) forgets the older ones.
    pub fn record(&mut self, source: i64, target: i64) {
        if let Some(last) = self.runs.back_mut() {
            let (ls, lt) = (last.last_source(), last.last_target());
            if source == ls + 1 && target == lt + 1 {
                last.len += 1;
                return;
            }
            if source == ls && target == lt {
                return;
            }
            if source <= ls || target <= lt {
                self.runs.clear();
            }
        }
        self.runs.push_back(Run {
            source,
            target,
            len: 1,
        });
        while self.runs.len() > MAX_RUNS {
            self.runs.pop_front();
        }
    }

    /// The oldest known (source, target) pair.
    pub fn first(&self) -> Option<(i64, i64)> {
        self.runs.front().map(|r| (r.source, r.target))
    }

    /// The mirror will next process source offset `next`.
    pub fn set_processed(&mut self, next: i64) {
        self.processed = Some(next);
    }

    /// The target offset for a group whose committed source offset (the next record it would
    /// read) is `committed`: the target offset of the first mirrored record at or after it; when
    /// every record before `committed` is processed but none at or after it is mirrored yet, the
    /// target's next offset. None when `committed` is before the first known sync or ahead of
    /// what is mirrored.
    pub fn translate(&self, committed: i64) -> Option<i64> {
        let first = self.runs.front()?;
        if committed < first.source {
            return None;
        }
        let i = self.runs.partition_point(|r| r.last_source() < committed);
        if let Some(r) = self.runs.get(i) {
            return Some(if committed >= r.source {
                r.target + (committed - r.source)
            } else {
                // Records between the previous run and this one were skipped.
                r.target
            });
        }
        let last = self.runs.back()?;
        match self.processed {
            Some(p) if p >= committed => Some(last.last_target() + 1),
            _ => None,
        }
    }
}

/// One committed offset of a consumer group on the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupOffset {
    /// The group.
    pub group: String,
    /// The source topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The next offset the group would read.
    pub offset: i64,
    /// The commit's metadata.
    pub metadata: String,
}

/// Where the committed offsets of the edge node's consumer groups come from.
pub trait GroupOffsets: Send + Sync {
    /// Every committed offset of every group.
    fn committed(&self) -> Vec<GroupOffset>;
}

/// Every committed offset in `store`.
fn committed_offsets(store: &dyn OffsetStore) -> Vec<GroupOffset> {
    let mut out = Vec::new();
    for g in store.groups() {
        for ((topic, partition), c) in store.group_offsets(&g) {
            out.push(GroupOffset {
                group: g.clone(),
                topic,
                partition,
                offset: c.offset,
                metadata: c.metadata,
            });
        }
    }
    out
}

impl GroupOffsets for RedbOffsetStore {
    fn committed(&self) -> Vec<GroupOffset> {
        committed_offsets(self)
    }
}

impl GroupOffsets for GroupCoordinator {
    fn committed(&self) -> Vec<GroupOffset> {
        committed_offsets(self.offsets())
    }
}

/// Start one checkpoint task per push mirror with a nonzero `checkpoint_interval_ms`.
pub fn start(
    tasks: &TaskTracker,
    mirrors: &[Arc<Mirror>],
    node: &str,
    status: &Arc<BridgeStatus>,
    groups: Option<Arc<dyn GroupOffsets>>,
    shutdown: &CancellationToken,
) {
    let Some(groups) = groups else {
        return;
    };
    for (i, m) in mirrors.iter().enumerate() {
        if m.config.direction != Direction::Push || m.config.checkpoint_interval_ms == 0 {
            continue;
        }
        let task = CheckpointTask {
            mirror_index: i,
            mirror: m.clone(),
            node: node.to_string(),
            status: status.clone(),
            groups: groups.clone(),
            client: TargetClient::new(&m.config.target, m.security.clone()),
            emitted: HashMap::new(),
            synced: HashMap::new(),
            looked_up: HashMap::new(),
            topic_ready: false,
        };
        tasks.spawn(task.run(shutdown.clone()));
    }
}

type CheckpointKey = (String, String, i32);

struct CheckpointTask {
    mirror_index: usize,
    mirror: Arc<Mirror>,
    node: String,
    status: Arc<BridgeStatus>,
    groups: Arc<dyn GroupOffsets>,
    client: TargetClient,
    /// Last checkpoint written per (group, target topic, partition): (upstream, downstream).
    emitted: HashMap<CheckpointKey, (i64, i64)>,
    /// Last offset committed on the target per (group, target topic, partition).
    synced: HashMap<CheckpointKey, i64>,
    /// Lookups on the target: (source topic, partition, committed) -> target offset.
    looked_up: HashMap<(String, i32, i64), i64>,
    topic_ready: bool,
}

impl CheckpointTask {
    async fn run(mut self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_millis(
            self.mirror.config.checkpoint_interval_ms,
        ));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.round().await {
                tracing::debug!(target = %self.mirror.config.target, error = %e,
                    "checkpoint round failed");
                self.topic_ready = false;
                self.emitted.clear();
            }
        }
    }

    /// The current translations of this mirror's groups.
    async fn translations(&mut self) -> Vec<Checkpoint> {
        let mut out = Vec::new();
        for g in self.groups.committed() {
            if g.offset < 0 {
                continue;
            }
            let Some(e) = self.status.find(self.mirror_index, &g.topic, g.partition) else {
                continue;
            };
            let translated = match e.translate(g.offset) {
                Some(d) => Some(d),
                None => self.look_up(&e, g.offset).await,
            };
            if let Some(d) = translated {
                out.push(Checkpoint {
                    group: g.group,
                    topic: e.target_topic.clone(),
                    partition: g.partition,
                    upstream_offset: g.offset,
                    downstream_offset: d,
                    metadata: g.metadata,
                });
            }
        }
        out
    }

    /// For a group behind the oldest offset sync (e.g. behind the resume point after a
    /// restart): the first target offset holding a record from a source offset >= `committed`,
    /// found by bisecting the target partition (its records' source offsets grow with their
    /// target offsets). Results are cached.
    async fn look_up(&mut self, e: &PartitionStatus, committed: i64) -> Option<i64> {
        let (first_source, first_target) = e.first_sync()?;
        if committed >= first_source {
            return None;
        }
        let key = (e.topic.clone(), e.partition, committed);
        if let Some(d) = self.looked_up.get(&key) {
            return Some(*d);
        }
        let source_of = |r: &Record| -> Option<i64> {
            let (n, t, p, o) = r
                .headers
                .iter()
                .find(|(k, _)| k.as_str() == ORIGIN_HEADER)
                .and_then(|(_, v)| v.as_deref())
                .and_then(parse_origin)?;
            (n == self.node && t == e.topic && p == e.partition).then_some(o)
        };
        let mut lo = match self.client.earliest(&e.target_topic, e.partition).await {
            Ok(o) => o,
            Err(err) => {
                tracing::debug!(error = %err, "offset lookup on the target failed");
                return None;
            }
        };
        // Invariant: the answer is in [lo, hi]; the record at hi is from a source offset >=
        // committed. A position with no record before the next one is equivalent to it.
        let mut hi = first_target;
        for _ in 0..128 {
            if lo >= hi {
                break;
            }
            let mid = lo + (hi - lo) / 2;
            let r = match self
                .client
                .record_at(&e.target_topic, e.partition, mid)
                .await
            {
                Ok(Some(r)) => r,
                Ok(None) => return None,
                Err(err) => {
                    tracing::debug!(error = %err, "offset lookup on the target failed");
                    return None;
                }
            };
            // A record from elsewhere (a shared target topic): no translation.
            let source = source_of(&r)?;
            if source >= committed {
                hi = mid;
            } else {
                lo = r.offset + 1;
            }
        }
        if lo < hi {
            return None;
        }
        if self.looked_up.len() >= 10_000 {
            self.looked_up.clear();
        }
        self.looked_up.insert(key, hi);
        tracing::debug!(topic = %e.topic, partition = e.partition, committed, target_offset = hi,
            "group offset translated by a lookup on the target");
        Some(hi)
    }

    async fn round(&mut self) -> Result<(), crate::mirror::MirrorError> {
        let all = self.translations().await;
        let fresh: Vec<&Checkpoint> = all
            .iter()
            .filter(|c| {
                let k = (c.group.clone(), c.topic.clone(), c.partition);
                self.emitted.get(&k) != Some(&(c.upstream_offset, c.downstream_offset))
            })
            .collect();
        if !fresh.is_empty() {
            let topic = checkpoints_topic(&self.node);
            if !self.topic_ready {
                self.client
                    .ensure_topic(&topic, 1, &[("cleanup.policy", "compact")])
                    .await?;
                self.topic_ready = true;
            }
            let now = rill_core::clock::now_ms();
            let records = fresh.iter().map(|c| (c.key(), c.value(), now)).collect();
            self.client.produce(&topic, records).await?;
            for c in &fresh {
                self.emitted.insert(
                    (c.group.clone(), c.topic.clone(), c.partition),
                    (c.upstream_offset, c.downstream_offset),
                );
            }
        }
        if self.mirror.config.sync_group_offsets {
            self.sync_groups(&all).await;
        }
        Ok(())
    }

    /// Commit the translated offsets on the target where they moved.
    async fn sync_groups(&mut self, all: &[Checkpoint]) {
        let mut by_group: BTreeMap<&str, Vec<(String, i32, i64)>> = BTreeMap::new();
        for c in all {
            let k = (c.group.clone(), c.topic.clone(), c.partition);
            if self.synced.get(&k) != Some(&c.downstream_offset) {
                by_group.entry(c.group.as_str()).or_default().push((
                    c.topic.clone(),
                    c.partition,
                    c.downstream_offset,
                ));
            }
        }
        for (group, offsets) in by_group {
            match self.client.commit_forward(group, &offsets).await {
                Ok(n) => {
                    tracing::debug!(group, committed = n, "group offsets synced to the target");
                    for (t, p, o) in offsets {
                        self.synced.insert((group.to_string(), t, p), o);
                    }
                }
                // Typically UNKNOWN_MEMBER_ID: the group is active on the target; try again
                // next round.
                Err(e) => tracing::debug!(group, error = %e, "group offsets not synced"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_runs_translate_exactly() {
        let mut s = OffsetSyncs::default();
        assert_eq!(s.translate(0), None);
        for i in 0..100 {
            s.record(i, 1000 + i);
        }
        s.set_processed(100);
        assert_eq!(s.runs.len(), 1);
        assert_eq!(s.translate(0), Some(1000));
        assert_eq!(s.translate(42), Some(1042));
        assert_eq!(s.translate(99), Some(1099));
        // Everything before 100 is mirrored, nothing at or after it yet.
        assert_eq!(s.translate(100), Some(1100));
        // Ahead of what is mirrored.
        assert_eq!(s.translate(101), None);
        s.set_processed(150);
        assert_eq!(s.translate(150), Some(1100));
        assert_eq!(s.translate(151), None);
    }

    #[test]
    fn filtered_gaps_map_to_the_next_mirrored_record() {
        let mut s = OffsetSyncs::default();
        // Source 10..=12 mirrored, 13..=19 filtered, 20..=21 mirrored.
        for (src, tgt) in [(10, 0), (11, 1), (12, 2), (20, 3), (21, 4)] {
            s.record(src, tgt);
        }
        s.set_processed(30);
        assert_eq!(s.runs.len(), 2);
        assert_eq!(s.translate(9), None, "before the first sync: unknown");
        assert_eq!(s.translate(12), Some(2));
        assert_eq!(s.translate(13), Some(3));
        assert_eq!(s.translate(19), Some(3));
        assert_eq!(s.translate(20), Some(3));
        assert_eq!(s.translate(21), Some(4));
        // 22..29 processed (filtered): next target offset.
        assert_eq!(s.translate(25), Some(5));
        assert_eq!(s.translate(30), Some(5));
        assert_eq!(s.translate(31), None);
    }

    #[test]
    fn seed_then_continue_and_replacement() {
        let mut s = OffsetSyncs::default();
        s.record(499, 77);
        s.record(499, 77);
        s.set_processed(500);
        assert_eq!(s.translate(499), Some(77));
        assert_eq!(s.translate(500), Some(78));
        assert_eq!(s.translate(498), None);
        s.record(500, 78);
        assert_eq!(s.runs.len(), 1);
        // The target was replaced: older syncs are forgotten.
        s.record(501, 5);
        assert_eq!(s.runs.len(), 1);
        assert_eq!(s.translate(500), None);
        assert_eq!(s.translate(501), Some(5));
    }

    #[test]
    fn bounded() {
        let mut s = OffsetSyncs::default();
        for i in 0..(MAX_RUNS as i64 + 10) {
            s.record(i * 2, i);
        }
        assert_eq!(s.runs.len(), MAX_RUNS);
        assert_eq!(s.translate(0), None);
        assert_eq!(s.translate(20), Some(10));
        assert_eq!(s.translate(21), Some(11));
    }

    #[test]
    fn offset_store_lists_committed_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let db = rill_core::metadata::MetaStore::open(dir.path()).unwrap();
        let store = RedbOffsetStore::open(Arc::new(db)).unwrap();
        store
            .commit(
                "g1",
                &[(
                    ("orders".to_string(), 1),
                    rill_core::group::CommittedOffset {
                        offset: 7,
                        leader_epoch: -1,
                        metadata: "m".into(),
                        commit_timestamp_ms: 0,
                        expire_timestamp_ms: None,
                    },
                )],
            )
            .unwrap();
        assert_eq!(
            store.committed(),
            vec![GroupOffset {
                group: "g1".into(),
                topic: "orders".into(),
                partition: 1,
                offset: 7,
                metadata: "m".into(),
            }]
        );
    }
}
