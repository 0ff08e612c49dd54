//! TLS for the Kafka listeners and the admin HTTP listener: rustls 0.23 with the ring provider
//! only, from PEM files (the loaders are shared with the cluster listener's mTLS,
//! `cluster::auth`). With `client_ca` a client must present a certificate chaining to one of
//! its certificates, valid now (webpki's checks: signature, validity period, key usage for
//! client authentication), or the handshake fails.
//!
//! With `crl_files` as well, the certificate revocation lists (PEM or DER) of those files are read
//! once, when the listener is built (node start): every certificate of the verified chain except
//! the trust anchor is looked up in the CRL of its issuer and a listed one fails the handshake
//! with rustls' `Revoked` (the client gets the `certificate_revoked` alert). A certificate whose
//! issuer has no CRL among the files is not checked (the status "unknown" is allowed: only what
//! is configured is checked), and a CRL past its nextUpdate is still used.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

use crate::config::TlsFiles;

/// Errors loading TLS material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file holds no usable PEM item.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A file of `crl_files` holds something that is not a certificate revocation list webpki
    /// accepts (X.509 v2 CRL with a nextUpdate, no delta CRL).
    #[error("{path}: not a usable certificate revocation list: {source}")]
    Crl {
        /// The file.
        path: PathBuf,
        /// webpki's reason.
        #[source]
        source: webpki::Error,
    },
    /// The client CA file could not be made into a client certificate verifier.
    #[error("{path}: client certificate verifier: {source}")]
    Verifier {
        /// The `client_ca` file.
        path: PathBuf,
        /// rustls' reason.
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
    /// rustls rejected the certificate or key.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The certificates of a PEM file (at least one).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let cert_pem = read(path)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_path_buf(),
            reason: "no CERTIFICATE found".to_string(),
        });
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let key_pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Pem {
        path: path.to_path_buf(),
        reason: format!("no usable private key: {e}"),
    })
}

/// The certificate revocation lists of a file: PEM (`-----BEGIN X509 CRL-----`, one or more)
/// or a single DER CRL, each checked by webpki's parser (so a bad file is named at start).
pub fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let pem = |reason: String| TlsError::Pem {
        path: path.to_path_buf(),
        reason,
    };
    let crls: Vec<CertificateRevocationListDer<'static>> =
        if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
            let crls = CertificateRevocationListDer::pem_slice_iter(&bytes)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| pem(e.to_string()))?;
            if crls.is_empty() {
                return Err(pem("no X509 CRL found".to_string()));
            }
            crls
        } else {
            vec![CertificateRevocationListDer::from(bytes)]
        };
    let mut revoked = 0;
    for crl in &crls {
        let crl_err = |source| TlsError::Crl {
            path: path.to_path_buf(),
            source,
        };
        let parsed = webpki::BorrowedCertRevocationList::from_der(crl.as_ref()).map_err(crl_err)?;
        // What rustls does with it: every revoked entry parsed into a lookup table.
        parsed.to_owned().map_err(crl_err)?;
        revoked += (&parsed).into_iter().count();
    }
    tracing::info!(
        file = %path.display(),
        crls = crls.len(),
        revoked,
        "certificate revocation list loaded"
    );
    Ok(crls)
}

/// What one CRL covers: its issuer and issuing distribution point (DER).
type CrlScope = (Vec<u8>, Option<Vec<u8>>);

