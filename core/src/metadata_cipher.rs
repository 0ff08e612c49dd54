//! Sealing of metadata values: what a client sent that the metadata database keeps (retained MQTT
//! messages, MQTT sessions, offset-commit metadata strings) is stored encrypted with
//! XChaCha20-Poly1305 under the node's *metadata data key*, itself wrapped under the master key.
//!
//! Values in `meta.redb` are rewritten often (session cursors, committed offsets), so the cipher
//! takes a fresh random 192-bit nonce per write: the chance of a nonce repeating stays negligible
//! for far more writes than a node can ever make (2^-32 after ~2^80 values), unlike 96-bit random
//! nonces. The layout (also in `docs/metadata-format.md`):
//!
//! ```text
//! [version 1 (1)][data key id u32 BE (4)][nonce (24)][ciphertext (len of plaintext)][tag (16)]
//! ```
//!
//! AAD = `"rill-meta-v1"` ‖ u16 BE length of the table name ‖ table name ‖ the row's key bytes,
//! so a sealed value cannot be moved to another row or table without the tag failing.
//!
//! The data key record (table `rill_keys`, row `meta_data_key`) is
//! `[version 1][master key id (8)][data key id u32 BE][wrap: nonce 12 ‖ key 32 ‖ tag 16]`,
//! wrapped with AES-256-GCM ([`MasterKey::wrap`]) with AAD = `"rill-meta-data-key"` ‖ bytes 0..13.

use std::fmt;

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};

use crate::crypto::{random, CryptoError, MasterKey, KEY_ID_LEN, TAG_LEN};

/// First byte of a sealed value. Values written before sealing existed start with `{` or `[`
/// (JSON) or 0x00 (a Kafka batch with base offset 0), never with this byte.
pub const SEALED_VERSION: u8 = 1;
/// Length of the XChaCha20-Poly1305 nonce.
pub const NONCE_LEN: usize = 24;
/// Bytes a sealed value adds to its plaintext.
pub const OVERHEAD: usize = 1 + 4 + NONCE_LEN + TAG_LEN;
/// Version of the wrapped data key record.
pub const DATA_KEY_RECORD_VERSION: u8 = 1;
/// Length of the wrapped data key record.
pub const DATA_KEY_RECORD_LEN: usize = 13 + 60;

const AAD_PREFIX: &[u8] = b"rill-meta-v1";
const WRAP_AAD_PREFIX: &[u8] = b"rill-meta-data-key";

/// Whether `stored` is a sealed value (else it is a value written in clear).
pub fn is_sealed(stored: &[u8]) -> bool {
    stored.first() == Some(&SEALED_VERSION)
}

/// The metadata data key, ready to seal and open values. `Debug` never prints the key.
pub struct MetadataCipher {
    key_id: u32,
    raw: [u8; 32],
    aead: XChaCha20Poly1305,
}

impl fmt::Debug for MetadataCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MetadataCipher(key {})", self.key_id)
    }
}

impl Drop for MetadataCipher {
    fn drop(&mut self) {
        self.raw = [0; 32];
        std::hint::black_box(&self.raw);
    }
}

fn aad(table: &str, key: &[u8]) -> Vec<u8> {
    let mut a = Vec::with_capacity(AAD_PREFIX.len() + 2 + table.len() + key.len());
    a.extend_from_slice(AAD_PREFIX);
    a.extend_from_slice(&u16::try_from(table.len()).unwrap_or(u16::MAX).to_be_bytes());
    a.extend_from_slice(table.as_bytes());
    a.extend_from_slice(key);
    a
}

impl MetadataCipher {
    /// A cipher for raw data key bytes with its id.
    pub fn new(key_id: u32, raw: [u8; 32]) -> MetadataCipher {
        MetadataCipher {
            key_id,
            raw,
            aead: XChaCha20Poly1305::new(&raw.into()),
        }
    }

    /// A new random data key with id `key_id`.
    pub fn generate(key_id: u32) -> Result<MetadataCipher, CryptoError> {
        let mut raw = [0u8; 32];
        random(&mut raw)?;
        Ok(MetadataCipher::new(key_id, raw))
    }

