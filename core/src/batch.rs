//! Kafka v2 record batches: the fixed 61-byte header, CRC32C, framing of a produce payload into
//! batches, and the few header rewrites the log is allowed to make.
//!
//! The toolkit every caller shares instead of walking batches by hand:
//! - [`Batches`] iterates over the whole batches at the start of a buffer (a log read or a Fetch
//!   response), leaving a partial last batch for the next read;
//! - [`decode_records`] decodes their records with kafka-protocol's decoder (every codec),
//!   optionally skipping control records;
//! - [`BatchBuilder`] is the one encoder (kafka-protocol's), for the callers that play the
//!   producer: MQTT ingest, control topics, the CLI, tests and benchmarks.
//!
//! Stored batches are kept byte-for-byte as the producer sent them. The log only rewrites
//! `baseOffset` and `partitionLeaderEpoch` (both outside the CRC) and, for `LogAppendTime` topics,
//! `maxTimestamp` plus the timestamp-type attribute bit (inside the CRC, so the CRC is recomputed).
//!
//! Header layout (big-endian), offsets in bytes:
//!
//! | off | size | field                |
//! |-----|------|----------------------|
//! | 0   | 8    | baseOffset           |
//! | 8   | 4    | batchLength (bytes after this field) |
//! | 12  | 4    | partitionLeaderEpoch |
//! | 16  | 1    | magic (must be 2)    |
//! | 17  | 4    | crc (CRC32C of bytes 21..end) |
//! | 21  | 2    | attributes           |
//! | 23  | 4    | lastOffsetDelta      |
//! | 27  | 8    | baseTimestamp        |
//! | 35  | 8    | maxTimestamp         |
//! | 43  | 8    | producerId           |
//! | 51  | 2    | producerEpoch        |
//! | 53  | 4    | baseSequence         |
//! | 57  | 4    | recordsCount         |
//! | 61  | ...  | records              |

use bytes::{Bytes, BytesMut};

/// Size of the fixed v2 batch header.
pub const HEADER_LEN: usize = 61;
/// Bytes before and including `batchLength` (not counted by it).
pub const LOG_OVERHEAD: usize = 12;

const OFF_BASE_OFFSET: usize = 0;
const OFF_LENGTH: usize = 8;
const OFF_EPOCH: usize = 12;
const OFF_MAGIC: usize = 16;
const OFF_CRC: usize = 17;
const OFF_ATTRIBUTES: usize = 21;
const OFF_LAST_DELTA: usize = 23;
const OFF_BASE_TS: usize = 27;
const OFF_MAX_TS: usize = 35;
const OFF_PRODUCER_ID: usize = 43;
const OFF_PRODUCER_EPOCH: usize = 51;
const OFF_BASE_SEQ: usize = 53;
const OFF_COUNT: usize = 57;

/// Attribute bit: timestamps are LogAppendTime.
pub const ATTR_LOG_APPEND_TIME: i16 = 0x08;
/// Attribute bit: transactional batch.
pub const ATTR_TRANSACTIONAL: i16 = 0x10;
/// Attribute bit: control batch (transaction markers).
pub const ATTR_CONTROL: i16 = 0x20;

