//! The 48-byte header at the start of every segment file (`N.log`, `N.index`, `N.timeindex`):
//! magic `RILL`, file kind, format version, cipher id, topic id, partition, base offset, creation
//! time and a CRC32C of the bytes before it (layout in `docs/on-disk-format.md`).

use uuid::Uuid;

use super::PartitionIdent;

/// Size of the header at the start of every segment file.
pub const FILE_HEADER_LEN: u64 = 48;
/// Segment file format version written by this code.
pub const FORMAT_VERSION: u8 = 1;
/// Magic at the start of every segment file.
pub const FILE_MAGIC: [u8; 4] = *b"RILL";

/// Which file of a segment a header belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Log,
    Index,
    TimeIndex,
}

impl FileKind {
    fn byte(self) -> u8 {
        match self {
            FileKind::Log => b'L',
            FileKind::Index => b'I',
            FileKind::TimeIndex => b'T',
        }
    }
    /// The file name extension of this kind of file.
    pub fn ext(self) -> &'static str {
        match self {
            FileKind::Log => "log",
            FileKind::Index => "index",
            FileKind::TimeIndex => "timeindex",
        }
    }
}

/// Why a file header does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileHeaderError {
    /// Fewer bytes than a header.
    #[error("file header truncated ({0} bytes)")]
    Truncated(usize),
    /// The first four bytes are not `RILL`.
    #[error("bad magic")]
    BadMagic,
    /// The CRC32C does not match the header bytes.
    #[error("file header CRC mismatch")]
    CrcMismatch,
    /// The header belongs to another kind of file.
    #[error("file kind {:?} where {expected:?} expected", *.found as char)]
    WrongKind {
        /// The kind byte found.
        found: u8,
        /// The kind the caller expected.
        expected: FileKind,
    },
    /// A format version this code does not read.
    #[error("unsupported segment format version {0}")]
    UnsupportedVersion(u8),
}

/// The 48-byte header at the start of `N.log`, `N.index` and `N.timeindex`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHeader {
    pub kind: FileKind,
    pub version: u8,
    /// 0 = plaintext, else [`crate::crypto::CipherKind::id`].
    pub cipher_id: u8,
    pub ident: PartitionIdent,
    pub base_offset: i64,
    /// Wall-clock ms when the segment was created (may be bogus on boards without RTC).
    pub created_ms: i64,
}

impl FileHeader {
    /// Serialize (magic, kind, version, cipher, flags, topic id, partition, base, created, crc).
    pub fn encode(&self) -> [u8; FILE_HEADER_LEN as usize] {
        let mut b = [0u8; FILE_HEADER_LEN as usize];
        b[0..4].copy_from_slice(&FILE_MAGIC);
        b[4] = self.kind.byte();
        b[5] = self.version;
        b[6] = self.cipher_id;
        b[7] = 0;
        b[8..24].copy_from_slice(self.ident.topic_id.as_bytes());
        b[24..28].copy_from_slice(&self.ident.partition.to_be_bytes());
        b[28..36].copy_from_slice(&self.base_offset.to_be_bytes());
        b[36..44].copy_from_slice(&self.created_ms.to_be_bytes());
        let crc = crc32c::crc32c(&b[..44]);
        b[44..48].copy_from_slice(&crc.to_be_bytes());
        b
    }

    /// Parse and check magic, CRC, kind and version (in that order).
    pub fn decode(b: &[u8], kind: FileKind) -> Result<FileHeader, FileHeaderError> {
        let Some(b) = b.get(..FILE_HEADER_LEN as usize) else {
            return Err(FileHeaderError::Truncated(b.len()));
        };
        if b[0..4] != FILE_MAGIC {
            return Err(FileHeaderError::BadMagic);
        }
        let crc = u32::from_be_bytes([b[44], b[45], b[46], b[47]]);
        if crc32c::crc32c(&b[..44]) != crc {
            return Err(FileHeaderError::CrcMismatch);
        }
        if b[4] != kind.byte() {
            return Err(FileHeaderError::WrongKind {
                found: b[4],
                expected: kind,
            });
        }
        if b[5] != FORMAT_VERSION {
            return Err(FileHeaderError::UnsupportedVersion(b[5]));
        }
        let be8 = |at: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[at..at + 8]);
            i64::from_be_bytes(x)
        };
        let mut id = [0u8; 16];
        id.copy_from_slice(&b[8..24]);
        Ok(FileHeader {
            kind,
            version: b[5],
            cipher_id: b[6],
            ident: PartitionIdent {
                topic_id: Uuid::from_bytes(id),
                partition: i32::from_be_bytes([b[24], b[25], b[26], b[27]]),
            },
            base_offset: be8(28),
            created_ms: be8(36),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: FileKind) -> FileHeader {
        FileHeader {
            kind,
            version: FORMAT_VERSION,
            cipher_id: 1,
            ident: PartitionIdent {
                topic_id: Uuid::from_u128(0xfeed),
                partition: 7,
            },
            base_offset: 1234,
            created_ms: 1_700_000_000_000,
        }
    }

    /// Re-seal the CRC after editing header bytes (to reach the checks behind the CRC).
    fn reseal(b: &mut [u8; FILE_HEADER_LEN as usize]) {
        let crc = crc32c::crc32c(&b[..44]);
        b[44..48].copy_from_slice(&crc.to_be_bytes());
    }

    #[test]
    fn round_trips_every_kind() {
        for kind in [FileKind::Log, FileKind::Index, FileKind::TimeIndex] {
            let h = header(kind);
            assert_eq!(FileHeader::decode(&h.encode(), kind), Ok(h));
        }
        // Trailing bytes (the file body) are not part of the header.
        let mut long = header(FileKind::Log).encode().to_vec();
        long.extend_from_slice(b"batches");
        assert_eq!(
            FileHeader::decode(&long, FileKind::Log),
            Ok(header(FileKind::Log))
        );
    }

    #[test]
    fn each_defect_has_its_error() {
        let good = header(FileKind::Log).encode();
        assert_eq!(
            FileHeader::decode(&good[..47], FileKind::Log),
            Err(FileHeaderError::Truncated(47))
        );
        assert_eq!(
            FileHeader::decode(&[], FileKind::Log),
            Err(FileHeaderError::Truncated(0))
        );
        let mut b = good;
        b[0] = b'X';
        assert_eq!(
            FileHeader::decode(&b, FileKind::Log),
            Err(FileHeaderError::BadMagic)
        );
        let mut b = good;
        b[30] ^= 1; // base offset bit flip
        assert_eq!(
            FileHeader::decode(&b, FileKind::Log),
            Err(FileHeaderError::CrcMismatch)
        );
        assert_eq!(
            FileHeader::decode(&good, FileKind::Index),
            Err(FileHeaderError::WrongKind {
                found: b'L',
                expected: FileKind::Index
            })
        );
        let mut b = good;
        b[5] = 2;
        reseal(&mut b);
        assert_eq!(
            FileHeader::decode(&b, FileKind::Log),
            Err(FileHeaderError::UnsupportedVersion(2))
        );
    }

    #[test]
    fn error_messages_name_the_defect() {
        assert_eq!(FileHeaderError::BadMagic.to_string(), "bad magic");
        assert_eq!(
            FileHeaderError::WrongKind {
                found: b'T',
                expected: FileKind::Log
            }
            .to_string(),
            "file kind 'T' where Log expected"
        );
        assert_eq!(
            FileHeaderError::Truncated(3).to_string(),
            "file header truncated (3 bytes)"
        );
    }
}
