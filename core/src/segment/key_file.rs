//! The key sidecar `N.key` of an encrypted segment: the segment's data key wrapped under the
//! node's master key, bound to the segment's identity (layout in `docs/on-disk-format.md`).

use uuid::Uuid;

use super::PartitionIdent;
use crate::crypto::{CipherKind, CryptoError, DataKey, MasterKey, KEY_ID_LEN};

/// Magic of a key sidecar.
pub const KEY_MAGIC: [u8; 4] = *b"RKEY";
/// Key sidecar format version.
pub const KEY_VERSION: u8 = 1;
/// Size of a key sidecar.
pub const KEY_FILE_LEN: usize = 108;

/// The key sidecar `N.key`: magic, version, cipher id, master key id, segment identity, the
/// wrapped data key (nonce 12 + ciphertext 32 + tag 16) and a CRC32C. The bytes before the
/// wrapped key are the AAD of the wrap, binding the key to this segment.
#[derive(Debug, Clone)]
pub struct KeyFile {
    pub cipher: CipherKind,
    pub master_key_id: [u8; KEY_ID_LEN],
    pub ident: PartitionIdent,
    pub base_offset: i64,
    pub wrapped: [u8; 60],
}

impl KeyFile {
    fn identity(
        cipher: CipherKind,
        master_key_id: &[u8; KEY_ID_LEN],
        ident: PartitionIdent,
        base: i64,
    ) -> [u8; 44] {
        let mut b = [0u8; 44];
        b[0..4].copy_from_slice(&KEY_MAGIC);
        b[4] = KEY_VERSION;
        b[5] = cipher.id();
        b[8..16].copy_from_slice(master_key_id);
        b[16..32].copy_from_slice(ident.topic_id.as_bytes());
        b[32..36].copy_from_slice(&ident.partition.to_be_bytes());
        b[36..44].copy_from_slice(&base.to_be_bytes());
        b
    }

    /// Generate a data key for a new segment and wrap it.
    pub fn generate(
        cipher: CipherKind,
        master: &MasterKey,
        ident: PartitionIdent,
        base_offset: i64,
    ) -> Result<(KeyFile, DataKey), CryptoError> {
        let raw = crate::crypto::generate_data_key()?;
        let aad = KeyFile::identity(cipher, &master.id(), ident, base_offset);
        let wrapped = master.wrap(&raw, &aad)?;
        Ok((
            KeyFile {
                cipher,
                master_key_id: master.id(),
                ident,
                base_offset,
                wrapped,
            },
            DataKey::new(cipher, &raw),
        ))
    }

    /// Serialize.
    pub fn encode(&self) -> [u8; KEY_FILE_LEN] {
        let mut b = [0u8; KEY_FILE_LEN];
        b[..44].copy_from_slice(&KeyFile::identity(
            self.cipher,
            &self.master_key_id,
            self.ident,
            self.base_offset,
        ));
        b[44..104].copy_from_slice(&self.wrapped);
        let crc = crc32c::crc32c(&b[..104]);
        b[104..108].copy_from_slice(&crc.to_be_bytes());
        b
    }