    /// The id of this data key (in every sealed value).
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// Seal `plain` as the value of row `key` of `table`.
    pub fn seal(&self, table: &str, key: &[u8], plain: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        random(&mut nonce)?;
        let mut out = Vec::with_capacity(plain.len() + OVERHEAD);
        out.push(SEALED_VERSION);
        out.extend_from_slice(&self.key_id.to_be_bytes());
        out.extend_from_slice(&nonce);
        let start = out.len();
        out.extend_from_slice(plain);
        let tag = self
            .aead
            .encrypt_inout_detached(
                &XNonce::from(nonce),
                &aad(table, key),
                (&mut out[start..]).into(),
            )
            .map_err(|_| CryptoError::Malformed("value too large to seal".into()))?;
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// Open a sealed value of row `key` of `table`.
    pub fn open(&self, table: &str, key: &[u8], stored: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if stored.len() < OVERHEAD || stored[0] != SEALED_VERSION {
            return Err(CryptoError::Malformed(format!(
                "sealed metadata value of {} bytes, version {:?}",
                stored.len(),
                stored.first()
            )));
        }
        let key_id = u32::from_be_bytes([stored[1], stored[2], stored[3], stored[4]]);
        if key_id != self.key_id {
            return Err(CryptoError::Malformed(format!(
                "sealed under metadata data key {key_id}, the node has key {}",
                self.key_id
            )));
        }
        let nonce =
            XNonce::try_from(&stored[5..5 + NONCE_LEN]).map_err(|_| CryptoError::Authentication)?;
        let body = &stored[5 + NONCE_LEN..];
        let (ct, tag) = body.split_at(body.len() - TAG_LEN);
        let tag = Tag::try_from(tag).map_err(|_| CryptoError::Authentication)?;
        let mut buf = ct.to_vec();
        self.aead
            .decrypt_inout_detached(&nonce, &aad(table, key), (&mut buf[..]).into(), &tag)
            .map_err(|_| CryptoError::Authentication)?;
        Ok(buf)
    }

    /// This data key wrapped under `master` (the `meta_data_key` record).
    pub fn wrap(&self, master: &MasterKey) -> Result<[u8; DATA_KEY_RECORD_LEN], CryptoError> {
        let mut rec = [0u8; DATA_KEY_RECORD_LEN];
        rec[0] = DATA_KEY_RECORD_VERSION;
        rec[1..1 + KEY_ID_LEN].copy_from_slice(&master.id());
        rec[9..13].copy_from_slice(&self.key_id.to_be_bytes());
        let wrapped = master.wrap(&self.raw, &wrap_aad(&rec[..13]))?;
        rec[13..].copy_from_slice(&wrapped);
        Ok(rec)
    }

    /// Unwrap a `meta_data_key` record with `master`.
    pub fn unwrap(record: &[u8], master: &MasterKey) -> Result<MetadataCipher, CryptoError> {
        let (found, key_id) = record_header(record)?;
        if found != master.id() {
            return Err(CryptoError::WrongMasterKey {
                expected: master.id_hex(),
                found: crate::crypto::hex(&found),
            });
        }
        let mut wrapped = [0u8; 60];
        wrapped.copy_from_slice(&record[13..]);
        let raw = master.unwrap_key(&wrapped, &wrap_aad(&record[..13]))?;
        Ok(MetadataCipher::new(key_id, raw))
    }
}

/// The master key id and data key id of a `meta_data_key` record.
pub fn record_header(record: &[u8]) -> Result<([u8; KEY_ID_LEN], u32), CryptoError> {
    if record.len() != DATA_KEY_RECORD_LEN || record[0] != DATA_KEY_RECORD_VERSION {
        return Err(CryptoError::Malformed(format!(
            "metadata data key record of {} bytes, version {:?}",
            record.len(),
            record.first()
        )));
    }
    let mut id = [0u8; KEY_ID_LEN];
    id.copy_from_slice(&record[1..9]);
    let key_id = u32::from_be_bytes([record[9], record[10], record[11], record[12]]);
    Ok((id, key_id))
}

fn wrap_aad(header: &[u8]) -> Vec<u8> {
    let mut a = WRAP_AAD_PREFIX.to_vec();
    a.extend_from_slice(header);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_bindings() {
        let c = MetadataCipher::generate(1).unwrap();
        let s = c.seal("mqtt_retained", b"a/b", b"secret payload").unwrap();
        assert!(is_sealed(&s));
        assert_eq!(s.len(), 14 + OVERHEAD);
        assert!(!s.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            c.open("mqtt_retained", b"a/b", &s).unwrap(),
            b"secret payload"
        );
        // Another row, another table, a flipped bit: refused.
        assert!(c.open("mqtt_retained", b"a/c", &s).is_err());
        assert!(c.open("mqtt_sessions", b"a/b", &s).is_err());
        let mut bad = s.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(c.open("mqtt_retained", b"a/b", &bad).is_err());
        // Fresh nonces: the same value seals differently.
        assert_ne!(
            c.seal("t", b"k", b"v").unwrap(),
            c.seal("t", b"k", b"v").unwrap()
        );
        // Another data key cannot open it.
        let other = MetadataCipher::generate(1).unwrap();
        assert!(other.open("mqtt_retained", b"a/b", &s).is_err());
        // Values in clear are not taken for sealed ones.
        assert!(!is_sealed(b"{\"a\":1}"));
        assert!(!is_sealed(b"[]"));
        assert!(!is_sealed(&[0u8; 70]));
    }

    #[test]
    fn data_key_wrap_round_trip() {
        let m = MasterKey::from_bytes([5u8; 32]);
        let c = MetadataCipher::generate(7).unwrap();
        let rec = c.wrap(&m).unwrap();
        let back = MetadataCipher::unwrap(&rec, &m).unwrap();
        assert_eq!(back.key_id(), 7);
        let s = c.seal("t", b"k", b"v").unwrap();
        assert_eq!(back.open("t", b"k", &s).unwrap(), b"v");
        let other = MasterKey::from_bytes([6u8; 32]);
        assert!(matches!(
            MetadataCipher::unwrap(&rec, &other),
            Err(CryptoError::WrongMasterKey { .. })
        ));
        let mut bad = rec;
        bad[10] ^= 1; // the data key id is authenticated
        assert!(MetadataCipher::unwrap(&bad, &m).is_err());
        assert!(!format!("{c:?}").contains("05"));
    }
}
