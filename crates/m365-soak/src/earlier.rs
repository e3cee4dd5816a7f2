//! `m365-soak earlier-client` (hidden): the earlier design's client (martinge17/escooter-
//! monitoring, `client/src/main.rs` and `telemetry.rs`) played with m365's own crates, so
//! `m365-soak compare` can put `m365 run` next to it on the same simulated world without adding
//! data-losing modes to the shipped daemon. Each sample reads the telemetry registers one at a
//! time, then polls the SIM7600 modem with a blocking `AT+CGPSINFO` (up to 1 s), builds the
//! record as the daemon does, encodes it as `legacy` and publishes it once with QoS 0: no
//! spool, no retry, a record sampled while the broker is away is lost. Then it sleeps the
//! interval (its period is the interval plus the sample's time). The link reconnects and logs
//! in again once after a failed sample; when the scooter cannot be reached the process exits 1,
//! and whoever runs it (systemd then, the harness now) starts it again.
//!
//! Output: `sampled <n> <unix_ms>` per sample on standard output, and
//! `earlier-client sampled=<n> published=<n> failed=<n>` on SIGTERM or SIGINT.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};
use m365_ble::BleError;
use m365_ble::link::{LinkConfig, ScooterLink};
use m365_ble::reconnect::ReconnectConfig;
use m365_ble::scanner::ScanFilter;
use m365_ble::telemetry;
use m365_ble::transport::Transport;
use m365_ble::transport::btleplug::BtleplugSession;
use m365_gps::Fix;
use m365_gps::chrono::Utc;
use m365_gps::sim7600::at::{ExchangeReader, FinalResult};
use m365_gps::sim7600::info::parse_cgpsinfo;
use m365_pipeline::{Encoding, Record};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::time::Instant;
use tokio_serial::SerialPortBuilderExt as _;

/// How long one `AT+CGPSINFO` poll may block the sample (the earlier client's 1 s).
pub(crate) const GPS_POLL: Duration = Duration::from_secs(1);
/// The earlier client tried once to get the link back: one connection attempt, no second one.
const RECONNECT_WINDOW: Duration = Duration::from_secs(10);

/// Options of `m365-soak earlier-client`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct EarlierArgs {
    /// The scooter's address.
    #[arg(long)]
    mac: String,
    /// The pairing token file (12 bytes, as `m365 register` writes it).
    #[arg(long)]
    token: PathBuf,
    /// The SIM7600 modem's AT port.
    #[arg(long)]
    gps: PathBuf,
    /// The broker, `host:port`.
    #[arg(long)]
    broker: String,
    /// The topic of every record.
    #[arg(long)]
    topic: String,
    /// The scooter id in the records.
    #[arg(long)]
    scooter_id: String,
    /// Sleep after each sample (`send_interval`).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    interval: Duration,
}

/// What the client counted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Samples taken (telemetry read and a record built).
    pub(crate) sampled: u64,
    /// Records handed to the MQTT client while connected.
    pub(crate) published: u64,
    /// Records dropped: not connected, or the client's queue full.
    pub(crate) failed: u64,
}

impl Counts {
    /// The final line.
    pub(crate) fn line(&self) -> String {
        format!(
            "earlier-client sampled={} published={} failed={}",
            self.sampled, self.published, self.failed
        )
    }

    /// Reads a final line back.
    pub(crate) fn parse(line: &str) -> Option<Counts> {
        let rest = line.strip_prefix("earlier-client ")?;
        let mut counts = Counts::default();
        for word in rest.split_whitespace() {
            let (key, value) = word.split_once('=')?;
            let value: u64 = value.parse().ok()?;
            match key {
                "sampled" => counts.sampled = value,
                "published" => counts.published = value,
                "failed" => counts.failed = value,
                _ => return None,
            }
        }
        Some(counts)
    }
}

/// `sampled <n> <unix_ms>`: the sample's number in this run and its time.
pub(crate) fn parse_sampled(line: &str) -> Option<(u64, i64)> {
    let mut words = line.strip_prefix("sampled ")?.split_whitespace();
    let n = words.next()?.parse().ok()?;
    let ms = words.next()?.parse().ok()?;
    words.next().is_none().then_some((n, ms))
}

/// The link as the earlier client kept it: found by address, the token file, the telemetry
/// without the cells, and one reconnection attempt after a loss.
fn link_config(args: &EarlierArgs) -> anyhow::Result<LinkConfig> {
    let mut link = LinkConfig::new(args.token.clone());
    link.filter = ScanFilter {
        address: Some(args.mac.parse().context("--mac")?),
        ..ScanFilter::default()
    };
    link.reconnect = ReconnectConfig {
        scan_timeout: RECONNECT_WINDOW,
        reconnect_window: RECONNECT_WINDOW,
        // A failed attempt waits past the window: there is no second one.
        backoff_min: RECONNECT_WINDOW,
        backoff_max: RECONNECT_WINDOW,
        ..ReconnectConfig::default()
    };
    link.read_cells = false;
    Ok(link)
}

