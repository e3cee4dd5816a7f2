//! `m365`: the edge telemetry client for Xiaomi electric scooters.
use clap::{Parser, Subcommand};
use m365::cli;
use m365::exit::{self, ExitStatus};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "m365",
    version,
    about = "Edge telemetry client for Xiaomi electric scooters"
)]
struct Cli {
    /// Configuration file (default: ./martinete.toml, else /etc/m365/martinete.toml).
    #[arg(long, global = true, value_name = "PATH", env = "M365_CONFIG")]
    config: Option<PathBuf>,

    /// What to do; without one, `run` (so `./m365` next to `martinete.toml` starts the daemon).
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the telemetry daemon: scooter over BLE, GPS, spool and MQTT (the default).
    Run(cli::run::RunArgs),
    /// Show m365 working with simulated scooters and an embedded broker; nothing to set up.
    #[cfg(feature = "demo")]
    Demo(cli::demo::DemoArgs),
    /// Print fixes from a GPS receiver, a SIM7600 modem, gpsd or a capture file.
    Gps(cli::gps::GpsArgs),
    /// Check a configuration file and print the effective configuration.
    Config(cli::config::ConfigArgs),
    /// List the scooters in range.
    Scan(cli::scan::ScanArgs),
    /// Pair with a scooter once and write the token file.
    Register(cli::register::RegisterArgs),
    /// Print everything readable about the configured scooter.
    Info(cli::info::InfoArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // --help and --version are successes; anything else is a usage error (EX_USAGE).
            return if e.exit_code() == 0 {
                ExitCode::SUCCESS
            } else {
                ExitStatus::Usage.into()
            };
        }
    };
    let result = match cli
        .command
        .unwrap_or(Command::Run(cli::run::RunArgs::default()))
    {
        Command::Run(args) => cli::run::run(args, cli.config.as_deref()),
        #[cfg(feature = "demo")]
        Command::Demo(args) => cli::demo::run(args),
        Command::Gps(args) => cli::gps::run(args),
        Command::Config(args) => cli::config::run(args, cli.config.as_deref()),
        Command::Scan(args) => cli::scan::run(args, cli.config.as_deref()),
        Command::Register(args) => cli::register::run(args, cli.config.as_deref()),
        Command::Info(args) => cli::info::run(args, cli.config.as_deref()),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let status = exit::status_of(&e);
            eprintln!("m365: {e:#}");
            status.into()
        }
    }
}
