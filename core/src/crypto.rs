//! Encryption at rest: ciphers, the master key, per-segment data keys wrapped under it.
//!
//! Every segment gets a fresh random 256-bit data key. The key is stored in a sidecar file
//! (`N.key`, see `docs/on-disk-format.md`) wrapped with AES-256-GCM under the node's master key,
//! together with the master key's id, so a node started with another master key refuses to open
//! the data ([`CryptoError::WrongMasterKey`]) instead of mistaking it for corruption.
//!
//! Batches are sealed with the segment's data key ([`DataKey::seal`]): the records section is
//! encrypted in place (same length) and a 16-byte tag is appended. The 96-bit nonce is derived from
//! the batch's position in the segment file, which is unique for a data key because segments are
//! append-only and a data key is used by exactly one segment file, which is written by exactly one
//! process lifetime (every open for writing starts a new segment with a new key).

use std::fmt;
use std::sync::Arc;

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use chacha20poly1305::ChaCha20Poly1305;
use sha2::{Digest, Sha256};

/// Length of the AEAD tag appended to every sealed batch.
pub const TAG_LEN: usize = 16;
/// Length of the master key id.
pub const KEY_ID_LEN: usize = 8;

/// Cipher used for a segment's batches; recorded per segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CipherKind {
    Aes256Gcm,
    ChaCha20Poly1305,
}

impl CipherKind {
    /// AES-256-GCM when the CPU has AES instructions, else ChaCha20-Poly1305.
    pub fn auto() -> CipherKind {
        if cpu_has_aes() {
            CipherKind::Aes256Gcm
        } else {
            CipherKind::ChaCha20Poly1305
        }
    }

    /// On-disk id (0 is reserved for "no encryption").
    pub fn id(self) -> u8 {
        match self {
            CipherKind::Aes256Gcm => 1,
            CipherKind::ChaCha20Poly1305 => 2,
        }
    }

    /// Cipher for an on-disk id; `Ok(None)` for 0 (plaintext).
    pub fn from_id(id: u8) -> Result<Option<CipherKind>, CryptoError> {
        match id {
            0 => Ok(None),
            1 => Ok(Some(CipherKind::Aes256Gcm)),
            2 => Ok(Some(CipherKind::ChaCha20Poly1305)),
            other => Err(CryptoError::Malformed(format!("unknown cipher id {other}"))),
        }
    }