/// Runs the client until SIGTERM/SIGINT (`Ok`, after the final line) or until the scooter
/// cannot be reached (an error: exit status 1).
pub(crate) async fn run(args: EarlierArgs) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let counts = std::cell::Cell::new(Counts::default());
    let work = async {
        // MQTT first: the earlier client connected to the broker, then to the scooter.
        let (host, port) = args
            .broker
            .rsplit_once(':')
            .context("--broker is host:port")?;
        let mut options = MqttOptions::new(
            format!("earlier-{}", args.scooter_id),
            host,
            port.parse::<u16>().context("--broker port")?,
        );
        options.set_keep_alive(Duration::from_secs(30));
        let (client, mut eventloop) = AsyncClient::new(options, 16);
        let connected = Arc::new(AtomicBool::new(false));
        let up = connected.clone();
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => up.store(true, Ordering::SeqCst),
                    Ok(_) => {}
                    Err(e) => {
                        up.store(false, Ordering::SeqCst);
                        tracing::debug!(error = %e, "earlier-client: broker");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });

        let mut modem = tokio_serial::new(args.gps.to_string_lossy(), 115_200)
            .open_native_async()
            .with_context(|| format!("cannot open {}", args.gps.display()))?;
        // GNSS on (refused when it already is: either way it is on).
        let _ = at_command(&mut modem, "AT+CGPS=1").await;

        let session = BtleplugSession::start().await?;
        let mut link = ScooterLink::open(session.transport(), link_config(&args)?).await?;
        let mut last_fix: Option<(Fix, Instant)> = None;
        loop {
            let telemetry = match read_sequentially(&mut link).await {
                Ok(t) => t,
                Err(e) if gone(&e) => return Err(anyhow::Error::from(e)),
                Err(e) => {
                    // The earlier client logged and went on after its sleep.
                    tracing::warn!(error = %e, "earlier-client: sample failed");
                    tokio::time::sleep(args.interval).await;
                    continue;
                }
            };
            if let Ok(Some(fix)) = poll_gps(&mut modem).await {
                last_fix = Some((fix, Instant::now()));
            }
            let now = Utc::now();
            let gps = last_fix.clone().map(|(f, at)| (f, at.elapsed()));
            let sample = m365::daemon::readings::sample(&args.scooter_id, now, &telemetry, gps);
            let mut c = counts.get();
            c.sampled += 1;
            let record = Record::from_sample(sample, c.sampled);
            println!("sampled {} {}", c.sampled, now.timestamp_millis());
            let payload = Encoding::Legacy.encode(std::slice::from_ref(&record))?;
            if connected.load(Ordering::SeqCst)
                && client
                    .try_publish(args.topic.clone(), QoS::AtMostOnce, false, payload)
                    .is_ok()
            {
                c.published += 1;
            } else {
                c.failed += 1;
            }
            counts.set(c);
            tokio::time::sleep(args.interval).await;
        }
    };
    tokio::select! {
        r = work => r,
        _ = term.recv() => {
            println!("{}", counts.get().line());
            Ok(())
        }
        _ = int.recv() => {
            println!("{}", counts.get().line());
            Ok(())
        }
    }
}

/// Whether the link gave up or needs a person: the earlier client exited then.
fn gone(e: &BleError) -> bool {
    matches!(e, BleError::Lost { .. } | BleError::NotFound { .. }) || e.needs_pairing()
}

/// The telemetry reads one at a time: each request waits for its answer.
async fn read_sequentially<T: Transport>(
    link: &mut ScooterLink<T>,
) -> Result<m365_ble::Telemetry, BleError> {
    let mut answers = Vec::new();
    for read in telemetry::requests(false) {
        answers.extend(link.request(&[read]).await?);
    }
    Ok(telemetry::decode(&answers)?)
}

/// Sends one AT command and reads until its final result or [`GPS_POLL`]; the information
/// lines of the exchange, or `None` on a time-out or `ERROR`.
async fn at_command(port: &mut tokio_serial::SerialStream, command: &str) -> Option<Vec<String>> {
    port.write_all(format!("{command}\r").as_bytes())
        .await
        .ok()?;
    let mut reader = ExchangeReader::new();
    let deadline = Instant::now() + GPS_POLL;
    let mut buf = [0u8; 256];
    loop {
        let n = tokio::time::timeout_at(deadline, port.read(&mut buf))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        let exchanges = reader.push(buf.get(..n).unwrap_or_default());
        if let Some(done) = exchanges.into_iter().last() {
            return (done.result == FinalResult::Ok).then_some(done.info);
        }
    }
}

/// One blocking `AT+CGPSINFO` poll.
async fn poll_gps(port: &mut tokio_serial::SerialStream) -> anyhow::Result<Option<Fix>> {
    let Some(info) = at_command(port, "AT+CGPSINFO").await else {
        bail!("no answer to AT+CGPSINFO");
    };
    let payload = info
        .iter()
        .find_map(|l| l.strip_prefix("+CGPSINFO:"))
        .context("no +CGPSINFO line")?;
    Ok(parse_cgpsinfo(payload.trim())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lines_read_back() {
        let c = Counts {
            sampled: 12,
            published: 9,
            failed: 3,
        };
        assert_eq!(Counts::parse(&c.line()), Some(c));
        assert_eq!(Counts::parse("earlier-client sampled=x"), None);
        assert_eq!(
            parse_sampled("sampled 4 1700000000123"),
            Some((4, 1_700_000_000_123))
        );
        assert_eq!(parse_sampled("sampled 4"), None);
        assert_eq!(parse_sampled("other 4 5"), None);
    }
}
