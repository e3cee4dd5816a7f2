//! The sampler: one pipelined telemetry read over the scooter link plus the latest GPS fix,
//! handed to the pipeline without waiting, at an interval that adapts to what the scooter does
//! ([`super::adaptive`]: fast while ridden, slow while parked, a heartbeat when nothing changes).
//! Each sample also feeds the ride-event detector ([`super::ride_events`]), whose events go
//! through the same pipeline. Between samples it carries out remote commands on the same link
//! ([`crate::commands`]), so a command never races a read.
//!
//! It never blocks on GPS (it takes whatever fix the source task holds) nor on the broker (a full
//! pipeline channel drops the sample and counts it; the spool behind it absorbs outages). A slow
//! read (the link is being re-established) delays the next sample instead of queueing a burst.
//!
//! The same sampler runs in `m365 run` (btleplug) and in `m365 demo` (in-process simulator), so
//! the demo shows the code path the daemon runs.

use std::sync::Arc;
use std::time::Duration;

use m365_ble::error::BleError;
use m365_ble::transport::Transport;
use m365_ble::{Counters, ScooterLink, Telemetry};
use m365_gps::Fix;
use m365_gps::chrono::Utc;
use m365_gps::source::SourceState;
use m365_pipeline::{EventKind, PipelineHandle, Sample, SubmitError};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::adaptive::{Adaptive, AdaptiveConfig};
use super::fix_freshness::FixFreshness;
use super::readings;
use super::ride_events::RideEvents;
use super::scooter_link::fatal_status;
use crate::commands::{Action, CommandRequest};

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
    /// Samples taken but not published: nothing changed while parked (adaptive sampling).
    pub unchanged: u64,
    /// Ride events handed to the pipeline.
    pub events: u64,
    /// Remote commands carried out (successfully or not).
    pub commands: u64,
    /// Samples the pipeline refused because its channel was full.
    pub dropped: u64,
    /// Reads that failed without ending the link.
    pub failed_reads: u64,
    /// When the last sample was taken.
    pub last_sample: Option<Instant>,
    /// Whether the last sample found the scooter parked (slow interval).
    pub parked: bool,
    /// The last telemetry read.
    pub last: Option<Telemetry>,
    /// The link's counters (connections, logins, reused sessions, losses).
    pub link: Counters,
}

/// How the sampler runs.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplerConfig {
    /// Names the scooter in records.
    pub scooter_id: String,
    /// The sampling intervals (fast, parked, heartbeat).
    pub adaptive: AdaptiveConfig,
    /// A fix older than this is no fix (`[gps] max_age`).
    pub gps_max_age: Duration,
}

impl SamplerConfig {
    /// One sample every `interval`, every one published (no adaptation).
    pub fn fixed(scooter_id: &str, interval: Duration, gps_max_age: Duration) -> SamplerConfig {
        SamplerConfig {
            scooter_id: scooter_id.to_owned(),
            adaptive: AdaptiveConfig::fixed(interval),
            gps_max_age,
        }
    }
}

/// What outlives one sampler run (a scooter that went away and came back): the event detector,
/// so a trip or a lock period spans the outage, and the queue of remote commands.
#[derive(Debug, Clone, Default)]
pub struct SamplerShared {
    /// The ride-event detector; `None`: no events.
    pub events: Option<Arc<std::sync::Mutex<RideEvents>>>,
    /// Remote commands for this scooter; `None`: none are allowed.
    pub commands: Option<Arc<tokio::sync::Mutex<mpsc::Receiver<CommandRequest>>>>,
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

/// Waits for the next command, or forever when there is no queue.
async fn next_command(
    queue: &mut Option<tokio::sync::MutexGuard<'_, mpsc::Receiver<CommandRequest>>>,
) -> Option<CommandRequest> {
    match queue {
        Some(q) => q.recv().await,
        None => std::future::pending().await,
    }
}

/// The loop's own state.
struct Sampling<'a> {
    config: &'a SamplerConfig,
    gps: Option<&'a GpsLatest>,
    pipeline: &'a PipelineHandle,
    state: &'a watch::Sender<SamplerState>,
    events: Option<&'a std::sync::Mutex<RideEvents>>,
    adaptive: Adaptive,
    freshness: FixFreshness,
    warned_full: bool,
    /// Set after a failed read: the next good one says the link is back.
    down_since: Option<Instant>,
}

