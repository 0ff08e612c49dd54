//! `meta.properties`: what `rill cluster format` writes into a node's data directory (after
//! Kafka's file of the same name): the cluster id, the node id, a random directory id, and the
//! initial voters of the controller quorum.
//!
//! ```text
//! # Written by `rill cluster format`. Do not edit.
//! version=1
//! cluster.id=MkU3OEVBNTcwNTJENDM2Qk
//! node.id=1
//! directory.id=J8aAPcfLQt2bqs1JT_rMgQ
//! initial.voters=1@10.0.0.1:9093,2@10.0.0.2:9093,3@10.0.0.3:9093
//! ```
//!
//! Ids are printed as Kafka prints a `Uuid`: the 16 bytes in URL-safe base64 without padding (22
//! characters). A cluster id is any 1-64 character `[A-Za-z0-9_-]` string, compared as is.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use uuid::Uuid;

/// File name inside the data directory.
pub const META_PROPERTIES_FILE: &str = "meta.properties";

/// The version of the file's layout this build writes and reads.
pub const META_PROPERTIES_VERSION: u32 = 1;

/// The longest cluster id accepted.
pub const MAX_CLUSTER_ID_LEN: usize = 64;

/// Errors of `meta.properties` handling.
#[derive(Debug, thiserror::Error)]
pub enum MetaPropertiesError {
    /// The cluster id is empty, too long or has a character outside `[A-Za-z0-9_-]`.
    #[error(
        "cluster id {0:?} is invalid: it must be 1-64 characters of A-Z, a-z, 0-9, '_' and '-'"
    )]
    InvalidClusterId(String),
    /// A node id is negative.
    #[error("node id {0} is invalid: node ids are non-negative")]
    InvalidNodeId(i64),
    /// The voter list does not parse.
    #[error("voters {input:?}: {reason} (expected ID@HOST:PORT[,ID@HOST:PORT...])")]
    InvalidVoters { input: String, reason: String },
    /// The data directory is already formatted.
    #[error(
        "{path} already exists (cluster id {cluster_id}, node id {node_id}): this data directory \
         is formatted; use another directory or remove it to start over"
    )]
    AlreadyFormatted {
        path: PathBuf,
        cluster_id: String,
        node_id: i32,
    },
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The file exists but does not parse.
    #[error("{path}: {reason}")]
    Malformed { path: PathBuf, reason: String },
}

/// One initial voter of the controller quorum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialVoter {
    pub node_id: i32,
    pub host: String,
    pub port: u16,
}

impl fmt::Display for InitialVoter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}@[{}]:{}", self.node_id, self.host, self.port)
        } else {
            write!(f, "{}@{}:{}", self.node_id, self.host, self.port)
        }
    }
}

/// The contents of `meta.properties`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaProperties {
    pub cluster_id: String,
    pub node_id: i32,
    /// Random per format: tells a re-formatted node from the one it replaces.
    pub directory_id: Uuid,
    pub initial_voters: Vec<InitialVoter>,
}

/// Checks a cluster id (see the module doc).
pub fn validate_cluster_id(id: &str) -> Result<(), MetaPropertiesError> {
    let ok = (1..=MAX_CLUSTER_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(MetaPropertiesError::InvalidClusterId(id.to_string()))
    }
}

/// Checks a node id (non-negative, fits Kafka's int32).
pub fn validate_node_id(id: i64) -> Result<i32, MetaPropertiesError> {
    i32::try_from(id)
        .ok()
        .filter(|n| *n >= 0)
        .ok_or(MetaPropertiesError::InvalidNodeId(id))
}

/// A UUID as Kafka prints one: URL-safe base64 of its 16 bytes, no padding.
pub fn kafka_uuid_string(id: &Uuid) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.as_bytes())
}

/// Parses [`kafka_uuid_string`]'s form.
pub fn parse_kafka_uuid(s: &str) -> Option<Uuid> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .ok()?;
    Uuid::from_slice(&bytes).ok()
}

/// A random id in Kafka's form (what `kafka-storage.sh random-uuid` prints). Like Kafka, never
/// one starting with `-`, which a command line would take for an option.
pub fn random_id() -> String {
    loop {
        let s = kafka_uuid_string(&Uuid::new_v4());
        if !s.starts_with('-') {
            return s;
        }
    }
}

