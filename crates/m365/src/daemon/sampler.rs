//! The sampler: every `interval`, one pipelined telemetry read over the scooter link plus the
//! latest GPS fix, handed to the pipeline without waiting. It never blocks on GPS (it takes
//! whatever fix the source task holds) nor on the broker (a full pipeline channel drops the
//! sample and counts it; the spool behind it absorbs outages). A slow read (the link is being
//! re-established) delays the next sample instead of queueing a burst of them.
//!
//! The same sampler runs in `m365 run` (btleplug) and in `m365 demo` (in-process simulator), so
//! the demo shows the code path the daemon runs.

use std::time::Duration;

use m365_ble::error::BleError;
use m365_ble::transport::Transport;
use m365_ble::{Counters, ScooterLink, Telemetry};
use m365_gps::Fix;
use m365_gps::chrono::Utc;
use m365_gps::source::SourceState;
use m365_pipeline::{PipelineHandle, SubmitError};
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use super::fix_freshness::FixFreshness;
use super::readings;
use super::scooter_link::fatal_status;

/// What the sampler is doing, for `STATUS=` lines and the demo's view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SamplerPhase {
    /// Looking for the scooter (before the first connection).
    #[default]
    Scanning,
    /// The last read succeeded.
    Online,
    /// The last read failed (the next one is tried at the usual pace).
    Failing,
    /// Stopped (shut down or gave up).
    Stopped,
}

impl SamplerPhase {
    /// A few words for status lines.
    pub fn describe(self) -> &'static str {
        match self {
            SamplerPhase::Scanning => "scanning",
            SamplerPhase::Online => "logged in",
            SamplerPhase::Failing => "not answering",
            SamplerPhase::Stopped => "stopped",
        }
    }
}

/// What the sampler reports after every read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SamplerState {
    /// Where it stands.
    pub phase: SamplerPhase,
    /// Samples handed to the pipeline.
    pub submitted: u64,
    /// Samples the pipeline refused because its channel was full.
    pub dropped: u64,
    /// Reads that failed without ending the link.
    pub failed_reads: u64,
    /// When the last sample was taken.
    pub last_sample: Option<Instant>,
    /// The last telemetry read.
    pub last: Option<Telemetry>,
    /// The link's counters (connections, logins, reused sessions, losses).
    pub link: Counters,
}

/// How the sampler runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamplerConfig {
    /// Names the scooter in records.
    pub scooter_id: String,
    /// Time between two samples.
    pub interval: Duration,
    /// A fix older than this is no fix (`[gps] max_age`).
    pub gps_max_age: Duration,
}

/// The latest fix of a GPS source task, read without waiting.
#[derive(Debug, Clone)]
pub struct GpsLatest(watch::Receiver<SourceState>);

impl GpsLatest {
    /// Follows the state published by a source task (`GpsHandle::subscribe`).
    pub fn new(state: watch::Receiver<SourceState>) -> Self {
        GpsLatest(state)
    }

    /// The latest fix and its age.
    pub fn latest(&self) -> Option<(Fix, Duration)> {
        self.0
            .borrow()
            .last_fix
            .as_ref()
            .map(|(fix, at)| (fix.clone(), at.elapsed()))
    }
}