impl Sampling<'_> {
    /// Hands `sample` to the pipeline; `false` when the pipeline is gone.
    fn submit(&mut self, sample: Sample, is_event: bool) -> bool {
        let outcome = self.pipeline.try_submit(sample);
        self.state.send_modify(|s| match (&outcome, is_event) {
            (Ok(()), true) => s.events += 1,
            (Ok(()), false) => s.submitted += 1,
            (Err(_), _) => s.dropped += 1,
        });
        match outcome {
            Ok(()) => {
                self.warned_full = false;
                true
            }
            Err(SubmitError::Full) => {
                if !self.warned_full {
                    self.warned_full = true;
                    tracing::warn!("the pipeline is behind: dropping samples until it catches up");
                }
                true
            }
            // The pipeline ended: the daemon's main loop notices and stops.
            Err(SubmitError::Closed) => false,
        }
    }

    /// Publishes `events` as event records at `gps` (the position of the sample that showed
    /// them, if any).
    fn submit_events(
        &mut self,
        events: Vec<EventKind>,
        gps: Option<m365_pipeline::GpsReading>,
    ) -> bool {
        for event in events {
            tracing::info!(scooter = %self.config.scooter_id, event = event.name(), "event");
            let sample = Sample::event(&self.config.scooter_id, Utc::now(), event, gps.clone());
            if !self.submit(sample, true) {
                return false;
            }
        }
        true
    }

    fn detect(&self, f: impl FnOnce(&mut RideEvents) -> Vec<EventKind>) -> Vec<EventKind> {
        match self.events {
            Some(events) => match events.lock() {
                Ok(mut events) => f(&mut events),
                Err(poisoned) => f(&mut poisoned.into_inner()),
            },
            None => Vec::new(),
        }
    }

    /// Takes one sample; returns the time until the next one, or the error that ends the link
    /// (`Ok(None)`: the pipeline is gone).
    async fn sample<T: Transport>(
        &mut self,
        link: &mut ScooterLink<T>,
        force_publish: bool,
    ) -> Result<Option<Duration>, BleError> {
        // The link says when it goes down, also in the middle of this read (which then waits
        // for the reconnection): the loss is told when it happens, not when the read returns.
        let mut up = link.online_watch();
        up.borrow_and_update();
        let read = {
            let read = link.sample();
            tokio::pin!(read);
            loop {
                tokio::select! {
                    read = &mut read => break read,
                    Ok(()) = up.changed() => {
                        if !*up.borrow_and_update() && !self.link_went_down(Instant::now()) {
                            return Ok(None);
                        }
                    }
                }
            }
        };
        let now = Instant::now();
        let counters = link.counters();
        match read {
            Ok(telemetry) => {
                let fix = self
                    .gps
                    .map(|g| self.freshness.take(g.latest()))
                    .unwrap_or_default();
                let sample = readings::sample(&self.config.scooter_id, Utc::now(), &telemetry, fix);
                let mut events = Vec::new();
                if let Some(since) = self.down_since.take() {
                    events.extend(self.detect(|e| e.link_restored(now.into_std())));
                    tracing::info!(scooter = %self.config.scooter_id, after = ?now - since, "answering again");
                }
                events.extend(self.detect(|e| e.observe(now.into_std(), &sample)));
                let decision =
                    self.adaptive
                        .after_sample(now.into_std(), &sample, !events.is_empty());
                let parked = self.adaptive.is_parked();
                let gps = sample.gps.clone();
                let publish = decision.publish || force_publish;
                self.state.send_modify(|s| {
                    s.phase = SamplerPhase::Online;
                    s.last_sample = Some(now);
                    s.last = Some(telemetry);
                    s.link = counters;
                    s.parked = parked;
                    if !publish {
                        s.unchanged += 1;
                    }
                });
                if publish && !self.submit(sample, false) {
                    return Ok(None);
                }
                if !self.submit_events(events, gps) {
                    return Ok(None);
                }
                Ok(Some(decision.next_interval))
            }
            Err(error) if fatal_status(&error).is_some() => {
                self.state.send_modify(|s| {
                    s.phase = SamplerPhase::Stopped;
                    s.link = counters;
                });
                if self.down_since.is_none() {
                    let events = self.detect(|e| e.link_lost(now.into_std()));
                    self.submit_events(events, None);
                }
                Err(error)
            }
            Err(error) => {
                tracing::warn!(%error, "telemetry read failed");
                self.state.send_modify(|s| {
                    s.phase = SamplerPhase::Failing;
                    s.failed_reads += 1;
                    s.link = counters;
                });
                Ok(Some(self.adaptive.config().fast))
            }
        }
    }

    /// The link went down at `now`: tells it once per outage. `false` when the pipeline is gone.
    fn link_went_down(&mut self, now: Instant) -> bool {
        if self.down_since.is_some() {
            return true;
        }
        self.down_since = Some(now);
        tracing::info!(scooter = %self.config.scooter_id, "link lost");
        let events = self.detect(|e| e.link_lost(now.into_std()));
        self.submit_events(events, None)
    }

    /// Carries out one remote command between samples; returns like [`Sampling::sample`] when
    /// the command was "sample now".
    async fn command<T: Transport>(
        &mut self,
        link: &mut ScooterLink<T>,
        request: CommandRequest,
    ) -> Result<Option<Duration>, BleError> {
        // BlueZ reports a loss with a delay: ask the radio before starting anything.
        if !link.verify_online().await {
            // Nothing is started on a link that is down: it comes back first. A command that
            // expires meanwhile is refused as `offline` by the listener (the request is dropped
            // unstarted when the scooter does not come back).
            if let Err(error) = link.reconnect().await {
                drop(request);
                return if fatal_status(&error).is_some() {
                    Err(error)
                } else {
                    Ok(Some(Duration::ZERO))
                };
            }
        }
        if !request.start() {
            // Expired while waiting: it was refused as offline already.
            return Ok(Some(Duration::ZERO));
        }
        let action = request.command().action;
        tracing::info!(
            scooter = %self.config.scooter_id,
            command = action.name().as_str(),
            id = %request.command().id,
            "carrying out a remote command"
        );
        self.state.send_modify(|s| s.commands += 1);
        if action == Action::SampleNow {
            let next = match self.sample(link, true).await {
                Ok(next) => next,
                Err(error) => {
                    request.finish(Err(error.to_string()));
                    return Err(error);
                }
            };
            let outcome = crate::commands::read_state(link).await;
            request.finish(outcome.map_err(|e| e.to_string()));
            return Ok(next);
        }
        match crate::commands::execute(link, &action).await {
            Ok(state) => {
                request.finish(Ok(state));
                // Lock, lights and the rest show in the next sample: take it soon.
                Ok(Some(Duration::ZERO))
            }
            Err(error) => {
                request.finish(Err(error.to_string()));
                if fatal_status(&error).is_some() {
                    return Err(error);
                }
                Ok(Some(Duration::ZERO))
            }
        }
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
    stop: watch::Receiver<bool>,
) -> Result<(), BleError> {
    run_with(
        &mut link,
        &config,
        gps.as_ref(),
        &pipeline,
        &state,
        stop,
        SamplerShared::default(),
    )
    .await?;
    if let Err(error) = link.close().await {
        tracing::debug!(%error, "disconnect at shutdown");
    }
    Ok(())
}

