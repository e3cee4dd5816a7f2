//! The body of a source task: open the device, run one connection until it fails, wait the back-off,
//! repeat. One function per kind of device.

use std::path::Path;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::sync::{broadcast, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_serial::SerialPortBuilderExt;

use crate::fix::Fix;
use crate::gpsd::{GpsdClient, GpsdMessage};
use crate::nmea::NmeaDecoder;
use crate::sim7600::{InfoCommand, Sim7600, Sim7600Error};
use crate::source::{Backoff, EpochEvent, RngCore, SourceConfig, SourceState};

/// An NMEA receiver silent this long has its epoch in progress reported anyway.
const NMEA_IDLE_FLUSH: Duration = Duration::from_millis(1500);

/// After this many consecutive unanswered polls, the modem's port is reopened.
const SIM7600_MAX_TIMEOUTS: u32 = 3;

/// How a connection ended.
struct ConnectionEnd {
    /// Whether it delivered at least one epoch (then back-off starts over).
    delivered: bool,
    error: String,
}

/// Where a connection publishes.
struct Outputs<'a> {
    state: &'a watch::Sender<SourceState>,
    epochs: &'a broadcast::Sender<EpochEvent>,
}

pub(super) async fn run<R: RngCore>(
    config: SourceConfig,
    mut backoff: Backoff,
    mut rng: R,
    tx: watch::Sender<SourceState>,
    epochs: broadcast::Sender<EpochEvent>,
) {
    let out = Outputs {
        state: &tx,
        epochs: &epochs,
    };
    let what = describe(&config);
    let mut failing = false;
    loop {
        tx.send_modify(|s| s.connect_attempts = s.connect_attempts.saturating_add(1));
        let end = match &config {
            SourceConfig::Nmea { path, baud } => nmea_connection(path, *baud, &out).await,
            SourceConfig::Sim7600 {
                path,
                baud,
                command,
                interval,
            } => sim7600_connection(path, *baud, *command, *interval, &out).await,
            SourceConfig::Gpsd { addr } => gpsd_connection(*addr, &out).await,
        };
        tx.send_modify(|s| {
            s.connected = false;
            s.failures = s.failures.saturating_add(1);
            s.last_error = Some(end.error.clone());
        });
        if end.delivered {
            backoff.reset();
            failing = false;
        }
        // Log once per outage; retries are debug-level so a long outage does not flood the log.
        if failing {
            tracing::debug!(source = %what, error = %end.error, "GPS source still unavailable");
        } else {
            tracing::warn!(source = %what, error = %end.error, "GPS source lost; keeping the last fix and retrying");
            failing = true;
        }
        tokio::time::sleep(backoff.next_delay(&mut rng)).await;
    }
}

fn describe(config: &SourceConfig) -> String {
    match config {
        SourceConfig::Nmea { path, .. } => format!("NMEA {}", path.display()),
        SourceConfig::Sim7600 { path, .. } => format!("SIM7600 {}", path.display()),
        SourceConfig::Gpsd { addr } => format!("gpsd {addr}"),
    }
}

fn connected(out: &Outputs<'_>) {
    out.state.send_modify(|s| {
        if !s.connected {
            tracing::info!("GPS source connected");
        }
        s.connected = true;
    });
}

fn publish(out: &Outputs<'_>, fix: Option<Fix>) {
    let event = EpochEvent {
        fix,
        received: Instant::now(),
    };
    out.state.send_modify(|s| {
        s.epochs = s.epochs.saturating_add(1);
        if let Some(f) = &event.fix {
            s.fixes = s.fixes.saturating_add(1);
            s.last_fix = Some((f.clone(), event.received));
        }
        s.last_epoch = Some(event.clone());
    });
    // No subscribers is fine: the watch state above is the primary output.
    let _ = out.epochs.send(event);
}

fn rejected(out: &Outputs<'_>, n: u64) {
    if n > 0 {
        out.state
            .send_modify(|s| s.rejected = s.rejected.saturating_add(n));
    }
}

fn open_serial(path: &Path, baud: u32) -> Result<tokio_serial::SerialStream, String> {
    let name = path.to_string_lossy();
    tokio_serial::new(name, baud)
        .timeout(Duration::from_secs(1))
        .open_native_async()
        .map_err(|e| format!("cannot open {}: {e}", path.display()))
}

async fn nmea_connection(path: &Path, baud: u32, out: &Outputs<'_>) -> ConnectionEnd {
    let mut port = match open_serial(path, baud) {
        Ok(p) => p,
        Err(error) => {
            return ConnectionEnd {
                delivered: false,
                error,
            };
        }
    };
    connected(out);
    let mut decoder = NmeaDecoder::new();
    let mut delivered = false;
    let mut buf = [0u8; 1024];
    let mut seen_rejects = 0;
    loop {
        let read = tokio::time::timeout(NMEA_IDLE_FLUSH, port.read(&mut buf)).await;
        let epochs = match read {
            Err(_) => decoder.flush(),
            Ok(Ok(0)) => {
                return ConnectionEnd {
                    delivered,
                    error: format!("{}: end of file", path.display()),
                };
            }
            Ok(Ok(n)) => decoder.push(buf.get(..n).unwrap_or_default()),
            Ok(Err(e)) => {
                return ConnectionEnd {
                    delivered,
                    error: format!("{}: {e}", path.display()),
                };
            }
        };
        let total = decoder
            .rejects()
            .sentences()
            .saturating_add(decoder.undecodable());
        rejected(out, total.saturating_sub(seen_rejects));
        seen_rejects = total;
        for epoch in epochs {
            delivered = true;
            publish(out, epoch.fix);
        }
    }
}

