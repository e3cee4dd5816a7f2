//! Shared set-up of the in-process tests: simulated scooters, a registered token, and a
//! [`ScooterLink`] over the in-process transport. Every test runs on tokio's paused clock.
#![allow(dead_code)] // Each test binary uses a different subset.

pub(crate) mod tamper;

use std::path::{Path, PathBuf};
use std::time::Duration;

use m365_ble::link::{LinkConfig, ScooterLink};
use m365_ble::pairing::{self, PairingOptions};
use m365_ble::scanner::ScanFilter;
use m365_sim::in_process::{InProcessTransport, SimScooter};
use m365_sim::{Generation, Model, ScooterConfig};

/// A scooter of `model` speaking `generation`; the button is pressed 1 s after each beep.
pub(crate) fn scooter(model: Model, generation: Generation, seed: u64) -> SimScooter {
    let mut config = ScooterConfig::new(model, seed).with_generation(generation);
    config.auto_press = Some(Duration::from_secs(1));
    SimScooter::new(config).expect("scooter")
}

/// A Pro 2 speaking Mi-auth.
pub(crate) fn pro2(seed: u64) -> SimScooter {
    scooter(Model::Pro2, Generation::MiAuth, seed)
}

/// Registers with `sim` and returns the token file.
pub(crate) async fn registered(sim: &SimScooter, dir: &Path) -> PathBuf {
    let path = dir.join(".mi-token");
    let mut transport = InProcessTransport::new(vec![sim.clone()]);
    let options = PairingOptions::new(path.clone());
    pairing::register(&mut transport, sim.address(), &options, &mut |_| {})
        .await
        .expect("registration");
    path
}

/// Link settings for `sim` with the token at `token_path`.
pub(crate) fn config(sim: &SimScooter, token_path: PathBuf) -> LinkConfig {
    let mut config = LinkConfig::new(token_path);
    config.filter = ScanFilter {
        address: Some(sim.address()),
        ..ScanFilter::default()
    };
    config
}

/// A registered scooter with an open link.
pub(crate) async fn online(sim: &SimScooter, dir: &Path) -> ScooterLink<InProcessTransport> {
    let token = registered(sim, dir).await;
    ScooterLink::open(
        InProcessTransport::new(vec![sim.clone()]),
        config(sim, token),
    )
    .await
    .expect("link")
}