/// [`run`] with the parts that outlive one run: events and remote commands. Does not close the
/// link.
pub async fn run_with<T: Transport>(
    link: &mut ScooterLink<T>,
    config: &SamplerConfig,
    gps: Option<&GpsLatest>,
    pipeline: &PipelineHandle,
    state: &watch::Sender<SamplerState>,
    mut stop: watch::Receiver<bool>,
    shared: SamplerShared,
) -> Result<(), BleError> {
    let mut queue = match &shared.commands {
        Some(q) => Some(q.lock().await),
        None => None,
    };
    let mut sampling = Sampling {
        config,
        gps,
        pipeline,
        state,
        events: shared.events.as_deref(),
        adaptive: Adaptive::new(config.adaptive),
        freshness: FixFreshness::new(config.gps_max_age),
        warned_full: false,
        down_since: None,
    };
    let mut next_at = Instant::now();
    loop {
        if *stop.borrow() {
            break;
        }
        let command = tokio::select! {
            biased;
            changed = stop.changed() => {
                // A dropped sender means stop too; otherwise the check above decides.
                if changed.is_err() {
                    break;
                }
                continue;
            }
            Some(request) = next_command(&mut queue) => Some(request),
            () = link.watch_radio() => {
                // Gone between samples: told now, and the next sample reconnects at once.
                if !sampling.link_went_down(Instant::now()) {
                    break;
                }
                next_at = Instant::now();
                continue;
            }
            () = tokio::time::sleep_until(next_at) => None,
        };
        let step = async {
            match command {
                Some(request) => sampling.command(link, request).await,
                None => sampling.sample(link, false).await,
            }
        };
        let started = Instant::now();
        let outcome = tokio::select! {
            biased;
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    break;
                }
                continue;
            }
            outcome = step => outcome,
        };
        match outcome? {
            // After a command the next sample keeps its time unless the command asks sooner.
            Some(next) if next.is_zero() => {
                next_at = next_at.min(Instant::now() + Duration::from_millis(100));
            }
            // A slow read (a reconnection) is followed by the normal pace, not a burst.
            Some(next) => next_at = started + next,
            None => break,
        }
    }
    state.send_modify(|s| s.phase = SamplerPhase::Stopped);
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
        let config = SamplerConfig::fixed("test", Duration::from_secs(1), Duration::from_secs(5));
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
        let config = SamplerConfig::fixed("test", Duration::from_secs(1), Duration::from_secs(5));
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