async fn sim7600_connection(
    path: &Path,
    baud: u32,
    command: InfoCommand,
    interval: Duration,
    out: &Outputs<'_>,
) -> ConnectionEnd {
    let port = match open_serial(path, baud) {
        Ok(p) => p,
        Err(error) => {
            return ConnectionEnd {
                delivered: false,
                error,
            };
        }
    };
    let mut modem = Sim7600::new(port);
    if let Err(e) = modem.enable().await {
        return ConnectionEnd {
            delivered: false,
            error: format!("{}: {e}", path.display()),
        };
    }
    connected(out);
    let mut delivered = false;
    let mut timeouts = 0u32;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match modem.poll(command).await {
            Ok(fix) => {
                timeouts = 0;
                delivered = true;
                publish(out, fix);
            }
            Err(Sim7600Error::Reply { source, .. }) => {
                // A corrupt reply: keep the previous fix, poll again next tick.
                tracing::debug!(error = %source, "SIM7600 reply rejected");
                rejected(out, 1);
            }
            Err(e @ Sim7600Error::Timeout { .. }) => {
                timeouts = timeouts.saturating_add(1);
                if timeouts >= SIM7600_MAX_TIMEOUTS {
                    return ConnectionEnd {
                        delivered,
                        error: format!("{}: {e}", path.display()),
                    };
                }
            }
            Err(e @ (Sim7600Error::Rejected { .. } | Sim7600Error::MissingInfo { .. })) => {
                tracing::debug!(error = %e, "SIM7600 poll failed");
                rejected(out, 1);
            }
            Err(e) => {
                return ConnectionEnd {
                    delivered,
                    error: format!("{}: {e}", path.display()),
                };
            }
        }
    }
}

async fn gpsd_connection(addr: std::net::SocketAddr, out: &Outputs<'_>) -> ConnectionEnd {
    let mut client = match GpsdClient::connect(addr).await {
        Ok(c) => c,
        Err(e) => {
            return ConnectionEnd {
                delivered: false,
                error: format!("gpsd {addr}: {e}"),
            };
        }
    };
    connected(out);
    let mut delivered = false;
    loop {
        match client.next_message().await {
            Ok(GpsdMessage::Tpv(fix)) => {
                delivered = true;
                publish(out, fix);
            }
            Ok(_) => {}
            Err(e) => {
                return ConnectionEnd {
                    delivered,
                    error: format!("gpsd {addr}: {e}"),
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{BACKOFF_MAX, BACKOFF_MIN, GpsHandle};
    use rand::rngs::mock::StepRng;

    #[tokio::test(start_paused = true)]
    async fn missing_device_retries_with_capped_backoff() {
        let dir = tempfile::tempdir().unwrap();
        // Every draw at the top of its range: each delay is its attempt's ceiling.
        let handle = GpsHandle::spawn_with_rng(
            SourceConfig::Nmea {
                path: dir.path().join("ttyNOPE"),
                baud: 9600,
            },
            Backoff::new(Duration::from_millis(500), Duration::from_secs(4)),
            StepRng::new(u64::MAX, 0),
        );
        // Attempts at 0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5 s (delays 0.5, 1, 2, 4, 4, 4).
        tokio::time::sleep(Duration::from_millis(7_600)).await;
        assert_eq!(handle.state().connect_attempts, 5);
        tokio::time::sleep(Duration::from_secs(8)).await;
        let state = handle.state();
        assert_eq!(state.connect_attempts, 7);
        assert_eq!(state.failures, 7);
        assert!(!state.connected);
        assert!(!handle.is_connected());
        assert!(state.last_error.unwrap().contains("ttyNOPE"));
        assert!(handle.latest().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn unreachable_gpsd_is_retried_not_spun() {
        // A port on loopback nobody listens on (and held, so nobody starts to): connection
        // refused immediately.
        let nobody = m365_testkit::net::ReservedPort::new();
        let addr = nobody.addr();
        let handle = GpsHandle::spawn(SourceConfig::Gpsd { addr });
        tokio::time::sleep(Duration::from_secs(60)).await;
        // The n-th delay lies in [max(min, c/2), c] with c = min(30 s, 0.5 s · 2ⁿ). Longest
        // delays: attempts at 0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s (7 in the first minute);
        // shortest: 0, 0.5, 1, 2, 4, 8, 16, 31, 46 s (9). Never hundreds.
        let mut fewest = 0;
        let mut most = 0;
        for (draw, count) in [(1.0, &mut fewest), (0.0, &mut most)] {
            let mut b = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
            let mut at = Duration::ZERO;
            while at <= Duration::from_secs(60) {
                *count += 1;
                at += b.next_delay_at(draw);
            }
        }
        assert_eq!((fewest, most), (7, 9));
        let attempts = handle.state().connect_attempts;
        assert!((fewest..=most).contains(&attempts), "{attempts}");
    }
}
