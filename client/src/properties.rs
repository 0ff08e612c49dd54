//! Connection settings by name: librdkafka's property names (`security.protocol`,
//! `ssl.ca.location`, `sasl.mechanism`, ..., as kcat's `-X key=value` and `-F FILE` take them)
//! and the bridge's `[[mirror]]` key names (`tls`, `tls_ca_file`, `sasl_username`, ...), merged
//! in layers (command-line flags over `-X` over `-F`) and turned into [`TargetSecurity`].

use std::path::PathBuf;

use crate::security::{
    client_config_with_identity, server_name, Identity, SaslCredentials, SaslMechanism,
    SecurityError, TargetSecurity, TlsSettings,
};

/// Errors of connection properties.
#[derive(Debug, thiserror::Error)]
pub enum PropertyError {
    /// A property this client does not know.
    #[error("unknown property {0:?} (supported: {SUPPORTED})")]
    Unknown(String),
    /// A property with an unusable value.
    #[error("property {key}: {reason}")]
    Invalid {
        /// The property.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A `-F` file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A `-F` line is not `key=value`.
    #[error("{path}:{line}: expected key=value")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
    },
    /// The TLS material is unusable.
    #[error(transparent)]
    Security(#[from] SecurityError),
}

/// The names accepted, for error messages.
const SUPPORTED: &str = "bootstrap.servers, security.protocol, ssl.ca.location, \
    ssl.certificate.location, ssl.key.location, sasl.mechanism(s), sasl.username, sasl.password, \
    client.id, and the [[mirror]] keys tls, tls_ca_file, tls_server_name, tls_cert_file, \
    tls_key_file, sasl_mechanism, sasl_username, sasl_password, sasl_password_env";

/// Connection settings, each unset until some layer sets it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionSettings {
    /// Bootstrap servers (`bootstrap.servers`, `-b`).
    pub brokers: Option<String>,
    /// TLS on (`security.protocol` SSL or SASL_SSL, `tls`, `--tls`).
    pub tls: Option<bool>,
    /// SASL required by `security.protocol` (SASL_PLAINTEXT, SASL_SSL) or refused by it.
    pub sasl: Option<bool>,
    /// PEM roots (`ssl.ca.location`, `tls_ca_file`).
    pub tls_ca_file: Option<PathBuf>,
    /// Name to verify the server certificate against (`tls_server_name`).
    pub tls_server_name: Option<String>,
    /// Client certificate (`ssl.certificate.location`, `tls_cert_file`).
    pub tls_cert_file: Option<PathBuf>,
    /// Client key (`ssl.key.location`, `tls_key_file`).
    pub tls_key_file: Option<PathBuf>,
    /// SASL mechanism (`sasl.mechanism`, `sasl_mechanism`).
    pub sasl_mechanism: Option<String>,
    /// SASL user (`sasl.username`, `sasl_username`).
    pub sasl_username: Option<String>,
    /// SASL password (`sasl.password`, `sasl_password`, or read from `sasl_password_env`).
    pub sasl_password: Option<String>,
    /// Client id (`client.id`).
    pub client_id: Option<String>,
}

impl ConnectionSettings {
    /// Settings from `key=value` properties (later ones win).
    pub fn from_properties<'a>(
        props: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<ConnectionSettings, PropertyError> {
        let mut s = ConnectionSettings::default();
        for (key, value) in props {
            s.set(key.trim(), value.trim())?;
        }
        Ok(s)
    }

