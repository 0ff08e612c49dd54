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
    /// Kafka-protocol client commands (work against any Kafka cluster).
    #[command(flatten)]
    Client(rill_gateway::cli::ClientCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => rill_gateway::serve::run(args),
        Command::Config(cmd) => rill_gateway::config::run(cmd),
        Command::Client(cmd) => rill_gateway::cli::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("rill: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
