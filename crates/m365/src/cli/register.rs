//! `m365 register <MAC> [--token-file PATH] [--force]`: pairs with the scooter once and writes
//! the `.mi-token` file the daemon logs in with. Tells the user plainly when to press the power
//! button, counts down between attempts, and never prints the token.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use m365_ble::BdAddr;
use m365_ble::BleError;
use m365_ble::pairing::{self, PairingOptions, PairingProgress};
use m365_ble::transport::btleplug::BtleplugTransport;

use super::info::{fatal, link_config, scooter_config};
use crate::exit::{ExitStatus, Fatal};

/// Arguments of `m365 register`.
#[derive(Debug, clap::Args)]
pub struct RegisterArgs {
    /// The scooter's address: AA:BB:CC:DD:EE:FF, AA-BB-CC-DD-EE-FF or AABBCCDDEEFF
    /// (`m365 scan` lists them).
    pub mac: BdAddr,
    /// Where to write the token (default: `[scooter] token_file_path`, else ./.mi-token).
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// Replace an existing token file (the old token stops working).
    #[arg(long)]
    pub force: bool,
    /// Which configured scooter the token is for (its id; default: the one configured with
    /// this address, else the first).
    #[arg(long, value_name = "ID")]
    pub scooter: Option<String>,
}

/// Runs `m365 register`.
pub fn run(args: RegisterArgs, global_config: Option<&Path>) -> anyhow::Result<ExitCode> {
    // The token goes where the scooter's own entry says: `--scooter`, else the entry with this
    // address, else the first.
    let mac = args.mac.to_string();
    let scooter = match args.scooter.as_deref() {
        Some(which) => scooter_config(global_config, Some(which))?,
        None => scooter_config(global_config, Some(&mac))
            .or_else(|_| scooter_config(global_config, None))?,
    };
    let link = link_config(&scooter);
    let mut options = PairingOptions::new(args.token_file.unwrap_or(link.token_path));
    options.force = args.force;
    options.protocol = link.protocol;
    options.scan_timeout = scooter.scan_timeout;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let registered = runtime.block_on(async {
        let mut transport = BtleplugTransport::new()
            .await
            .map_err(|e| fatal(e.into()))?;
        pairing::register(&mut transport, args.mac, &options, &mut show)
            .await
            .map_err(|e| match e {
                // The fix is a flag on the command line.
                e @ BleError::TokenExists { .. } => Fatal {
                    status: ExitStatus::Usage,
                    error: e.into(),
                },
                e @ BleError::ButtonNeverPressed { .. } => Fatal {
                    status: ExitStatus::NeedsPairing,
                    error: e.into(),
                },
                e => fatal(e),
            })
    })?;
    if registered.did_invented {
        eprintln!(
            "note: the scooter had no ID; m365 gave it {} — the Mi Home app will not accept \
             the scooter with this ID",
            registered.did
        );
    }
    println!(
        "Registered with {} (ID {}). Token written to {}.",
        args.mac,
        registered.did,
        registered.token_path.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Prints what the user should do now.
fn show(progress: PairingProgress) {
    let mut err = std::io::stderr().lock();
    let _ = match progress {
        PairingProgress::Scanning => writeln!(err, "Looking for the scooter…"),
        PairingProgress::Attempt { attempt } => writeln!(
            err,
            "Connected (attempt {attempt}). When the scooter beeps, press its power button \
             once, within 5 seconds."
        ),
        PairingProgress::ButtonNotPressed => writeln!(
            err,
            "The scooter did not confirm: the power button was not pressed in time."
        ),
        PairingProgress::LinkLost => {
            writeln!(err, "The Bluetooth link dropped during the attempt.")
        }
        PairingProgress::Countdown { remaining } => {
            writeln!(
                err,
                "Trying again in {remaining} s… get ready to press the power button."
            )
        }
        PairingProgress::DidInvented(did) => {
            writeln!(err, "The scooter has no ID yet; using {did}.")
        }
    };
}
