//! `m365 config check [PATH]` validates a configuration and prints the effective values with
//! secrets masked; `m365 config example` prints the commented example configuration.

use crate::config::{self, ConfigError};
use crate::exit::ExitStatus;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `m365 config`.
#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: ConfigAction,
}

/// The `m365 config` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ConfigAction {
    /// Validate a configuration and print the effective values (secrets masked).
    ///
    /// Exits 0 when valid, 78 (EX_CONFIG) otherwise. Unknown keys are warnings.
    Check {
        /// The file to check (default: --config, else ./martinete.toml, else
        /// /etc/m365/martinete.toml).
        path: Option<PathBuf>,
    },
    /// Print the commented example configuration (every key with its default).
    Example,
}

/// Runs `m365 config`; `global_config` is the `--config` option.
pub fn run(args: ConfigArgs, global_config: Option<&Path>) -> anyhow::Result<ExitCode> {
    match args.action {
        ConfigAction::Example => {
            std::io::stdout().write_all(config::EXAMPLE.as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
        ConfigAction::Check { path } => Ok(check(path.as_deref().or(global_config))),
    }
}

fn check(explicit: Option<&Path>) -> ExitCode {
    let loaded = config::locate(explicit)
        .and_then(|path| config::load_file(&path, &|name| std::env::var(name).ok()));
    match loaded {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                eprintln!("warning: {warning}");
            }
            println!(
                "# Effective configuration read from {} (defaults filled in, secrets masked).",
                loaded.path.display()
            );
            print!("{}", config::render(&loaded.config));
            let n = loaded.warnings.len();
            eprintln!(
                "{}: valid, {n} warning{}",
                loaded.path.display(),
                if n == 1 { "" } else { "s" }
            );
            ExitCode::SUCCESS
        }
        Err(ConfigError::Invalid { problems, warnings }) => {
            for warning in &warnings {
                eprintln!("warning: {warning}");
            }
            for problem in &problems {
                eprintln!("error: {problem}");
            }
            let n = problems.len();
            eprintln!(
                "m365: invalid configuration: {n} error{}",
                if n == 1 { "" } else { "s" }
            );
            ExitStatus::Config.into()
        }
        Err(other) => {
            eprintln!("error: {other}");
            ExitStatus::Config.into()
        }
    }
}