/// A batch that fails validation.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// Framing or field values are inconsistent.
    #[error("batch is malformed: {0}")]
    Malformed(String),
    /// [`decode_records`] could not decode a batch's records (CRC, codec or record framing).
    #[error("cannot decode record batch")]
    Decode(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// [`BatchBuilder::build`] could not encode the records (e.g. the codec failed).
    #[error("cannot encode record batch")]
    Encode(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Only magic 2 (record batch v2) is supported.
    #[error("unsupported record batch magic {0} (only v2 is supported)")]
    UnsupportedMagic(i8),
    /// The CRC32C in the header does not match the batch contents.
    #[error("batch CRC mismatch: header says {expected:#010x}, computed {actual:#010x}")]
    CrcMismatch { expected: u32, actual: u32 },
    /// The batch is larger than `max.message.bytes`.
    #[error("batch of {size} bytes exceeds max.message.bytes {max}")]
    TooLarge { size: usize, max: usize },
    /// A produce request without any batch.
    #[error("no record batch in request")]
    Empty,
    /// A record without a key sent to a compacted topic (Kafka: INVALID_RECORD).
    #[error("compacted topic refuses records without a key")]
    MissingKey,
}

/// Compression codec from the attributes (bits 0-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}
fn be_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

/// The parsed fixed header of a v2 record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// `batchLength`: bytes after the length field (total size = 12 + batch_length).
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

impl BatchHeader {
    /// Parse the header at the start of `buf` and check magic and length sanity (not the CRC).
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        if buf.len() < HEADER_LEN {
            return Err(BatchError::Malformed(format!(
                "{} bytes is shorter than the {HEADER_LEN}-byte batch header",
                buf.len()
            )));
        }
        let magic = buf[OFF_MAGIC] as i8;
        if magic != 2 {
            return Err(BatchError::UnsupportedMagic(magic));
        }
        let h = BatchHeader {
            base_offset: be_i64(buf, OFF_BASE_OFFSET),
            batch_length: be_i32(buf, OFF_LENGTH),
            partition_leader_epoch: be_i32(buf, OFF_EPOCH),
            magic,
            crc: be_u32(buf, OFF_CRC),
            attributes: be_i16(buf, OFF_ATTRIBUTES),
            last_offset_delta: be_i32(buf, OFF_LAST_DELTA),
            base_timestamp: be_i64(buf, OFF_BASE_TS),
            max_timestamp: be_i64(buf, OFF_MAX_TS),
            producer_id: be_i64(buf, OFF_PRODUCER_ID),
            producer_epoch: be_i16(buf, OFF_PRODUCER_EPOCH),
            base_sequence: be_i32(buf, OFF_BASE_SEQ),
            records_count: be_i32(buf, OFF_COUNT),
        };
        if (h.batch_length as i64) < (HEADER_LEN - LOG_OVERHEAD) as i64 {
            return Err(BatchError::Malformed(format!(
                "batchLength {} is smaller than the header",
                h.batch_length
            )));
        }
        if h.last_offset_delta < 0 {
            return Err(BatchError::Malformed(format!(
                "negative lastOffsetDelta {}",
                h.last_offset_delta
            )));
        }
        if h.records_count < 0 {
            return Err(BatchError::Malformed(format!(
                "negative record count {}",
                h.records_count
            )));
        }
        Ok(h)
    }

    /// Total size of the batch in bytes (12 + batchLength).
    pub fn total_len(&self) -> usize {
        LOG_OVERHEAD + self.batch_length as usize
    }
    /// Offset of the last record (`baseOffset + lastOffsetDelta`).
    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }
    /// Number of offsets the batch spans.
    pub fn offset_count(&self) -> i64 {
        self.last_offset_delta as i64 + 1
    }
    /// Compression codec (attributes bits 0-2).
    pub fn compression(&self) -> Compression {
        match self.attributes & 0x07 {
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            _ => Compression::None,
        }
    }
    /// Whether timestamps are LogAppendTime.
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & ATTR_LOG_APPEND_TIME != 0
    }
    /// Whether the batch belongs to a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }
    /// Whether the batch is a control batch (commit/abort marker).
    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }
}

/// CRC32C of a whole batch as Kafka computes it (bytes 21..end).
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[OFF_ATTRIBUTES..])
}

/// Check the stored CRC of a whole batch against its contents.
pub fn verify_crc(batch: &[u8]) -> Result<(), BatchError> {
    if batch.len() < HEADER_LEN {
        return Err(BatchError::Malformed("batch shorter than header".into()));
    }
    let expected = be_u32(batch, OFF_CRC);
    let actual = compute_crc(batch);
    if expected != actual {
        return Err(BatchError::CrcMismatch { expected, actual });
    }
    Ok(())
}

/// Rewrite `baseOffset` (not covered by the CRC).
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[OFF_BASE_OFFSET..OFF_BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Rewrite `partitionLeaderEpoch` (not covered by the CRC).
pub fn set_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[OFF_EPOCH..OFF_EPOCH + 4].copy_from_slice(&epoch.to_be_bytes());
}

