//! `m365 run`: the long-running daemon. For each configured scooter it wires, in one
//! direction:
//!
//! ```text
//! scooter ──BLE──▶ ScooterLink ─┐
//!                               ├─▶ sampler ──Sample──▶ pipeline (spool ─▶ MQTT)
//! GPS source task ─latest fix──┘
//! ```
//!
//! Each scooter has its own link, sampler, spool and broker connection (its own last will on its
//! availability topic), so one scooter's trouble never delays another's samples or publishes;
//! the GPS receiver is the gateway's and its fix goes to every scooter.
//!
//! Around them the main loop owns everything that concerns systemd: `READY=1` once the parts
//! are running, `STATUS=` lines when a broker connection, a scooter or a backlog changes,
//! `WATCHDOG=1` from the loop itself (a hung loop stops the pings), and the exit status. A
//! scooter that went past its reconnection window (or was never found) is looked for again
//! after a pause while other scooters keep the process running; one that needs a person
//! (pairing) stays stopped. The process exits only when every scooter is out, with the rule of
//! [`scooter_task::exit_status`]: with one scooter, as soon as it is gone. SIGINT/SIGTERM stop
//! the samplers, give the broker a moment to take the last records, commit the spools and
//! close; the broker then publishes each scooter's retained last will `offline`.
//!
//! Nothing is reloaded: a changed configuration takes effect at the next start.
//!
//! - [`scooter_link`]: a scooter's settings → its link's, its failures → exit statuses.
//! - [`scooter_task`]: one scooter's sampler run and the exit rule.
//! - [`gps`]: `[gps]` → a running source.
//! - [`pipeline`]: `[mqtt]`/`[spool]` → a scooter's pipeline settings, start-up failures → exit
//!   statuses.
//! - [`sampler`]: the sampling loop shared with `m365 demo`; [`readings`]: telemetry → sample;
//!   [`fix_freshness`]: a fix older than `[gps] max_age` is no position; [`adaptive`]: fast
//!   while riding, slow while parked; [`ride_events`]: trips, battery, charging, errors, locks.
//! - [`status`]: the `STATUS=` line; [`signals`]: SIGINT/SIGTERM.

pub mod adaptive;
pub mod fix_freshness;
pub mod gps;
pub mod pipeline;
pub mod readings;
pub mod ride_events;
pub mod sampler;
pub mod scooter_link;
pub mod scooter_task;
pub mod signals;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use m365_backoff::Backoff;
use m365_ble::error::BleError;
use m365_gps::source::GpsHandle;
use m365_pipeline::PipelineHandle;
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::config::Config;
use crate::exit::{ExitStatus, Fatal, ResultExt as _};
use crate::notify::{Notifier, WatchdogTimer};
use adaptive::AdaptiveConfig;
use ride_events::{EventConfig, RideEvents};
use sampler::{GpsLatest, SamplerConfig, SamplerShared, SamplerState};
use scooter_task::{SamplerRun, Standing};
use signals::Signals;

/// How often the main loop refreshes the status and checks the broker's answer.
const STATUS_PERIOD: Duration = Duration::from_secs(1);
/// How long a stopping daemon waits for the samplers to disconnect from the scooters.
const SAMPLER_GRACE: Duration = Duration::from_secs(3);
/// How long a stopping daemon waits for the pipelines to commit their spools.
const PIPELINE_GRACE: Duration = Duration::from_secs(10);
/// Remote commands waiting for one scooter at most.
const COMMAND_QUEUE: usize = 16;
/// First pause before a gone scooter is looked for again (while others keep the process up).
const RESCAN_MIN: Duration = Duration::from_secs(10);
/// Longest such pause.
const RESCAN_MAX: Duration = Duration::from_secs(300);

/// One scooter of the running daemon.
struct Served {
    id: String,
    interval: Duration,
    pipeline: PipelineHandle,
    pipeline_task: tokio::task::JoinHandle<()>,
    state: watch::Receiver<SamplerState>,
    /// What a new sampler run needs; `state` is a clone of the sender.
    template: SamplerRun,
    standing: Standing,
    rescan: Backoff,
}

