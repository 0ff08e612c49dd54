//! The Kafka-protocol client commands for people, in the spirit of kcat and rpk:
//! `rill topic create|list|describe|alter|delete|add-partitions`, `rill produce`, `rill consume`,
//! `rill group list|describe|delete|reset-offsets`; plus `rill device` (local MQTT credentials)
//! and `rill user` (SASL users of the Kafka listener, in a stopped node's data directory).
//!
//! They speak only the Kafka protocol (through `rill-client`), with TLS and SASL when asked
//! ([`ConnectArgs`]), so they work against a Rill node and against any Kafka cluster. Output is
//! a human table by default and JSON with `--json`; errors name the Kafka error code
//! (`UNKNOWN_TOPIC_OR_PARTITION`) and exit non-zero.
//!
//! - [`topic`]: the `topic` subcommands (admin APIs),
//! - [`produce`]: `produce` (stdin lines to record batches),
//! - [`consume`]: `consume` (fetch loop, start positions, exit conditions),
//! - [`partitioner`]: murmur2 keyed and sticky partitioning, like Kafka's producer,
//! - [`format`]: kcat-style format strings and the JSON form of records,
//! - [`timestamp`]: parsing `--from-time`,
//! - [`table`]: aligned human-readable tables,
//! - [`group`]: the `group` subcommands (consumer groups, lag, offset resets),
//! - [`device`]: `rill device add|list|remove` (MQTT credentials; local, not Kafka protocol),
//! - [`acl`]: `rill acl add|list|remove` (Kafka ACLs through CreateAcls, DescribeAcls,
//!   DeleteAcls),
//! - [`bridge`]: `rill bridge status` (the node's admin HTTP API, not Kafka protocol),
//! - [`user`]: `rill user add|list|delete` (SASL/SCRAM users; local, not Kafka protocol),
//! - [`key`]: `rill key rotate|retire` (master key rotation; local, not Kafka protocol),
//! - [`cluster`]: `rill cluster format|random-id` (prepares a data directory for a cluster node;
//!   local, not Kafka protocol) and `rill cluster status` ([`cluster_status`]: the cluster's
//!   health through DescribeQuorum, DescribeCluster and Metadata).

pub mod acl;
pub mod bridge;
pub mod cluster;
pub mod cluster_status;
pub mod consume;
pub mod device;
pub mod format;
pub mod group;
pub mod key;
pub mod partitioner;
pub mod produce;
pub mod table;
pub mod timestamp;
pub mod topic;
pub mod user;

use std::process::ExitCode;

use rill_client::properties::ConnectionSettings;
use rill_client::{Client, ConnectOptions};

