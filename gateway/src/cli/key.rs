//! `rill key rotate|retire`: master key rotation on a stopped node's data directory
//! (`rill_core::key_rotation`; procedure in `docs/security.md`). Local file operations, not Kafka
//! protocol. A running node holds the metadata database's lock, so stop it first.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use rill_core::crypto::MasterKey;
use rill_core::key_rotation::{self, RotateOutcome};
use rill_core::keyring::{self, KeySource};
use rill_core::metadata::META_FILE;

use super::user::DataDirArgs;
use crate::config::FileConfig;

/// `rill key ...`
#[derive(clap::Args, Debug)]
pub struct KeyArgs {
    #[command(subcommand)]
    pub command: KeyCommand,
}

/// The key subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum KeyCommand {
    /// Re-wrap every data key (segment key sidecars, the metadata data key) under a new master
    /// key. Afterwards both keys open the data until the old one is retired.
    Rotate {
        /// The current master key file.
        #[arg(long, value_name = "OLD")]
        key_file: PathBuf,
        /// The new master key file (32 raw bytes or 64 hex characters, mode 0600).
        #[arg(long, value_name = "NEW")]
        new_key_file: PathBuf,
        #[command(flatten)]
        store: DataDirArgs,
    },
    /// Stop accepting the previous master key of the last rotation.
    Retire {
        /// The previous master key file.
        #[arg(long, value_name = "OLD")]
        key_file: PathBuf,
        #[command(flatten)]
        store: DataDirArgs,
    },
}

fn data_dir(args: &DataDirArgs) -> anyhow::Result<PathBuf> {
    let file = match &args.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let dir = args
        .data_dir
        .clone()
        .or(file.node.data_dir)
        .unwrap_or_else(|| PathBuf::from("./rill-data"));
    anyhow::ensure!(
        dir.join(META_FILE).exists(),
        "{} is not a Rill data directory (no {META_FILE}); pass --data-dir",
        dir.display()
    );
    Ok(dir)
}

fn load(path: &Path, data_dir: &Path) -> anyhow::Result<MasterKey> {
    anyhow::ensure!(path.exists(), "key file {} does not exist", path.display());
    Ok(keyring::load_key(&KeySource::File(path.to_path_buf()), data_dir)?.master_key())
}

fn locked(e: key_rotation::KeyRotationError) -> anyhow::Error {
    match e {
        key_rotation::KeyRotationError::Metadata(m) => {
            anyhow::anyhow!("{m} (is the node running? stop it first)")
        }
        e => e.into(),
    }
}

/// Runs a key command.
pub fn run(args: KeyArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        KeyCommand::Rotate {
            key_file,
            new_key_file,
            store,
        } => {
            let dir = data_dir(&store)?;
            let old = load(&key_file, &dir)?;
            let new = load(&new_key_file, &dir)?;
            match key_rotation::rotate(&dir, &old, &new).map_err(locked)? {
                RotateOutcome::Rotated { rewrapped, damaged } => {
                    println!(
                        "{}: rotated from master key {} to {}: {rewrapped} segment key(s) and the \
                         metadata data key re-wrapped{}; both keys open the data until \
                         `rill key retire --key-file {}`",
                        dir.display(),
                        old.id_hex(),
                        new.id_hex(),
                        if damaged > 0 {
                            format!(", {damaged} damaged key file(s) left as they were")
                        } else {
                            String::new()
                        },
                        key_file.display()
                    );
                }
                RotateOutcome::AlreadyRotated => println!(
                    "{}: already rotated from master key {} to {}",
                    dir.display(),
                    old.id_hex(),
                    new.id_hex()
                ),
            }
        }
        KeyCommand::Retire { key_file, store } => {
            let dir = data_dir(&store)?;
            let old = load(&key_file, &dir)?;
            key_rotation::retire(&dir, &old).map_err(locked)?;
            println!(
                "{}: master key {} retired; it no longer opens the data",
                dir.display(),
                old.id_hex()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
