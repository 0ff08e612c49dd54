//! The records a group coordinator writes to its `__consumer_offsets` partition, in Kafka's
//! layout (Kafka's `GroupCoordinatorRecordSerde`, the old `GroupMetadataManager` schemas), so
//! that Kafka's tools (`kafka-console-consumer --formatter OffsetsMessageFormatter`) read them:
//!
//! - **OffsetCommit**: key version 1 `(group: string, topic: string, partition: int32)`; value
//!   version 3 `(offset: int64, leader_epoch: int32, metadata: string, commit_timestamp: int64)`,
//!   or version 1 `(offset, metadata, commit_timestamp, expire_timestamp: int64)` when the commit
//!   carries an explicit expiry (OffsetCommit v2-v4's retention time), as Kafka chooses,
//! - **GroupMetadata**: key version 2 `(group: string)`; value version 3 `(protocol_type: string,
//!   generation: int32, protocol: nullable string, leader: nullable string,
//!   current_state_timestamp: int64, members: [member_id: string, group_instance_id: nullable
//!   string, client_id: string, client_host: string, rebalance_timeout: int32, session_timeout:
//!   int32, subscription: bytes, assignment: bytes])`.
//!
//! Strings are int16-length-prefixed (`-1`: null), bytes and arrays int32-prefixed, all
//! big-endian (the non-flexible Kafka encoding). A null value is a tombstone: the offset or the
//! group was deleted, and compaction will drop the key.

use bytes::{BufMut, Bytes, BytesMut};

use super::offset_store::CommittedOffset;

/// Key version of an offset commit.
pub const OFFSET_COMMIT_KEY_VERSION: i16 = 1;
/// Key version of a group's metadata.
pub const GROUP_METADATA_KEY_VERSION: i16 = 2;

/// A record that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Shorter than its fields say.
    #[error("truncated coordinator record")]
    Truncated,
    /// A key or value version this coordinator does not know.
    #[error("unknown coordinator record version {0}")]
    UnknownVersion(i16),
    /// A string that is not UTF-8.
    #[error("coordinator record string is not UTF-8")]
    Utf8,
}

/// One member as a group's metadata record stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberMetadata {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    /// The member's metadata for the group's protocol (the subscription).
    pub subscription: Bytes,
    /// The member's assignment in this generation.
    pub assignment: Bytes,
}

/// A classic group as its metadata record stores it (written when a generation completes and
/// when the group becomes empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMetadata {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub current_state_timestamp_ms: i64,
    pub members: Vec<MemberMetadata>,
}

/// One decoded record of a `__consumer_offsets` partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoordinatorRecord {
    /// A committed offset (`None`: deleted).
    OffsetCommit {
        group: String,
        topic: String,
        partition: i32,
        value: Option<CommittedOffset>,
    },
    /// A group's metadata (`None`: the group was deleted).
    GroupMetadata {
        group: String,
        value: Option<GroupMetadata>,
    },
}

fn put_str(b: &mut BytesMut, s: &str) {
    let len = i16::try_from(s.len()).unwrap_or(i16::MAX);
    b.put_i16(len);
    b.put_slice(&s.as_bytes()[..len as usize]);
}

fn put_opt_str(b: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(b, s),
        None => b.put_i16(-1),
    }
}

fn put_bytes(b: &mut BytesMut, v: &[u8]) {
    b.put_i32(i32::try_from(v.len()).unwrap_or(i32::MAX));
    b.put_slice(v);
}

/// Reads the big-endian fields of one key or value.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        if self.buf.len() < n {
            return Err(RecordError::Truncated);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn i16(&mut self) -> Result<i16, RecordError> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Result<i32, RecordError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn i64(&mut self) -> Result<i64, RecordError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }

    fn opt_str(&mut self) -> Result<Option<String>, RecordError> {
        let len = self.i16()?;
        if len < 0 {
            return Ok(None);
        }
        let b = self.take(len as usize)?;
        String::from_utf8(b.to_vec())
            .map(Some)
            .map_err(|_| RecordError::Utf8)
    }

    fn str(&mut self) -> Result<String, RecordError> {
        Ok(self.opt_str()?.unwrap_or_default())
    }

    fn bytes(&mut self) -> Result<Bytes, RecordError> {
        let len = self.i32()?;
        if len < 0 {
            return Ok(Bytes::new());
        }
        Ok(Bytes::copy_from_slice(self.take(len as usize)?))
    }
}

