//! What a cluster starts with beyond its id (Kafka's `BootstrapMetadata`, the
//! `bootstrap.checkpoint` that `kafka-storage.sh format --add-scram` writes, KIP-900): the first
//! SCRAM users, so a cluster whose Kafka listener requires SASL can be administered from its
//! first second.
//!
//! `rill cluster format --add-scram 'SCRAM-SHA-512=[name=admin,password=...]'` derives the
//! credentials (salted and iterated, never the password) and writes them to
//! `<data_dir>/bootstrap.json` (JSON, mode 0600, synced, renamed into place) before `meta.properties`, the
//! file that makes the directory formatted. The first active controller puts them into the
//! cluster's `Bootstrap` command; later bootstraps change nothing, so only the voter that
//! bootstraps the cluster matters: format every voter with the same `--add-scram` flags.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::command::ScramCredentialEntry;
use crate::scram::{ScramCredential, ScramMechanism, MAX_ITERATIONS, MIN_ITERATIONS};

/// The file name under the data directory.
pub const BOOTSTRAP_FILE: &str = "bootstrap.json";
/// Kafka's default iteration count for `--add-scram`.
pub const DEFAULT_ITERATIONS: u32 = 4096;

/// Why bootstrap metadata cannot be read, written or parsed.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// An `--add-scram` value that is not `MECHANISM=[name=N,password=P(,iterations=I)]`.
    #[error("--add-scram {input:?}: {reason} (expected 'SCRAM-SHA-256=[name=NAME,password=PASSWORD]', optionally with iterations=N)")]
    InvalidScram { input: String, reason: String },
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file does not decode.
    #[error("{path}: not valid bootstrap metadata: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// The records a cluster is bootstrapped with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootstrapMetadata {
    /// The first SCRAM users.
    pub scram_credentials: Vec<ScramCredentialEntry>,
}

impl BootstrapMetadata {
    /// Adds the user of one `--add-scram` value (Kafka's syntax:
    /// `SCRAM-SHA-256=[name=alice,password=secret]`, with an optional `iterations=N`), with a
    /// fresh random salt.
    pub fn add_scram(&mut self, input: &str) -> Result<(), BootstrapError> {
        let bad = |reason: &str| BootstrapError::InvalidScram {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        let (mechanism, rest) = input.split_once('=').ok_or_else(|| bad("no '='"))?;
        let mechanism =
            ScramMechanism::from_name(mechanism.trim()).ok_or_else(|| bad("unknown mechanism"))?;
        let body = rest
            .trim()
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .ok_or_else(|| bad("the attributes must be in [...]"))?;
        let (mut name, mut password, mut iterations) = (None, None, DEFAULT_ITERATIONS);
        for attr in body.split(',') {
            let (k, v) = attr
                .split_once('=')
                .ok_or_else(|| bad("an attribute without '='"))?;
            match k.trim() {
                "name" => name = Some(v.trim().trim_matches('"').to_string()),
                "password" => password = Some(v.trim().trim_matches('"').to_string()),
                "iterations" => {
                    iterations = v
                        .trim()
                        .parse()
                        .map_err(|_| bad("iterations is not a number"))?
                }
                _ => return Err(bad("unknown attribute (known: name, password, iterations)")),
            }
        }
        let user = name.ok_or_else(|| bad("no name"))?;
        crate::credentials::check_user_name(&user).map_err(|e| bad(&e.to_string()))?;
        let password = password
            .filter(|p| !p.is_empty())
            .ok_or_else(|| bad("no password"))?;
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(bad(&format!(
                "iterations must be between {MIN_ITERATIONS} and {MAX_ITERATIONS}"
            )));
        }
        if self
            .scram_credentials
            .iter()
            .any(|e| e.user == user && e.mechanism == mechanism)
        {
            return Err(bad("this user and mechanism are given twice"));
        }
        let credential = ScramCredential::generate(mechanism, password.as_bytes(), iterations)
            .map_err(|e| bad(&e.to_string()))?;
        self.scram_credentials.push(ScramCredentialEntry {
            user,
            mechanism,
            credential,
        });
        Ok(())
    }

