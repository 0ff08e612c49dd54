//! Authentication of inter-node connections, before their first RPC: a mutual HMAC-SHA256
//! challenge over a shared secret (`[cluster] secret_file`). Each side sends a random 32-byte
//! nonce; the listener proves it knows the secret by MACing both nonces and the cluster id, then
//! the connecting node does the same over its node id too. Neither proof reveals the secret, and
//! neither can be replayed on another connection (the other side's nonce is fresh).
//!
//! With `[cluster] tls = { cert, key, ca }` every connection is also TLS with mutual
//! authentication: each side presents its certificate, which must chain to the cluster CA, and
//! the connecting node checks the listener's name (the host of its cluster address) in it
//! ([`ClusterTls`]). TLS encrypts and protects every frame; the shared secret alone does not.
//!
//! Without a secret or TLS, connections are accepted unauthenticated, which [`check_plaintext`]
//! allows only on a loopback cluster listener.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use hmac::{Hmac, KeyInit, Mac};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use sha2::Sha256;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::config::ClusterTlsFiles;
use crate::tls::{load_certs, load_key, TlsError};

/// The shortest secret accepted.
pub const MIN_SECRET_LEN: usize = 16;
/// Length of each side's challenge.
pub const NONCE_LEN: usize = 32;

/// Errors loading the cluster secret or refusing an insecure setup.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The secret file cannot be read.
    #[error("cannot read the cluster secret file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The secret is too short.
    #[error(
        "the cluster secret in {path} is {len} bytes; it must be at least {MIN_SECRET_LEN} (e.g. \
         `head -c 32 /dev/urandom | base64 > {path}`)"
    )]
    TooShort {
        /// The file.
        path: PathBuf,
        /// Its length (trimmed).
        len: usize,
    },
    /// No secret and a non-loopback cluster listener.
    #[error(
        "the cluster listener {addr} is not a loopback address and neither [cluster] secret_file \
         nor [cluster] tls is set: inter-node traffic would be unauthenticated; set [cluster] \
         secret_file (the same secret on every node) or [cluster] tls, or listen on loopback"
    )]
    Insecure {
        /// The listener address.
        addr: SocketAddr,
    },
    /// The cluster TLS files do not load.
    #[error("[cluster] tls: {0}")]
    Tls(#[from] TlsError),
    /// The cluster CA is unusable.
    #[error("[cluster] tls: the CA in {path}: {reason}")]
    Ca {
        /// The CA file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// mTLS of the cluster listener and of outgoing connections: both sides present a certificate
/// chaining to the cluster CA.
#[derive(Clone)]
pub struct ClusterTls {
    /// Accepts connections, requiring a client certificate from the CA.
    pub acceptor: TlsAcceptor,
    /// Connects, presenting this node's certificate and checking the peer's against the CA.
    pub connector: TlsConnector,
}

impl std::fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterTls(..)")
    }
}

impl ClusterTls {
    /// Loads the node's certificate and key and the cluster CA.
    pub fn load(files: &ClusterTlsFiles) -> Result<ClusterTls, AuthError> {
        let certs = load_certs(&files.cert)?;
        let key = load_key(&files.key)?;
        let ca_err = |reason: String| AuthError::Ca {
            path: files.ca.clone(),
            reason,
        };
        let mut roots = RootCertStore::empty();
        for ca in load_certs(&files.ca)? {
            roots.add(ca).map_err(|e| ca_err(e.to_string()))?;
        }
        let roots = Arc::new(roots);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| ca_err(e.to_string()))?;
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::from)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs.clone(), key.clone_key())
            .map_err(TlsError::from)?;
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsError::from)?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .map_err(TlsError::from)?;
        Ok(ClusterTls {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
        })
    }
}