/// How every Kafka-protocol command connects: the bootstrap brokers, TLS and SASL, as flags
/// (each also from an environment variable), kcat's `-X key=value` and `-F FILE` with librdkafka
/// property names (or the bridge's `[[mirror]]` key names). Flags win over `-X`, `-X` over `-F`.
#[derive(clap::Args, Debug, Clone)]
pub struct ConnectArgs {
    /// Bootstrap broker address(es), HOST:PORT[,HOST:PORT...] [default: 127.0.0.1:9092].
    #[arg(short = 'b', long = "brokers", env = "RILL_BROKERS", global = true)]
    pub brokers: Option<String>,
    /// Connect with TLS (security.protocol SSL, or SASL_SSL with --sasl-mechanism).
    #[arg(long, env = "RILL_TLS", global = true)]
    pub tls: bool,
    /// PEM file of the CA certificates to trust (default: the system's roots).
    #[arg(long, env = "RILL_TLS_CA_FILE", value_name = "FILE", global = true)]
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// Name to verify the server's certificate against (default: the host of the address).
    #[arg(long, env = "RILL_TLS_SERVER_NAME", value_name = "NAME", global = true)]
    pub tls_server_name: Option<String>,
    /// PEM client certificate chain, for listeners that ask for one (with --tls-key-file).
    #[arg(long, env = "RILL_TLS_CERT_FILE", value_name = "FILE", global = true)]
    pub tls_cert_file: Option<std::path::PathBuf>,
    /// PEM private key of the client certificate.
    #[arg(long, env = "RILL_TLS_KEY_FILE", value_name = "FILE", global = true)]
    pub tls_key_file: Option<std::path::PathBuf>,
    /// SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    #[arg(long, env = "RILL_SASL_MECHANISM", value_name = "MECHANISM", global = true,
        value_parser = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])]
    pub sasl_mechanism: Option<String>,
    /// SASL user name.
    #[arg(long, env = "RILL_SASL_USERNAME", value_name = "USER", global = true)]
    pub sasl_username: Option<String>,
    /// Name of the environment variable holding the SASL password.
    #[arg(
        long,
        env = "RILL_SASL_PASSWORD_ENV",
        value_name = "VAR",
        global = true
    )]
    pub sasl_password_env: Option<String>,
    /// A librdkafka property, kcat style (repeatable): security.protocol, ssl.ca.location,
    /// ssl.certificate.location, ssl.key.location, sasl.mechanism, sasl.username,
    /// sasl.password, bootstrap.servers, client.id.
    #[arg(short = 'X', value_name = "KEY=VALUE", value_parser = parse_key_value, global = true)]
    pub properties: Vec<(String, String)>,
    /// A file of librdkafka properties (key=value lines, # comments), kcat style.
    #[arg(
        short = 'F',
        env = "RILL_CLIENT_CONFIG",
        value_name = "FILE",
        global = true
    )]
    pub properties_file: Option<std::path::PathBuf>,
    /// Print JSON instead of human-readable tables.
    #[arg(long, global = true)]
    pub json: bool,
}

/// Where commands connect when nothing names the brokers.
const DEFAULT_BROKERS: &str = "127.0.0.1:9092";

impl ConnectArgs {
    /// The settings of every layer merged: flags over `-X` over `-F`.
    pub fn settings(&self) -> anyhow::Result<ConnectionSettings> {
        let password = match &self.sasl_password_env {
            None => None,
            Some(var) => Some(std::env::var(var).map_err(|_| {
                anyhow::anyhow!("--sasl-password-env: environment variable {var} is not set")
            })?),
        };
        let flags = ConnectionSettings {
            brokers: self.brokers.clone(),
            tls: self.tls.then_some(true),
            sasl: None,
            tls_ca_file: self.tls_ca_file.clone(),
            tls_server_name: self.tls_server_name.clone(),
            tls_cert_file: self.tls_cert_file.clone(),
            tls_key_file: self.tls_key_file.clone(),
            sasl_mechanism: self.sasl_mechanism.clone(),
            sasl_username: self.sasl_username.clone(),
            sasl_password: password,
            client_id: None,
        };
        let x = ConnectionSettings::from_properties(
            self.properties
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        )?;
        let file = match &self.properties_file {
            Some(path) => ConnectionSettings::from_file(path)?,
            None => ConnectionSettings::default(),
        };
        let mut all = flags.or(x).or(file);
        // A SASL mechanism given as a flag turns SASL on whatever security.protocol said.
        if self.sasl_mechanism.is_some() {
            all.sasl = Some(true);
        }
        Ok(all)
    }

    /// A client of the cluster these options name, connected to a bootstrap broker.
    pub async fn client(&self) -> anyhow::Result<Client> {
        let settings = self.settings()?;
        let opts = ConnectOptions::default()
            .with_security(settings.security()?)
            .with_client_id(settings.client_id.as_deref().unwrap_or(CLIENT_ID));
        let brokers = settings.brokers.as_deref().unwrap_or(DEFAULT_BROKERS);
        Ok(Client::connect(brokers, opts).await?)
    }
}

/// The client id the CLI sends in every request header.
pub const CLIENT_ID: &str = "rill-cli";

