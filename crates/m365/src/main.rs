//! `m365`: the edge telemetry client for Xiaomi electric scooters.
use clap::{Parser, Subcommand};
use m365::cli;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(name = "m365", version, about = "Edge telemetry client for Xiaomi electric scooters")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print fixes from a GPS receiver, a SIM7600 modem, gpsd or a capture file.
    Gps(cli::gps::GpsArgs),
    /// Check a configuration file and print the effective configuration.
    Config(cli::config::ConfigArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Gps(args) => cli::gps::run(args),
        Command::Config(args) => cli::config::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("m365: {e:#}");
            ExitCode::FAILURE
        }
    }
}