/// The verifier of client certificates: they must chain to a certificate of `client_ca` and not
/// be revoked by a CRL of `crl_files` (see the module doc for the depth and the unknown-status
/// policy); `optional`: a client may also present none (MQTT, where a password can stand in).
///
/// Under the failpoint `tls_ignore_crls` (failpoint builds only) the CRLs are read but not given
/// to the verifier: revoked certificates are accepted, on purpose, so the tests can show they
/// would notice.
pub fn client_verifier(
    client_ca: &Path,
    crl_files: &[PathBuf],
    optional: bool,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(client_ca)? {
        roots.add(cert).map_err(|e| TlsError::Pem {
            path: client_ca.to_path_buf(),
            reason: e.to_string(),
        })?;
    }
    let mut crls = Vec::new();
    // (issuer, issuing distribution point) -> the file of the CRL that covers it: webpki uses
    // the first CRL of an issuer it finds, so a second one (an older list beside a newer one)
    // could hide revocations; refused at load.
    let mut scopes: Vec<(CrlScope, &Path)> = Vec::new();
    for path in crl_files {
        for crl in load_crls(path)? {
            let parsed: webpki::CertRevocationList<'_> =
                webpki::BorrowedCertRevocationList::from_der(crl.as_ref())
                    .map_err(|source| TlsError::Crl {
                        path: path.clone(),
                        source,
                    })?
                    .into();
            let scope = (
                parsed.issuer().to_vec(),
                parsed.issuing_distribution_point().map(<[u8]>::to_vec),
            );
            if let Some((_, first)) = scopes.iter().find(|(s, _)| *s == scope) {
                return Err(TlsError::Pem {
                    path: path.clone(),
                    reason: format!(
                        "a second CRL of the same issuer (the other is in {}): give only the \
                         newest CRL of each issuer, an older one could hide revocations",
                        first.display()
                    ),
                });
            }
            scopes.push((scope, path.as_path()));
            crls.push(crl);
        }
    }
    if rill_core::failpoints::is_set(rill_core::failpoints::TLS_IGNORE_CRLS) {
        tracing::warn!(
            crls = crls.len(),
            "failpoint tls_ignore_crls: certificate revocation lists dropped"
        );
        crls.clear();
    }
    let mut builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .with_crls(crls)
        .allow_unknown_revocation_status();
    if optional {
        builder = builder.allow_unauthenticated();
    }
    builder.build().map_err(|source| TlsError::Verifier {
        path: client_ca.to_path_buf(),
        source,
    })
}

/// What a failed TLS handshake's error says, for the log: rustls' reason, with a revoked client
/// certificate spelled out (`client certificate revoked by a CRL of crl_files`).
pub fn handshake_error(e: &std::io::Error) -> String {
    let revoked = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|r| {
            matches!(
                r,
                rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked)
            )
        });
    if revoked {
        format!("client certificate revoked by a CRL of crl_files ({e})")
    } else {
        e.to_string()
    }
}