/// Turn the batch into a LogAppendTime batch stamped `now_ms`: set the attribute bit and
/// `maxTimestamp`, then recompute the CRC (both fields are covered by it).
pub fn set_log_append_time(batch: &mut [u8], now_ms: i64) {
    let attrs = be_i16(batch, OFF_ATTRIBUTES) | ATTR_LOG_APPEND_TIME;
    batch[OFF_ATTRIBUTES..OFF_ATTRIBUTES + 2].copy_from_slice(&attrs.to_be_bytes());
    batch[OFF_MAX_TS..OFF_MAX_TS + 8].copy_from_slice(&now_ms.to_be_bytes());
    let crc = compute_crc(batch);
    batch[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Split a produce payload into whole batches, validating each one fully (magic, framing, CRC,
/// size against `max_batch_bytes`) before returning anything: a payload is accepted or refused as
/// a whole. Returns (header, byte range) per batch.
pub fn split_batches(
    payload: &[u8],
    max_batch_bytes: usize,
) -> Result<Vec<(BatchHeader, std::ops::Range<usize>)>, BatchError> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < payload.len() {
        let rest = &payload[pos..];
        if rest.len() < HEADER_LEN {
            // Same check for magic as Kafka does first where the byte is present.
            if rest.len() > OFF_MAGIC && rest[OFF_MAGIC] as i8 != 2 {
                return Err(BatchError::UnsupportedMagic(rest[OFF_MAGIC] as i8));
            }
            return Err(BatchError::Malformed(format!(
                "trailing {} bytes do not form a batch",
                rest.len()
            )));
        }
        let h = BatchHeader::parse(rest)?;
        let len = h.total_len();
        if len > rest.len() {
            return Err(BatchError::Malformed(format!(
                "batchLength says {} bytes but only {} remain",
                len,
                rest.len()
            )));
        }
        if len > max_batch_bytes {
            return Err(BatchError::TooLarge {
                size: len,
                max: max_batch_bytes,
            });
        }
        let batch = &rest[..len];
        verify_crc(batch)?;
        if h.compression() == Compression::None
            && h.records_count > 0
            && h.records_count as i64 > h.offset_count()
        {
            return Err(BatchError::Malformed(format!(
                "{} records but lastOffsetDelta {}",
                h.records_count, h.last_offset_delta
            )));
        }
        out.push((h, pos..pos + len));
        pos += len;
    }
    if out.is_empty() {
        return Err(BatchError::Empty);
    }
    Ok(out)
}

/// One whole batch found by [`Batches`].
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    pub header: BatchHeader,
    /// The batch's bytes, header included (`header.total_len()` of them).
    pub bytes: &'a [u8],
}

/// The whole v2 batches at the start of a buffer, in order.
///
/// A partial last batch (a broker cuts a Fetch response at its size limit; a log read may end
/// mid-batch) ends the iteration quietly: [`position`](Self::position) then says where it
/// starts. A complete header that does not parse (old message format, negative length) yields
/// one `Err` and ends the iteration. CRCs are not checked here (see [`verify_crc`]).
///
/// ```
/// use rill_core::batch::{BatchBuilder, Batches};
///
/// let mut b = BatchBuilder::new();
/// b.push(None, Some("v".into()), 1);
/// let one = b.build().unwrap();
/// let mut two = [&one[..], &one[..]].concat();
/// two.truncate(two.len() - 1); // the second batch is cut short
/// let mut it = Batches::new(&two);
/// assert_eq!(it.by_ref().map(|b| b.unwrap().header.records_count).sum::<i32>(), 1);
/// assert_eq!(it.position(), one.len());
/// ```
#[derive(Debug, Clone)]
pub struct Batches<'a> {
    buf: &'a [u8],
    pos: usize,
    done: bool,
}

impl<'a> Batches<'a> {
    /// Iterate over the batches of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Batches {
            buf,
            pos: 0,
            done: false,
        }
    }

    /// Bytes taken by the batches yielded so far: once the iteration ended without an error,
    /// the length of the whole batches (the partial tail, if any, starts here).
    pub fn position(&self) -> usize {
        self.pos
    }
}

