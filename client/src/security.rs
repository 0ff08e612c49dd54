//! Security settings of a connection to a Kafka cluster: TLS (rustls 0.23 with the ring provider,
//! server certificates checked against a PEM CA file or the system's roots, optionally a client
//! certificate) and SASL credentials (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512; the exchange itself is
//! in [`crate::sasl`]).
//!
//! [`TargetSecurity::default`] is plaintext without authentication.

use std::path::Path;
use std::sync::Arc;

use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// A SASL mechanism the client can authenticate with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    /// PLAIN (RFC 4616): only sensible over TLS.
    Plain,
    /// SCRAM-SHA-256 or SCRAM-SHA-512.
    Scram(rill_core::scram::ScramMechanism),
}

impl SaslMechanism {
    /// The SASL name.
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::Scram(m) => m.name(),
        }
    }

    /// The mechanism of a SASL name (case-insensitive).
    pub fn from_name(name: &str) -> Option<SaslMechanism> {
        if name.eq_ignore_ascii_case("PLAIN") {
            return Some(SaslMechanism::Plain);
        }
        rill_core::scram::ScramMechanism::from_name(name).map(SaslMechanism::Scram)
    }
}

/// SASL credentials for a target.
#[derive(Clone)]
pub struct SaslCredentials {
    /// The mechanism.
    pub mechanism: SaslMechanism,
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

impl std::fmt::Debug for SaslCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslCredentials")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// TLS settings for a target.
#[derive(Clone)]
pub struct TlsSettings {
    /// The rustls client configuration (trusted roots).
    pub config: Arc<ClientConfig>,
    /// The name to verify the server's certificate against (default: the host of the address).
    pub server_name: Option<String>,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// How to connect to a target: TLS or not, SASL or not.
#[derive(Debug, Clone, Default)]
pub struct TargetSecurity {
    /// TLS (None: plaintext).
    pub tls: Option<TlsSettings>,
    /// SASL (None: no authentication).
    pub sasl: Option<SaslCredentials>,
}

/// Errors building TLS settings.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// The CA file could not be read.
    #[error("cannot read CA file {path}: {source}")]
    ReadCa {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The CA file holds no usable certificate.
    #[error("bad CA file {path}: {reason}")]
    BadCa {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The client certificate or its key could not be read.
    #[error("cannot read {path}: {source}")]
    ReadIdentity {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The client certificate or key file holds no usable PEM item.
    #[error("bad client certificate or key file {path}: {reason}")]
    BadIdentity {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// No system root certificate could be loaded.
    #[error("no system CA certificates found ({0}); set tls_ca_file")]
    NoSystemRoots(String),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The server name is not a valid DNS name or IP address.
    #[error("invalid TLS server name {0:?}")]
    ServerName(String),
}

/// A rustls client configuration trusting the certificates of `ca_file` (PEM), or the system's
/// root certificates when None; no client certificate.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, SecurityError> {
    client_config_with_identity(ca_file, None)
}

/// A client certificate chain and its private key (PEM files), for listeners that ask for one.
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a> {
    /// The certificate chain, leaf first.
    pub cert_file: &'a Path,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: &'a Path,
}

/// [`client_config`] that also presents `identity` when the server asks for a certificate.
pub fn client_config_with_identity(
    ca_file: Option<&Path>,
    identity: Option<Identity<'_>>,
) -> Result<Arc<ClientConfig>, SecurityError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let shown = path.display().to_string();
            let pem = std::fs::read(path).map_err(|source| SecurityError::ReadCa {
                path: shown.clone(),
                source,
            })?;
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<_, _>>()
                .map_err(|e| SecurityError::BadCa {
                    path: shown.clone(),
                    reason: e.to_string(),
                })?;
            if certs.is_empty() {
                return Err(SecurityError::BadCa {
                    path: shown,
                    reason: "no CERTIFICATE found".to_string(),
                });
            }
            for c in certs {
                roots.add(c).map_err(|e| SecurityError::BadCa {
                    path: shown.clone(),
                    reason: e.to_string(),
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found
                    .errors
                    .first()
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| "none installed".to_string());
                return Err(SecurityError::NoSystemRoots(why));
            }
        }
    }
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
    let config = match identity {
        None => config.with_no_client_auth(),
        Some(id) => {
            let (certs, key) = read_identity(id)?;
            config.with_client_auth_cert(certs, key)?
        }
    };
    Ok(Arc::new(config))
}

/// The certificate chain and key of `id`.
fn read_identity(
    id: Identity<'_>,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), SecurityError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| SecurityError::ReadIdentity {
            path: path.display().to_string(),
            source,
        })
    };
    let bad = |path: &Path, reason: String| SecurityError::BadIdentity {
        path: path.display().to_string(),
        reason,
    };
    let pem = read(id.cert_file)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| bad(id.cert_file, e.to_string()))?;
    if certs.is_empty() {
        return Err(bad(id.cert_file, "no CERTIFICATE found".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(&read(id.key_file)?)
        .map_err(|e| bad(id.key_file, e.to_string()))?;
    Ok((certs, key))
}

/// The name a TLS connection to `addr` (`host:port`) verifies: `server_name` or the host.
pub fn server_name(
    addr: &str,
    server_name: Option<&str>,
) -> Result<ServerName<'static>, SecurityError> {
    let host = match server_name {
        Some(n) => n,
        None => {
            let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
            host.trim_start_matches('[').trim_end_matches(']')
        }
    };
    ServerName::try_from(host.to_string()).map_err(|_| SecurityError::ServerName(host.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_and_ca_errors() {
        assert!(matches!(
            server_name("central:9093", None).unwrap(),
            ServerName::DnsName(_)
        ));
        assert!(matches!(
            server_name("[::1]:9093", None).unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("127.0.0.1:9093", Some("localhost")).unwrap(),
            ServerName::DnsName(_)
        ));
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        assert!(matches!(
            client_config(Some(&missing)),
            Err(SecurityError::ReadCa { .. })
        ));
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate").unwrap();
        let err = client_config(Some(&garbage)).unwrap_err();
        assert!(err.to_string().contains("no CERTIFICATE"), "{err}");
        assert_eq!(
            SaslMechanism::from_name("scram-sha-256").map(|m| m.name()),
            Some("SCRAM-SHA-256")
        );
        assert!(SaslMechanism::from_name("GSSAPI").is_none());
    }
}
