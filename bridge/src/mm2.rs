//! MirrorMaker 2's record formats for heartbeats and checkpoints, so MM2 tooling (e.g.
//! `RemoteClusterUtils.translateOffsets`, `Checkpoint.deserializeRecord`) reads what the bridge
//! writes.
//!
//! Both use Kafka's protocol `Struct` encoding: fields in schema order, INT16/INT32/INT64
//! big-endian, STRING as an INT16 length followed by UTF-8. Values start with a header struct
//! holding an INT16 version (0).
//!
//! - Heartbeat key `{sourceClusterAlias: STRING, targetClusterAlias: STRING}`, value
//!   `{version: INT16} {timestamp: INT64}`.
//! - Checkpoint key `{group: STRING, topic: STRING, partition: INT32}`, value
//!   `{version: INT16} {upstreamOffset: INT64, offset: INT64, metadata: STRING}`.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The only version of both value formats.
pub const VERSION: i16 = 0;

/// Errors decoding an MM2 record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mm2Error {
    /// The bytes end before the struct does.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// A string is not UTF-8 or has a negative length.
    #[error("bad string in {0}")]
    BadString(&'static str),
    /// An unknown value version.
    #[error("unsupported version {0}")]
    Version(i16),
}

fn put_str(b: &mut BytesMut, v: &str) {
    let bytes = v.as_bytes();
    let n = bytes.len().min(i16::MAX as usize);
    b.put_i16(n as i16);
    b.put_slice(&bytes[..n]);
}

struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl Reader<'_> {
    fn i16(&mut self) -> Result<i16, Mm2Error> {
        if self.buf.remaining() < 2 {
            return Err(Mm2Error::Truncated(self.what));
        }
        Ok(self.buf.get_i16())
    }
    fn i32(&mut self) -> Result<i32, Mm2Error> {
        if self.buf.remaining() < 4 {
            return Err(Mm2Error::Truncated(self.what));
        }
        Ok(self.buf.get_i32())
    }
    fn i64(&mut self) -> Result<i64, Mm2Error> {
        if self.buf.remaining() < 8 {
            return Err(Mm2Error::Truncated(self.what));
        }
        Ok(self.buf.get_i64())
    }
    fn string(&mut self) -> Result<String, Mm2Error> {
        let n = self.i16()?;
        let n = usize::try_from(n).map_err(|_| Mm2Error::BadString(self.what))?;
        if self.buf.remaining() < n {
            return Err(Mm2Error::Truncated(self.what));
        }
        let s = std::str::from_utf8(&self.buf[..n])
            .map_err(|_| Mm2Error::BadString(self.what))?
            .to_string();
        self.buf.advance(n);
        Ok(s)
    }
    fn version(&mut self) -> Result<(), Mm2Error> {
        match self.i16()? {
            VERSION => Ok(()),
            v => Err(Mm2Error::Version(v)),
        }
    }
}

/// A heartbeat record (MM2's `Heartbeat`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    /// Alias of the cluster the heartbeat comes from (the edge node's name).
    pub source_cluster_alias: String,
    /// Alias of the cluster it is written to.
    pub target_cluster_alias: String,
    /// When it was emitted (ms since the epoch).
    pub timestamp: i64,
}

impl Heartbeat {
    /// The record key.
    pub fn key(&self) -> Bytes {
        let mut b = BytesMut::new();
        put_str(&mut b, &self.source_cluster_alias);
        put_str(&mut b, &self.target_cluster_alias);
        b.freeze()
    }

    /// The record value (version 0).
    pub fn value(&self) -> Bytes {
        let mut b = BytesMut::new();
        b.put_i16(VERSION);
        b.put_i64(self.timestamp);
        b.freeze()
    }

    /// Decode a heartbeat record.
    pub fn decode(key: &[u8], value: &[u8]) -> Result<Heartbeat, Mm2Error> {
        let mut k = Reader {
            buf: key,
            what: "heartbeat key",
        };
        let mut v = Reader {
            buf: value,
            what: "heartbeat value",
        };
        v.version()?;
        Ok(Heartbeat {
            source_cluster_alias: k.string()?,
            target_cluster_alias: k.string()?,
            timestamp: v.i64()?,
        })
    }
}

/// A checkpoint record (MM2's `Checkpoint`): where a consumer group is, upstream and downstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The consumer group.
    pub group: String,
    /// The target (renamed) topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The group's committed offset on the source.
    pub upstream_offset: i64,
    /// The same position on the target.
    pub downstream_offset: i64,
    /// The commit's metadata.
    pub metadata: String,
}

impl Checkpoint {
    /// The record key.
    pub fn key(&self) -> Bytes {
        let mut b = BytesMut::new();
        put_str(&mut b, &self.group);
        put_str(&mut b, &self.topic);
        b.put_i32(self.partition);
        b.freeze()
    }

    /// The record value (version 0).
    pub fn value(&self) -> Bytes {
        let mut b = BytesMut::new();
        b.put_i16(VERSION);
        b.put_i64(self.upstream_offset);
        b.put_i64(self.downstream_offset);
        put_str(&mut b, &self.metadata);
        b.freeze()
    }

    /// Decode a checkpoint record.
    pub fn decode(key: &[u8], value: &[u8]) -> Result<Checkpoint, Mm2Error> {
        let mut k = Reader {
            buf: key,
            what: "checkpoint key",
        };
        let mut v = Reader {
            buf: value,
            what: "checkpoint value",
        };
        v.version()?;
        Ok(Checkpoint {
            group: k.string()?,
            topic: k.string()?,
            partition: k.i32()?,
            upstream_offset: v.i64()?,
            downstream_offset: v.i64()?,
            metadata: v.string()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_bytes_and_roundtrip() {
        let h = Heartbeat {
            source_cluster_alias: "edge-01".into(),
            target_cluster_alias: "central".into(),
            timestamp: 0x0102_0304_0506_0708,
        };
        let k = h.key();
        assert_eq!(&k[..], b"\x00\x07edge-01\x00\x07central");
        let v = h.value();
        assert_eq!(&v[..], b"\x00\x00\x01\x02\x03\x04\x05\x06\x07\x08");
        assert_eq!(Heartbeat::decode(&k, &v), Ok(h));
        assert_eq!(
            Heartbeat::decode(&k, b"\x00\x01\x00"),
            Err(Mm2Error::Version(1))
        );
        assert!(Heartbeat::decode(b"\x00\x09edge", &v).is_err());
    }

    #[test]
    fn checkpoint_bytes_and_roundtrip() {
        let c = Checkpoint {
            group: "g".into(),
            topic: "edge-01.orders".into(),
            partition: 2,
            upstream_offset: 600,
            downstream_offset: 598,
            metadata: "".into(),
        };
        let k = c.key();
        assert_eq!(&k[..], b"\x00\x01g\x00\x0eedge-01.orders\x00\x00\x00\x02");
        let v = c.value();
        assert_eq!(v.len(), 2 + 8 + 8 + 2);
        assert_eq!(&v[..2], b"\x00\x00");
        assert_eq!(&v[2..10], &600i64.to_be_bytes());
        assert_eq!(&v[10..18], &598i64.to_be_bytes());
        assert_eq!(Checkpoint::decode(&k, &v), Ok(c));
        assert_eq!(
            Checkpoint::decode(&k, &v[..12]),
            Err(Mm2Error::Truncated("checkpoint value"))
        );
    }
}
