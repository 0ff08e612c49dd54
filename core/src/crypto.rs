//! Encryption at rest: ciphers, the master key, per-segment data keys wrapped under it.
//!
//! CONTRACT (names fixed; bodies are being implemented).

use std::sync::Arc;

/// Cipher used for a segment's batches; recorded per segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CipherKind {
    Aes256Gcm,
    ChaCha20Poly1305,
}

impl CipherKind {
    /// AES-256-GCM when the CPU has AES instructions, else ChaCha20-Poly1305.
    pub fn auto() -> CipherKind {
        todo!()
    }
}

/// A 32-byte master key and its id (derived from the key; stored beside wrapped data keys).
#[derive(Clone)]
pub struct MasterKey {}

impl MasterKey {
    pub fn from_bytes(_key: [u8; 32]) -> MasterKey {
        todo!()
    }
    /// Printable id of the key (hex), never the key itself.
    pub fn id_hex(&self) -> String {
        todo!()
    }
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
