//! Pairs with the scooter at the address given on the command line and writes `./.mi-token`,
//! with `m365-ble` alone (what `m365 register` builds on).
//!
//! `cargo run --example register AA:BB:CC:DD:EE:FF`; press the scooter's power button when it
//! beeps. Against the simulator, first start `m365-sim serve` and set `DBUS_SYSTEM_BUS_ADDRESS`
//! to the address it prints.
// An example: it keeps to the point, so a failing `unwrap`/`expect` ends it with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use anyhow::Context as _;
use m365_ble::BdAddr;
use m365_ble::pairing::{self, PairingOptions};
use m365_ble::transport::btleplug::BtleplugTransport;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let address: BdAddr = std::env::args()
        .nth(1)
        .context("usage: register <MAC>")?
        .parse()?;
    let options = PairingOptions::new(PathBuf::from(".mi-token"));
    let mut transport = BtleplugTransport::new().await?;
    let registered = pairing::register(&mut transport, address, &options, &mut |progress| {
        eprintln!("{progress:?}");
    })
    .await?;
    println!(
        "registered (ID {}); token in {}",
        registered.did,
        registered.token_path.display()
    );
    Ok(())
}
