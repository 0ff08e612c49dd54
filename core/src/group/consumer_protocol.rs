//! The embedded "consumer" protocol that Kafka consumers put into the opaque bytes of the classic
//! protocol (JoinGroup metadata, SyncGroup assignments): bounds-checked decoding of subscriptions
//! and assignments, for OffsetDelete, offset expiry and the CLI's lag view.

use std::collections::BTreeMap;

/// The protocol type that Kafka consumers use; its metadata and assignments have a known layout.
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// Decode the topics of a consumer-protocol subscription (the JoinGroup protocol metadata of
/// Kafka consumers: an i16 version followed by `ConsumerProtocolSubscription`, whose first field is
/// the topic list in every version).
///
/// Parsed by hand with bounds checks because the bytes come from clients and kafka-protocol's
/// decoder preallocates from the length prefixes it reads (garbage can make it allocate gigabytes).
pub fn decode_subscription(metadata: &[u8]) -> Option<Vec<String>> {
    let mut r = Reader(metadata);
    if r.i16()? < 0 {
        return None;
    }
    let n = r.count(2)?;
    let mut topics = Vec::with_capacity(n);
    for _ in 0..n {
        topics.push(r.string()?);
    }
    Some(topics)
}

/// Decode a consumer-protocol assignment (SyncGroup bytes of Kafka consumers: an i16 version
/// followed by `ConsumerProtocolAssignment`, whose first field is the partition list in every
/// version) into topic to partitions. Empty bytes are an empty assignment.
pub fn decode_assignment(assignment: &[u8]) -> Option<BTreeMap<String, Vec<i32>>> {
    if assignment.is_empty() {
        return Some(BTreeMap::new());
    }
    let mut r = Reader(assignment);
    if r.i16()? < 0 {
        return None;
    }
    let mut out: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for _ in 0..r.count(6)? {
        let topic = r.string()?;
        let n = r.count(4)?;
        let parts = out.entry(topic).or_default();
        for _ in 0..n {
            parts.push(r.i32()?);
        }
    }
    Some(out)
}

/// A bounds-checked big-endian reader over untrusted bytes.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn i16(&mut self) -> Option<i16> {
        self.take(2).map(|b| i16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self) -> Option<i32> {
        self.take(4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// An array count whose elements take at least `min_size` bytes each (so it cannot exceed
    /// what is left).
    fn count(&mut self, min_size: usize) -> Option<usize> {
        let n = usize::try_from(self.i32()?).ok()?;
        (n.saturating_mul(min_size) <= self.0.len()).then_some(n)
    }
    fn string(&mut self) -> Option<String> {
        let len = usize::try_from(self.i16()?).ok()?;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::{
        ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
    };
    use kafka_protocol::protocol::{Encodable, StrBytes};

    #[test]
    fn consumer_protocol_round_trip() {
        let sub = ConsumerProtocolSubscription::default()
            .with_topics(vec![StrBytes::from_static_str("t1")]);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&1i16.to_be_bytes());
        sub.encode(&mut buf, 1).unwrap();
        assert_eq!(decode_subscription(&buf), Some(vec!["t1".to_string()]));

        let a = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
            kafka_protocol::messages::consumer_protocol_assignment::TopicPartition::default()
                .with_topic(TopicName(StrBytes::from_static_str("t1")))
                .with_partitions(vec![0, 2]),
        ]);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&0i16.to_be_bytes());
        a.encode(&mut buf, 0).unwrap();
        let decoded = decode_assignment(&buf).unwrap();
        assert_eq!(decoded.get("t1"), Some(&vec![0, 2]));
        assert_eq!(decode_assignment(&[]), Some(BTreeMap::new()));
        assert_eq!(decode_assignment(&[0]), None);
        // Garbage with huge counts is rejected without allocating.
        assert_eq!(decode_subscription(b"\x00\x01\x7f\xff\xff\xffxx"), None);
        assert_eq!(decode_assignment(b"meta-range-x"), None);
        // Newer versions add fields after the first one; they are ignored.
        let mut v3 = BytesMut::new();
        v3.extend_from_slice(&3i16.to_be_bytes());
        sub.encode(&mut v3, 3).unwrap();
        assert_eq!(decode_subscription(&v3), Some(vec!["t1".to_string()]));
    }
}
