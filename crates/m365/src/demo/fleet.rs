//! The demo's simulated scooters, each reached the way the daemon reaches a real one: the
//! in-process transport of `m365-ble` drives a sans-IO `m365_sim::Scooter` (no D-Bus needed),
//! Mi-auth scooters are registered with the real pairing code (the simulated rider presses the
//! power button when it beeps) and opened with the real login and session code. Each scooter's
//! position along its ride goes out as NMEA on a pseudo-terminal and comes back through the
//! real serial GPS source, as a receiver's would. Where no pseudo-terminal can be opened (some
//! containers), the same NMEA bytes are fed straight to the real decoder instead.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use m365_ble::ScooterLink;
use m365_ble::link::LinkConfig;
use m365_ble::pairing::{self, PairingOptions};
use m365_ble::scanner::ScanFilter;
use m365_gps::emulate::synth::nmea_epoch;
use m365_gps::emulate::{EmulatorHandle, NmeaFeed, NmeaReceiverConfig, Pace, RoutePoint, Talker};
use m365_gps::nmea::NmeaDecoder;
use m365_gps::source::{DEFAULT_NMEA_BAUD, GpsHandle, SourceConfig, SourceState};
use m365_sim::in_process::{InProcessTransport, SimScooter};
use m365_sim::profile::model_slug;
use m365_sim::ride::DEFAULT_CENTRE;
use m365_sim::route::{LatLon, Route};
use m365_sim::{Generation, LoopPlan, Model, ScooterConfig, Script};
use tokio::sync::watch;
use tokio::task::JoinHandle;

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
pub(crate) struct DemoScooter {
    /// Names it in topics and records: its address as 12 hex digits, as in `m365 run`.
    pub id: String,
    /// Model, for the view.
    pub model: &'static str,
    /// The simulated scooter (shared with the transport), to inject faults.
    pub sim: SimScooter,
    /// Its link settings (the token file is in the demo's directory).
    pub link_config: LinkConfig,
    /// Where its positions come from.
    pub gps: DemoGps,
}

impl DemoScooter {
    /// Creates scooter number `index` and registers with it (token in `dir`).
    pub(crate) async fn prepare(index: usize, dir: &Path) -> anyhow::Result<DemoScooter> {
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
        // Each scooter rides its own loop, a few blocks north-east of the previous one.
        let offset = 0.004 * index as f64;
        let centre = LatLon {
            lat: DEFAULT_CENTRE.lat + offset,
            lon: DEFAULT_CENTRE.lon + offset,
        };
        sim.with(|s| s.ride_mut().set_route(Route::park_loop(centre)));
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
            Ok((emulator, source)) => DemoGps::Pty {
                source,
                _emulator: emulator,
            },
            Err(e) => {
                tracing::warn!(error = %e, "no pseudo-terminal for the emulated GPS: NMEA fed to the decoder directly");
                feed_gps(sim.clone())
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
    pub(crate) async fn first_fix(&self, limit: Duration) {
        let mut state = self.gps.state();
        let _ = tokio::time::timeout(limit, state.wait_for(|s| s.last_fix.is_some())).await;
    }

    /// Opens the link (scan, connect, login) over its own in-process transport.
    pub(crate) async fn open(&self) -> anyhow::Result<ScooterLink<InProcessTransport>> {
        ScooterLink::open(
            InProcessTransport::new(vec![self.sim.clone()]),
            self.link_config.clone(),
        )
        .await
        .with_context(|| format!("cannot open the link to simulated scooter {}", self.id))
    }
}

/// Where a demo scooter's positions come from.
#[derive(Debug)]
pub(crate) enum DemoGps {
    /// An emulated receiver on a pty, read by the serial source `m365 run` uses.
    Pty {
        /// The source reading its device. Declared first so it is dropped (stopped) before the
        /// receiver: a source outliving its receiver would retry the `/dev/pts/N` the receiver
        /// freed, which the next terminal opened on the machine may have got.
        source: GpsHandle,
        /// The receiver, held (never read) so it runs until the scooter's GPS is dropped.
        _emulator: EmulatorHandle,
    },
    /// No pty: the receiver's sentences go straight into the NMEA decoder.
    Fed {
        /// What the feeding task publishes, shaped like a source task's state.
        state: watch::Receiver<SourceState>,
        /// The feeding task.
        task: JoinHandle<()>,
    },
}

impl DemoGps {
    /// The source state the sampler reads the latest fix from.
    pub(crate) fn state(&self) -> watch::Receiver<SourceState> {
        match self {
            DemoGps::Pty { source, .. } => source.subscribe(),
            DemoGps::Fed { state, .. } => state.clone(),
        }
    }
}

impl Drop for DemoGps {
    fn drop(&mut self) {
        if let DemoGps::Fed { task, .. } = self {
            task.abort();
        }
    }
}

/// The scooter's position now, as a receiver would report it at `time`.
fn route_point(
    sim: &SimScooter,
    time: m365_gps::chrono::DateTime<m365_gps::chrono::Utc>,
) -> RoutePoint {
    let g = sim.with(|s| s.ride().gps());
    RoutePoint {
        time,
        lat: g.position.at.lat,
        lon: g.position.at.lon,
        alt_m: 35.0,
        speed_mps: g.speed_kmh / 3.6,
        course_deg: g.position.course_deg,
    }
}

/// Once a second, the receiver's sentences for the scooter's position, decoded by the real
/// NMEA decoder, published like a source task's state.
pub(crate) fn feed_gps(sim: SimScooter) -> DemoGps {
    let (tx, state) = watch::channel(SourceState::default());
    let task = tokio::spawn(async move {
        let mut decoder = NmeaDecoder::new();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let point = route_point(&sim, m365_gps::chrono::Utc::now());
            let bytes = nmea_epoch(&point, Talker::Gp);
            let mut epochs = decoder.push(bytes.as_bytes());
            epochs.extend(decoder.flush());
            for epoch in epochs {
                let received = tokio::time::Instant::now();
                tx.send_modify(|s| {
                    s.connected = true;
                    s.epochs += 1;
                    if let Some(fix) = epoch.fix.clone() {
                        s.fixes += 1;
                        s.last_fix = Some((fix, received));
                    }
                });
            }
        }
    });
    DemoGps::Fed { state, task }
}

/// An NMEA receiver on a pty following the scooter's ride, once a second, read back by the
/// serial source `m365 run` uses for `[gps] source = "serial"`.
fn start_gps(sim: &SimScooter) -> anyhow::Result<(EmulatorHandle, GpsHandle)> {
    let sim = sim.clone();
    let start = m365_gps::chrono::Utc::now();
    let mut second = 0i64;
    let points = std::iter::from_fn(move || {
        let time = start + m365_gps::chrono::TimeDelta::seconds(second);
        second += 1;
        Some(route_point(&sim, time))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn fed_positions_come_out_of_the_nmea_decoder() {
        let sim = SimScooter::new(ScooterConfig::new(Model::Pro2, 7)).unwrap();
        let gps = feed_gps(sim.clone());
        let mut state = gps.state();
        state.wait_for(|s| s.fixes >= 2).await.unwrap();
        let (fix, _) = state.borrow().last_fix.clone().expect("a fix");
        let at = sim.with(|s| s.ride().gps()).position.at;
        // NMEA carries minutes with 5 decimals: about 2 cm.
        assert!((fix.lat - at.lat).abs() < 1e-6, "{} vs {}", fix.lat, at.lat);
        assert!((fix.lon - at.lon).abs() < 1e-6, "{} vs {}", fix.lon, at.lon);
        assert!(fix.time.is_some());
    }
}
