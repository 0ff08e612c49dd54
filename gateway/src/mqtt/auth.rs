//! Device identity: a credential store of argon2-hashed passwords (and SCRAM-SHA-256 verifiers
//! for MQTT 5 enhanced authentication) and per-device ACL templates.
//!
//! The store is a text file (`username:$argon2id$...` per line, like a mosquitto password
//! file, optionally followed by `:SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`,
//! base64, PostgreSQL's verifier format; lines without it still verify passwords) so `rill device add|list|remove` can change it while the node runs; the node rereads
//! it when its modification time changes. ACL templates are topic filters in which
//! `{client_id}` and `{username}` are replaced by the connecting device's identity.

use rill_core::sync::LockExt;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use serde::{Deserialize, Serialize};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rill_core::scram::{ScramCredential, ScramMechanism};

use super::topic;

/// Default publish ACL with auth on.
pub const DEFAULT_PUBLISH_ACL: &str = "devices/{client_id}/#";
/// Default subscribe ACL with auth on.
pub const DEFAULT_SUBSCRIBE_ACL: &str = "commands/{client_id}/#";

/// Errors of the credential store.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: malformed credential line")]
    Malformed { path: PathBuf, line: usize },
    #[error("invalid username '{0}' (must be non-empty, without ':' or whitespace)")]
    BadUsername(String),
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("no device '{0}'")]
    UnknownDevice(String),
}

/// The `[mqtt.auth]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Require username/password. Off by default.
    pub enabled: bool,
    /// The credential file (default `<data_dir>/mqtt-credentials`).
    pub credentials_file: Option<PathBuf>,
    /// Filters a device may publish to (templates).
    pub publish: Vec<String>,
    /// Filters a device may subscribe to (templates).
    pub subscribe: Vec<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            enabled: false,
            credentials_file: None,
            publish: vec![DEFAULT_PUBLISH_ACL.to_string()],
            subscribe: vec![DEFAULT_SUBSCRIBE_ACL.to_string()],
        }
    }
}

/// The credential file's contents: username -> PHC hash string.
#[derive(Debug)]
pub struct CredentialStore {
    path: PathBuf,
    cache: Mutex<(Option<SystemTime>, BTreeMap<String, String>)>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> AuthError + '_ {
    move |source| AuthError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn check_username(name: &str) -> Result<(), AuthError> {
    if name.is_empty() || name.contains(':') || name.contains(char::is_whitespace) {
        return Err(AuthError::BadUsername(name.to_string()));
    }
    Ok(())
}

/// The SCRAM mechanism of MQTT enhanced authentication.
const SCRAM: ScramMechanism = ScramMechanism::Sha256;
/// Iterations of new SCRAM-SHA-256 verifiers (RFC 7677's minimum, Kafka's default).
const SCRAM_ITERATIONS: u32 = 4096;

/// The SCRAM-SHA-256 verifier of `password` in the file's form.
pub fn scram_verifier(password: &str) -> Result<String, AuthError> {
    let c = ScramCredential::generate(SCRAM, password.as_bytes(), SCRAM_ITERATIONS)
        .map_err(|e| AuthError::Hash(e.to_string()))?;
    Ok(format!(
        "SCRAM-SHA-256${}:{}${}:{}",
        c.iterations,
        B64.encode(&c.salt),
        B64.encode(&c.stored_key),
        B64.encode(&c.server_key)
    ))
}

/// Parses a verifier written by [`scram_verifier`].
pub fn parse_scram_verifier(v: &str) -> Option<ScramCredential> {
    let rest = v.strip_prefix("SCRAM-SHA-256$")?;
    let (iter_salt, keys) = rest.split_once('$')?;
    let (iterations, salt) = iter_salt.split_once(':')?;
    let (stored, server) = keys.split_once(':')?;
    Some(ScramCredential {
        iterations: iterations.parse().ok()?,
        salt: B64.decode(salt).ok()?,
        stored_key: B64.decode(stored).ok()?,
        server_key: B64.decode(server).ok()?,
    })
}

/// Hashes a password with argon2id and a random salt (PHC string).
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

/// Checks `password` against a PHC hash string.
pub fn verify_password(hash: &str, password: &[u8]) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default().verify_password(password, &parsed).is_ok(),
        Err(_) => false,
    }
}

impl CredentialStore {
    /// A store backed by `path` (the file need not exist yet).
    pub fn new(path: PathBuf) -> CredentialStore {
        CredentialStore {
            path,
            cache: Mutex::new((None, BTreeMap::new())),
        }
    }