    /// Parse and check magic, version and CRC.
    pub fn decode(b: &[u8]) -> Result<KeyFile, CryptoError> {
        if b.len() != KEY_FILE_LEN {
            return Err(CryptoError::Malformed(format!(
                "key file has {} bytes, expected {KEY_FILE_LEN}",
                b.len()
            )));
        }
        if b[0..4] != KEY_MAGIC {
            return Err(CryptoError::Malformed("key file magic".into()));
        }
        if b[4] != KEY_VERSION {
            return Err(CryptoError::Malformed(format!("key file version {}", b[4])));
        }
        let crc = u32::from_be_bytes([b[104], b[105], b[106], b[107]]);
        if crc32c::crc32c(&b[..104]) != crc {
            return Err(CryptoError::Malformed("key file CRC mismatch".into()));
        }
        let cipher = CipherKind::from_id(b[5])?
            .ok_or_else(|| CryptoError::Malformed("key file without cipher".into()))?;
        let mut mk = [0u8; KEY_ID_LEN];
        mk.copy_from_slice(&b[8..16]);
        let mut id = [0u8; 16];
        id.copy_from_slice(&b[16..32]);
        let mut wrapped = [0u8; 60];
        wrapped.copy_from_slice(&b[44..104]);
        Ok(KeyFile {
            cipher,
            master_key_id: mk,
            ident: PartitionIdent {
                topic_id: Uuid::from_bytes(id),
                partition: i32::from_be_bytes([b[32], b[33], b[34], b[35]]),
            },
            base_offset: i64::from_be_bytes(b[36..44].try_into().unwrap_or([0; 8])),
            wrapped,
        })
    }

    /// The same data key wrapped under `to` instead of `from` (master key rotation); the
    /// segment's data is untouched.
    pub fn rewrap(&self, from: &MasterKey, to: &MasterKey) -> Result<KeyFile, CryptoError> {
        let raw = self.unwrap_raw(from)?;
        let aad = KeyFile::identity(self.cipher, &to.id(), self.ident, self.base_offset);
        let wrapped = to.wrap(&raw, &aad)?;
        Ok(KeyFile {
            master_key_id: to.id(),
            wrapped,
            ..self.clone()
        })
    }

    /// Unwrap the data key with `master`, refusing a key wrapped under another master key.
    pub fn unwrap(&self, master: &MasterKey) -> Result<DataKey, CryptoError> {
        Ok(DataKey::new(self.cipher, &self.unwrap_raw(master)?))
    }

    /// The raw data key bytes (tests use them to prove keys are never reused).
    pub fn unwrap_raw(&self, master: &MasterKey) -> Result<[u8; 32], CryptoError> {
        if self.master_key_id != master.id() {
            return Err(CryptoError::WrongMasterKey {
                expected: master.id_hex(),
                found: crate::crypto::hex(&self.master_key_id),
            });
        }
        let aad = KeyFile::identity(
            self.cipher,
            &self.master_key_id,
            self.ident,
            self.base_offset,
        );
        master.unwrap_key(&self.wrapped, &aad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ident() -> PartitionIdent {
        PartitionIdent {
            topic_id: Uuid::from_u128(9),
            partition: 2,
        }
    }

    #[test]
    fn round_trip_unwraps_to_the_same_key_and_refuses_damage() {
        let master = MasterKey::from_bytes([7u8; 32]);
        let (kf, _) = KeyFile::generate(CipherKind::Aes256Gcm, &master, ident(), 40).unwrap();
        let bytes = kf.encode();
        let back = KeyFile::decode(&bytes).unwrap();
        assert_eq!(
            back.unwrap_raw(&master).unwrap(),
            kf.unwrap_raw(&master).unwrap()
        );
        assert!(matches!(
            KeyFile::decode(&bytes[..100]),
            Err(CryptoError::Malformed(_))
        ));
        let mut bad = bytes;
        bad[50] ^= 1;
        assert!(matches!(
            KeyFile::decode(&bad),
            Err(CryptoError::Malformed(_))
        ));
        let other = MasterKey::from_bytes([8u8; 32]);
        assert!(matches!(
            back.unwrap_raw(&other),
            Err(CryptoError::WrongMasterKey { .. })
        ));
        // Re-wrapped under `other`: the same data key, no longer under `master`.
        let moved = KeyFile::decode(&back.rewrap(&master, &other).unwrap().encode()).unwrap();
        assert_eq!(
            moved.unwrap_raw(&other).unwrap(),
            kf.unwrap_raw(&master).unwrap()
        );
        assert!(moved.unwrap_raw(&master).is_err());
        assert!(back.rewrap(&other, &master).is_err());
    }
}
