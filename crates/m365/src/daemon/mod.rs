//! `m365 run`: the long-running daemon. It wires, in one direction:
//!
//! ```text
//! scooter ──BLE──▶ ScooterLink ─┐
//!                               ├─▶ sampler ──Sample──▶ pipeline (spool ─▶ MQTT)
//! GPS source task ─latest fix──┘
//! ```
//!
//! and around them the main loop, which owns everything that concerns systemd: `READY=1` once
//! the parts are running, `STATUS=` lines when the broker, scooter or backlog change,
//! `WATCHDOG=1` from the loop itself (a hung loop stops the pings), and the exit status when a
//! part gives up for good. SIGINT/SIGTERM stop the sampler, give the broker a moment to take
//! the last records, commit the spool and close; the broker then publishes the retained last
//! will `offline` on the availability topic.
//!
//! Nothing is reloaded: a changed configuration takes effect at the next start.
//!
//! - [`scooter_link`]: `[scooter]` → the scooter link's settings, its failures → exit statuses.
//! - [`gps`]: `[gps]` → a running source.
//! - [`pipeline`]: `[mqtt]`/`[spool]` → pipeline settings, start-up failures → exit statuses.
//! - [`sampler`]: the sampling loop shared with `m365 demo`; [`readings`]: telemetry → sample;
//!   [`fix_freshness`]: a fix older than `[gps] max_age` is no position.
//! - [`status`]: the `STATUS=` line; [`signals`]: SIGINT/SIGTERM.

pub mod adaptive;
pub mod fix_freshness;
pub mod gps;
pub mod pipeline;
pub mod readings;
pub mod ride_events;
pub mod sampler;
pub mod scooter_link;
pub mod signals;
pub mod status;

use std::time::Duration;

use anyhow::{Context as _, anyhow};
use m365_ble::ScooterLink;
use m365_ble::error::BleError;
use m365_ble::link::LinkConfig;
use m365_ble::transport::btleplug::BtleplugTransport;
use m365_gps::source::GpsHandle;
use m365_pipeline::PipelineHandle;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::exit::{ExitStatus, Fatal, ResultExt as _};
use crate::notify::{DaemonStatus, Notifier, WatchdogTimer};
use sampler::{GpsLatest, SamplerConfig, SamplerState};
use signals::Signals;

/// How often the main loop refreshes the status and checks the broker's answer.
const STATUS_PERIOD: Duration = Duration::from_secs(1);
/// How long a stopping daemon waits for the sampler to disconnect from the scooter.
const SAMPLER_GRACE: Duration = Duration::from_secs(3);
/// How long a stopping daemon waits for the pipeline to commit the spool.
const PIPELINE_GRACE: Duration = Duration::from_secs(10);