    /// Writes `<data_dir>/bootstrap.json` (synced; replaces an earlier one).
    pub fn write(&self, data_dir: &Path) -> Result<PathBuf, BootstrapError> {
        let path = data_dir.join(BOOTSTRAP_FILE);
        let io_err = |source| BootstrapError::Io {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(data_dir).map_err(io_err)?;
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| BootstrapError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let tmp = data_dir.join(format!("{BOOTSTRAP_FILE}.tmp"));
        // Owner only: the verifiers allow an offline dictionary attack on the passwords.
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options.open(&tmp).map_err(io_err)?;
        f.write_all(&bytes).map_err(io_err)?;
        f.sync_all().map_err(io_err)?;
        drop(f);
        fs::rename(&tmp, &path).map_err(io_err)?;
        File::open(data_dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err)?;
        Ok(path)
    }

    /// Reads `<data_dir>/bootstrap.json`; none (no users) if the file does not exist.
    pub fn read(data_dir: &Path) -> Result<BootstrapMetadata, BootstrapError> {
        let path = data_dir.join(BOOTSTRAP_FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(BootstrapMetadata::default())
            }
            Err(source) => return Err(BootstrapError::Io { path, source }),
        };
        serde_json::from_slice(&bytes).map_err(|e| BootstrapError::Corrupt {
            path,
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_scram_parses_kafkas_syntax_and_round_trips_through_the_file() {
        let mut b = BootstrapMetadata::default();
        b.add_scram("SCRAM-SHA-512=[name=admin,password=admin-secret]")
            .unwrap();
        b.add_scram("SCRAM-SHA-256=[name=\"bob\",password=pw,iterations=8192]")
            .unwrap();
        let admin = &b.scram_credentials[0];
        assert_eq!(
            (admin.user.as_str(), admin.mechanism),
            ("admin", ScramMechanism::Sha512)
        );
        assert_eq!(admin.credential.iterations, DEFAULT_ITERATIONS);
        assert!(admin
            .credential
            .verify_password(ScramMechanism::Sha512, b"admin-secret"));
        assert_eq!(b.scram_credentials[1].credential.iterations, 8192);
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            BootstrapMetadata::read(dir.path()).unwrap(),
            BootstrapMetadata::default()
        );
        b.write(dir.path()).unwrap();
        assert_eq!(BootstrapMetadata::read(dir.path()).unwrap(), b);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(BOOTSTRAP_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(dir.path().join(BOOTSTRAP_FILE), b"\xff\x00").unwrap();
        assert!(matches!(
            BootstrapMetadata::read(dir.path()),
            Err(BootstrapError::Corrupt { .. })
        ));
    }

    #[test]
    fn add_scram_refuses_what_kafka_refuses() {
        for bad in [
            "SCRAM-SHA-1=[name=a,password=b]",
            "SCRAM-SHA-256=name=a,password=b",
            "SCRAM-SHA-256=[password=b]",
            "SCRAM-SHA-256=[name=a]",
            "SCRAM-SHA-256=[name=a,password=]",
            "SCRAM-SHA-256=[name=a,password=b,iterations=10]",
            "SCRAM-SHA-256=[name=a,password=b,salt=c]",
            "SCRAM-SHA-256=[name=,password=b]",
        ] {
            let mut b = BootstrapMetadata::default();
            assert!(
                matches!(b.add_scram(bad), Err(BootstrapError::InvalidScram { .. })),
                "{bad}"
            );
        }
        let mut b = BootstrapMetadata::default();
        b.add_scram("SCRAM-SHA-256=[name=a,password=b]").unwrap();
        assert!(b.add_scram("SCRAM-SHA-256=[name=a,password=c]").is_err());
        b.add_scram("SCRAM-SHA-512=[name=a,password=c]").unwrap();
    }
}
