//! Append validation (Kafka's `LogValidator`), the pure half of [`super::PartitionLog::append`]:
//! - [`validate_batches`]: framing, magic, CRC and size of every batch of a produce request, and
//!   on compacted topics a key on every record ([`check_keys`]);
//! - [`check_producers`]: idempotent producers' sequence numbers and epochs against the
//!   partition's [`ProducerStateManager`] (gaps and stale epochs refused, a retried batch answered
//!   with the offsets it was first appended at);
//! - [`assign_offsets`]: the plaintext copy of the request with base offsets, the partition
//!   leader epoch and (for `LogAppendTime` topics) the broker time written into the headers.
//!
//! Nothing here touches the disk or the log's state; the caller holds the log's writer lock
//! between the producer check and the write.

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::RecordBatchDecoder;

use super::LogError;
use crate::batch::{self, BatchError, BatchHeader};
use crate::producer_state::{BatchMeta, Check, ProducerError, ProducerStateManager};
use crate::topic_config::TopicConfig;

/// The batches of one append: each header and its byte range in the request.
pub(super) type Batches = Vec<(BatchHeader, Range<usize>)>;

/// Split `records` into whole v2 batches and check each (framing, CRC, `max.message.bytes`;
/// keys on compacted topics).
pub(super) fn validate_batches(records: &[u8], cfg: &TopicConfig) -> Result<Batches, LogError> {
    let parts = batch::split_batches(records, cfg.max_message_bytes)?;
    if cfg.cleanup_policy.compacts() {
        for (_, range) in &parts {
            check_keys(&records[range.clone()])?;
        }
    }
    Ok(parts)
}

/// Refuse a batch holding a record without a key (appends to compacted topics; Kafka's
/// "Compacted topic cannot accept message without key"). Control batches (transaction markers)
/// are exempt.
pub fn check_keys(batch: &[u8]) -> Result<(), BatchError> {
    let h = BatchHeader::parse(batch)?;
    if h.is_control() || h.records_count == 0 {
        return Ok(());
    }
    let mut buf = Bytes::copy_from_slice(batch);
    let set = RecordBatchDecoder::decode(&mut buf)
        .map_err(|e| BatchError::Malformed(format!("records do not decode: {e}")))?;
    if set.records.iter().any(|r| r.key.is_none()) {
        return Err(BatchError::MissingKey);
    }
    Ok(())
}

/// Check the idempotent producers' batches of an append that would start at `log_end`.
/// Returns `Some` (the offsets it was appended at) if the append is a retry of one batch that
/// is already in the log; a duplicate inside a multi-batch append is refused.
pub(super) fn check_producers(
    parts: &Batches,
    state: &ProducerStateManager,
    log_end: i64,
) -> Result<Option<BatchMeta>, LogError> {
    if !parts.iter().any(|(h, _)| h.producer_id >= 0) {
        return Ok(None);
    }
    // Several batches: each is checked against the state as the earlier ones leave it.
    let mut scratch = (parts.len() > 1).then(|| state.clone());
    let mut next = log_end;
    for (h, _) in parts {
        if h.producer_id < 0 {
            continue;
        }
        let st = scratch.as_ref().unwrap_or(state);
        match st.check(h)? {
            Check::Duplicate(b) if parts.len() == 1 => return Ok(Some(b)),
            Check::Duplicate(_) => {
                return Err(ProducerError::DuplicateInMultiBatch {
                    producer_id: h.producer_id,
                }
                .into())
            }
            Check::Append => {}
        }
        if let Some(sc) = scratch.as_mut() {
            let mut h = *h;
            h.base_offset = next;
            next += h.offset_count();
            sc.record(&h);
        }
    }
    Ok(None)
}

/// An append with its offsets assigned.
pub(super) struct Assigned {
    /// The request's bytes with rewritten headers (the tail cache's entries).
    pub plain: BytesMut,
    /// The rewritten headers, one per batch.
    pub headers: Vec<BatchHeader>,
    /// The offset after the last batch.
    pub next_offset: i64,
    /// Largest batch max timestamp (after `LogAppendTime` rewriting).
    pub max_timestamp: i64,
    /// Records appended.
    pub record_count: u32,
}