/// Runs the daemon until a signal (then `Ok`) or a failure that ends it (an error carrying its
/// exit status, see [`crate::exit::status_of`]).
pub async fn run(config: Config, notifier: Notifier) -> anyhow::Result<()> {
    let mut signals = Signals::watch().context("cannot watch SIGINT/SIGTERM")?;
    // Checked before anything connects anywhere: a missing device ends the start-up quietly.
    let gps_source = gps::source_config(&config.gps).exit_with(ExitStatus::GpsDeviceMissing)?;
    let gps = gps_source.map(GpsHandle::spawn);
    let gps_latest = gps.as_ref().map(|g| GpsLatest::new(g.subscribe()));
    let (stop_tx, stop_rx) = watch::channel(false);

    let (discovery, devices) = homeassistant_announcer(&config);
    let mut served = Vec::with_capacity(config.scooters.len());
    let mut samplers = JoinSet::new();
    let mut command_routes = Vec::new();
    // One BlueZ session for every scooter of the process.
    let ble = Arc::default();
    for (index, entry) in config.scooters.iter().enumerate() {
        let command_queue = if entry.commands.is_empty() {
            None
        } else {
            let (tx, rx) = tokio::sync::mpsc::channel(COMMAND_QUEUE);
            command_routes.push((entry, tx));
            Some(Arc::new(tokio::sync::Mutex::new(rx)))
        };
        let settings = pipeline::settings(&config, entry);
        let (handle, pipeline_task) = m365_pipeline::spawn(settings.config.clone(), &entry.id)
            .map_err(|e| Fatal {
                status: pipeline::start_status(&e),
                error: anyhow::Error::from(e)
                    .context(format!("cannot start the pipeline of scooter {}", entry.id)),
            })?;
        tracing::info!(
            scooter = %entry.id,
            spool = %settings.config.spool.path.display(),
            broker = %entry.mqtt.broker,
            "pipeline started"
        );
        // `offline` on the scooter's availability topic until it is logged in.
        handle.set_available(false);
        let (state_tx, state_rx) = watch::channel(SamplerState::default());
        let template = SamplerRun {
            index,
            link: scooter_link::link_config(&entry.link),
            config: SamplerConfig {
                scooter_id: entry.id.clone(),
                adaptive: AdaptiveConfig {
                    fast: entry.telemetry.interval,
                    parked: entry.telemetry.parked_interval,
                    heartbeat: entry.telemetry.heartbeat,
                },
                gps_max_age: config.gps.max_age,
            },
            gps: gps_latest.clone(),
            pipeline: handle.clone(),
            state: state_tx,
            stop: stop_rx.clone(),
            delay: Duration::ZERO,
            devices: devices.clone(),
            ble: Arc::clone(&ble),
            shared: SamplerShared {
                events: Some(Arc::new(std::sync::Mutex::new(RideEvents::new(
                    event_config(&config.events),
                )))),
                commands: command_queue,
            },
        };
        samplers.spawn(scooter_task::sample_scooter(template.clone()));
        served.push(Served {
            id: entry.id.clone(),
            interval: entry.telemetry.interval,
            pipeline: handle,
            pipeline_task,
            state: state_rx,
            template,
            standing: Standing::Serving,
            rescan: Backoff::new(RESCAN_MIN, RESCAN_MAX),
        });
    }
    // Connections of their own: discovery and commands never delay telemetry.
    let first_mqtt = pipeline::settings(&config, config.first()).config.mqtt;
    let listener = start_commands(&config, &first_mqtt, command_routes)?;

    if let Err(e) = notifier.ready() {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
    tracing::info!(scooters = served.len(), "running");

    let outcome = main_loop(&mut signals, &notifier, &mut served, &mut samplers).await;

    let _ = notifier.stopping();
    if let Some(task) = discovery {
        task.abort();
    }
    if let Some(listener) = listener {
        listener.task.abort();
    }
    let _ = stop_tx.send(true);
    let closing = async { while samplers.join_next().await.is_some() {} };
    if tokio::time::timeout(SAMPLER_GRACE, closing).await.is_err() {
        tracing::warn!("a scooter link did not close in time");
        samplers.abort_all();
    }
    // Dropping the last handle makes a pipeline flush: it keeps publishing until the broker
    // acknowledged everything or `[mqtt] shutdown_grace` ran out, then says `offline`.
    let deadline = Instant::now() + PIPELINE_GRACE;
    for s in served {
        let monitor = s.pipeline.monitor();
        let Served {
            pipeline,
            pipeline_task,
            template,
            ..
        } = s;
        drop(pipeline);
        drop(template);
        if tokio::time::timeout_at(deadline, pipeline_task)
            .await
            .is_err()
        {
            tracing::error!("the spool was not closed in time");
        }
        // Read after the pipeline stopped: its last acknowledgements are counted.
        let health = monitor.snapshot();
        tracing::info!(
            sampled = health.sampled,
            acknowledged = health.acknowledged,
            backlog = health.spool_records,
            "stopped"
        );
    }
    drop(gps);
    outcome
}

/// The main loop: signals, scooters that end, watchdog and status. Returns `Ok` on a signal.
async fn main_loop(
    signals: &mut Signals,
    notifier: &Notifier,
    served: &mut [Served],
    samplers: &mut JoinSet<(usize, Result<(), BleError>)>,
) -> anyhow::Result<()> {
    let mut watchdog = notifier.watchdog_timer();
    let mut status_tick = tokio::time::interval(STATUS_PERIOD);
    let mut last_status: Option<String> = None;
    let mut rng = StdRng::from_entropy();
    loop {
        tokio::select! {
            name = signals.recv() => {
                tracing::info!(signal = name, "stopping");
                return Ok(());
            }
            Some(finished) = samplers.join_next() => {
                let (index, result) = match finished {
                    Ok(ended) => ended,
                    Err(e) => return Err(Fatal {
                        status: ExitStatus::Internal,
                        error: anyhow!("a sampler failed: {e}"),
                    }
                    .into()),
                };
                let status = sampler_outcome(result)?;
                let Some(s) = served.get_mut(index) else { continue };
                if scooter_task::is_temporary(status) {
                    s.standing = Standing::Gone(status);
                } else {
                    s.standing = Standing::Stopped(status);
                }
                let standings: Vec<Standing> = served.iter().map(|s| s.standing).collect();
                if let Some(exit) = scooter_task::exit_status(&standings) {
                    return Err(Fatal {
                        status: exit,
                        error: anyhow!("{}", every_scooter_out(served)),
                    }
                    .into());
                }
                let Some(s) = served.get_mut(index) else { continue };
                if let Standing::Gone(status) = s.standing {
                    let delay = s.rescan.next_delay(&mut rng);
                    tracing::warn!(
                        scooter = %s.id,
                        reason = status.describe(),
                        retry_in = ?delay,
                        "scooter out of reach; looking for it again later"
                    );
                    let mut again = s.template.clone();
                    again.delay = delay;
                    samplers.spawn(scooter_task::sample_scooter(again));
                } else {
                    tracing::error!(
                        scooter = %s.id,
                        reason = status.describe(),
                        "scooter stopped until the next start"
                    );
                }
            }
            () = watchdog_tick(&mut watchdog) => {
                if let Err(e) = notifier.watchdog() {
                    tracing::debug!(error = %e, "watchdog notification");
                }
            }
            _ = status_tick.tick() => {
                for s in served.iter() {
                    if let Some(error) = s.pipeline.last_error()
                        && pipeline::is_auth_refusal(&error)
                    {
                        return Err(Fatal {
                            status: ExitStatus::BrokerAuth,
                            error: anyhow!("{error}"),
                        }
                        .into());
                    }
                }
                for s in served.iter_mut() {
                    let phase = s.state.borrow().phase;
                    // A gone scooter that answers again is served again.
                    if matches!(s.standing, Standing::Gone(_))
                        && phase == sampler::SamplerPhase::Online
                    {
                        tracing::info!(scooter = %s.id, "scooter back");
                        s.standing = Standing::Serving;
                        s.rescan.reset();
                    }
                    // The availability topic follows the scooter, not only the connection.
                    s.pipeline.set_available(
                        s.standing == Standing::Serving
                            && matches!(
                                phase,
                                sampler::SamplerPhase::Online | sampler::SamplerPhase::Failing
                            ),
                    );
                }
                let parts: Vec<(String, crate::notify::DaemonStatus)> = served
                    .iter()
                    .map(|s| {
                        let sampler_state = s.state.borrow().clone();
                        let since = sampler_state.last_sample.map(|t| t.elapsed());
                        let mut now = status::daemon_status(
                            &sampler_state,
                            &s.pipeline.health(),
                            s.interval,
                            since,
                        );
                        match s.standing {
                            Standing::Gone(_) => now.scooter = "out of reach".to_owned(),
                            Standing::Stopped(status) => {
                                now.scooter = format!("stopped: {}", status.describe());
                            }
                            Standing::Serving => {}
                        }
                        (s.id.clone(), now)
                    })
                    .collect();
                let now = status::fleet_status(&parts);
                if last_status.as_ref() != Some(&now) {
                    tracing::info!(status = %now, "status");
                    if let Err(e) = notifier.status(&now) {
                        tracing::debug!(error = %e, "status notification");
                    }
                    last_status = Some(now);
                }
            }
        }
    }
}

/// Starts Home Assistant discovery ([`crate::homeassistant::start`]) on the first scooter's
/// broker settings, with its state file in the state directory (beside the spool).
fn homeassistant_announcer(
    config: &Config,
) -> (
    Option<tokio::task::JoinHandle<()>>,
    Option<watch::Sender<Vec<crate::homeassistant::ScooterDiscovery>>>,
) {
    let mqtt = pipeline::settings(config, config.first()).config.mqtt;
    crate::homeassistant::start(config, &mqtt, &config.spool.state_dir())
}

/// Starts the command listener when any scooter allows a command. Its replay memory lives
/// beside the spool, in the state directory.
fn start_commands(
    config: &Config,
    mqtt: &m365_pipeline::MqttConfig,
    routes: Vec<(
        &crate::config::ScooterEntry,
        tokio::sync::mpsc::Sender<crate::commands::CommandRequest>,
    )>,
) -> anyhow::Result<Option<crate::commands::Listener>> {
    if routes.is_empty() {
        return Ok(None);
    }
    let scooters = routes
        .into_iter()
        .map(|(entry, tx)| {
            crate::commands::ScooterCommands::new(
                &config.commands,
                &entry.id,
                entry.commands.clone(),
                tx,
            )
        })
        .collect();
    let dir = config.spool.state_dir();
    let listener = crate::commands::spawn(
        mqtt,
        scooters,
        config.commands.max_ttl,
        dir.join(crate::commands::REPLAY_FILE),
    )
    .map_err(|e| Fatal {
        status: ExitStatus::Config,
        error: anyhow::Error::from(e),
    })?;
    tracing::info!(topic = %config.commands.topic, "remote commands enabled");
    Ok(Some(listener))
}

/// `[events]` as the detector's thresholds.
fn event_config(events: &crate::config::EventsConfig) -> EventConfig {
    EventConfig {
        battery_low_percent: events.battery_low_percent,
        trip_start_kmh: events.trip_start_kmh,
        trip_end_after: events.trip_end_after,
        moved_radius_m: events.moved_radius_m,
        moved_wheel_kmh: events.moved_wheel_kmh,
    }
}

/// Why the process ends when every scooter is out, for the log.
fn every_scooter_out(served: &[Served]) -> String {
    let parts: Vec<String> = served
        .iter()
        .map(|s| match s.standing {
            Standing::Gone(status) | Standing::Stopped(status) => {
                format!("{}: {}", s.id, status.describe())
            }
            Standing::Serving => format!("{}: serving", s.id),
        })
        .collect();
    if served.len() == 1 {
        format!("the scooter is out of reach ({})", parts.join(", "))
    } else {
        format!("every scooter is out of reach ({})", parts.join(", "))
    }
}

async fn watchdog_tick(timer: &mut Option<WatchdogTimer>) {
    match timer {
        Some(t) => t.tick().await,
        None => std::future::pending().await,
    }
}

/// What the end of a sampler means: the scooter's status, or an error that ends the daemon.
fn sampler_outcome(finished: Result<(), BleError>) -> anyhow::Result<ExitStatus> {
    match finished {
        // A sampler ends without an error only when its pipeline stopped (or at shutdown,
        // which the main loop does not wait for).
        Ok(()) => Err(Fatal {
            status: ExitStatus::Internal,
            error: anyhow!("the pipeline stopped unexpectedly"),
        }
        .into()),
        Err(error) => {
            // The sampling loop ends only on a fatal error; anything else came from bringing the
            // first connection up (a login that failed twice for a passing reason, a time-out):
            // temporary, like a lost scooter.
            let status = scooter_link::fatal_status(&error).unwrap_or(ExitStatus::ScooterLost);
            tracing::warn!(%error, "scooter link ended");
            Ok(status)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_connection_that_failed_for_a_passing_reason_is_a_temporary_failure() {
        let timeout = BleError::Timeout {
            what: "login".into(),
            after: std::time::Duration::from_secs(10),
            attempts: 2,
        };
        assert_eq!(
            sampler_outcome(Err(timeout)).unwrap(),
            ExitStatus::ScooterLost
        );
        assert_eq!(
            sampler_outcome(Err(BleError::LinkLost)).unwrap(),
            ExitStatus::ScooterLost
        );
        let unsupported = BleError::Unsupported("NinebotCrypto".into());
        assert_eq!(
            sampler_outcome(Err(unsupported)).unwrap(),
            ExitStatus::Internal
        );
        let status = sampler_outcome(Ok(()))
            .unwrap_err()
            .downcast_ref::<Fatal>()
            .map(|f| f.status);
        assert_eq!(status, Some(ExitStatus::Internal));
    }
}
