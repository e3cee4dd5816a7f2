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
            let mut errors = 0;
            for entry in &loaded.config.scooters {
                match check_token_file(&entry.link) {
                    TokenCheck::Fine | TokenCheck::NotNeeded => {}
                    // Not a fault of the configuration: pairing comes after it.
                    TokenCheck::NotYet(note) => eprintln!("note: {note}"),
                    TokenCheck::Error(e) => {
                        eprintln!("error: {e}");
                        errors += 1;
                    }
                }
            }
            if errors > 0 {
                let plural = if errors == 1 { "" } else { "s" };
                eprintln!("m365: invalid configuration: {errors} error{plural}");
                return ExitStatus::Config.into();
            }
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

/// What `config check` found about the token file.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TokenCheck {
    /// Present, 12 bytes, readable by its owner only.
    Fine,
    /// The protocol is forced to one that needs no pairing.
    NotNeeded,
    /// Not paired yet: worth saying, not a fault of the configuration.
    NotYet(String),
    /// `m365 run` cannot use it, or it leaks the pairing.
    Error(String),
}

/// Checks `[scooter] token_file_path` the way `m365 run` will use it: a 12-byte file that only
/// its owner can read (the token lets anyone within radio range unlock the scooter's telemetry
/// and commands). Only Mi-auth scooters need one.
fn check_token_file(scooter: &config::ScooterConfig) -> TokenCheck {
    use config::ScooterProtocol;
    if matches!(
        scooter.protocol,
        ScooterProtocol::Xor | ScooterProtocol::Plain
    ) {
        return TokenCheck::NotNeeded;
    }
    let path = &scooter.token_file;
    let register = "pair with `m365 register <MAC>`";
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return TokenCheck::NotYet(format!(
                "[scooter] token_file_path: no token file at {} yet: {register} before `m365 run`",
                path.display()
            ));
        }
        Err(e) => {
            return TokenCheck::Error(format!(
                "[scooter] token_file_path: cannot read {}: {e}",
                path.display()
            ));
        }
    };
    if !meta.is_file() {
        return TokenCheck::Error(format!(
            "[scooter] token_file_path: {} is not a file",
            path.display()
        ));
    }
    if meta.len() != m365_proto::keys::TOKEN_LEN as u64 {
        return TokenCheck::Error(format!(
            "[scooter] token_file_path: {} holds {} bytes, a token is exactly {}: {register} again",
            path.display(),
            meta.len(),
            m365_proto::keys::TOKEN_LEN
        ));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return TokenCheck::Error(format!(
                "[scooter] token_file_path: {} can be read by others (mode {mode:03o}): \
                 `chmod 600 {}`",
                path.display(),
                path.display()
            ));
        }
    }
    TokenCheck::Fine
}
