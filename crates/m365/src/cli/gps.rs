//! `m365 gps`: prints fixes from a receiver, a modem, gpsd or a capture file (being written).

/// Arguments of `m365 gps`.
#[derive(Debug, clap::Args)]
pub struct GpsArgs {}

/// Runs `m365 gps`.
pub fn run(_args: GpsArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("m365 gps is not built yet")
}