/// The key of `group`'s committed offset of `topic`-`partition`.
pub fn offset_commit_key(group: &str, topic: &str, partition: i32) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(OFFSET_COMMIT_KEY_VERSION);
    put_str(&mut b, group);
    put_str(&mut b, topic);
    b.put_i32(partition);
    b.freeze()
}

/// The value of a committed offset.
pub fn offset_commit_value(c: &CommittedOffset) -> Bytes {
    let mut b = BytesMut::new();
    match c.expire_timestamp_ms {
        Some(expire) => {
            b.put_i16(1);
            b.put_i64(c.offset);
            put_str(&mut b, &c.metadata);
            b.put_i64(c.commit_timestamp_ms);
            b.put_i64(expire);
        }
        None => {
            b.put_i16(3);
            b.put_i64(c.offset);
            b.put_i32(c.leader_epoch);
            put_str(&mut b, &c.metadata);
            b.put_i64(c.commit_timestamp_ms);
        }
    }
    b.freeze()
}

/// The key of `group`'s metadata.
pub fn group_metadata_key(group: &str) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(GROUP_METADATA_KEY_VERSION);
    put_str(&mut b, group);
    b.freeze()
}

/// The value of a group's metadata (version 3).
pub fn group_metadata_value(g: &GroupMetadata) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(3);
    put_str(&mut b, &g.protocol_type);
    b.put_i32(g.generation);
    put_opt_str(&mut b, g.protocol.as_deref());
    put_opt_str(&mut b, g.leader.as_deref());
    b.put_i64(g.current_state_timestamp_ms);
    b.put_i32(i32::try_from(g.members.len()).unwrap_or(i32::MAX));
    for m in &g.members {
        put_str(&mut b, &m.member_id);
        put_opt_str(&mut b, m.group_instance_id.as_deref());
        put_str(&mut b, &m.client_id);
        put_str(&mut b, &m.client_host);
        b.put_i32(m.rebalance_timeout_ms);
        b.put_i32(m.session_timeout_ms);
        put_bytes(&mut b, &m.subscription);
        put_bytes(&mut b, &m.assignment);
    }
    b.freeze()
}

fn decode_offset_value(value: &[u8]) -> Result<CommittedOffset, RecordError> {
    let mut r = Reader { buf: value };
    let version = r.i16()?;
    let offset = r.i64()?;
    let (leader_epoch, metadata, commit, expire) = match version {
        0 => (-1, r.str()?, r.i64()?, None),
        1 => {
            let (m, c, e) = (r.str()?, r.i64()?, r.i64()?);
            (-1, m, c, (e >= 0).then_some(e))
        }
        2 => (-1, r.str()?, r.i64()?, None),
        3 => (r.i32()?, r.str()?, r.i64()?, None),
        v => return Err(RecordError::UnknownVersion(v)),
    };
    Ok(CommittedOffset {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp_ms: commit,
        expire_timestamp_ms: expire,
    })
}

