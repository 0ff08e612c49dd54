//! Node configuration (being implemented).
use std::process::ExitCode;

/// `rill config ...`
#[derive(clap::Subcommand, Debug)]
pub enum ConfigCommand {}

pub fn run(_cmd: ConfigCommand) -> anyhow::Result<ExitCode> {
    todo!()
}
