//! A reader of one log partition for MQTT delivery: where to read next, records up to the high
//! watermark, skipping what retention removed.

use std::sync::Arc;

use rill_core::batch::Batches;
use rill_core::log::{LogError, PartitionLog};

use super::records::{self, StoredRecord};

/// Bytes read from the log per step.
const READ_BYTES: usize = 256 * 1024;

/// One log partition a subscription reads.
pub struct Source {
    pub topic: String,
    pub partition: i32,
    pub log: Arc<PartitionLog>,
    /// Next offset not yet looked at.
    pub next_read: i64,
}

impl Source {
    /// A source starting at `start`.
    pub fn new(topic: String, partition: i32, log: Arc<PartitionLog>, start: i64) -> Source {
        Source {
            topic,
            partition,
            log,
            next_read: start,
        }
    }

    /// Whether records past `next_read` are visible.
    pub fn has_more(&self) -> bool {
        self.log.high_watermark() > self.next_read
    }

    /// Records at or after `next_read` up to the high watermark (one read's worth). Offsets
    /// that no longer exist (retention) are skipped.
    pub fn fetch(&mut self) -> Result<Vec<StoredRecord>, LogError> {
        let hw = self.log.high_watermark();
        if hw <= self.next_read {
            return Ok(Vec::new());
        }
        let result = match self.log.read(self.next_read, READ_BYTES) {
            Ok(r) => r,
            Err(LogError::OffsetOutOfRange { log_start, .. }) if log_start > self.next_read => {
                self.next_read = log_start;
                return Ok(Vec::new());
            }
            Err(e) => return Err(e),
        };
        let end = batches_end(&result.records);
        let recs = match records::decode_batches(result.records) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(topic = %self.topic, partition = self.partition, error = %e,
                    "undecodable batch skipped by MQTT delivery");
                self.next_read = hw;
                return Ok(Vec::new());
            }
        };
        let hw = result.high_watermark.max(0);
        let out: Vec<StoredRecord> = recs
            .into_iter()
            .filter(|r| r.offset >= self.next_read && r.offset < hw)
            .collect();
        if out.is_empty() {
            if result.log_start_offset > self.next_read {
                self.next_read = result.log_start_offset;
            } else if let Some(end) = end.filter(|e| *e > self.next_read) {
                // Only control records or records compacted away: step over those batches.
                self.next_read = end.min(hw);
            }
        }
        Ok(out)
    }
}

/// The offset after the last whole batch in `data`.
fn batches_end(data: &[u8]) -> Option<i64> {
    Batches::new(data)
        .map_while(Result::ok)
        .last()
        .map(|b| b.header.last_offset() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::records::{Message, MessageProps};

    #[test]
    fn batch_end_from_headers() {
        let msg = Message {
            topic: "a".into(),
            payload: bytes::Bytes::from_static(b"x"),
            qos: 0,
            retain: false,
            props: MessageProps::default(),
        };
        let recs: Vec<_> = (0..3).map(|_| records::to_record(&msg, None, 0)).collect();
        let mut batch = records::encode_batch(&recs).unwrap().to_vec();
        // As stored: the log rewrites the base offset.
        batch[..8].copy_from_slice(&10i64.to_be_bytes());
        assert_eq!(batches_end(&batch), Some(13));
        assert_eq!(batches_end(&[]), None);
    }
}