    /// Name as used in configs and logs.
    pub fn name(self) -> &'static str {
        match self {
            CipherKind::Aes256Gcm => "aes-256-gcm",
            CipherKind::ChaCha20Poly1305 => "chacha20-poly1305",
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn cpu_has_aes() -> bool {
    std::arch::is_x86_feature_detected!("aes") && std::arch::is_x86_feature_detected!("pclmulqdq")
}

#[cfg(target_arch = "aarch64")]
fn cpu_has_aes() -> bool {
    std::arch::is_aarch64_feature_detected!("aes")
        && std::arch::is_aarch64_feature_detected!("pmull")
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn cpu_has_aes() -> bool {
    false
}

/// A 32-byte master key and its id (derived from the key; stored beside wrapped data keys).
#[derive(Clone)]
pub struct MasterKey {
    key: [u8; 32],
    id: [u8; KEY_ID_LEN],
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({})", self.id_hex())
    }
}

impl MasterKey {
    /// Wrap raw key bytes. The id is the first 8 bytes of SHA-256("rill-master-key-id" || key).
    pub fn from_bytes(key: [u8; 32]) -> MasterKey {
        let mut h = Sha256::new();
        h.update(b"rill-master-key-id");
        h.update(key);
        let digest = h.finalize();
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&digest[..KEY_ID_LEN]);
        MasterKey { key, id }
    }
    /// A new random master key.
    pub fn generate() -> Result<MasterKey, CryptoError> {
        let mut key = [0u8; 32];
        random(&mut key)?;
        Ok(MasterKey::from_bytes(key))
    }
    /// Printable id of the key (hex), never the key itself.
    pub fn id_hex(&self) -> String {
        hex(&self.id)
    }
    /// The raw 8-byte id.
    pub fn id(&self) -> [u8; KEY_ID_LEN] {
        self.id
    }
    /// The raw key (for writing a key file).
    pub fn expose_bytes(&self) -> &[u8; 32] {
        &self.key
    }

    /// Wrap `data_key` with AES-256-GCM under this master key, a random nonce and `aad` (the
    /// segment identity). Returns nonce (12) || ciphertext (32) || tag (16).
    pub fn wrap(&self, data_key: &[u8; 32], aad: &[u8]) -> Result<[u8; 60], CryptoError> {
        let aead = Aes256Gcm::new(&self.key.into());
        let mut nonce = [0u8; 12];
        random(&mut nonce)?;
        let mut buf = *data_key;
        let tag = aead
            .encrypt_inout_detached(&Nonce::from(nonce), aad, (&mut buf[..]).into())
            .map_err(|_| CryptoError::Malformed("key wrap failed".into()))?;
        let mut out = [0u8; 60];
        out[..12].copy_from_slice(&nonce);
        out[12..44].copy_from_slice(&buf);
        out[44..].copy_from_slice(&tag);
        Ok(out)
    }

    /// Reverse of [`MasterKey::wrap`].
    pub fn unwrap_key(&self, wrapped: &[u8; 60], aad: &[u8]) -> Result<[u8; 32], CryptoError> {
        let aead = Aes256Gcm::new(&self.key.into());
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&wrapped[..12]);
        let mut buf = [0u8; 32];
        buf.copy_from_slice(&wrapped[12..44]);
        let tag = Tag::try_from(&wrapped[44..]).map_err(|_| CryptoError::Authentication)?;
        aead.decrypt_inout_detached(&Nonce::from(nonce), aad, (&mut buf[..]).into(), &tag)
            .map_err(|_| CryptoError::Authentication)?;
        Ok(buf)
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Fill `buf` from the OS random source.
pub fn random(buf: &mut [u8]) -> Result<(), CryptoError> {
    getrandom::fill(buf).map_err(|e| CryptoError::Malformed(format!("no randomness: {e}")))
}

/// Node-wide encryption setting handed to every log.
#[derive(Clone)]
pub enum Encryption {
    /// Plaintext segments (benchmarks only).
    Off,
    /// Seal batches with `cipher` under data keys wrapped by `master`.
    On {
        cipher: CipherKind,
        master: Arc<MasterKey>,
    },
}

impl fmt::Debug for Encryption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Encryption::Off => write!(f, "Off"),
            Encryption::On { cipher, master } => {
                write!(f, "On({}, key {})", cipher.name(), master.id_hex())
            }
        }
    }
}

/// Errors from sealing, opening and key handling.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("authentication failed: data was modified or the key is wrong")]
    Authentication,
    #[error(
        "segment data key was wrapped under master key {found}, but the node has key {expected}"
    )]
    WrongMasterKey { expected: String, found: String },
    #[error("malformed key material: {0}")]
    Malformed(String),
}

enum AeadImpl {
    Aes(Box<Aes256Gcm>),
    ChaCha(Box<ChaCha20Poly1305>),
}

/// A segment's data key, ready to seal and open batches.
pub struct DataKey {
    kind: CipherKind,
    aead: AeadImpl,
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DataKey({})", self.kind.name())
    }
}

/// The per-batch nonce: four zero bytes then the batch's file position (big-endian u64).
pub fn nonce_for_position(position: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&position.to_be_bytes());
    n
}

impl DataKey {
    /// Build the cipher for raw key bytes.
    pub fn new(kind: CipherKind, key: &[u8; 32]) -> DataKey {
        let aead = match kind {
            CipherKind::Aes256Gcm => AeadImpl::Aes(Box::new(Aes256Gcm::new(&(*key).into()))),
            CipherKind::ChaCha20Poly1305 => {
                AeadImpl::ChaCha(Box::new(ChaCha20Poly1305::new(&(*key).into())))
            }
        };
        DataKey { kind, aead }
    }

    /// The cipher of this key.
    pub fn kind(&self) -> CipherKind {
        self.kind
    }

