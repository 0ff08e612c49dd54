//! Client commands (being implemented).
use std::process::ExitCode;

/// `rill topic|produce|consume`
#[derive(clap::Subcommand, Debug)]
pub enum ClientCommand {}

pub fn run(_cmd: ClientCommand) -> anyhow::Result<ExitCode> {
    todo!()
}
