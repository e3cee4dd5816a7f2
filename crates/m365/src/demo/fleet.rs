//! The demo's simulated scooters, each reached the way the daemon reaches a real one: the
//! in-process transport of `m365-ble` drives a sans-IO `m365_sim::Scooter` (no D-Bus needed),
//! Mi-auth scooters are registered with the real pairing code (the simulated rider presses the
//! power button when it beeps) and opened with the real login and session code. Each scooter's
//! position along its ride goes out as NMEA on a pseudo-terminal and comes back through the
//! real serial GPS source, as a receiver's would.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use m365_ble::ScooterLink;
use m365_ble::link::LinkConfig;
use m365_ble::pairing::{self, PairingOptions};
use m365_ble::scanner::ScanFilter;
use m365_ble::transport::in_process::{InProcessTransport, SimScooter};
use m365_gps::emulate::{EmulatorHandle, NmeaFeed, NmeaReceiverConfig, Pace, RoutePoint};
use m365_gps::source::{DEFAULT_NMEA_BAUD, GpsHandle, SourceConfig};
use m365_sim::profile::model_slug;
use m365_sim::{Generation, LoopPlan, Model, ScooterConfig, Script};

/// Models of the demo's scooters, in turn: a Mi-auth Pro 2 first (the faults play on it), then
/// a classic m365 speaking the XOR generation, then more Mi-auth models.
const MODELS: [Model; 7] = [
    Model::Pro2,
    Model::M365,
    Model::OneS,
    Model::Mi3,
    Model::Essential,
    Model::Lite,
    Model::Pro,
];

/// How soon the simulated rider presses the power button after the registration beep.
const BUTTON_DELAY: Duration = Duration::from_millis(200);

/// One simulated scooter, registered, with its GPS.
#[derive(Debug)]
pub struct DemoScooter {
    /// Names it in topics and records: its address as 12 hex digits, as in `m365 run`.
    pub id: String,
    /// Model, for the view.
    pub model: &'static str,
    /// The simulated scooter (shared with the transport), to inject faults.
    pub sim: SimScooter,
    /// Its link settings (the token file is in the demo's directory).
    pub link_config: LinkConfig,
    /// The emulated receiver on a pty, and the real source reading it (`None` when no pty
    /// could be opened).
    pub gps: Option<(EmulatorHandle, GpsHandle)>,
}

impl DemoScooter {
    /// Creates scooter number `index` and registers with it (token in `dir`).
    pub async fn prepare(index: usize, dir: &Path) -> anyhow::Result<DemoScooter> {
        let model = MODELS
            .get(index % MODELS.len())
            .copied()
            .unwrap_or(Model::Pro2);
        let seed = 1 + index as u64;
        let mut config = ScooterConfig::new(model, seed);
        config.auto_press = Some(BUTTON_DELAY);
        // Set off almost at once, each scooter at its own pace, so the view shows a ride.
        config.script = Script::Loop(LoopPlan {
            idle_s: 1.0,
            cruise_kmh: 16.0 + 2.0 * (index % 5) as f64,
            cruise_s: 40.0,
            park_s: 8.0,
            ..LoopPlan::default()
        });
        let generation = config.generation;
        let sim = SimScooter::new(config).context("cannot create a simulated scooter")?;
        let address = sim.address();
        let id: String = address.bytes().iter().map(|b| format!("{b:02x}")).collect();
        let token_path = dir.join(format!("{id}.mi-token"));
        if generation == Generation::MiAuth {
            let mut transport = InProcessTransport::new(vec![sim.clone()]);
            let mut options = PairingOptions::new(token_path.clone());
            options.retry_wait = Duration::from_secs(1);
            pairing::register(&mut transport, address, &options, &mut |_| {})
                .await
                .with_context(|| format!("cannot register with simulated scooter {id}"))?;
        }
        let mut link_config = LinkConfig::new(token_path);
        link_config.filter = ScanFilter {
            address: Some(address),
            ..ScanFilter::default()
        };
        link_config.reconnect.scan_timeout = Duration::from_secs(10);
        let gps = match start_gps(&sim) {
            Ok(gps) => Some(gps),
            Err(e) => {
                tracing::warn!(error = %e, "no pseudo-terminal for the emulated GPS: positions off");
                None
            }
        };
        Ok(DemoScooter {
            id,
            model: model_slug(model),
            sim,
            link_config,
            gps,
        })
    }

    /// Waits (at most `limit`) for the GPS source to hold a first fix, so the first records
    /// already carry a position.
    pub async fn first_fix(&self, limit: Duration) {
        let Some((_, source)) = &self.gps else { return };
        let mut state = source.subscribe();
        let _ = tokio::time::timeout(limit, state.wait_for(|s| s.last_fix.is_some())).await;
    }

    /// Opens the link (scan, connect, login) over its own in-process transport.
    pub async fn open(&self) -> anyhow::Result<ScooterLink<InProcessTransport>> {
        ScooterLink::open(
            InProcessTransport::new(vec![self.sim.clone()]),
            self.link_config.clone(),
        )
        .await
        .with_context(|| format!("cannot open the link to simulated scooter {}", self.id))
    }
}

/// An NMEA receiver on a pty following the scooter's ride, once a second, read back by the
/// serial source `m365 run` uses for `[gps] source = "serial"`.
fn start_gps(sim: &SimScooter) -> anyhow::Result<(EmulatorHandle, GpsHandle)> {
    let sim = sim.clone();
    let start = m365_gps::chrono::Utc::now();
    let mut second = 0i64;
    let points = std::iter::from_fn(move || {
        let g = sim.with(|s| s.ride().gps());
        let time = start + m365_gps::chrono::TimeDelta::seconds(second);
        second += 1;
        Some(RoutePoint {
            time,
            lat: g.position.at.lat,
            lon: g.position.at.lon,
            alt_m: 35.0,
            speed_mps: g.speed_kmh / 3.6,
            course_deg: g.position.course_deg,
        })
    });
    let emulator = m365_gps::emulate::nmea_receiver::spawn(NmeaReceiverConfig::new(
        NmeaFeed::Route(Box::new(points)),
        Pace::RealTime,
    ))?;
    let path = emulator
        .path()
        .context("the emulated receiver has no device path")?;
    let source = GpsHandle::spawn(SourceConfig::Nmea {
        path,
        baud: DEFAULT_NMEA_BAUD,
    });
    Ok((emulator, source))
}
