//! One scooter inside `m365 run`: its pipeline (spool and broker connection, which live as long
//! as the process) and its sampler (which ends when the scooter is gone and is started again
//! when other scooters keep the process running), so that one scooter's trouble never delays
//! another's samples or publishes.

use std::sync::Arc;
use std::time::Duration;

use m365_ble::ScooterLink;
use m365_ble::error::BleError;
use m365_ble::link::LinkConfig;
use m365_ble::transport::btleplug::BtleplugSession;
use m365_pipeline::PipelineHandle;
use tokio::sync::watch;

use super::sampler::{self, GpsLatest, SamplerConfig, SamplerShared, SamplerState};
use crate::exit::ExitStatus;

/// Where a scooter stands, as the main loop sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Its sampler runs (scanning, logged in or reconnecting within its window).
    Serving,
    /// It went past its window (or was never found): its sampler scans again after a pause,
    /// and the status says why it left.
    Gone(ExitStatus),
    /// It needs a person (pairing, a bug): nothing more is tried until the next start.
    Stopped(ExitStatus),
}

impl Standing {
    /// Whether the scooter is out of reach for now (gone or stopped).
    pub fn is_out(self) -> bool {
        !matches!(self, Standing::Serving)
    }
}

/// Whether a scooter that ended with `status` is tried again (while others keep the process
/// running): a scooter out of range comes back, a rejected token does not.
pub fn is_temporary(status: ExitStatus) -> bool {
    matches!(
        status,
        ExitStatus::ScooterLost | ExitStatus::ScooterNotFound
    )
}

/// The process's exit status once every scooter is out: temporary when any scooter may come
/// back (so systemd starts the process again: lost before not found), otherwise the first
/// scooter's reason that needs a person.
pub fn exit_status(standings: &[Standing]) -> Option<ExitStatus> {
    if standings.iter().any(|s| !s.is_out()) {
        return None;
    }
    let gone: Vec<ExitStatus> = standings
        .iter()
        .filter_map(|s| match s {
            Standing::Gone(status) => Some(*status),
            _ => None,
        })
        .collect();
    if gone.contains(&ExitStatus::ScooterLost) {
        return Some(ExitStatus::ScooterLost);
    }
    if let Some(first) = gone.first() {
        return Some(*first);
    }
    standings.iter().find_map(|s| match s {
        Standing::Stopped(status) => Some(*status),
        _ => None,
    })
}

/// Everything one sampler run needs.
#[derive(Debug, Clone)]
pub struct SamplerRun {
    /// Index of the scooter in the configuration.
    pub index: usize,
    /// How to reach it.
    pub link: LinkConfig,
    /// How to sample it.
    pub config: SamplerConfig,
    /// The GPS fix shared by every scooter of the gateway.
    pub gps: Option<GpsLatest>,
    /// Its pipeline.
    pub pipeline: PipelineHandle,
    /// Its state, for the status and the main loop.
    pub state: watch::Sender<SamplerState>,
    /// Turns true when the daemon stops.
    pub stop: watch::Receiver<bool>,
    /// Wait this long first (a scooter that went away is looked for again after a pause).
    pub delay: Duration,
    /// The event detector and the command queue, kept from one run to the next.
    pub shared: SamplerShared,
    /// The Home Assistant descriptions, told the scooter's model and firmware once known.
    pub devices: Option<watch::Sender<Vec<crate::homeassistant::ScooterDiscovery>>>,
    /// The process's one BlueZ session, shared by every scooter; started by the first sampler
    /// that needs it (and again should it end).
    pub ble: Arc<tokio::sync::Mutex<Option<BtleplugSession>>>,
}

/// Finds and opens the scooter over BlueZ, then samples it until stopped or gone. Returns the
/// scooter's index with the outcome.
pub async fn sample_scooter(run: SamplerRun) -> (usize, Result<(), BleError>) {
    let SamplerRun {
        index,
        link,
        config,
        gps,
        pipeline,
        state,
        mut stop,
        delay,
        shared,
        devices,
        ble,
    } = run;
    let outcome = async {
        if !delay.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = stop.wait_for(|s| *s) => return Ok(()),
            }
        }
        let id = config.scooter_id.clone();
        let open = async {
            let transport = {
                let mut session = ble.lock().await;
                match session.as_ref().filter(|s| !s.is_closed()) {
                    Some(session) => session.transport(),
                    None => {
                        let started = BtleplugSession::start().await?;
                        let transport = started.transport();
                        *session = Some(started);
                        transport
                    }
                }
            };
            tracing::info!(scooter = %id, looking_for = %link.filter.describe(), "scanning");
            ScooterLink::open(transport, link).await
        };
        let mut link = tokio::select! {
            link = open => link?,
            // Stopped while still scanning: nothing to close.
            _ = stop.wait_for(|s| *s) => return Ok(()),
        };
        if let Some(devices) = &devices {
            describe_device(&mut link, devices, &id).await;
        }
        sampler::run_with(
            &mut link,
            &config,
            gps.as_ref(),
            &pipeline,
            &state,
            stop,
            shared,
        )
        .await?;
        if let Err(error) = link.close().await {
            tracing::debug!(%error, "disconnect at shutdown");
        }
        Ok(())
    }
    .await;
    (index, outcome)
}

/// Tells Home Assistant the scooter's model and controller firmware (one read of the version
/// registers; a failure only leaves them out).
async fn describe_device<T: m365_ble::transport::Transport>(
    link: &mut ScooterLink<T>,
    devices: &watch::Sender<Vec<crate::homeassistant::ScooterDiscovery>>,
    id: &str,
) {
    let model = link.model().map(|m| m.to_string());
    let firmware = match link.info().await {
        Ok(info) => Some(format!(
            "ESC {} / BMS {}",
            info.esc_version, info.bms_version
        )),
        Err(error) => {
            tracing::debug!(%error, "cannot read the firmware versions");
            None
        }
    };
    crate::homeassistant::update_device(devices, id, model.as_deref(), firmware.as_deref());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_ends_only_when_every_scooter_is_out() {
        use ExitStatus::*;
        use Standing::*;
        assert_eq!(exit_status(&[Serving, Gone(ScooterLost)]), None);
        assert_eq!(exit_status(&[Stopped(NeedsPairing), Serving]), None);
        assert_eq!(exit_status(&[Gone(ScooterLost)]), Some(ScooterLost));
        assert_eq!(exit_status(&[Gone(ScooterNotFound)]), Some(ScooterNotFound));
        assert_eq!(exit_status(&[Stopped(NeedsPairing)]), Some(NeedsPairing));
        // Any scooter that may come back makes the end temporary, so systemd restarts.
        assert_eq!(
            exit_status(&[
                Stopped(NeedsPairing),
                Gone(ScooterNotFound),
                Gone(ScooterLost)
            ]),
            Some(ScooterLost)
        );
        assert_eq!(
            exit_status(&[Stopped(NeedsPairing), Gone(ScooterNotFound)]),
            Some(ScooterNotFound)
        );
        assert_eq!(
            exit_status(&[Stopped(Internal), Stopped(NeedsPairing)]),
            Some(Internal)
        );
        assert!(is_temporary(ScooterLost) && is_temporary(ScooterNotFound));
        assert!(!is_temporary(NeedsPairing) && !is_temporary(Internal));
    }
}
