//! `rill user add|list|delete`: SASL users of the Kafka listener, i.e. SCRAM credentials in a
//! stopped node's metadata database (`<data_dir>/meta.redb`, see `docs/security.md`). A running
//! node holds the database's lock, so stop it first; it loads the users when it starts. On a
//! running node, Kafka's AlterUserScramCredentials does the same (`kafka-configs.sh`, AdminClient).
//! A cluster member's users are the cluster's: these commands refuse its data directory.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use rill_core::credentials::CredentialStore;
use rill_core::metadata::{MetaStore, META_FILE};
use rill_core::scram::{ScramCredential, ScramMechanism, MAX_ITERATIONS, MIN_ITERATIONS};

use crate::config::FileConfig;

/// Where the node's data is.
#[derive(clap::Args, Debug, Clone)]
pub struct DataDirArgs {
    /// The node's config file (for `[node] data_dir`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The node's data directory [default: ./rill-data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// `rill user ...`
#[derive(clap::Args, Debug)]
pub struct UserArgs {
    #[command(subcommand)]
    pub command: UserCommand,
}

/// The user subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum UserCommand {
    /// Add a user or set its password (SCRAM credentials; PLAIN checks against them).
    Add {
        /// User name.
        name: String,
        /// The password (prefer --password-stdin: command lines are visible to other users).
        #[arg(long, env = "RILL_USER_PASSWORD", conflicts_with = "password_stdin")]
        password: Option<String>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// SCRAM mechanisms to store credentials for [default: SCRAM-SHA-256 and SCRAM-SHA-512].
        #[arg(long = "mechanism", value_name = "MECHANISM")]
        mechanisms: Vec<String>,
        /// PBKDF2 iterations (Kafka's bounds: 4096 to 16384).
        #[arg(long, default_value_t = 8192)]
        iterations: u32,
        #[command(flatten)]
        store: DataDirArgs,
    },
    /// List users and their SCRAM mechanisms.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: DataDirArgs,
    },
    /// Delete a user (or only its credential for one mechanism).
    Delete {
        /// User name.
        name: String,
        /// Delete only this mechanism's credential.
        #[arg(long = "mechanism", value_name = "MECHANISM")]
        mechanism: Option<String>,
        #[command(flatten)]
        store: DataDirArgs,
    },
}

fn open(args: &DataDirArgs) -> anyhow::Result<CredentialStore> {
    let file = match &args.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let data_dir = args
        .data_dir
        .clone()
        .or(file.node.data_dir)
        .unwrap_or_else(|| PathBuf::from("./rill-data"));
    anyhow::ensure!(
        !data_dir
            .join(rill_core::controller::meta_properties::META_PROPERTIES_FILE)
            .exists(),
        "{} belongs to a cluster member: its users are the cluster's, kept by the controller. \
         Create the first ones with `rill cluster format ... --add-scram \
         'SCRAM-SHA-512=[name=NAME,password=PASSWORD]'`; change them on a running cluster with \
         AlterUserScramCredentials (kafka-configs.sh --alter --entity-type users, or an \
         AdminClient's alter_user_scram_credentials) and list them with \
         DescribeUserScramCredentials",
        data_dir.display()
    );
    anyhow::ensure!(
        data_dir.join(META_FILE).exists(),
        "{} is not a Rill data directory (no {META_FILE}); start the node once to create it, \
         or pass --data-dir",
        data_dir.display()
    );
    let meta = MetaStore::open(&data_dir).map_err(|e| {
        anyhow::anyhow!("{e} (is the node running? stop it first: users are changed offline)")
    })?;
    Ok(CredentialStore::open(Arc::new(meta))?)
}

fn mechanism(name: &str) -> anyhow::Result<ScramMechanism> {
    ScramMechanism::from_name(name).with_context(|| {
        format!("unknown SCRAM mechanism {name:?} (SCRAM-SHA-256 or SCRAM-SHA-512)")
    })
}

/// Runs a user command.
pub fn run(args: UserArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        UserCommand::Add {
            name,
            password,
            password_stdin,
            mechanisms,
            iterations,
            store,
        } => {
            anyhow::ensure!(
                (MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations),
                "--iterations must be between {MIN_ITERATIONS} and {MAX_ITERATIONS}"
            );
            let mechanisms = if mechanisms.is_empty() {
                vec![ScramMechanism::Sha256, ScramMechanism::Sha512]
            } else {
                mechanisms
                    .iter()
                    .map(|m| mechanism(m))
                    .collect::<anyhow::Result<_>>()?
            };
            let password = match (password, password_stdin) {
                (Some(p), false) => p,
                (None, true) => {
                    let mut line = String::new();
                    std::io::stdin()
                        .lock()
                        .read_line(&mut line)
                        .context("reading the password from standard input")?;
                    line.trim_end_matches(['\r', '\n']).to_string()
                }
                _ => anyhow::bail!("give the password with --password-stdin or --password"),
            };
            anyhow::ensure!(!password.is_empty(), "empty password");
            rill_core::credentials::check_user_name(&name)?;
            let st = open(&store)?;
            for m in &mechanisms {
                let c = ScramCredential::generate(*m, password.as_bytes(), iterations)?;
                st.upsert(&name, *m, c)?;
            }
            let names: Vec<&str> = mechanisms.iter().map(|m| m.name()).collect();
            println!("user {name} set ({})", names.join(", "));
        }
        UserCommand::List { json, store } => {
            let users = open(&store)?.list();
            if json {
                let out: Vec<serde_json::Value> = users
                    .iter()
                    .map(|(u, ms)| {
                        serde_json::json!({
                            "name": u,
                            "credentials": ms.iter().map(|(m, i)| serde_json::json!({
                                "mechanism": m.name(),
                                "iterations": i,
                            })).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string(&out)?);
            } else {
                for (u, ms) in users {
                    let ms: Vec<String> = ms
                        .iter()
                        .map(|(m, i)| format!("{}(iterations={i})", m.name()))
                        .collect();
                    println!("{u}\t{}", ms.join(" "));
                }
            }
        }
        UserCommand::Delete {
            name,
            mechanism: m,
            store,
        } => {
            let m = m.as_deref().map(mechanism).transpose()?;
            let removed = open(&store)?.delete(&name, m)?;
            anyhow::ensure!(removed > 0, "no such user {name:?}");
            println!("user {name}: {removed} credential(s) deleted");
        }
    }
    Ok(ExitCode::SUCCESS)
}