/// The shared secret (trailing whitespace of the file ignored).
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// Reads the secret file.
    pub fn load(path: &Path) -> Result<Secret, AuthError> {
        let raw = std::fs::read(path).map_err(|source| AuthError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let end = raw
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())
            .map_or(0, |i| i + 1);
        if end < MIN_SECRET_LEN {
            return Err(AuthError::TooShort {
                path: path.to_path_buf(),
                len: end,
            });
        }
        Ok(Secret(raw[..end].to_vec()))
    }

    /// A secret from bytes (tests).
    pub fn from_bytes(bytes: &[u8]) -> Secret {
        Secret(bytes.to_vec())
    }

    fn mac(&self, role: &str, cluster_id: &str, node_id: i32, a: &[u8], b: &[u8]) -> Hmac<Sha256> {
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("HMAC takes any key length");
        for part in [role.as_bytes(), cluster_id.as_bytes()] {
            mac.update(&(part.len() as u32).to_be_bytes());
            mac.update(part);
        }
        mac.update(&node_id.to_be_bytes());
        for part in [a, b] {
            mac.update(&(part.len() as u32).to_be_bytes());
            mac.update(part);
        }
        mac
    }

    /// The listener's proof over the connecting node's nonce and its own.
    pub fn listener_proof(&self, cluster_id: &str, client: &[u8], server: &[u8]) -> Vec<u8> {
        self.mac("rill-cluster listener", cluster_id, -1, client, server)
            .finalize()
            .into_bytes()
            .to_vec()
    }

    /// The connecting node's proof.
    pub fn node_proof(
        &self,
        cluster_id: &str,
        node_id: i32,
        client: &[u8],
        server: &[u8],
    ) -> Vec<u8> {
        self.mac("rill-cluster node", cluster_id, node_id, client, server)
            .finalize()
            .into_bytes()
            .to_vec()
    }

    /// Checks a listener's proof in constant time.
    pub fn verify_listener(
        &self,
        cluster_id: &str,
        client: &[u8],
        server: &[u8],
        proof: &[u8],
    ) -> bool {
        self.mac("rill-cluster listener", cluster_id, -1, client, server)
            .verify_slice(proof)
            .is_ok()
    }

    /// Checks a connecting node's proof in constant time.
    pub fn verify_node(
        &self,
        cluster_id: &str,
        node_id: i32,
        client: &[u8],
        server: &[u8],
        proof: &[u8],
    ) -> bool {
        self.mac("rill-cluster node", cluster_id, node_id, client, server)
            .verify_slice(proof)
            .is_ok()
    }
}

/// A fresh random challenge.
pub fn nonce() -> Vec<u8> {
    let mut n = vec![0u8; NONCE_LEN];
    getrandom::fill(&mut n).expect("the OS random source works");
    n
}

/// Refuses unauthenticated inter-node traffic off loopback.
pub fn check_plaintext(
    secret: Option<&Secret>,
    tls: bool,
    listen: SocketAddr,
) -> Result<(), AuthError> {
    if secret.is_none() && !tls && !listen.ip().is_loopback() {
        return Err(AuthError::Insecure { addr: listen });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_verify_only_with_the_same_secret_and_nonces() {
        let s = Secret::from_bytes(b"0123456789abcdef");
        let other = Secret::from_bytes(b"0123456789abcdeX");
        let (c, n) = (nonce(), nonce());
        let p = s.listener_proof("c1", &c, &n);
        assert!(s.verify_listener("c1", &c, &n, &p));
        assert!(!other.verify_listener("c1", &c, &n, &p));
        assert!(!s.verify_listener("c2", &c, &n, &p));
        assert!(!s.verify_listener("c1", &n, &c, &p));
        let q = s.node_proof("c1", 3, &c, &n);
        assert!(s.verify_node("c1", 3, &c, &n, &q));
        assert!(!s.verify_node("c1", 4, &c, &n, &q));
        assert!(
            !s.verify_node("c1", 3, &c, &n, &p),
            "a listener proof is no node proof"
        );
    }

    #[test]
    fn plaintext_only_on_loopback_and_short_secrets_refused() {
        let lo: SocketAddr = "127.0.0.12:9093".parse().unwrap();
        let wide: SocketAddr = "10.0.0.1:9093".parse().unwrap();
        check_plaintext(None, false, lo).unwrap();
        let err = check_plaintext(None, false, wide).unwrap_err().to_string();
        assert!(err.contains("secret_file"), "{err}");
        check_plaintext(Some(&Secret::from_bytes(b"0123456789abcdef")), false, wide).unwrap();
        check_plaintext(None, true, wide).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("s");
        std::fs::write(&f, "short\n").unwrap();
        assert!(matches!(
            Secret::load(&f),
            Err(AuthError::TooShort { len: 5, .. })
        ));
        std::fs::write(&f, "0123456789abcdef\n").unwrap();
        Secret::load(&f).unwrap();
    }
}
