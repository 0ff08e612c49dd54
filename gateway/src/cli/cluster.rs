//! `rill cluster format|random-id|status`: preparing a node's data directory for a cluster
//! (Kafka's `kafka-storage.sh format` and `random-uuid`; local file operations, not Kafka
//! protocol; the file written is described in `rill_core::controller::meta_properties`), and the
//! cluster's health over the Kafka protocol ([`super::cluster_status`]).

use std::path::PathBuf;
use std::process::ExitCode;

use rill_core::controller::bootstrap_metadata::BootstrapMetadata;
use rill_core::controller::meta_properties::{
    kafka_uuid_string, parse_voters, random_id, validate_cluster_id, validate_node_id,
    MetaProperties,
};
use uuid::Uuid;

/// `rill cluster ...`
#[derive(clap::Args, Debug)]
pub struct ClusterArgs {
    #[command(subcommand)]
    pub command: ClusterCommand,
}

/// The cluster subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum ClusterCommand {
    /// Prepare a data directory for a cluster: writes meta.properties with the cluster id, the
    /// node id, a random directory id and the initial voters.
    Format {
        /// The node's data directory (created if missing; refused if already formatted).
        #[arg(long)]
        data_dir: PathBuf,
        /// This node's id (non-negative).
        #[arg(long)]
        node_id: i64,
        /// The cluster's id: 1-64 characters of A-Z, a-z, 0-9, '_' and '-' (see `random-id`).
        #[arg(long)]
        cluster_id: String,
        /// The controller quorum's initial voters, ID@HOST:PORT[,ID@HOST:PORT...] (their cluster
        /// listeners); every node of the cluster is formatted with the same list.
        #[arg(long)]
        voters: String,
        /// A first SCRAM user, in Kafka's syntax (KIP-900):
        /// 'SCRAM-SHA-512=[name=admin,password=SECRET]' (optionally `iterations=N`, default
        /// 4096); repeatable. Created with the cluster by the first active controller, so give
        /// every voter the same flags.
        #[arg(long = "add-scram", value_name = "MECHANISM=[name=N,password=P]")]
        add_scram: Vec<String>,
    },
    /// Print a random cluster id in Kafka's form (22 characters).
    RandomId,
    /// Show the cluster's health: the active controller, voters and observers with their lag,
    /// brokers and their state, under-replicated and offline partitions.
    Status(super::cluster_status::StatusArgs),
}

/// Runs a cluster subcommand.
pub async fn run(args: ClusterArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ClusterCommand::Status(a) => super::cluster_status::run(a).await,
        ClusterCommand::Format {
            data_dir,
            node_id,
            cluster_id,
            voters,
            add_scram,
        } => {
            validate_cluster_id(&cluster_id)?;
            let node_id = validate_node_id(node_id)?;
            let initial_voters = parse_voters(&voters)?;
            let mut bootstrap = BootstrapMetadata::default();
            for user in &add_scram {
                bootstrap.add_scram(user)?;
            }
            let props = MetaProperties {
                cluster_id,
                node_id,
                directory_id: Uuid::new_v4(),
                initial_voters,
            };
            // Before meta.properties, the file that makes the directory formatted (a formatted
            // directory keeps its own: write_new refuses it below).
            if !bootstrap.scram_credentials.is_empty() && MetaProperties::read(&data_dir)?.is_none()
            {
                bootstrap.write(&data_dir)?;
            }
            let path = props.write_new(&data_dir)?;
            println!(
                "Formatted {}: cluster id {}, node id {}, directory id {}, {} initial voter(s)",
                path.display(),
                props.cluster_id,
                props.node_id,
                kafka_uuid_string(&props.directory_id),
                props.initial_voters.len()
            );
            for u in &bootstrap.scram_credentials {
                println!(
                    "First user {} ({}): created when the cluster is bootstrapped",
                    u.user,
                    u.mechanism.name()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ClusterCommand::RandomId => {
            println!("{}", random_id());
            Ok(ExitCode::SUCCESS)
        }
    }
}
