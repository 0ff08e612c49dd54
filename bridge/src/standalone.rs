//! `rill bridge --config FILE`: run the configured mirrors outside a serving node, reading the
//! (stopped) node's data directory directly, e.g. to drain a backlog from a node that no longer
//! serves clients. Inside a running node use `rill serve --bridge-config FILE` instead.

use std::sync::Arc;

use rill_core::broker::{Broker, BrokerConfig, KeySource};
use rill_core::group::RedbOffsetStore;
use tokio_util::sync::CancellationToken;

use crate::config::{BridgeConfig, ConfigError};
use crate::mirror::{Bridge, Mirror};

/// Errors starting a standalone bridge.
#[derive(Debug, thiserror::Error)]
pub enum StandaloneError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The data directory could not be opened (is the node still running?).
    #[error("cannot open the node's data directory: {0}")]
    Broker(String),
}

/// Open the data directory named in `cfg` and run its mirrors until `shutdown`.
pub async fn run(cfg: BridgeConfig, shutdown: CancellationToken) -> Result<(), StandaloneError> {
    let data_dir = cfg
        .data_dir
        .clone()
        .unwrap_or_else(|| std::path::PathBuf::from("./rill-data"));
    let key = match std::env::var("RILL_MASTER_KEY") {
        Ok(k) if !k.is_empty() => KeySource::Env(k),
        _ => KeySource::File(
            cfg.key_file
                .clone()
                .unwrap_or_else(|| std::path::PathBuf::from("./rill-master.key")),
        ),
    };
    let mut mirrors = Vec::new();
    for m in cfg.mirror {
        mirrors.push(Mirror::new(m)?);
    }
    let broker: Arc<Broker> = tokio::task::spawn_blocking(move || {
        Broker::open(BrokerConfig::new(data_dir, key)).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| StandaloneError::Broker(e.to_string()))?
    .map_err(StandaloneError::Broker)?;
    let node_name = cfg.node_name.unwrap_or_else(|| "rill".to_string());
    let mut bridge = Bridge::new(broker.clone(), node_name, mirrors, shutdown);
    // Nobody commits on a stopped node: the offsets as they were are checkpointed once mirrored.
    match RedbOffsetStore::open(broker.metadata_handle()) {
        Ok(store) => bridge = bridge.with_group_offsets(Arc::new(store)),
        Err(e) => tracing::warn!(error = %e, "consumer group offsets unreadable; no checkpoints"),
    }
    bridge.run().await;
    let _ = tokio::task::spawn_blocking(move || broker.shutdown()).await;
    Ok(())
}