fn decode_group_value(value: &[u8]) -> Result<GroupMetadata, RecordError> {
    let mut r = Reader { buf: value };
    let version = r.i16()?;
    if !(0..=3).contains(&version) {
        return Err(RecordError::UnknownVersion(version));
    }
    let protocol_type = r.str()?;
    let generation = r.i32()?;
    let protocol = r.opt_str()?;
    let leader = r.opt_str()?;
    let current_state_timestamp_ms = if version >= 2 { r.i64()? } else { -1 };
    let count = r.i32()?.max(0);
    let mut members = Vec::new();
    for _ in 0..count {
        let member_id = r.str()?;
        let group_instance_id = if version >= 3 { r.opt_str()? } else { None };
        let client_id = r.str()?;
        let client_host = r.str()?;
        let rebalance_timeout_ms = if version >= 1 { r.i32()? } else { -1 };
        let session_timeout_ms = r.i32()?;
        let subscription = r.bytes()?;
        let assignment = r.bytes()?;
        members.push(MemberMetadata {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms: if rebalance_timeout_ms < 0 {
                session_timeout_ms
            } else {
                rebalance_timeout_ms
            },
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    Ok(GroupMetadata {
        protocol_type,
        generation,
        protocol,
        leader,
        current_state_timestamp_ms,
        members,
    })
}

/// Decode one record of a `__consumer_offsets` partition. `Ok(None)`: a key version of a record
/// type this coordinator does not use (e.g. KIP-848's records), skipped as Kafka skips unknown
/// types it need not load.
pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<Option<CoordinatorRecord>, RecordError> {
    let mut r = Reader { buf: key };
    match r.i16()? {
        0 | 1 => {
            let group = r.str()?;
            let topic = r.str()?;
            let partition = r.i32()?;
            let value = value.map(decode_offset_value).transpose()?;
            Ok(Some(CoordinatorRecord::OffsetCommit {
                group,
                topic,
                partition,
                value,
            }))
        }
        2 => {
            let group = r.str()?;
            let value = value.map(decode_group_value).transpose()?;
            Ok(Some(CoordinatorRecord::GroupMetadata { group, value }))
        }
        _ => Ok(None),
    }
}

/// Kafka's `String.hashCode` of a group id (Java: UTF-16 code units, `h = 31 * h + c`).
pub fn java_string_hashcode(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// The `__consumer_offsets` partition of `group` among `num_partitions` (Kafka's
/// `Utils.abs(groupId.hashCode) % numPartitions`, where `Utils.abs(MIN_VALUE)` is 0).
pub fn partition_for(group: &str, num_partitions: i32) -> i32 {
    let h = java_string_hashcode(group);
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % num_partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashcode_matches_java() {
        // Values from Java's "...".hashCode().
        assert_eq!(java_string_hashcode(""), 0);
        assert_eq!(java_string_hashcode("a"), 97);
        assert_eq!(java_string_hashcode("hello"), 99162322);
        assert_eq!(java_string_hashcode("my-group"), -1_906_497_762);
        assert_eq!(partition_for("my-group", 16), 1_906_497_762 % 16);
        assert_eq!(java_string_hashcode("polygenelubricants"), i32::MIN);
        assert_eq!(partition_for("polygenelubricants", 16), 0);
        assert_eq!(partition_for("hello", 50), 99162322 % 50);
    }

    #[test]
    fn offset_commit_round_trips() {
        let c = CommittedOffset {
            offset: 42,
            leader_epoch: 3,
            metadata: "m".into(),
            commit_timestamp_ms: 1000,
            expire_timestamp_ms: None,
        };
        let k = offset_commit_key("g", "t", 7);
        let v = offset_commit_value(&c);
        assert_eq!(&k[..2], &[0, 1]);
        assert_eq!(&v[..2], &[0, 3]);
        let got = decode(&k, Some(&v)).unwrap().unwrap();
        assert_eq!(
            got,
            CoordinatorRecord::OffsetCommit {
                group: "g".into(),
                topic: "t".into(),
                partition: 7,
                value: Some(c.clone()),
            }
        );
        let expiring = CommittedOffset {
            expire_timestamp_ms: Some(5000),
            leader_epoch: -1,
            ..c
        };
        let v1 = offset_commit_value(&expiring);
        assert_eq!(&v1[..2], &[0, 1]);
        let CoordinatorRecord::OffsetCommit { value, .. } = decode(&k, Some(&v1)).unwrap().unwrap()
        else {
            panic!("not an offset commit")
        };
        assert_eq!(value, Some(expiring));
        assert!(matches!(
            decode(&k, None).unwrap(),
            Some(CoordinatorRecord::OffsetCommit { value: None, .. })
        ));
        assert_eq!(decode(&k[..5], None), Err(RecordError::Truncated));
    }

    #[test]
    fn group_metadata_round_trips() {
        let g = GroupMetadata {
            protocol_type: "consumer".into(),
            generation: 4,
            protocol: Some("range".into()),
            leader: Some("m1".into()),
            current_state_timestamp_ms: 99,
            members: vec![MemberMetadata {
                member_id: "m1".into(),
                group_instance_id: None,
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 45_000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        let k = group_metadata_key("grp");
        assert_eq!(&k[..2], &[0, 2]);
        let got = decode(&k, Some(&group_metadata_value(&g)))
            .unwrap()
            .unwrap();
        assert_eq!(
            got,
            CoordinatorRecord::GroupMetadata {
                group: "grp".into(),
                value: Some(g),
            }
        );
    }
}