/// The rustls server configuration for `files`: client certificates required when
/// `client_ca` is set (and checked against its `crl_files`), else none asked for.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = load_certs(&files.cert)?;
    let key = load_key(&files.key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let config = match &files.client_ca {
        None => builder.with_no_client_auth().with_single_cert(certs, key)?,
        Some(ca) => builder
            .with_client_cert_verifier(client_verifier(ca, &files.crl_files, false, provider)?)
            .with_single_cert(certs, key)?,
    };
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use rcgen::{
        BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
        ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, RevokedCertParams, SerialNumber,
    };
    use rustls::pki_types::UnixTime;

    use super::{client_verifier, load_crls, TlsError};

    struct Issued {
        cert: rcgen::Certificate,
        key: KeyPair,
    }

    fn ca(name: &str, serial: u8, parent: Option<&Issued>) -> Issued {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        p.serial_number = Some(SerialNumber::from(vec![serial]));
        let cert = match parent {
            None => p.self_signed(&key).unwrap(),
            Some(parent) => p.signed_by(&key, &parent.cert, &parent.key).unwrap(),
        };
        Issued { cert, key }
    }

    fn client(issuer: &Issued, serial: u8) -> Issued {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, "client");
        p.serial_number = Some(SerialNumber::from(vec![serial]));
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = p.signed_by(&key, &issuer.cert, &issuer.key).unwrap();
        Issued { cert, key }
    }

    fn crl(issuer: &Issued, serials: &[u8]) -> rcgen::CertificateRevocationList {
        CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2025, 1, 1),
            next_update: rcgen::date_time_ymd(2026, 1, 1),
            crl_number: SerialNumber::from(vec![1]),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from(vec![*s]),
                    revocation_time: rcgen::date_time_ymd(2025, 6, 1),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&issuer.cert, &issuer.key)
        .unwrap()
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    /// Verify `chain` (end entity first) with a verifier of `cas` and `crls`.
    fn verify(
        dir: &Path,
        cas: &[&Issued],
        crls: &[std::path::PathBuf],
        chain: &[&Issued],
    ) -> Result<(), rustls::Error> {
        let pem: String = cas.iter().map(|c| c.cert.pem()).collect();
        let ca_file = write(dir, "cas.pem", pem.as_bytes());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = client_verifier(&ca_file, crls, false, provider).unwrap();
        let ders: Vec<_> = chain.iter().map(|c| c.cert.der().clone()).collect();
        // Within every certificate's validity and before the CRLs' nextUpdate.
        let now = UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_760_000_000));
        verifier
            .verify_client_cert(&ders[0], &ders[1..], now)
            .map(|_| ())
    }

    fn revoked(r: Result<(), rustls::Error>) -> bool {
        matches!(
            r,
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Revoked
            ))
        )
    }

    #[test]
    fn revoked_end_entities_and_intermediates_are_refused_unknown_status_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let (root, other) = (ca("root", 1, None), ca("other", 2, None));
        let (good, bad) = (client(&root, 10), client(&root, 11));
        let root_crl = crl(&root, &[11, 20]);
        let pem = write(
            dir.path(),
            "root.crl.pem",
            root_crl.pem().unwrap().as_bytes(),
        );
        let der = write(dir.path(), "root.crl", root_crl.der());
        for crls in [&pem, &der] {
            let crls = std::slice::from_ref(crls);
            assert!(verify(dir.path(), &[&root, &other], crls, &[&good]).is_ok());
            assert!(revoked(verify(dir.path(), &[&root, &other], crls, &[&bad])));
            // No CRL of `other` is listed: its certificates' status is unknown, and allowed.
            let stranger = client(&other, 11);
            assert!(verify(dir.path(), &[&root, &other], crls, &[&stranger]).is_ok());
        }
        // The whole chain is checked: an intermediate revoked by the root's CRL takes its end
        // entities with it, though nothing revokes them directly.
        let revoked_mid = ca("mid", 20, Some(&root));
        let leaf = client(&revoked_mid, 30);
        assert!(revoked(verify(
            dir.path(),
            &[&root],
            std::slice::from_ref(&pem),
            &[&leaf, &revoked_mid]
        )));
        let mid = ca("mid-ok", 21, Some(&root));
        let leaf = client(&mid, 31);
        assert!(verify(
            dir.path(),
            &[&root],
            std::slice::from_ref(&pem),
            &[&leaf, &mid]
        )
        .is_ok());
        // Without CRLs the revoked certificate passes (what the failpoint tls_ignore_crls does).
        assert!(verify(dir.path(), &[&root], &[], &[&bad]).is_ok());

        // MQTT's verifier, where a certificate is optional: none is fine, a revoked one is not.
        let ca_file = write(dir.path(), "root.pem", root.cert.pem().as_bytes());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let optional = client_verifier(&ca_file, &[pem], true, provider).unwrap();
        assert!(!optional.client_auth_mandatory());
        let now = UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_760_000_000));
        let r = optional
            .verify_client_cert(bad.cert.der(), &[], now)
            .map(|_| ());
        assert!(revoked(r));
    }

    #[test]
    fn crl_files_are_parsed_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let root = ca("root", 1, None);
        let two = format!(
            "{}{}",
            crl(&root, &[1]).pem().unwrap(),
            crl(&root, &[]).pem().unwrap()
        );
        let path = write(dir.path(), "two.pem", two.as_bytes());
        assert_eq!(load_crls(&path).unwrap().len(), 2);
        // Two CRLs of one issuer: webpki would use the first it finds, so a newer revocation
        // in the second could be ignored; the verifier refuses them (also across files).
        let ca_file = write(dir.path(), "root.pem", root.cert.pem().as_bytes());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let err = client_verifier(
            &ca_file,
            std::slice::from_ref(&path),
            false,
            provider.clone(),
        )
        .expect_err("two CRLs of one issuer refused");
        assert!(err.to_string().contains("same issuer"), "{err}");
        let one = write(
            dir.path(),
            "one.pem",
            crl(&root, &[1]).pem().unwrap().as_bytes(),
        );
        let again = write(
            dir.path(),
            "again.pem",
            crl(&root, &[2]).pem().unwrap().as_bytes(),
        );
        let err = client_verifier(&ca_file, &[one.clone(), again], false, provider.clone())
            .expect_err("two files with CRLs of one issuer refused");
        assert!(err.to_string().contains("one.pem"), "{err}");
        assert!(client_verifier(&ca_file, &[one], false, provider).is_ok());
        let garbage = write(dir.path(), "garbage.crl", b"\x30\x03\x02\x01\x01");
        let err = load_crls(&garbage).unwrap_err();
        assert!(matches!(err, TlsError::Crl { .. }), "{err}");
        assert!(err.to_string().contains("garbage.crl"), "{err}");
        let cert = write(dir.path(), "cert.pem", root.cert.pem().as_bytes());
        let err = load_crls(&cert).unwrap_err();
        assert!(err.to_string().contains("no X509 CRL found"), "{err}");
        let missing = dir.path().join("missing.crl");
        assert!(matches!(load_crls(&missing), Err(TlsError::Read { .. })));
    }
}
