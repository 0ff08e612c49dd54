//! The origin-header vocabulary and the resume scan.
//!
//! Every mirrored record carries a `rill.origin` header `node/topic/partition/offset` naming its
//! source record (for a pull mirror, `node` is the remote alias). A mirror resumes after the last
//! record of a partition whose origin names its source partition: [`find_last_origin`] scans the
//! partition backwards from its end in growing windows (1, 16, 256, then [`MAX_SCAN_WINDOW`]
//! records), so the common case (the newest record is the last mirrored one) reads one batch.
//! Push mirrors scan the target partition over the network, pull mirrors the local log; both
//! through [`RecordSource`].

use bytes::Bytes;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Record;

/// Header carrying `node/topic/partition/offset` of a mirrored record's source.
pub const ORIGIN_HEADER: &str = "rill.origin";

/// Most records read per step of the resume scan.
pub const MAX_SCAN_WINDOW: i64 = 4096;

/// The origin header value of a source record.
pub fn origin_value(node: &str, topic: &str, partition: i32, offset: i64) -> String {
    format!("{node}/{topic}/{partition}/{offset}")
}

/// Parse an origin header value into (node, topic, partition, offset).
pub fn parse_origin(v: &[u8]) -> Option<(&str, &str, i32, i64)> {
    let s = std::str::from_utf8(v).ok()?;
    let mut it = s.rsplitn(4, '/');
    let offset = it.next()?.parse().ok()?;
    let partition = it.next()?.parse().ok()?;
    let topic = it.next()?;
    let node = it.next()?;
    Some((node, topic, partition, offset))
}

/// A record header by name (the codec keys headers by `StrBytes`).
pub fn header<'a>(r: &'a Record, name: &str) -> Option<&'a Option<Bytes>> {
    r.headers
        .iter()
        .find(|(k, _)| k.as_str() == name)
        .map(|(_, v)| v)
}

/// Sets the origin header of `headers` to `value`, replacing any origin header already there
/// (the other headers keep their order, repeated names included).
pub fn set_origin(headers: &mut rill_core::batch::Headers, value: String) {
    headers.retain(|(k, _)| k.as_str() != ORIGIN_HEADER);
    headers.push((
        StrBytes::from_static_str(ORIGIN_HEADER),
        Some(Bytes::from(value)),
    ));
}

/// The parsed origin of a record, if it has one.
pub fn origin_of(r: &Record) -> Option<(&str, &str, i32, i64)> {
    match header(r, ORIGIN_HEADER) {
        Some(Some(v)) => parse_origin(v),
        _ => None,
    }
}

/// Whether a record has an origin header that does not parse as this node's (records of other
/// nodes, or garbage, are never mirrored on).
pub fn came_from_elsewhere(r: &Record, node: &str) -> bool {
    match header(r, ORIGIN_HEADER) {
        Some(Some(v)) => parse_origin(v).map(|o| o.0 != node).unwrap_or(true),
        _ => false,
    }
}

/// A partition the resume scan reads.
pub trait RecordSource {
    /// Why a read failed.
    type Error;
    /// The records with offsets in `[from, to)` (fewer when some are gone).
    fn records(
        &mut self,
        from: i64,
        to: i64,
    ) -> impl std::future::Future<Output = Result<Vec<Record>, Self::Error>> + Send;
}

/// The last record found by [`find_last_origin`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastOrigin {
    /// The source offset its origin header names.
    pub source_offset: i64,
    /// Its own offset in the scanned partition.
    pub offset: i64,
}

/// The last record in `[start, end)` of `source` whose origin names `node`/`topic`/`partition`
/// (None: no such record).
pub async fn find_last_origin<S: RecordSource>(
    source: &mut S,
    start: i64,
    end: i64,
    node: &str,
    topic: &str,
    partition: i32,
) -> Result<Option<LastOrigin>, S::Error> {
    let mut hi = end;
    let mut window = 1i64;
    while hi > start {
        let lo = (hi - window).max(start);
        let recs = source.records(lo, hi).await?;
        for r in recs.iter().rev() {
            if let Some((n, t, p, o)) = origin_of(r) {
                if n == node && t == topic && p == partition {
                    return Ok(Some(LastOrigin {
                        source_offset: o,
                        offset: r.offset,
                    }));
                }
            }
        }
        hi = lo;
        window = (window * 16).min(MAX_SCAN_WINDOW);
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::TimestampType;

    fn rec(offset: i64, origin: Option<String>) -> Record {
        let mut headers = Vec::new();
        if let Some(o) = origin {
            set_origin(&mut headers, o);
        }
        Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset,
            sequence: -1,
            timestamp: 0,
            key: None,
            value: None,
            headers,
        }
    }

    /// A partition in memory that counts what the scan reads.
    struct Mem {
        records: Vec<Record>,
        reads: Vec<(i64, i64)>,
    }

    impl RecordSource for Mem {
        type Error = std::convert::Infallible;
        async fn records(&mut self, from: i64, to: i64) -> Result<Vec<Record>, Self::Error> {
            self.reads.push((from, to));
            Ok(self
                .records
                .iter()
                .filter(|r| r.offset >= from && r.offset < to)
                .cloned()
                .collect())
        }
    }

    #[test]
    fn origin_roundtrip() {
        let v = origin_value("edge/1", "t.x", 3, 42);
        assert_eq!(parse_origin(v.as_bytes()), Some(("edge/1", "t.x", 3, 42)));
        assert_eq!(parse_origin(b"junk"), None);
        assert!(came_from_elsewhere(
            &rec(0, Some(origin_value("b", "t", 0, 1))),
            "a"
        ));
        assert!(came_from_elsewhere(&rec(0, Some("junk".into())), "a"));
        assert!(!came_from_elsewhere(
            &rec(0, Some(origin_value("a", "t", 0, 1))),
            "a"
        ));
        assert!(!came_from_elsewhere(&rec(0, None), "a"));
    }

    #[tokio::test]
    async fn scan_finds_the_newest_match_in_bounded_windows() {
        let mut records: Vec<Record> = (0..20_000).map(|i| rec(i, None)).collect();
        records[100] = rec(100, Some(origin_value("edge", "t", 0, 7)));
        records[150] = rec(150, Some(origin_value("edge", "t", 1, 9)));
        let mut m = Mem {
            records,
            reads: vec![],
        };
        let found = find_last_origin(&mut m, 0, 20_000, "edge", "t", 0)
            .await
            .unwrap();
        assert_eq!(
            found,
            Some(LastOrigin {
                source_offset: 7,
                offset: 100
            })
        );
        assert!(m.reads.iter().all(|(lo, hi)| hi - lo <= MAX_SCAN_WINDOW));
        assert_eq!(
            m.reads[..3],
            [(19_999, 20_000), (19_983, 19_999), (19_727, 19_983)]
        );
        assert_eq!(
            find_last_origin(&mut m, 0, 20_000, "edge", "t", 2)
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            find_last_origin(&mut m, 5, 5, "edge", "t", 0)
                .await
                .unwrap(),
            None
        );
    }
}