impl<'a> Iterator for Batches<'a> {
    type Item = Result<Batch<'a>, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = &self.buf[self.pos..];
        if self.done || rest.len() < HEADER_LEN {
            return None;
        }
        let header = match BatchHeader::parse(rest) {
            Ok(h) => h,
            Err(e) => {
                self.done = true;
                return Some(Err(e));
            }
        };
        let bytes = rest.get(..header.total_len())?;
        self.pos += bytes.len();
        Some(Ok(Batch { header, bytes }))
    }
}

/// Whether [`decode_records`] returns control records (transaction markers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlRecords {
    /// Leave out the records of control batches, as a consumer does.
    Skip,
    /// Return them too (with `control` set).
    Keep,
}

/// A record as kafka-protocol decodes it.
pub type Record = kafka_protocol::records::Record;

/// The records of every whole batch at the start of `buf` (see [`Batches`]: a partial last
/// batch is left out), decoded and decompressed with kafka-protocol's decoder, which checks each
/// batch's CRC. Keys, values and header values share `buf`'s memory when uncompressed.
/// Records of LogAppendTime batches carry the batch's `maxTimestamp`, as Kafka's consumer shows
/// them.
pub fn decode_records(buf: &Bytes, control: ControlRecords) -> Result<Vec<Record>, BatchError> {
    let mut out = Vec::new();
    for batch in Batches::new(buf) {
        let Batch { header, bytes } = batch?;
        if header.is_control() && control == ControlRecords::Skip {
            continue;
        }
        let mut bytes = buf.slice_ref(bytes);
        let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes)
            .map_err(|e| BatchError::Decode(e.into()))?;
        let first = out.len();
        out.extend(set.records);
        if header.is_log_append_time() {
            for r in &mut out[first..] {
                r.timestamp = header.max_timestamp;
            }
        }
    }
    Ok(out)
}

