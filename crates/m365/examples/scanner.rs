//! Lists the scooters in range for 10 s with `m365-ble` alone (what `m365 scan` builds on).
//!
//! `cargo run --example scanner`; against the simulator, first start `m365-sim serve` and set
//! `DBUS_SYSTEM_BUS_ADDRESS` to the address it prints.
// An example: it keeps to the point, so a failing `unwrap`/`expect` ends it with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use m365_ble::scanner::{ScanFilter, Scanner};
use m365_ble::transport::btleplug::BtleplugTransport;
use tokio::time::Instant;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut transport = BtleplugTransport::new().await?;
    let mut scanner = Scanner::start(&mut transport, ScanFilter::default()).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut shown = std::collections::HashSet::new();
    while let Some(found) = scanner.next(deadline).await? {
        if shown.insert(found.address) {
            println!(
                "{}  {}  rssi {:?}  model {:?}  protocol {:?}",
                found.address,
                found.name.as_deref().unwrap_or("?"),
                found.rssi,
                found.model,
                found.generation
            );
        }
    }
    scanner.stop().await?;
    println!("{} scooter(s)", shown.len());
    Ok(())
}