/// `rill topic|produce|consume|group|device`: the client commands.
#[derive(clap::Subcommand, Debug)]
pub enum ClientCommand {
    /// Create, list, describe, alter and delete topics.
    Topic(topic::TopicArgs),
    /// Produce records to a topic, one per line of standard input.
    Produce(produce::ProduceArgs),
    /// Consume records from a topic and print them.
    Consume(consume::ConsumeArgs),
    /// List, describe (members, lag), delete consumer groups and reset their offsets.
    Group(group::GroupArgs),
    /// Manage MQTT device credentials (add, list, remove).
    Device(device::DeviceArgs),
    /// Manage SASL users of the Kafka listener (add, list, delete) on a stopped node.
    User(user::UserArgs),
    /// Rotate the master key of a stopped node's data directory, retire the previous one.
    Key(key::KeyArgs),
    /// Prepare a data directory for a cluster (format), make cluster ids (random-id) and show a
    /// cluster's health (status).
    Cluster(cluster::ClusterArgs),
    /// Add, list and remove Kafka ACLs (the node's authorizer; docs/security.md).
    Acl(acl::AclArgs),
}

/// Runs a client command to completion.
pub fn run(cmd: ClientCommand) -> anyhow::Result<ExitCode> {
    let cmd = match cmd {
        ClientCommand::Device(args) => return device::run(args),
        ClientCommand::User(args) => return user::run(args),
        ClientCommand::Key(args) => return key::run(args),
        other => other,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cmd {
            ClientCommand::Topic(args) => topic::run(args).await,
            ClientCommand::Produce(args) => produce::run(args).await,
            ClientCommand::Consume(args) => consume::run(args).await,
            ClientCommand::Group(args) => group::run(args).await,
            ClientCommand::Device(args) => device::run(args),
            ClientCommand::User(args) => user::run(args),
            ClientCommand::Key(args) => key::run(args),
            ClientCommand::Cluster(args) => cluster::run(args).await,
            ClientCommand::Acl(args) => acl::run(args).await,
        }
    })
}