/// Samples `link` until `stop` turns true (or its sender is dropped), then disconnects.
///
/// Returns the error that ended the link for good (scooter lost, token rejected, …); reads
/// that merely failed are logged, counted in the state, and tried again at the next tick.
pub async fn run<T: Transport>(
    mut link: ScooterLink<T>,
    config: SamplerConfig,
    gps: Option<GpsLatest>,
    pipeline: PipelineHandle,
    state: watch::Sender<SamplerState>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), BleError> {
    let mut ticker = tokio::time::interval(config.interval);
    // After a long read (a reconnection), carry on at the normal pace rather than in a burst.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut warned_full = false;
    let mut freshness = FixFreshness::new(config.gps_max_age);
    loop {
        if *stop.borrow() {
            break;
        }
        tokio::select! {
            biased;
            changed = stop.changed() => {
                // A dropped sender means stop too; otherwise the check above decides.
                if changed.is_err() {
                    break;
                }
                continue;
            }
            _ = ticker.tick() => {}
        }
        let read = tokio::select! {
            biased;
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    break;
                }
                continue;
            }
            read = link.sample() => read,
        };
        match read {
            Ok(telemetry) => {
                let fix = gps
                    .as_ref()
                    .map(|g| freshness.take(g.latest()))
                    .unwrap_or_default();
                let sample = readings::sample(&config.scooter_id, Utc::now(), &telemetry, fix);
                let outcome = pipeline.try_submit(sample);
                let counters = link.counters();
                state.send_modify(|s| {
                    s.phase = SamplerPhase::Online;
                    s.last_sample = Some(Instant::now());
                    s.last = Some(telemetry);
                    s.link = counters;
                    match outcome {
                        Ok(()) => s.submitted += 1,
                        Err(_) => s.dropped += 1,
                    }
                });
                match outcome {
                    Ok(()) => warned_full = false,
                    Err(SubmitError::Full) if !warned_full => {
                        warned_full = true;
                        tracing::warn!(
                            "the pipeline is behind: dropping samples until it catches up"
                        );
                    }
                    Err(SubmitError::Full) => {}
                    // The pipeline ended: the daemon's main loop notices and stops; nothing
                    // more to sample for.
                    Err(SubmitError::Closed) => break,
                }
            }
            Err(error) if fatal_status(&error).is_some() => {
                let counters = link.counters();
                state.send_modify(|s| {
                    s.phase = SamplerPhase::Stopped;
                    s.link = counters;
                });
                return Err(error);
            }
            Err(error) => {
                tracing::warn!(%error, "telemetry read failed");
                let counters = link.counters();
                state.send_modify(|s| {
                    s.phase = SamplerPhase::Failing;
                    s.failed_reads += 1;
                    s.link = counters;
                });
            }
        }
    }
    state.send_modify(|s| s.phase = SamplerPhase::Stopped);
    if let Err(error) = link.close().await {
        tracing::debug!(%error, "disconnect at shutdown");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use m365_ble::link::LinkConfig;
    use m365_ble::pairing::{self, PairingOptions};
    use m365_ble::scanner::ScanFilter;
    use m365_pipeline::{MqttConfig, PipelineConfig, SpoolConfig};
    use m365_sim::in_process::{InProcessTransport, SimScooter};
    use m365_sim::{Fault, Model, ScooterConfig};

    /// A registered Pro 2 and a link to it, on the paused clock.
    async fn online(dir: &std::path::Path, seed: u64) -> (SimScooter, LinkConfig) {
        let mut config = ScooterConfig::new(Model::Pro2, seed);
        config.auto_press = Some(Duration::from_secs(1));
        let sim = SimScooter::new(config).unwrap();
        let token = dir.join(".mi-token");
        let mut transport = InProcessTransport::new(vec![sim.clone()]);
        pairing::register(
            &mut transport,
            sim.address(),
            &PairingOptions::new(token.clone()),
            &mut |_| {},
        )
        .await
        .unwrap();
        let mut link = LinkConfig::new(token);
        link.filter = ScanFilter {
            address: Some(sim.address()),
            ..ScanFilter::default()
        };
        (sim, link)
    }

    /// A pipeline whose broker never answers: samples stay in its spool.
    fn pipeline(dir: &std::path::Path) -> (PipelineHandle, tokio::task::JoinHandle<()>) {
        let config = PipelineConfig {
            spool: SpoolConfig {
                path: dir.join("spool.sqlite"),
                ..SpoolConfig::default()
            },
            mqtt: MqttConfig {
                broker: "tcp://127.0.0.1:9".into(),
                ..MqttConfig::default()
            },
            ..PipelineConfig::default()
        };
        m365_pipeline::spawn(config, "test").unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn samples_at_its_interval_and_disconnects_when_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let (sim, link_config) = online(dir.path(), 31).await;
        let link = ScooterLink::open(InProcessTransport::new(vec![sim.clone()]), link_config)
            .await
            .unwrap();
        let (handle, _task) = pipeline(dir.path());
        let (state_tx, state) = watch::channel(SamplerState::default());
        let (stop_tx, stop) = watch::channel(false);
        let config = SamplerConfig {
            scooter_id: "test".into(),
            interval: Duration::from_secs(1),
            gps_max_age: Duration::from_secs(5),
        };
        let sampler = tokio::spawn(run(link, config, None, handle.clone(), state_tx, stop));
        // Ticks at 0 s, 1 s, … 5 s; a pipelined read takes well under a second.
        tokio::time::sleep(Duration::from_millis(5_500)).await;
        stop_tx.send(true).unwrap();
        sampler.await.unwrap().unwrap();

        let s = state.borrow().clone();
        assert_eq!(s.submitted, 6, "{s:?}");
        assert_eq!((s.dropped, s.failed_reads), (0, 0));
        assert_eq!(s.phase, SamplerPhase::Stopped);
        assert_eq!(handle.health().sampled, 6);
        assert!(!sim.with(|s| s.is_connected()), "disconnected at the end");
        // The last sample is the scooter's own state, decoded and scaled.
        let telemetry = s.last.expect("a sample");
        let odometer = sim.with(|s| s.ride().odometer_m());
        let sample = readings::sample("test", Utc::now(), &telemetry, None);
        let read = f64::from(sample.scooter.odometer_m.unwrap());
        assert!((read - odometer).abs() <= 10.0, "{read} vs {odometer}");
        assert!(sample.battery.percent.is_some_and(|p| p <= 100));
        assert!(sample.gps.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_scooter_gone_past_the_window_ends_the_sampler() {
        let dir = tempfile::tempdir().unwrap();
        let (sim, mut link_config) = online(dir.path(), 32).await;
        link_config.reconnect.reconnect_window = Duration::from_secs(5);
        let link = ScooterLink::open(InProcessTransport::new(vec![sim.clone()]), link_config)
            .await
            .unwrap();
        let (handle, _task) = pipeline(dir.path());
        let (state_tx, state) = watch::channel(SamplerState::default());
        let (_stop_tx, stop) = watch::channel(false);
        let config = SamplerConfig {
            scooter_id: "test".into(),
            interval: Duration::from_secs(1),
            gps_max_age: Duration::from_secs(5),
        };
        let sampler = tokio::spawn(run(link, config, None, handle, state_tx, stop));
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        sim.with(|s| {
            s.apply_fault(
                SimScooter::now(),
                Fault::OutOfRange {
                    for_: Duration::from_secs(600),
                },
            )
        });
        let error = sampler.await.unwrap().unwrap_err();
        assert!(matches!(error, BleError::Lost { .. }), "{error}");
        assert_eq!(
            super::super::scooter_link::fatal_status(&error),
            Some(crate::exit::ExitStatus::ScooterLost)
        );
        let s = state.borrow().clone();
        assert_eq!(s.phase, SamplerPhase::Stopped);
        assert_eq!(s.submitted, 2, "samples at 0 s and 1 s");
        assert_eq!(s.link.link_losses, 1);
    }
}