/// Read a zig-zag varint (Kafka records section encoding) from `buf` at `*pos`.
fn read_varint(buf: &[u8], pos: &mut usize) -> Option<i64> {
    let mut value: u64 = 0;
    let mut shift = 0;
    loop {
        let b = *buf.get(*pos)?;
        *pos += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
    Some(((value >> 1) as i64) ^ -((value & 1) as i64))
}

/// Offset of the first record carrying the batch's max timestamp (exact for uncompressed
/// CreateTime batches; the base offset for LogAppendTime; the last offset when records cannot be
/// walked, e.g. compressed). Does not allocate.
pub fn offset_of_max_timestamp(batch: &[u8]) -> i64 {
    let Ok(h) = BatchHeader::parse(batch) else {
        return -1;
    };
    if h.is_log_append_time() {
        return h.base_offset;
    }
    if h.compression() != Compression::None || batch.len() < h.total_len() {
        return h.last_offset();
    }
    let mut pos = HEADER_LEN;
    for _ in 0..h.records_count {
        let Some(len) = read_varint(batch, &mut pos) else {
            break;
        };
        let start = pos;
        pos += 1;
        let (Some(ts_delta), Some(off_delta)) =
            (read_varint(batch, &mut pos), read_varint(batch, &mut pos))
        else {
            break;
        };
        if h.base_timestamp + ts_delta == h.max_timestamp {
            return h.base_offset + off_delta;
        }
        match usize::try_from(len).ok().and_then(|l| start.checked_add(l)) {
            Some(p) => pos = p,
            None => break,
        }
    }
    h.last_offset()
}

/// For an uncompressed plaintext batch, the (offset, timestamp) of each record, in order. Returns
/// `None` for compressed batches or when the records section does not parse.
pub fn record_timestamps(batch: &[u8]) -> Option<Vec<(i64, i64)>> {
    let h = BatchHeader::parse(batch).ok()?;
    if h.compression() != Compression::None || batch.len() < h.total_len() {
        return None;
    }
    let mut out = Vec::with_capacity(h.records_count.max(0) as usize);
    let mut pos = HEADER_LEN;
    for _ in 0..h.records_count {
        let len = read_varint(batch, &mut pos)?;
        let start = pos;
        let _attrs = batch.get(pos)?;
        pos += 1;
        let ts_delta = read_varint(batch, &mut pos)?;
        let off_delta = read_varint(batch, &mut pos)?;
        let ts = if h.is_log_append_time() {
            h.max_timestamp
        } else {
            h.base_timestamp + ts_delta
        };
        out.push((h.base_offset + off_delta, ts));
        pos = start.checked_add(usize::try_from(len).ok()?)?;
    }
    Some(out)
}

/// Record headers as kafka-protocol represents them (name, optional value), in order; a name
/// may repeat (KIP-82; the vendored copy's patch, `vendor/kafka-protocol/RILL-PATCHES.md`).
pub type Headers = Vec<(kafka_protocol::protocol::StrBytes, Option<Bytes>)>;

impl From<Compression> for kafka_protocol::records::Compression {
    fn from(c: Compression) -> Self {
        use kafka_protocol::records::Compression as K;
        match c {
            Compression::None => K::None,
            Compression::Gzip => K::Gzip,
            Compression::Snappy => K::Snappy,
            Compression::Lz4 => K::Lz4,
            Compression::Zstd => K::Zstd,
        }
    }
}

impl From<kafka_protocol::records::Compression> for Compression {
    fn from(c: kafka_protocol::records::Compression) -> Self {
        use kafka_protocol::records::Compression as K;
        match c {
            K::None => Compression::None,
            K::Gzip => Compression::Gzip,
            K::Snappy => Compression::Snappy,
            K::Lz4 => Compression::Lz4,
            K::Zstd => Compression::Zstd,
        }
    }
}

/// Builds one v2 record batch the way a Kafka producer would, with kafka-protocol's
/// `RecordBatchEncoder`: creation timestamps, offset deltas 0, 1, ..., and by default no
/// producer id (`producerId` -1, `producerEpoch` -1, `baseSequence` -1).
///
/// ```
/// use bytes::Bytes;
/// use rill_core::batch::{BatchBuilder, BatchHeader, Compression};
///
/// let mut b = BatchBuilder::new().compression(Compression::Gzip);
/// b.push(Some(Bytes::from("k")), Some(Bytes::from("v1")), 1000);
/// b.push(None, Some(Bytes::from("v2")), 1001);
/// let batch = b.build().unwrap();
/// let h = BatchHeader::parse(&batch).unwrap();
/// assert_eq!((h.records_count, h.base_sequence), (2, -1));
/// ```
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    compression: Compression,
    level: Option<i32>,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    records: Vec<kafka_protocol::records::Record>,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        BatchBuilder::new()
    }
}

impl BatchBuilder {
    /// An empty, uncompressed batch without a producer id.
    pub fn new() -> Self {
        BatchBuilder {
            compression: Compression::None,
            level: None,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            records: Vec::new(),
        }
    }

    /// Compress the records with `compression`.
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Compress at `level` instead of the codec's default (Kafka's `compression.zstd.level` /
    /// `compression.gzip.level`): zstd takes 1..=22 (kafka-protocol's default is 3), gzip 0..=9.
    /// Ignored for the codecs without levels here (none, snappy, lz4).
    pub fn compression_level(mut self, level: i32) -> Self {
        self.level = Some(level);
        self
    }

    /// Stamp the batch as an idempotent producer's: `producer_id`, `producer_epoch` and the
    /// sequence of the first record.
    pub fn producer(mut self, producer_id: i64, producer_epoch: i16, base_sequence: i32) -> Self {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }

    /// Append a record without headers.
    pub fn push(&mut self, key: Option<Bytes>, value: Option<Bytes>, timestamp: i64) -> &mut Self {
        self.push_with_headers(key, value, timestamp, Headers::new())
    }