/// Runs the daemon until a signal (then `Ok`) or a failure that ends it (an error carrying its
/// exit status, see [`crate::exit::status_of`]).
pub async fn run(config: Config, notifier: Notifier) -> anyhow::Result<()> {
    let mut signals = Signals::watch().context("cannot watch SIGINT/SIGTERM")?;
    // Checked before anything connects anywhere: a missing device ends the start-up quietly.
    let gps_source = gps::source_config(&config.gps).exit_with(ExitStatus::GpsDeviceMissing)?;
    let settings = pipeline::settings(&config);
    let scooter_id = config.telemetry.scooter_id.clone();
    let (handle, pipeline_task) = m365_pipeline::spawn(settings.config.clone(), &scooter_id)
        .map_err(|e| Fatal {
            status: pipeline::start_status(&e),
            error: anyhow::Error::from(e).context("cannot start the pipeline"),
        })?;
    tracing::info!(
        spool = %settings.config.spool.path.display(),
        broker = %config.mqtt.broker,
        scooter_id = %scooter_id,
        "pipeline started"
    );
    // A connection of its own: discovery never delays telemetry.
    let discovery = crate::homeassistant::start(&config, &settings.config.mqtt);

    let gps = gps_source.map(GpsHandle::spawn);
    let gps_latest = gps.as_ref().map(|g| GpsLatest::new(g.subscribe()));

    let (state_tx, state_rx) = watch::channel(SamplerState::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let sampler_config = SamplerConfig {
        scooter_id,
        interval: config.telemetry.interval,
        gps_max_age: config.gps.max_age,
    };
    let mut sampler = tokio::spawn(sample_scooter(
        scooter_link::link_config(&config.scooter),
        sampler_config,
        gps_latest,
        handle.clone(),
        state_tx,
        stop_rx,
    ));

    if let Err(e) = notifier.ready() {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
    tracing::info!(interval = ?config.telemetry.interval, "running");

    let outcome = main_loop(
        &mut signals,
        &notifier,
        &handle,
        &mut sampler,
        &state_rx,
        config.telemetry.interval,
    )
    .await;

    let _ = notifier.stopping();
    if let Some(task) = discovery {
        task.abort();
    }
    let _ = stop_tx.send(true);
    if !sampler.is_finished() {
        match tokio::time::timeout(SAMPLER_GRACE, &mut sampler).await {
            Ok(_) => {}
            Err(_) => {
                tracing::warn!("the scooter link did not close in time");
                sampler.abort();
            }
        }
    }
    // Dropping the last handle makes the pipeline flush: it keeps publishing until the broker
    // acknowledged everything or `[mqtt] shutdown_grace` ran out, then says `offline`.
    let monitor = handle.monitor();
    drop(handle);
    if tokio::time::timeout(PIPELINE_GRACE, pipeline_task)
        .await
        .is_err()
    {
        tracing::error!("the spool was not closed in time");
    }
    drop(gps);
    drop(settings);
    // Read after the pipeline stopped: its last acknowledgements are counted.
    let health = monitor.snapshot();
    tracing::info!(
        sampled = health.sampled,
        acknowledged = health.acknowledged,
        backlog = health.spool_records,
        "stopped"
    );
    outcome
}

/// The main loop: signals, part failures, watchdog and status. Returns `Ok` on a signal.
async fn main_loop(
    signals: &mut Signals,
    notifier: &Notifier,
    pipeline: &PipelineHandle,
    sampler: &mut JoinHandle<Result<(), BleError>>,
    state: &watch::Receiver<SamplerState>,
    interval: Duration,
) -> anyhow::Result<()> {
    let mut watchdog = notifier.watchdog_timer();
    let mut status_tick = tokio::time::interval(STATUS_PERIOD);
    let mut last_status: Option<DaemonStatus> = None;
    loop {
        tokio::select! {
            name = signals.recv() => {
                tracing::info!(signal = name, "stopping");
                return Ok(());
            }
            finished = &mut *sampler => return sampler_outcome(finished),
            () = watchdog_tick(&mut watchdog) => {
                if let Err(e) = notifier.watchdog() {
                    tracing::debug!(error = %e, "watchdog notification");
                }
            }
            _ = status_tick.tick() => {
                if let Some(error) = pipeline.last_error()
                    && pipeline::is_auth_refusal(&error)
                {
                    return Err(Fatal {
                        status: ExitStatus::BrokerAuth,
                        error: anyhow!("{error}"),
                    }
                    .into());
                }
                let sampler_state = state.borrow().clone();
                let since = sampler_state.last_sample.map(|t| t.elapsed());
                let now = status::daemon_status(&sampler_state, &pipeline.health(), interval, since);
                if last_status.as_ref() != Some(&now) {
                    tracing::info!(status = %now, "status");
                    if let Err(e) = notifier.status(&now.to_string()) {
                        tracing::debug!(error = %e, "status notification");
                    }
                    last_status = Some(now);
                }
            }
        }
    }
}

async fn watchdog_tick(timer: &mut Option<WatchdogTimer>) {
    match timer {
        Some(t) => t.tick().await,
        None => std::future::pending().await,
    }
}

/// What the end of the sampler task means for the daemon.
fn sampler_outcome(
    finished: Result<Result<(), BleError>, tokio::task::JoinError>,
) -> anyhow::Result<()> {
    match finished {
        Ok(Ok(())) => Err(Fatal {
            status: ExitStatus::Internal,
            error: anyhow!("the pipeline stopped unexpectedly"),
        }
        .into()),
        Ok(Err(error)) => {
            // The sampling loop ends only on a fatal error; anything else came from bringing the
            // first connection up (a login that failed twice for a passing reason, a time-out):
            // temporary, like a lost scooter, so systemd tries again.
            let status = scooter_link::fatal_status(&error).unwrap_or(ExitStatus::ScooterLost);
            Err(Fatal {
                status,
                error: anyhow::Error::from(error),
            }
            .into())
        }
        Err(e) => Err(Fatal {
            status: ExitStatus::Internal,
            error: anyhow!("the sampler failed: {e}"),
        }
        .into()),
    }
}

/// Finds and opens the scooter over BlueZ, then samples it until stopped.
async fn sample_scooter(
    link_config: LinkConfig,
    config: SamplerConfig,
    gps: Option<GpsLatest>,
    pipeline: PipelineHandle,
    state: watch::Sender<SamplerState>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), BleError> {
    let open = async {
        let transport = BtleplugTransport::new().await?;
        tracing::info!(looking_for = %link_config.filter.describe(), "scanning");
        ScooterLink::open(transport, link_config).await
    };
    let link = tokio::select! {
        link = open => link?,
        // Stopped while still scanning: nothing to close.
        _ = stop.wait_for(|s| *s) => return Ok(()),
    };
    sampler::run(link, config, gps, pipeline, state, stop).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_of(result: anyhow::Result<()>) -> ExitStatus {
        let error = result.expect_err("the sampler's end is an error");
        error
            .downcast_ref::<Fatal>()
            .map(|f| f.status)
            .expect("a fatal error with a status")
    }

    #[test]
    fn a_first_connection_that_failed_for_a_passing_reason_is_a_temporary_failure() {
        let timeout = BleError::Timeout {
            what: "login".into(),
            after: std::time::Duration::from_secs(10),
            attempts: 2,
        };
        assert_eq!(
            status_of(sampler_outcome(Ok(Err(timeout)))),
            ExitStatus::ScooterLost
        );
        assert_eq!(
            status_of(sampler_outcome(Ok(Err(BleError::LinkLost)))),
            ExitStatus::ScooterLost
        );
        let unsupported = BleError::Unsupported("NinebotCrypto".into());
        assert_eq!(
            status_of(sampler_outcome(Ok(Err(unsupported)))),
            ExitStatus::Internal
        );
        assert_eq!(status_of(sampler_outcome(Ok(Ok(())))), ExitStatus::Internal);
    }
}
