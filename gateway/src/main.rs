//! The `rill` binary.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "rill",
    version,
    about = "Rill: an edge/IoT messaging gateway with tiered replication"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node.
    Serve(rill_gateway::serve::ServeArgs),
    /// Check configuration files.
    #[command(subcommand)]
    Config(rill_gateway::config::ConfigCommand),
    /// Run the `[[mirror]]` entries of a bridge config or node TOML file against a stopped
    /// node's data directory (`--config FILE`), or show a running node's mirrors (`status`).
    Bridge(rill_gateway::cli::bridge::BridgeArgs),
    /// Kafka-protocol client commands (work against any Kafka cluster).
    #[command(flatten)]
    Client(rill_gateway::cli::ClientCommand),
}

fn run_bridge(path: &std::path::Path) -> anyhow::Result<std::process::ExitCode> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let cfg = rill_gateway::cli::bridge::load_config(path)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let stop = tokio_util::sync::CancellationToken::new();
        let s2 = stop.clone();
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            s2.cancel();
        });
        rill_bridge::standalone::run(cfg, stop).await
    })?;
    Ok(std::process::ExitCode::SUCCESS)
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => rill_gateway::serve::run(args),
        Command::Config(cmd) => rill_gateway::config::run(cmd),
        Command::Client(cmd) => rill_gateway::cli::run(cmd),
        Command::Bridge(args) => match (args.command, args.config) {
            (Some(rill_gateway::cli::bridge::BridgeCommand::Status(s)), _) => {
                rill_gateway::cli::bridge::run_status(s)
            }
            (None, Some(config)) => run_bridge(&config),
            (None, None) => Err(anyhow::anyhow!("rill bridge needs --config FILE or status")),
        },
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("rill: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