    /// The backing file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read_file(&self) -> Result<BTreeMap<String, String>, AuthError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(io_err(&self.path)(e)),
        };
        let mut out = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (user, hash) = line.split_once(':').ok_or(AuthError::Malformed {
                path: self.path.clone(),
                line: i + 1,
            })?;
            out.insert(user.to_string(), hash.to_string());
        }
        Ok(out)
    }

    fn write_file(&self, entries: &BTreeMap<String, String>) -> Result<(), AuthError> {
        let mut text =
            String::from("# rill MQTT device credentials (argon2id); managed by `rill device`\n");
        for (user, hash) in entries {
            text.push_str(user);
            text.push(':');
            text.push_str(hash);
            text.push('\n');
        }
        if let Some(dir) = self.path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(io_err(dir))?;
            }
        }
        let tmp = self.path.with_extension("tmp");
        {
            use std::io::Write;
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts.open(&tmp).map_err(io_err(&tmp))?;
            f.write_all(text.as_bytes()).map_err(io_err(&tmp))?;
            f.sync_all().map_err(io_err(&tmp))?;
        }
        std::fs::rename(&tmp, &self.path).map_err(io_err(&self.path))?;
        Ok(())
    }

    /// Adds or replaces a device's password.
    pub fn add(&self, username: &str, password: &str) -> Result<(), AuthError> {
        check_username(username)?;
        let mut entries = self.read_file()?;
        let line = format!("{}:{}", hash_password(password)?, scram_verifier(password)?);
        entries.insert(username.to_string(), line);
        self.write_file(&entries)
    }

    /// Removes a device.
    pub fn remove(&self, username: &str) -> Result<(), AuthError> {
        let mut entries = self.read_file()?;
        if entries.remove(username).is_none() {
            return Err(AuthError::UnknownDevice(username.to_string()));
        }
        self.write_file(&entries)
    }

    /// Usernames in the store.
    pub fn list(&self) -> Result<Vec<String>, AuthError> {
        Ok(self.read_file()?.into_keys().collect())
    }

    /// Whether `username` / `password` are valid (rereads the file when it changed).
    /// CPU-heavy (argon2): call from a blocking task.
    pub fn verify(&self, username: &str, password: &[u8]) -> Result<bool, AuthError> {
        let entry = self.entry(username)?;
        Ok(entry.is_some_and(|e| {
            let argon2 = e.split_once(':').map_or(e.as_str(), |(h, _)| h);
            verify_password(argon2, password)
        }))
    }

    /// The SCRAM-SHA-256 credential of `username`, when the store holds one (devices added
    /// before verifiers were stored have none until `rill device add` sets their password again).
    pub fn scram(&self, username: &str) -> Result<Option<ScramCredential>, AuthError> {
        Ok(self
            .entry(username)?
            .and_then(|e| e.split_once(':').and_then(|(_, v)| parse_scram_verifier(v))))
    }

    /// The stored line of `username` after `username:` (rereads the file when it changed).
    fn entry(&self, username: &str) -> Result<Option<String>, AuthError> {
        let mtime = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        let hash = {
            let mut cache = self.cache.lock_unpoisoned();
            if cache.0.is_none() || cache.0 != mtime {
                cache.1 = self.read_file()?;
                cache.0 = mtime;
            }
            cache.1.get(username).cloned()
        };
        Ok(hash)
    }
}

/// ACL templates bound to one device.
#[derive(Debug, Clone)]
pub struct Acl {
    publish: Vec<String>,
    subscribe: Vec<String>,
}

fn fill(template: &str, client_id: &str, username: &str) -> Option<String> {
    let unsafe_id = |s: &str| s.contains(['/', '+', '#']) || s.is_empty();
    if template.contains("{client_id}") && unsafe_id(client_id) {
        return None;
    }
    if template.contains("{username}") && unsafe_id(username) {
        return None;
    }
    Some(
        template
            .replace("{client_id}", client_id)
            .replace("{username}", username),
    )
}

impl Acl {
    /// The ACL of a device from the configured templates.
    pub fn for_device(cfg: &AuthConfig, client_id: &str, username: &str) -> Acl {
        let bind = |ts: &[String]| -> Vec<String> {
            ts.iter()
                .filter_map(|t| fill(t, client_id, username))
                .collect()
        };
        Acl {
            publish: bind(&cfg.publish),
            subscribe: bind(&cfg.subscribe),
        }
    }

    /// May the device publish to `topic`?
    pub fn may_publish(&self, topic_name: &str) -> bool {
        self.publish.iter().any(|f| topic::matches(f, topic_name))
    }

    /// May the device subscribe to `filter`?
    pub fn may_subscribe(&self, filter: &str) -> bool {
        self.subscribe.iter().any(|f| topic::covers(f, filter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_add_verify_remove() {
        let dir = tempfile::tempdir().unwrap();
        let store = CredentialStore::new(dir.path().join("creds"));
        store.add("d1", "secret").unwrap();
        store.add("d2", "other").unwrap();
        assert_eq!(store.list().unwrap(), vec!["d1", "d2"]);
        assert!(store.verify("d1", b"secret").unwrap());
        assert!(!store.verify("d1", b"wrong").unwrap());
        assert!(!store.verify("nobody", b"secret").unwrap());
        let text = std::fs::read_to_string(store.path()).unwrap();
        assert!(!text.contains("secret") && text.contains("$argon2id$"));
        assert!(text.contains(":SCRAM-SHA-256$4096:"), "{text}");
        let scram = store.scram("d1").unwrap().expect("SCRAM verifier");
        assert!(scram.verify_password(ScramMechanism::Sha256, b"secret"));
        assert!(!scram.verify_password(ScramMechanism::Sha256, b"wrong"));
        // A line from before verifiers were stored still verifies its password.
        let old = dir.path().join("old");
        std::fs::write(&old, format!("d3:{}\n", hash_password("pw").unwrap())).unwrap();
        let old = CredentialStore::new(old);
        assert!(old.verify("d3", b"pw").unwrap());
        assert!(old.scram("d3").unwrap().is_none());
        store.remove("d1").unwrap();
        assert!(!store.verify("d1", b"secret").unwrap());
        assert!(store.remove("d1").is_err());
        assert!(store.add("bad:name", "x").is_err());
    }

    #[test]
    fn acl_templates() {
        let acl = Acl::for_device(&AuthConfig::default(), "d1", "d1");
        assert!(acl.may_publish("devices/d1/telemetry"));
        assert!(!acl.may_publish("devices/d2/telemetry"));
        assert!(acl.may_subscribe("commands/d1/#"));
        assert!(!acl.may_subscribe("commands/#"));
        let sneaky = Acl::for_device(&AuthConfig::default(), "+", "x");
        assert!(!sneaky.may_publish("devices/anything/x"));
    }
}