    /// Append a record with `headers`.
    pub fn push_with_headers(
        &mut self,
        key: Option<Bytes>,
        value: Option<Bytes>,
        timestamp: i64,
        headers: Headers,
    ) -> &mut Self {
        self.records.push(kafka_protocol::records::Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: kafka_protocol::records::TimestampType::Creation,
            offset: self.records.len() as i64,
            sequence: -1,
            timestamp,
            key,
            value,
            headers,
        });
        self
    }

    /// Number of records pushed so far.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True before the first [`push`](Self::push).
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Encode the records as one batch (base offset 0). [`BatchError::Empty`] without records.
    pub fn build(mut self) -> Result<Bytes, BatchError> {
        if self.records.is_empty() {
            return Err(BatchError::Empty);
        }
        for (i, r) in self.records.iter_mut().enumerate() {
            r.producer_id = self.producer_id;
            r.producer_epoch = self.producer_epoch;
            // The encoder writes the first record's sequence as `baseSequence` and keeps records
            // in one batch only while `offset - sequence` is constant, so the sequences count up
            // from the base, also from -1 (no sequence) for a batch without a producer id.
            r.sequence = self.base_sequence.wrapping_add(i as i32);
        }
        let options = kafka_protocol::records::RecordEncodeOptions {
            version: 2,
            compression: self.compression.into(),
        };
        let mut buf = BytesMut::new();
        let encoded = match (self.level, self.compression) {
            (Some(level), Compression::Zstd | Compression::Gzip) => {
                kafka_protocol::records::RecordBatchEncoder::encode_with_custom_compression(
                    &mut buf,
                    &self.records,
                    &options,
                    Some(|records: &mut BytesMut, out: &mut BytesMut, _| {
                        Ok(compress_at_level(self.compression, level, records, out)?)
                    }),
                )
            }
            _ => kafka_protocol::records::RecordBatchEncoder::encode(
                &mut buf,
                &self.records,
                &options,
            ),
        };
        encoded.map_err(|e| BatchError::Encode(e.into()))?;
        Ok(buf.freeze())
    }
}

