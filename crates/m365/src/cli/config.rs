//! `m365 config check`: validates a configuration and prints the effective values (being written).

/// Arguments of `m365 config`.
#[derive(Debug, clap::Args)]
pub struct ConfigArgs {}

/// Runs `m365 config`.
pub fn run(_args: ConfigArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("m365 config is not built yet")
}
