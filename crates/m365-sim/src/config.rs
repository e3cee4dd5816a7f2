//! How a simulated scooter is set up: model and generation, identity seed, where its pairing
//! is kept, the power-button and session behaviour, link and controller timing, and the ride.

use std::path::PathBuf;
use std::time::Duration;

use m365_fakebluez::LinkTiming;
use m365_proto::login;
use m365_proto::pairing::DeviceConfig;

use crate::link_timing;
pub use crate::link_timing::Processing;
use crate::profile::{Generation, Model, default_generation};
use crate::ride::{LoopPlan, Script};

/// How long a session survives a disconnect by default: not at all. Xiaomi's library drops
/// the session keys on disconnect (protocol.md §3.7), so a client must log in again after any
/// reconnect.
pub const DEFAULT_SESSION_GRACE: Duration = Duration::ZERO;

/// How long a scooter powered off over BLE (ESC 0x79) stays off before the simulated rider
/// presses the power button again.
pub(crate) const DEFAULT_POWER_OFF_HOLD: Duration = Duration::from_secs(10);

/// Everything that makes one simulated scooter what it is.
#[derive(Debug, Clone)]
pub struct ScooterConfig {
    /// Model.
    pub model: Model,
    /// Protocol generation.
    pub generation: Generation,
    /// Seed of the identity (serials, address, keys) and of every random choice.
    pub seed: u64,
    /// Where the pairing is persisted (`None`: in memory only).
    pub state_dir: Option<PathBuf>,
    /// Press the power button automatically this long after each beep.
    pub auto_press: Option<Duration>,
    /// After a disconnect the session keys stay valid this long, so a quick reconnect can keep
    /// using its session (counters continue); later a fresh login is required. The default,
    /// zero, is what real scooters do (Xiaomi's library drops the session on disconnect,
    /// protocol.md §3.7); a grace lets a client's session-resume path be exercised.
    pub session_grace: Duration,
    /// After every UART frame whose length on the wire is a multiple of 20 bytes, send one
    /// zero-length notification, as real scooters do (protocol.md §2.3, §11b). On by default.
    pub empty_terminator: bool,
    /// How long a scooter powered off over BLE (ESC 0x79) stays off before the rider presses
    /// the power button again.
    pub power_off_hold: Duration,
    /// Connection events of the scooter's link (`None`, like [`LinkTiming::instant`]:
    /// notifications leave as soon as they are ready, e.g. when the fake BlueZ paces the link
    /// itself). The default is [`link_timing::typical`].
    pub link: Option<LinkTiming>,
    /// How long the ESC and BMS take to answer a request.
    pub processing: Processing,
    /// What the rider does.
    pub script: Script,
    /// Whether the BLE module holds a DID before any registration (an activated scooter). A
    /// never-activated module sends the 4-byte info header only and adopts the client's DID.
    pub activated: bool,
    /// Power-button timing of registration.
    pub button: DeviceConfig,
    /// Login deadline.
    pub login: login::Config,
}

impl ScooterConfig {
    /// Defaults for `model` speaking its usual generation.
    pub fn new(model: Model, seed: u64) -> ScooterConfig {
        ScooterConfig {
            model,
            generation: default_generation(model),
            seed,
            state_dir: None,
            auto_press: None,
            session_grace: DEFAULT_SESSION_GRACE,
            empty_terminator: true,
            power_off_hold: DEFAULT_POWER_OFF_HOLD,
            link: Some(link_timing::typical()),
            processing: Processing::default(),
            script: Script::Loop(LoopPlan::default()),
            activated: true,
            button: DeviceConfig::default(),
            login: login::Config::default(),
        }
    }

    /// The same with `generation`.
    pub fn with_generation(mut self, generation: Generation) -> ScooterConfig {
        self.generation = generation;
        self
    }
}
