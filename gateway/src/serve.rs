//! `rill serve` (being implemented).
use std::process::ExitCode;

/// Flags of `rill serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {}

/// Run a node until SIGINT/SIGTERM.
pub fn run(_args: ServeArgs) -> anyhow::Result<ExitCode> {
    todo!()
}