    /// Encrypt `buf` in place with the nonce of `position`; returns the tag.
    pub fn seal(
        &self,
        position: u64,
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; TAG_LEN], CryptoError> {
        let nonce = Nonce::from(nonce_for_position(position));
        let tag = match &self.aead {
            AeadImpl::Aes(a) => a.encrypt_inout_detached(&nonce, aad, buf.into()),
            AeadImpl::ChaCha(c) => c.encrypt_inout_detached(&nonce, aad, buf.into()),
        }
        .map_err(|_| CryptoError::Malformed("batch too large to seal".into()))?;
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(&tag);
        Ok(out)
    }

    /// Encrypt `input` into `output` (same length) with the nonce of `position`; returns the tag.
    pub fn seal_to(
        &self,
        position: u64,
        aad: &[u8],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<[u8; TAG_LEN], CryptoError> {
        let nonce = Nonce::from(nonce_for_position(position));
        let buf = aes_gcm::aead::inout::InOutBuf::new(input, output)
            .map_err(|_| CryptoError::Malformed("seal buffers differ in length".into()))?;
        let tag = match &self.aead {
            AeadImpl::Aes(a) => a.encrypt_inout_detached(&nonce, aad, buf),
            AeadImpl::ChaCha(c) => c.encrypt_inout_detached(&nonce, aad, buf),
        }
        .map_err(|_| CryptoError::Malformed("batch too large to seal".into()))?;
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(&tag);
        Ok(out)
    }

    /// Decrypt `buf` in place and verify `tag`.
    pub fn open(
        &self,
        position: u64,
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8],
    ) -> Result<(), CryptoError> {
        let nonce = Nonce::from(nonce_for_position(position));
        let tag = Tag::try_from(tag).map_err(|_| CryptoError::Authentication)?;
        match &self.aead {
            AeadImpl::Aes(a) => a.decrypt_inout_detached(&nonce, aad, buf.into(), &tag),
            AeadImpl::ChaCha(c) => c.decrypt_inout_detached(&nonce, aad, buf.into(), &tag),
        }
        .map_err(|_| CryptoError::Authentication)
    }
}

/// A fresh random data key (raw bytes).
pub fn generate_data_key() -> Result<[u8; 32], CryptoError> {
    let mut k = [0u8; 32];
    random(&mut k)?;
    Ok(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_key_id_is_stable_and_hides_key() {
        let k = MasterKey::from_bytes([7u8; 32]);
        assert_eq!(k.id_hex().len(), 16);
        assert_eq!(k.id_hex(), MasterKey::from_bytes([7u8; 32]).id_hex());
        assert_ne!(k.id_hex(), MasterKey::from_bytes([8u8; 32]).id_hex());
        assert!(!format!("{k:?}").contains("0707"));
    }

    #[test]
    fn wrap_roundtrip_and_aad_binding() {
        let k = MasterKey::from_bytes([1u8; 32]);
        let dk = [9u8; 32];
        let w = k.wrap(&dk, b"seg-1").unwrap();
        assert_eq!(k.unwrap_key(&w, b"seg-1").unwrap(), dk);
        assert!(k.unwrap_key(&w, b"seg-2").is_err());
        let other = MasterKey::from_bytes([2u8; 32]);
        assert!(other.unwrap_key(&w, b"seg-1").is_err());
    }

    #[test]
    fn seal_open_both_ciphers() {
        for kind in [CipherKind::Aes256Gcm, CipherKind::ChaCha20Poly1305] {
            let key = DataKey::new(kind, &[3u8; 32]);
            let mut buf = b"hello records".to_vec();
            let tag = key.seal(100, b"hdr", &mut buf).unwrap();
            assert_ne!(&buf, b"hello records");
            let mut copy = buf.clone();
            key.open(100, b"hdr", &mut copy, &tag).unwrap();
            assert_eq!(&copy, b"hello records");
            let mut copy = buf.clone();
            assert!(key.open(101, b"hdr", &mut copy, &tag).is_err());
            let mut copy = buf.clone();
            assert!(key.open(100, b"hdR", &mut copy, &tag).is_err());
            let mut out = vec![0u8; 13];
            let tag2 = key
                .seal_to(100, b"hdr", b"hello records", &mut out)
                .unwrap();
            assert_eq!((out, tag2), (buf.clone(), tag));
        }
        assert_eq!(
            CipherKind::from_id(CipherKind::auto().id()).unwrap(),
            Some(CipherKind::auto())
        );
    }
}