    /// Settings from a properties file (`-F`): `key=value` lines, `#` comments, blank lines.
    pub fn from_file(path: &std::path::Path) -> Result<ConnectionSettings, PropertyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PropertyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut props = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = line.split_once('=').ok_or_else(|| PropertyError::Syntax {
                path: path.to_path_buf(),
                line: i + 1,
            })?;
            props.push((k, v));
        }
        ConnectionSettings::from_properties(props)
    }

    fn set(&mut self, key: &str, value: &str) -> Result<(), PropertyError> {
        let invalid = |reason: String| PropertyError::Invalid {
            key: key.to_string(),
            reason,
        };
        let text = || Some(value.to_string());
        let path = || Some(PathBuf::from(value));
        match key {
            "bootstrap.servers" | "metadata.broker.list" | "brokers" => self.brokers = text(),
            "security.protocol" => {
                let (tls, sasl) = match value.to_ascii_uppercase().as_str() {
                    "PLAINTEXT" => (false, false),
                    "SSL" => (true, false),
                    "SASL_PLAINTEXT" => (false, true),
                    "SASL_SSL" => (true, true),
                    _ => {
                        return Err(invalid(format!(
                            "{value:?}: expected PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
                        )))
                    }
                };
                self.tls = Some(tls);
                self.sasl = Some(sasl);
            }
            "tls" => {
                self.tls = Some(
                    value
                        .parse()
                        .map_err(|_| invalid(format!("{value:?}: expected true or false")))?,
                )
            }
            "ssl.ca.location" | "tls_ca_file" => self.tls_ca_file = path(),
            "tls_server_name" => self.tls_server_name = text(),
            "ssl.certificate.location" | "tls_cert_file" => self.tls_cert_file = path(),
            "ssl.key.location" | "tls_key_file" => self.tls_key_file = path(),
            "sasl.mechanism" | "sasl.mechanisms" | "sasl_mechanism" => self.sasl_mechanism = text(),
            "sasl.username" | "sasl_username" => self.sasl_username = text(),
            "sasl.password" | "sasl_password" => self.sasl_password = text(),
            "sasl_password_env" => {
                self.sasl_password = Some(
                    std::env::var(value)
                        .map_err(|_| invalid(format!("environment variable {value} is not set")))?,
                )
            }
            "client.id" => self.client_id = text(),
            other => return Err(PropertyError::Unknown(other.to_string())),
        }
        Ok(())
    }

    /// These settings, with what they leave unset taken from `lower`.
    pub fn or(self, lower: ConnectionSettings) -> ConnectionSettings {
        ConnectionSettings {
            brokers: self.brokers.or(lower.brokers),
            tls: self.tls.or(lower.tls),
            sasl: self.sasl.or(lower.sasl),
            tls_ca_file: self.tls_ca_file.or(lower.tls_ca_file),
            tls_server_name: self.tls_server_name.or(lower.tls_server_name),
            tls_cert_file: self.tls_cert_file.or(lower.tls_cert_file),
            tls_key_file: self.tls_key_file.or(lower.tls_key_file),
            sasl_mechanism: self.sasl_mechanism.or(lower.sasl_mechanism),
            sasl_username: self.sasl_username.or(lower.sasl_username),
            sasl_password: self.sasl_password.or(lower.sasl_password),
            client_id: self.client_id.or(lower.client_id),
        }
    }

    /// The TLS and SASL settings (reads the CA, certificate and key files). TLS is on when
    /// `tls` says so; SASL when a mechanism is given (`security.protocol` SASL_* without one is
    /// an error, as is a mechanism with PLAINTEXT or SSL).
    pub fn security(&self) -> Result<TargetSecurity, PropertyError> {
        let invalid = |key: &str, reason: &str| PropertyError::Invalid {
            key: key.to_string(),
            reason: reason.to_string(),
        };
        let tls = if self.tls.unwrap_or(false) {
            let identity = match (&self.tls_cert_file, &self.tls_key_file) {
                (Some(cert_file), Some(key_file)) => Some(Identity {
                    cert_file,
                    key_file,
                }),
                (None, None) => None,
                _ => {
                    return Err(invalid(
                        "ssl.certificate.location",
                        "a client certificate needs both the certificate and the key file",
                    ))
                }
            };
            if let Some(name) = &self.tls_server_name {
                server_name("", Some(name))?;
            }
            Some(TlsSettings {
                config: client_config_with_identity(self.tls_ca_file.as_deref(), identity)?,
                server_name: self.tls_server_name.clone(),
            })
        } else {
            if self.tls_ca_file.is_some()
                || self.tls_server_name.is_some()
                || self.tls_cert_file.is_some()
                || self.tls_key_file.is_some()
            {
                return Err(invalid(
                    "tls",
                    "TLS settings given but TLS is off (use --tls or security.protocol=SSL/SASL_SSL)",
                ));
            }
            None
        };
        let sasl = match (&self.sasl_mechanism, self.sasl) {
            (None, Some(true)) => {
                return Err(invalid(
                    "security.protocol",
                    "SASL_PLAINTEXT and SASL_SSL need sasl.mechanism",
                ))
            }
            (Some(_), Some(false)) => {
                return Err(invalid(
                    "sasl.mechanism",
                    "SASL needs security.protocol SASL_PLAINTEXT or SASL_SSL",
                ))
            }
            (None, _) => None,
            (Some(name), _) => {
                let mechanism = SaslMechanism::from_name(name).ok_or_else(|| {
                    invalid(
                        "sasl.mechanism",
                        "expected PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
                    )
                })?;
                let username = self
                    .sasl_username
                    .clone()
                    .ok_or_else(|| invalid("sasl.username", "SASL needs a user name"))?;
                let password = self
                    .sasl_password
                    .clone()
                    .ok_or_else(|| invalid("sasl.password", "SASL needs a password"))?;
                Some(SaslCredentials {
                    mechanism,
                    username,
                    password,
                })
            }
        };
        Ok(TargetSecurity { tls, sasl })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn librdkafka_names_and_layers() {
        let x = ConnectionSettings::from_properties([
            ("security.protocol", "sasl_ssl"),
            ("sasl.mechanisms", "SCRAM-SHA-512"),
            ("sasl.username", "x-user"),
            ("sasl.password", "x-pw"),
        ])
        .unwrap();
        assert_eq!((x.tls, x.sasl), (Some(true), Some(true)));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("client.properties");
        std::fs::write(
            &file,
            "# a kcat -F file\nbootstrap.servers=f:1\nsasl.username = f-user\n\nclient.id=f\n",
        )
        .unwrap();
        let f = ConnectionSettings::from_file(&file).unwrap();
        let flags = ConnectionSettings {
            sasl_username: Some("flag-user".into()),
            ..Default::default()
        };
        let all = flags.or(x).or(f);
        assert_eq!(all.brokers.as_deref(), Some("f:1"));
        assert_eq!(all.sasl_username.as_deref(), Some("flag-user"));
        assert_eq!(all.sasl_password.as_deref(), Some("x-pw"));
        assert_eq!(all.client_id.as_deref(), Some("f"));
        let plain = ConnectionSettings {
            tls: Some(false),
            ..all.clone()
        };
        let sec = plain.security().unwrap();
        assert!(sec.tls.is_none());
        let sasl = sec.sasl.unwrap();
        assert_eq!(sasl.mechanism.name(), "SCRAM-SHA-512");
        assert_eq!(sasl.username, "flag-user");
    }

    #[test]
    fn bad_properties_are_named() {
        let err = ConnectionSettings::from_properties([("ssl.cipher.suites", "x")]).unwrap_err();
        assert!(err.to_string().contains("ssl.cipher.suites"), "{err}");
        assert!(ConnectionSettings::from_properties([("security.protocol", "TLS")]).is_err());
        let no_mech =
            ConnectionSettings::from_properties([("security.protocol", "SASL_PLAINTEXT")]).unwrap();
        assert!(no_mech.security().is_err());
        let ca_without_tls =
            ConnectionSettings::from_properties([("ssl.ca.location", "ca.pem")]).unwrap();
        assert!(ca_without_tls.security().is_err());
        let mech_without_sasl = ConnectionSettings::from_properties([
            ("security.protocol", "SSL"),
            ("sasl.mechanism", "PLAIN"),
        ])
        .unwrap();
        assert!(mech_without_sasl.security().is_err());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.properties");
        std::fs::write(&file, "ok=1\nnot a property\n").unwrap();
        assert!(matches!(
            ConnectionSettings::from_file(&file),
            Err(PropertyError::Unknown(_)) | Err(PropertyError::Syntax { line: 2, .. })
        ));
    }
}