/// Copy `records` and write into each batch of `parts` its base offset (from `first_offset` on),
/// `leader_epoch` and, when `log_append_time` is given, that time (Kafka's LogAppendTime).
pub(super) fn assign_offsets(
    records: &[u8],
    parts: &Batches,
    first_offset: i64,
    leader_epoch: i32,
    log_append_time: Option<i64>,
) -> Result<Assigned, LogError> {
    let mut plain = BytesMut::from(records);
    let mut next = first_offset;
    let mut max_ts = -1i64;
    let mut count: u32 = 0;
    let mut headers: Vec<BatchHeader> = Vec::with_capacity(parts.len());
    for (h, range) in parts {
        let b = &mut plain[range.clone()];
        batch::set_base_offset(b, next);
        batch::set_leader_epoch(b, leader_epoch);
        if let Some(now) = log_append_time {
            batch::set_log_append_time(b, now);
        }
        let h2 = BatchHeader::parse(b)?;
        max_ts = max_ts.max(h2.max_timestamp);
        count = count.saturating_add(h.records_count.max(0) as u32);
        next += h.offset_count();
        headers.push(h2);
    }
    Ok(Assigned {
        plain,
        headers,
        next_offset: next,
        max_timestamp: max_ts,
        record_count: count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::test_util::batch;
    use crate::batch::BatchBuilder;
    use crate::topic_config::CleanupPolicy;

    fn cfg(compact: bool) -> TopicConfig {
        TopicConfig {
            cleanup_policy: if compact {
                CleanupPolicy::Compact
            } else {
                CleanupPolicy::Delete
            },
            ..TopicConfig::default()
        }
    }

    fn idempotent(pid: i64, epoch: i16, seq: i32, n: usize) -> Vec<u8> {
        let mut b = BatchBuilder::new().producer(pid, epoch, seq);
        for _ in 0..n {
            b.push(
                Some(Bytes::from_static(b"k")),
                Some(Bytes::from_static(b"v")),
                1,
            );
        }
        b.build().unwrap().to_vec()
    }

    #[test]
    fn validates_framing_and_keys_of_compacted_topics() {
        let two = [batch(&[b"a"], 1), batch(&[b"b", b"c"], 2)].concat();
        let parts = validate_batches(&two, &cfg(false)).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1].0.records_count, 2);
        let mut bad = two.clone();
        let n = bad.len();
        bad[n - 1] ^= 1;
        assert!(matches!(
            validate_batches(&bad, &cfg(false)),
            Err(LogError::Batch(BatchError::CrcMismatch { .. }))
        ));
        // `batch` writes records without keys.
        assert!(matches!(
            validate_batches(&two, &cfg(true)),
            Err(LogError::Batch(BatchError::MissingKey))
        ));
        assert!(validate_batches(&idempotent(1, 0, 0, 2), &cfg(true)).is_ok());
    }

    #[test]
    fn assigns_offsets_epoch_and_append_time() {
        let two = [batch(&[b"a"], 10), batch(&[b"b", b"c"], 20)].concat();
        let parts = validate_batches(&two, &cfg(false)).unwrap();
        let a = assign_offsets(&two, &parts, 40, 7, None).unwrap();
        assert_eq!(a.next_offset, 43);
        assert_eq!(a.record_count, 3);
        assert_eq!(a.max_timestamp, 21);
        assert_eq!(a.headers[0].base_offset, 40);
        assert_eq!(a.headers[1].base_offset, 41);
        assert!(a.headers.iter().all(|h| h.partition_leader_epoch == 7));
        assert_eq!(a.plain.len(), two.len());
        batch::verify_crc(&a.plain[parts[1].1.clone()]).unwrap();
        let t = assign_offsets(&two, &parts, 0, 0, Some(99_000)).unwrap();
        assert_eq!(t.max_timestamp, 99_000);
        assert!(t.headers.iter().all(|h| h.is_log_append_time()));
        // The request itself is not modified.
        assert_eq!(BatchHeader::parse(&two).unwrap().base_offset, 0);
    }

    #[test]
    fn producer_checks_answer_retries_and_refuse_gaps() {
        let mut state = ProducerStateManager::new();
        let first = idempotent(5, 0, 0, 2);
        let parts = validate_batches(&first, &cfg(false)).unwrap();
        assert!(check_producers(&parts, &state, 0).unwrap().is_none());
        let a = assign_offsets(&first, &parts, 0, 0, None).unwrap();
        state.record(&a.headers[0]);
        // The same batch again: a retry, answered with its offsets.
        let dup = check_producers(&parts, &state, 2).unwrap().unwrap();
        assert_eq!((dup.first_offset, dup.last_offset), (0, 1));
        // A duplicate inside a multi-batch append is refused.
        let multi = [first.clone(), idempotent(5, 0, 2, 1)].concat();
        let mparts = validate_batches(&multi, &cfg(false)).unwrap();
        assert!(matches!(
            check_producers(&mparts, &state, 2),
            Err(LogError::Producer(ProducerError::DuplicateInMultiBatch {
                producer_id: 5
            }))
        ));
        // A gap is refused; two batches that follow each other pass together.
        let gap = idempotent(5, 0, 9, 1);
        assert!(matches!(
            check_producers(&validate_batches(&gap, &cfg(false)).unwrap(), &state, 2),
            Err(LogError::Producer(_))
        ));
        let next = [idempotent(5, 0, 2, 1), idempotent(5, 0, 3, 1)].concat();
        let nparts = validate_batches(&next, &cfg(false)).unwrap();
        assert!(check_producers(&nparts, &state, 2).unwrap().is_none());
        // Batches without a producer id are not checked.
        let plain = batch(&[b"x"], 1);
        let pparts = validate_batches(&plain, &cfg(false)).unwrap();
        assert!(check_producers(&pparts, &state, 2).unwrap().is_none());
    }
}