/// Parses `ID@HOST:PORT[,ID@HOST:PORT...]` (IPv6 hosts in brackets). Ids must be unique.
pub fn parse_voters(input: &str) -> Result<Vec<InitialVoter>, MetaPropertiesError> {
    let bad = |reason: String| MetaPropertiesError::InvalidVoters {
        input: input.to_string(),
        reason,
    };
    let mut voters: Vec<InitialVoter> = Vec::new();
    for item in input.split(',').map(str::trim) {
        if item.is_empty() {
            return Err(bad("empty entry".into()));
        }
        let (id, addr) = item
            .split_once('@')
            .ok_or_else(|| bad(format!("{item:?} has no '@'")))?;
        let node_id = id
            .parse::<i64>()
            .ok()
            .and_then(|n| validate_node_id(n).ok())
            .ok_or_else(|| bad(format!("{id:?} is not a node id")))?;
        let (host, port) = addr
            .rsplit_once(':')
            .ok_or_else(|| bad(format!("{addr:?} has no port")))?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty() {
            return Err(bad(format!("{item:?} has no host")));
        }
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| bad(format!("{port:?} is not a port")))?;
        if voters.iter().any(|v| v.node_id == node_id) {
            return Err(bad(format!("node id {node_id} appears twice")));
        }
        voters.push(InitialVoter {
            node_id,
            host: host.to_string(),
            port,
        });
    }
    Ok(voters)
}

impl MetaProperties {
    /// The file's text.
    pub fn to_text(&self) -> String {
        let voters: Vec<String> = self
            .initial_voters
            .iter()
            .map(ToString::to_string)
            .collect();
        format!(
            "# Written by `rill cluster format`. Do not edit.\n\
             version={META_PROPERTIES_VERSION}\n\
             cluster.id={}\n\
             node.id={}\n\
             directory.id={}\n\
             initial.voters={}\n",
            self.cluster_id,
            self.node_id,
            kafka_uuid_string(&self.directory_id),
            voters.join(",")
        )
    }

