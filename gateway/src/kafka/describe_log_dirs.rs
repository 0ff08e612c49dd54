//! DescribeLogDirs (key 35): the node's one log directory (its data directory) with the size on
//! disk of every partition it holds, read from the real logs, as AKHQ, kafka-ui and Cruise
//! Control expect. `offset_lag` is the log end offset minus the high watermark (records appended
//! but not yet durable or replicated); `is_future_key` is always false (there is no
//! AlterReplicaLogDirs). `total_bytes` / `usable_bytes` (v4+) are those of the file system that
//! holds the data directory (`-1` when it cannot be read).
//!
//! Kafka requires DESCRIBE on the cluster: without it the answer has no directories and (v3+)
//! `CLUSTER_AUTHORIZATION_FAILED`. Topics or partitions the node does not hold are left out, as
//! Kafka does.

use std::collections::BTreeMap;
use std::path::Path;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{
    DescribeLogDirsRequest, DescribeLogDirsResponse, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rill_core::authorizer::acl::AclOperation;

use super::authorization::Caller;
use super::Context;

/// Kafka's value for volume sizes it cannot read.
const UNKNOWN_VOLUME_BYTES: i64 = -1;

/// `(total, usable)` bytes of the file system holding `dir`.
fn volume_bytes(dir: &Path) -> (i64, i64) {
    match rustix::fs::statvfs(dir) {
        Ok(st) => {
            let frsize = st.f_frsize.max(1);
            let total = st.f_blocks.saturating_mul(frsize);
            let usable = st.f_bavail.saturating_mul(frsize);
            (
                i64::try_from(total).unwrap_or(i64::MAX),
                i64::try_from(usable).unwrap_or(i64::MAX),
            )
        }
        Err(e) => {
            tracing::debug!(dir = %dir.display(), error = %e, "statvfs of the data directory failed");
            (UNKNOWN_VOLUME_BYTES, UNKNOWN_VOLUME_BYTES)
        }
    }
}

/// The partitions asked for: `None` for every partition of every topic.
type Wanted = Option<BTreeMap<String, Vec<i32>>>;

fn wanted(req: &DescribeLogDirsRequest) -> Wanted {
    req.topics.as_ref().map(|topics| {
        let mut out: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for t in topics {
            out.entry(t.topic.to_string())
                .or_default()
                .extend(t.partitions.iter().copied());
        }
        out
    })
}

/// The topics of the node's log directory, filtered by `wanted`.
fn topics(ctx: &Context, wanted: &Wanted) -> Vec<DescribeLogDirsTopic> {
    let mut by_topic: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    for (topic, partition, log) in ctx.broker.all_logs() {
        if let Some(w) = wanted {
            match w.get(&topic) {
                Some(parts) if parts.contains(&partition) => {}
                _ => continue,
            }
        }
        let size = i64::try_from(log.size_bytes()).unwrap_or(i64::MAX);
        let lag = (log.log_end_offset() - log.high_watermark()).max(0);
        by_topic.entry(topic).or_default().push(
            DescribeLogDirsPartition::default()
                .with_partition_index(partition)
                .with_partition_size(size)
                .with_offset_lag(lag)
                .with_is_future_key(false),
        );
    }
    by_topic
        .into_iter()
        .map(|(name, mut partitions)| {
            partitions.sort_by_key(|p| p.partition_index);
            DescribeLogDirsTopic::default()
                .with_name(TopicName(StrBytes::from_string(name)))
                .with_partitions(partitions)
        })
        .collect()
}

/// Answer DescribeLogDirs.
pub fn handle(
    ctx: &Context,
    caller: &Caller,
    version: i16,
    req: DescribeLogDirsRequest,
) -> ResponseKind {
    if !ctx.authorize_cluster(caller, AclOperation::Describe) {
        let resp = DescribeLogDirsResponse::default();
        return ResponseKind::DescribeLogDirs(if version >= 3 {
            resp.with_error_code(ResponseError::ClusterAuthorizationFailed.code())
        } else {
            resp
        });
    }
    let dir = &ctx.broker.config().data_dir;
    let shown = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone());
    let mut result = DescribeLogDirsResult::default()
        .with_error_code(0)
        .with_log_dir(StrBytes::from_string(shown.display().to_string()))
        .with_topics(topics(ctx, &wanted(&req)));
    if version >= 4 {
        let (total, usable) = volume_bytes(dir);
        result = result.with_total_bytes(total).with_usable_bytes(usable);
    }
    ResponseKind::DescribeLogDirs(DescribeLogDirsResponse::default().with_results(vec![result]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_directory_volume_is_readable() {
        let dir = tempfile::tempdir().unwrap();
        let (total, usable) = volume_bytes(dir.path());
        assert!(
            total > 0 && usable >= 0 && usable <= total,
            "{total} {usable}"
        );
        assert_eq!(
            volume_bytes(&dir.path().join("missing")),
            (UNKNOWN_VOLUME_BYTES, UNKNOWN_VOLUME_BYTES)
        );
    }
}