/// Compress an encoded records section with zstd or gzip at `level` (the other codecs have no
/// level and never reach here).
fn compress_at_level(
    codec: Compression,
    level: i32,
    records: &[u8],
    out: &mut BytesMut,
) -> std::io::Result<()> {
    use bytes::BufMut;
    use std::io::Write;
    match codec {
        Compression::Zstd => zstd::stream::copy_encode(records, out.writer(), level)?,
        Compression::Gzip => {
            let level = flate2::Compression::new(level.clamp(0, 9) as u32);
            let mut e = flate2::write::GzEncoder::new(out.writer(), level);
            e.write_all(records)?;
            e.finish()?;
        }
        Compression::None | Compression::Snappy | Compression::Lz4 => {
            return Err(std::io::Error::other(format!(
                "{codec:?} has no compression level"
            )))
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod test_util {
    //! Batch builders for unit tests.
    use super::BatchBuilder;
    use bytes::Bytes;

    /// Encode one v2 batch of `values` with timestamps `ts0`, `ts0+1`, ...
    pub fn batch(values: &[&[u8]], ts0: i64) -> Vec<u8> {
        let mut b = BatchBuilder::new();
        for (i, v) in values.iter().enumerate() {
            b.push(None, Some(Bytes::copy_from_slice(v)), ts0 + i as i64);
        }
        b.build().expect("encode test batch").to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::batch;
    use super::*;

    #[test]
    fn parses_encoder_output() {
        let b = batch(&[b"a", b"bb", b"ccc"], 1000);
        let h = BatchHeader::parse(&b).unwrap();
        assert_eq!(h.total_len(), b.len());
        assert_eq!(h.last_offset_delta, 2);
        assert_eq!(h.records_count, 3);
        assert_eq!(h.base_timestamp, 1000);
        assert_eq!(h.max_timestamp, 1002);
        assert_eq!(h.compression(), Compression::None);
        verify_crc(&b).unwrap();
        assert_eq!(
            record_timestamps(&b).unwrap(),
            vec![(0, 1000), (1, 1001), (2, 1002)]
        );
        assert_eq!(offset_of_max_timestamp(&b), 2);
    }

    #[test]
    fn split_validates_everything() {
        let mut two = batch(&[b"x"], 1);
        two.extend(batch(&[b"y", b"z"], 2));
        let parts = split_batches(&two, 1 << 20).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1].0.records_count, 2);

        let mut bad = two.clone();
        let n = bad.len();
        bad[n - 1] ^= 1;
        assert!(matches!(
            split_batches(&bad, 1 << 20),
            Err(BatchError::CrcMismatch { .. })
        ));
        let mut magic = two.clone();
        magic[16] = 1;
        assert!(matches!(
            split_batches(&magic, 1 << 20),
            Err(BatchError::UnsupportedMagic(1))
        ));
        assert!(matches!(
            split_batches(&two, 10),
            Err(BatchError::TooLarge { .. })
        ));
        assert!(matches!(
            split_batches(&two[..two.len() - 1], 1 << 20),
            Err(BatchError::Malformed(_))
        ));
        assert!(matches!(
            split_batches(&[], 1 << 20),
            Err(BatchError::Empty)
        ));
    }

    #[test]
    fn rewrites_keep_crc_valid() {
        let mut b = batch(&[b"a"], 5);
        set_base_offset(&mut b, 42);
        set_leader_epoch(&mut b, 7);
        verify_crc(&b).unwrap();
        set_log_append_time(&mut b, 99);
        verify_crc(&b).unwrap();
        let h = BatchHeader::parse(&b).unwrap();
        assert_eq!(
            (h.base_offset, h.partition_leader_epoch, h.max_timestamp),
            (42, 7, 99)
        );
        assert!(h.is_log_append_time());
        assert_eq!(record_timestamps(&b).unwrap(), vec![(42, 99)]);
    }

    #[test]
    fn compression_level_changes_the_bytes_not_the_records() {
        let build = |c: Compression, level: Option<i32>| {
            let mut b = BatchBuilder::new().compression(c);
            if let Some(l) = level {
                b = b.compression_level(l);
            }
            for i in 0..200 {
                b.push(
                    None,
                    Some(Bytes::from(format!("reading {i} of sensor {}", i % 7))),
                    i,
                );
            }
            b.build().unwrap()
        };
        for (c, lo, hi) in [(Compression::Zstd, 1, 19), (Compression::Gzip, 1, 9)] {
            let fast = build(c, Some(lo));
            let best = build(c, Some(hi));
            assert_ne!(fast, best, "{c:?} levels {lo} and {hi} gave the same bytes");
            for batch in [&fast, &best] {
                verify_crc(batch).unwrap();
                let h = BatchHeader::parse(batch).unwrap();
                assert_eq!((h.compression(), h.records_count), (c, 200));
                let mut bytes = batch.clone();
                let decoded = kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes)
                    .unwrap()
                    .records;
                assert_eq!(decoded.len(), 200);
                assert_eq!(
                    decoded[199].value.as_deref(),
                    Some(&b"reading 199 of sensor 3"[..])
                );
            }
        }
        // Without a level the codec's default applies, as before.
        assert_eq!(
            build(Compression::Zstd, None),
            build(Compression::Zstd, Some(3))
        );
        // A level on a codec without levels is ignored.
        assert_eq!(
            build(Compression::Lz4, Some(5)),
            build(Compression::Lz4, None)
        );
    }

    /// `b` turned into a transactional control batch (marker records), CRC recomputed.
    fn as_control(mut b: Vec<u8>) -> Vec<u8> {
        let attrs = be_i16(&b, OFF_ATTRIBUTES) | ATTR_CONTROL | ATTR_TRANSACTIONAL;
        b[OFF_ATTRIBUTES..OFF_ATTRIBUTES + 2].copy_from_slice(&attrs.to_be_bytes());
        let crc = compute_crc(&b);
        b[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
        b
    }

    fn values(records: &[Record]) -> Vec<&[u8]> {
        records.iter().filter_map(|r| r.value.as_deref()).collect()
    }

    #[test]
    fn batches_stop_before_a_partial_last_batch() {
        let one = batch(&[b"a", b"b"], 1);
        let mut buf = one.clone();
        set_base_offset(&mut buf, 0);
        let mut second = batch(&[b"c"], 3);
        set_base_offset(&mut second, 2);
        buf.extend(&second);
        let whole: Vec<_> = Batches::new(&buf).map(|b| b.unwrap()).collect();
        assert_eq!(whole.len(), 2);
        assert_eq!(whole[1].header.base_offset, 2);
        assert_eq!(whole[1].bytes, &second[..]);
        // Every cut inside the second batch (header or records) yields only the first.
        for cut in one.len()..buf.len() {
            let mut it = Batches::new(&buf[..cut]);
            let got: Vec<_> = it.by_ref().map(|b| b.unwrap().header.base_offset).collect();
            assert_eq!(got, vec![0], "cut at {cut}");
            assert_eq!(it.position(), one.len());
        }
        assert_eq!(Batches::new(&[]).count(), 0);
        assert_eq!(Batches::new(&buf[..HEADER_LEN - 1]).count(), 0);
    }

    #[test]
    fn batches_report_a_complete_bad_header_once() {
        let mut buf = batch(&[b"a"], 1);
        let mut old = batch(&[b"b"], 2);
        old[OFF_MAGIC] = 1;
        buf.extend(&old);
        buf.extend(batch(&[b"c"], 3));
        let got: Vec<_> = Batches::new(&buf).collect();
        assert_eq!(got.len(), 2, "iteration ends at the error");
        assert!(got[0].is_ok());
        assert!(matches!(got[1], Err(BatchError::UnsupportedMagic(1))));
    }

    #[test]
    fn decode_records_skips_control_batches_on_request() {
        let mut buf = batch(&[b"a"], 1);
        let mut marker = as_control(batch(&[b"marker"], 2));
        set_base_offset(&mut marker, 1);
        buf.extend(&marker);
        let mut after = batch(&[b"b", b"c"], 3);
        set_base_offset(&mut after, 2);
        buf.extend(&after);
        let buf = Bytes::from(buf);

        let skipped = decode_records(&buf, ControlRecords::Skip).unwrap();
        assert_eq!(values(&skipped), vec![&b"a"[..], b"b", b"c"]);
        assert_eq!(
            skipped.iter().map(|r| r.offset).collect::<Vec<_>>(),
            vec![0, 2, 3]
        );
        let kept = decode_records(&buf, ControlRecords::Keep).unwrap();
        assert_eq!(values(&kept), vec![&b"a"[..], b"marker", b"b", b"c"]);
        assert!(kept[1].control && !kept[0].control);
        // The partial tail is left out, not an error.
        let cut = buf.slice(..buf.len() - 3);
        let partial = decode_records(&cut, ControlRecords::Skip).unwrap();
        assert_eq!(values(&partial), vec![&b"a"[..]]);
    }

    #[test]
    fn decode_records_decompresses_every_codec() {
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let mut buf = BytesMut::new();
            for base in [0i64, 2] {
                let mut b = BatchBuilder::new().compression(c);
                b.push(
                    Some(Bytes::from("k")),
                    Some(Bytes::from(format!("v{base}"))),
                    10,
                );
                b.push(None, Some(Bytes::from(format!("v{}", base + 1))), 11);
                let mut one = b.build().unwrap().to_vec();
                set_base_offset(&mut one, base);
                buf.extend_from_slice(&one);
            }
            let recs = decode_records(&buf.freeze(), ControlRecords::Skip).unwrap();
            assert_eq!(
                values(&recs),
                vec![&b"v0"[..], b"v1", b"v2", b"v3"],
                "{c:?}"
            );
            assert_eq!(
                recs.iter().map(|r| r.offset).collect::<Vec<_>>(),
                vec![0, 1, 2, 3]
            );
            assert_eq!(recs[0].key.as_deref(), Some(&b"k"[..]));
        }
    }

    #[test]
    fn decode_records_checks_crc_and_stamps_log_append_time() {
        let mut b = batch(&[b"a", b"b"], 5);
        set_log_append_time(&mut b, 777);
        let recs = decode_records(&Bytes::from(b.clone()), ControlRecords::Skip).unwrap();
        assert_eq!(
            recs.iter().map(|r| r.timestamp).collect::<Vec<_>>(),
            vec![777, 777]
        );
        let n = b.len();
        b[n - 1] ^= 1;
        assert!(matches!(
            decode_records(&Bytes::from(b), ControlRecords::Skip),
            Err(BatchError::Decode(_))
        ));
    }
}