    /// Parses the file's text (`path` names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<MetaProperties, MetaPropertiesError> {
        let bad = |reason: String| MetaPropertiesError::Malformed {
            path: path.to_path_buf(),
            reason,
        };
        let mut version = None;
        let (mut cluster_id, mut node_id, mut directory_id, mut voters) = (None, None, None, None);
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| bad(format!("line {line:?} is not key=value")))?;
            match k.trim() {
                "version" => version = Some(v.trim().to_string()),
                "cluster.id" => cluster_id = Some(v.trim().to_string()),
                "node.id" => node_id = Some(v.trim().to_string()),
                "directory.id" => directory_id = Some(v.trim().to_string()),
                "initial.voters" => voters = Some(v.trim().to_string()),
                _ => {} // Unknown keys are kept by no one but tolerated, as Kafka does.
            }
        }
        let need = |v: Option<String>, k: &str| v.ok_or_else(|| bad(format!("{k} is missing")));
        let version = need(version, "version")?;
        if version.parse::<u32>().ok() != Some(META_PROPERTIES_VERSION) {
            return Err(bad(format!(
                "version {version} is not {META_PROPERTIES_VERSION}, the one this build reads"
            )));
        }
        let cluster_id = need(cluster_id, "cluster.id")?;
        validate_cluster_id(&cluster_id).map_err(|e| bad(e.to_string()))?;
        let node_id = need(node_id, "node.id")?;
        let node_id = node_id
            .parse::<i64>()
            .ok()
            .and_then(|n| validate_node_id(n).ok())
            .ok_or_else(|| bad(format!("node.id {node_id:?} is invalid")))?;
        let directory_id = need(directory_id, "directory.id")?;
        let directory_id = parse_kafka_uuid(&directory_id)
            .ok_or_else(|| bad(format!("directory.id {directory_id:?} is invalid")))?;
        let initial_voters =
            parse_voters(&need(voters, "initial.voters")?).map_err(|e| bad(e.to_string()))?;
        Ok(MetaProperties {
            cluster_id,
            node_id,
            directory_id,
            initial_voters,
        })
    }

    /// Reads `<data_dir>/meta.properties`; `None` if the directory is not formatted.
    pub fn read(data_dir: &Path) -> Result<Option<MetaProperties>, MetaPropertiesError> {
        let path = data_dir.join(META_PROPERTIES_FILE);
        match fs::read_to_string(&path) {
            Ok(text) => Self::parse(&text, &path).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(MetaPropertiesError::Io { path, source }),
        }
    }

    /// Formats `data_dir` (created if missing): writes the file atomically and durably, refusing
    /// a directory that is already formatted.
    pub fn write_new(&self, data_dir: &Path) -> Result<PathBuf, MetaPropertiesError> {
        let path = data_dir.join(META_PROPERTIES_FILE);
        let io_err = |source| MetaPropertiesError::Io {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(data_dir).map_err(io_err)?;
        if let Some(existing) = Self::read(data_dir)? {
            return Err(MetaPropertiesError::AlreadyFormatted {
                path,
                cluster_id: existing.cluster_id,
                node_id: existing.node_id,
            });
        }
        let tmp = data_dir.join(format!("{META_PROPERTIES_FILE}.tmp"));
        let mut f = File::create(&tmp).map_err(io_err)?;
        f.write_all(self.to_text().as_bytes()).map_err(io_err)?;
        f.sync_all().map_err(io_err)?;
        drop(f);
        // hard_link fails if the file appeared meanwhile (another format racing this one).
        fs::hard_link(&tmp, &path).map_err(io_err)?;
        fs::remove_file(&tmp).map_err(io_err)?;
        File::open(data_dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err)?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_are_1_to_64_safe_characters() {
        for ok in [
            "a",
            "MkU3OEVBNTcwNTJENDM2Qk",
            "edge_central-1",
            &"x".repeat(64),
        ] {
            validate_cluster_id(ok).unwrap();
        }
        for bad in ["", &"x".repeat(65), "a b", "a/b", "é", "a.b"] {
            assert!(validate_cluster_id(bad).is_err(), "{bad:?}");
        }
        let id = random_id();
        assert_eq!(id.len(), 22);
        assert!(!id.starts_with('-'));
        validate_cluster_id(&id).unwrap();
    }

    #[test]
    fn voters_parse_with_ipv6_and_reject_duplicates_and_garbage() {
        let v = parse_voters("1@10.0.0.1:9093, 2@[::1]:9094,3@node-3:9095").unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(v[1].host, "::1");
        assert_eq!(v[1].to_string(), "2@[::1]:9094");
        for bad in [
            "",
            "1@a:1,",
            "x@a:1",
            "-1@a:1",
            "1@a",
            "1@a:0",
            "1@a:99999",
            "1@:1",
            "1@a:1,1@b:2",
            "1a:1",
        ] {
            assert!(parse_voters(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_file_round_trips_and_a_second_format_is_refused() {
        let dir = tempfile::TempDir::new().unwrap();
        let data = dir.path().join("node1");
        let props = MetaProperties {
            cluster_id: "c-1".into(),
            node_id: 1,
            directory_id: Uuid::new_v4(),
            initial_voters: parse_voters("1@127.0.0.1:9093,2@127.0.0.2:9093").unwrap(),
        };
        assert_eq!(MetaProperties::read(&data).unwrap(), None);
        props.write_new(&data).unwrap();
        assert_eq!(MetaProperties::read(&data).unwrap(), Some(props.clone()));
        let again = MetaProperties {
            directory_id: Uuid::new_v4(),
            ..props.clone()
        };
        assert!(matches!(
            again.write_new(&data),
            Err(MetaPropertiesError::AlreadyFormatted { node_id: 1, .. })
        ));
        assert_eq!(MetaProperties::read(&data).unwrap(), Some(props));
        fs::write(data.join(META_PROPERTIES_FILE), "version=1\ncluster.id=c\n").unwrap();
        assert!(matches!(
            MetaProperties::read(&data),
            Err(MetaPropertiesError::Malformed { .. })
        ));
    }
}