/// Parses `key=value` (used by `-c` and `-H`).
pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected key=value, got {s:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    /// A stand-in for the binary's top-level parser, which flattens [`ClientCommand`].
    #[derive(Parser, Debug)]
    struct Cli {
        #[command(subcommand)]
        command: ClientCommand,
    }

    fn parse(args: &[&str]) -> Result<ClientCommand, clap::Error> {
        let mut full = vec!["rill"];
        full.extend_from_slice(args);
        Cli::try_parse_from(full).map(|c| c.command)
    }

    #[test]
    fn parser_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn key_value() {
        assert_eq!(parse_key_value("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_key_value("a="), Ok(("a".into(), "".into())));
        assert!(parse_key_value("=b").is_err());
        assert!(parse_key_value("ab").is_err());
    }

    #[test]
    fn topic_create_args() {
        let cmd = parse(&[
            "topic",
            "create",
            "t1",
            "-p",
            "3",
            "-r",
            "1",
            "-c",
            "retention.ms=1000",
            "-c",
            "cleanup.policy=compact",
            "-b",
            "h:1",
            "--json",
        ])
        .unwrap();
        let ClientCommand::Topic(t) = cmd else {
            panic!("not topic: {cmd:?}")
        };
        assert_eq!(t.conn.brokers.as_deref(), Some("h:1"));
        assert!(t.conn.json);
        let topic::TopicCommand::Create(c) = t.command else {
            panic!("not create")
        };
        assert_eq!(c.name, "t1");
        assert_eq!(c.partitions, Some(3));
        assert_eq!(c.replication, Some(1));
        assert_eq!(
            c.configs,
            vec![
                ("retention.ms".to_string(), "1000".to_string()),
                ("cleanup.policy".to_string(), "compact".to_string())
            ]
        );
    }

    #[test]
    fn global_flags_before_subcommand() {
        let cmd = parse(&["topic", "-b", "x:9", "list"]).unwrap();
        let ClientCommand::Topic(t) = cmd else {
            panic!()
        };
        assert_eq!(t.conn.brokers.as_deref(), Some("x:9"));
        assert!(matches!(t.command, topic::TopicCommand::List));
    }

    #[test]
    fn topic_alter_and_add_partitions() {
        let ClientCommand::Topic(t) = parse(&[
            "topic",
            "alter",
            "t",
            "-c",
            "retention.ms=5",
            "--delete-config",
            "segment.bytes",
        ])
        .unwrap() else {
            panic!()
        };
        let topic::TopicCommand::Alter(a) = t.command else {
            panic!()
        };
        assert_eq!(a.configs, vec![("retention.ms".into(), "5".into())]);
        assert_eq!(a.delete_configs, vec!["segment.bytes".to_string()]);
        assert!(
            parse(&["topic", "alter", "t"]).is_err(),
            "alter needs a change"
        );
        let ClientCommand::Topic(t) =
            parse(&["topic", "add-partitions", "t", "--total", "6"]).unwrap()
        else {
            panic!()
        };
        let topic::TopicCommand::AddPartitions(a) = t.command else {
            panic!()
        };
        assert_eq!(a.total, 6);
        assert!(parse(&["topic", "add-partitions", "t"]).is_err());
    }

    #[test]
    fn produce_args() {
        let ClientCommand::Produce(p) = parse(&[
            "produce",
            "t",
            "-k",
            ":",
            "-H",
            "a=1",
            "-H",
            "b=2",
            "-p",
            "2",
            "--acks",
            "0",
            "--compression",
            "zstd",
        ])
        .unwrap() else {
            panic!()
        };
        assert_eq!(p.topic, "t");
        assert_eq!(p.key_separator.as_deref(), Some(":"));
        assert_eq!(p.headers.len(), 2);
        assert_eq!(p.partition, Some(2));
        assert_eq!(p.acks, 0);
        assert_eq!(p.compression, produce::CompressionArg::Zstd);
        let ClientCommand::Produce(p) = parse(&["produce", "t", "--acks", "all"]).unwrap() else {
            panic!()
        };
        assert_eq!(p.acks, -1);
        assert_eq!(p.compression, produce::CompressionArg::None);
        assert!(parse(&["produce", "t", "--acks", "2"]).is_err());
        assert!(parse(&["produce", "t", "--compression", "brotli"]).is_err());
        assert!(parse(&["produce", "t", "-H", "novalue"]).is_err());
    }

    #[test]
    fn consume_args() {
        let ClientCommand::Consume(c) = parse(&[
            "consume", "t", "-o", "-5", "-p", "1", "-c", "10", "-e", "-f", "%k %s\\n",
        ])
        .unwrap() else {
            panic!()
        };
        assert_eq!(c.offset, Some(consume::OffsetSpec::FromEnd(5)));
        assert_eq!(c.partitions, vec![1]);
        assert_eq!(c.count, Some(10));
        assert!(c.exit_at_end);
        assert_eq!(c.format.as_deref(), Some("%k %s\\n"));
        let ClientCommand::Consume(c) = parse(&["consume", "t", "--from-beginning"]).unwrap()
        else {
            panic!()
        };
        assert!(c.from_beginning);
        let ClientCommand::Consume(c) = parse(&["consume", "t", "--offset", "beginning"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(c.offset, Some(consume::OffsetSpec::Beginning));
        let ClientCommand::Consume(c) =
            parse(&["consume", "t", "--from-time", "2024-01-01T00:00:00Z"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(c.from_time, Some(1_704_067_200_000));
        assert!(parse(&["consume", "t", "--from-beginning", "-o", "5"]).is_err());
        assert!(parse(&["consume", "t", "--from-time", "soon"]).is_err());
        assert!(parse(&["consume", "t", "-f", "%x"]).is_err());
    }
}
