//! `rill device add|list|remove`: MQTT device credentials (argon2id hashes, and SCRAM-SHA-256
//! verifiers for MQTT 5 enhanced authentication, in the node's credential file, `<data_dir>/mqtt-credentials` unless `[mqtt.auth] credentials_file` says
//! otherwise). A running node picks changes up on the next CONNECT.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::config::FileConfig;
use crate::mqtt::auth::CredentialStore;

/// Where the credential file is.
#[derive(clap::Args, Debug, Clone)]
pub struct StoreArgs {
    /// The node's config file (for `[node] data_dir` and `[mqtt.auth] credentials_file`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The node's data directory.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The credential file itself.
    #[arg(long)]
    pub credentials_file: Option<PathBuf>,
}

/// `rill device ...`
#[derive(clap::Args, Debug)]
pub struct DeviceArgs {
    #[command(subcommand)]
    pub command: DeviceCommand,
}

/// The device subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum DeviceCommand {
    /// Add a device (or set its password). The password comes from --password or the first line
    /// of standard input.
    Add {
        /// Username (usually the device's client id).
        name: String,
        /// The password (prefer standard input: command lines are visible to other users).
        #[arg(long, env = "RILL_DEVICE_PASSWORD")]
        password: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List devices.
    List {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Remove a device.
    Remove {
        /// Username.
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

fn store(args: &StoreArgs) -> anyhow::Result<CredentialStore> {
    if let Some(path) = &args.credentials_file {
        return Ok(CredentialStore::new(path.clone()));
    }
    let file = match &args.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    if let Some(path) = &file.mqtt.auth.credentials_file {
        return Ok(CredentialStore::new(path.clone()));
    }
    let data_dir = args
        .data_dir
        .clone()
        .or(file.node.data_dir)
        .unwrap_or_else(|| PathBuf::from("./rill-data"));
    Ok(CredentialStore::new(crate::mqtt::default_credentials_file(
        &data_dir,
    )))
}

/// Runs a device command.
pub fn run(args: DeviceArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        DeviceCommand::Add {
            name,
            password,
            store: s,
        } => {
            let password = match password {
                Some(p) => p,
                None => {
                    let mut line = String::new();
                    std::io::stdin()
                        .lock()
                        .read_line(&mut line)
                        .context("reading the password from standard input")?;
                    line.trim_end_matches(['\r', '\n']).to_string()
                }
            };
            anyhow::ensure!(!password.is_empty(), "empty password");
            let st = store(&s)?;
            st.add(&name, &password)?;
            println!("device {name} added to {}", st.path().display());
        }
        DeviceCommand::List { json, store: s } => {
            let names = store(&s)?.list()?;
            if json {
                println!("{}", serde_json::to_string(&names)?);
            } else {
                for n in names {
                    println!("{n}");
                }
            }
        }
        DeviceCommand::Remove { name, store: s } => {
            let st = store(&s)?;
            st.remove(&name)?;
            println!("device {name} removed from {}", st.path().display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
