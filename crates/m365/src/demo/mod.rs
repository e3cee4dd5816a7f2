//! `m365 demo`: the product working on any machine, in seconds, with nothing to configure.
//!
//! ```text
//! simulated scooters ─in-process BLE─▶ ScooterLink ─┐
//!   └─ ride ─NMEA on a pty─▶ serial GPS source ─────┴─▶ sampler ─▶ spool ─▶ MQTT
//!                                                                            │ (gate)
//!          live view ◀── subscriber ◀── embedded broker (rumqttd) ◀──────────┘
//! ```
//!
//! Everything between the scooter and the broker is the code `m365 run` runs: the session,
//! login and reconnection of `m365-ble`, the serial GPS source and NMEA parser of `m365-gps`,
//! the daemon's sampler, the spool and publisher of `m365-pipeline`. Only the radio (the
//! in-process transport instead of BlueZ) and the broker (embedded) differ. The view is fed by
//! a subscriber of the broker, so what it shows made the whole trip.
//!
//! - [`fleet`]: the simulated scooters, their registration and GPS.
//! - [`broker`] and [`gate`]: the embedded broker and the cuttable path to it.
//! - [`view`]: the subscriber and what it received; [`render`]: lines and table;
//!   [`terminal`]: drawing the table in place, at the terminal's size.
//! - [`faults`]: the `--faults` schedule; [`summary`]: the closing counters.

pub(crate) mod broker;
pub(crate) mod faults;
pub(crate) mod fleet;
pub(crate) mod gate;
pub(crate) mod render;
pub(crate) mod summary;
pub(crate) mod terminal;
pub(crate) mod view;

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use m365_pipeline::{
    Encoding, MqttConfig, MqttProtocol, OutputConfig, PipelineConfig, PipelineHandle, SpoolConfig,
};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::daemon::sampler::{self, GpsLatest, SamplerConfig, SamplerState};
use crate::daemon::signals::Signals;
use broker::EmbeddedBroker;
use fleet::DemoScooter;
use gate::Gate;
use summary::Summary;
use view::{Live, ViewEvent};

/// How the demo runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DemoOptions {
    /// Simulated scooters.
    pub scooters: u16,
    /// Stop after this long (`None`: until Ctrl-C).
    pub duration: Option<Duration>,
    /// Time between two samples of a scooter.
    pub interval: Duration,
    /// Stage a radio drop and a broker outage.
    pub faults: bool,
    /// Redraw a table in place (a terminal) instead of printing lines.
    pub table: bool,
}

/// How often the table is redrawn and the scooters' counters looked at.
const TICK: Duration = Duration::from_millis(250);
/// Longest wait, at the end, for the broker and the view to catch up with the spools.
const DRAIN_LIMIT: Duration = Duration::from_secs(15);

/// One scooter's running parts.
struct Running {
    id: String,
    model: &'static str,
    pipeline: PipelineHandle,
    pipeline_task: JoinHandle<()>,
    sampler: JoinHandle<Result<(), m365_ble::BleError>>,
    state: watch::Receiver<SamplerState>,
    seen: SamplerState,
    _scooter: DemoScooter,
}

/// Runs the demo and prints its summary; returns the summary.
pub(crate) async fn run(options: DemoOptions) -> anyhow::Result<Summary> {
    // Before anything else: no serial client may open the terminal while the demo shows on it.
    let _terminals = terminal::lock_terminals();
    let mut signals = Signals::watch().context("cannot watch Ctrl-C")?;
    let dir = tempfile::Builder::new()
        .prefix("m365-demo-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let broker = EmbeddedBroker::start().await?;
    let gate = Arc::new(Gate::start(broker.addr).await?);
    let (_subscriber, mut received) = view::subscribe(broker.addr).await?;
    let mut out = Output::new(options.table);
    out.line(&format!(
        "m365 demo: {} simulated scooter{} -> spool -> MQTT broker 127.0.0.1:{} -> live view subscribed to {}",
        options.scooters,
        if options.scooters == 1 { "" } else { "s" },
        broker.addr.port(),
        view::TELEMETRY_FILTER
    ));

    let mut preparing = JoinSet::new();
    for index in 0..usize::from(options.scooters) {
        let dir = dir.path().to_path_buf();
        preparing.spawn(async move { (index, DemoScooter::prepare(index, &dir).await) });
    }
    let mut prepared = Vec::new();
    while let Some(done) = preparing.join_next().await {
        let (index, scooter) = done.context("preparing a simulated scooter")?;
        prepared.push((index, scooter?));
    }
    prepared.sort_by_key(|(index, _)| *index);

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut running = Vec::new();
    for (_, scooter) in &prepared {
        scooter.first_fix(Duration::from_secs(2)).await;
    }
    for (_, scooter) in prepared {
        let link = scooter.open().await?;
        let (pipeline, pipeline_task) = m365_pipeline::spawn(
            pipeline_config(dir.path(), &scooter.id, gate.addr()),
            &scooter.id,
        )
        .context("cannot start the pipeline")?;
        let (state_tx, state) = watch::channel(SamplerState::default());
        let gps = Some(GpsLatest::new(scooter.gps.state()));
        let sampler = tokio::spawn(sampler::run(
            link,
            SamplerConfig::fixed(
                &scooter.id,
                options.interval,
                crate::config::GpsConfig::default().max_age,
            ),
            gps,
            pipeline.clone(),
            state_tx,
            stop_rx.clone(),
        ));
        out.line(&format!(
            "scooter {} ({}) registered, logged in, sampling every {:.1}s",
            scooter.id,
            scooter.model,
            options.interval.as_secs_f64()
        ));
        running.push(Running {
            id: scooter.id.clone(),
            model: scooter.model,
            pipeline,
            pipeline_task,
            sampler,
            state,
            seen: SamplerState::default(),
            _scooter: scooter,
        });
    }
    let started = Instant::now();

    let (fault_tx, mut fault_rx) = mpsc::unbounded_channel();
    let fault_task = match (options.faults, running.first()) {
        (true, Some(first)) => Some(tokio::spawn(faults::play(
            started,
            first.id.clone(),
            first._scooter.sim.clone(),
            gate.clone(),
            fault_tx,
        ))),
        _ => None,
    };

    let mut live = Live::default();
    let mut tick = tokio::time::interval(TICK);
    let mut resizes = if out.table { terminal::resizes() } else { None };
    let end = options.duration.map(|d| started + d);
    let mut last_event = String::from("none yet");
    loop {
        tokio::select! {
            _ = signals.recv() => break,
            () = sleep_until_opt(end) => break,
            Some(event) = received.recv() => {
                live.apply(&event);
                if !out.table {
                    match &event {
                        ViewEvent::Record(r) => out.line(&render::record_line(r)),
                        ViewEvent::Availability { scooter_id, online } => out.line(&format!(
                            "event scooter={scooter_id} broker={}",
                            if *online { "online" } else { "offline" }
                        )),
                    }
                }
            }
            Some(fault) = fault_rx.recv() => {
                last_event = fault.to_string();
                out.line_if_plain(&last_event);
            }
            () = terminal::next_resize(&mut resizes) => {
                out.table(&live, &running, &last_event, started.elapsed());
            }
            _ = tick.tick() => {
                for r in &mut running {
                    if let Some(event) = link_event(&r.id, &r.seen, &r.state.borrow()) {
                        last_event = event;
                        out.line_if_plain(&last_event);
                    }
                    r.seen = r.state.borrow().clone();
                    if r.sampler.is_finished() {
                        anyhow::bail!("the sampler of scooter {} stopped", r.id);
                    }
                }
                out.table(&live, &running, &last_event, started.elapsed());
            }
        }
    }
    let seconds = started.elapsed().as_secs();

    // Stop sampling, let the broker take everything, and wait for the view to see it.
    if let Some(task) = fault_task {
        task.abort();
    }
    gate.restore();
    let _ = stop_tx.send(true);
    for r in &mut running {
        if tokio::time::timeout(Duration::from_secs(5), &mut r.sampler)
            .await
            .is_err()
        {
            r.sampler.abort();
        }
    }
    let deadline = Instant::now() + DRAIN_LIMIT;
    while !caught_up(&running, &live) && Instant::now() < deadline {
        tokio::select! {
            Some(event) = received.recv() => {
                live.apply(&event);
                if let (false, ViewEvent::Record(r)) = (out.table, &event) {
                    out.line(&render::record_line(r));
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
    out.table(&live, &running, &last_event, started.elapsed());

    let mut summary = Summary {
        scooters: running.len() as u64,
        seconds,
        ..Summary::default()
    };
    for r in &running {
        let h = r.pipeline.health();
        let s = r.state.borrow();
        let received = live.received(&r.id);
        summary.sampled += s.submitted + s.dropped;
        summary.spooled += h.spooled;
        summary.published += h.published;
        summary.acknowledged += h.acknowledged;
        summary.received += received;
        summary.lost += h.spooled.saturating_sub(received);
        summary.dropped += h.dropped_channel + h.dropped_spool;
        summary.logins += s.link.logins;
        summary.link_losses += s.link.link_losses;
        summary.sessions_reused += s.link.sessions_reused;
    }
    for r in running {
        drop(r.pipeline);
        let _ = tokio::time::timeout(Duration::from_secs(5), r.pipeline_task).await;
    }
    out.finish();
    out.line(&summary.sentence());
    out.line(&summary.to_string());
    Ok(summary)
}

/// The pipeline of one demo scooter: a spool in the demo's directory, MQTT 3.1.1 through the
/// gate, the `json` encoding, and quick reconnects so an outage ends visibly.
fn pipeline_config(
    dir: &std::path::Path,
    scooter_id: &str,
    broker: std::net::SocketAddr,
) -> PipelineConfig {
    PipelineConfig {
        spool: SpoolConfig {
            path: dir.join(format!("{scooter_id}.sqlite")),
            // Commit often: the view should move with the samples.
            commit_interval_ms: 100,
            ..SpoolConfig::default()
        },
        mqtt: MqttConfig {
            broker: format!("tcp://{broker}"),
            // The embedded broker relays MQTT 5 properties badly to 3.1.1 subscribers.
            protocol: MqttProtocol::V311,
            client: format!("m365-demo-{scooter_id}"),
            keep_alive: 5,
            reconnect_min: 0.5,
            reconnect_max: 1.0,
            connect_timeout: 2,
            outputs: vec![OutputConfig {
                topic: "m365/{scooter_id}/telemetry".into(),
                encoding: Encoding::Json,
                batch: None,
                linger_ms: None,
                legacy_no_fix: Default::default(),
            }],
            availability_topic: Some("m365/{scooter_id}/availability".into()),
            status_topic: None,
            ..MqttConfig::default()
        },
        ..PipelineConfig::default()
    }
}

/// Every sample is spooled, acknowledged and seen by the view.
fn caught_up(running: &[Running], live: &Live) -> bool {
    running.iter().all(|r| {
        let h = r.pipeline.health();
        let s = r.state.borrow();
        h.spooled >= s.submitted && h.spool_records == 0 && live.received(&r.id) >= h.spooled
    })
}

/// What changed on a scooter's link since the last look, in words.
fn link_event(id: &str, before: &SamplerState, now: &SamplerState) -> Option<String> {
    let (b, n) = (&before.link, &now.link);
    if n.sessions_reused > b.sessions_reused {
        Some(format!(
            "event scooter={id} link back: session reused, no new login (logins {})",
            n.logins
        ))
    } else if n.logins > b.logins && b.logins > 0 {
        Some(format!("event scooter={id} link back: logged in again"))
    } else if n.link_losses > b.link_losses {
        Some(format!("event scooter={id} link lost: reconnecting"))
    } else {
        None
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Writes to stdout: lines, or a table redrawn in place at the terminal's size.
struct Output {
    table: bool,
    screen: terminal::Screen,
}

impl Output {
    fn new(table: bool) -> Output {
        Output {
            table,
            screen: terminal::Screen::default(),
        }
    }

    /// A line above the table (or simply a line).
    fn line(&mut self, text: &str) {
        let mut stdout = std::io::stdout().lock();
        if self.table {
            if self.screen.is_drawn() {
                // Erase the table; it is drawn again below the new line at the next tick.
                let (columns, _) = terminal::size();
                let _ = self.screen.erase(&mut stdout, columns);
            }
            // Like the table's lines, back to the margin without relying on the terminal.
            let _ = write!(stdout, "{text}\r\n");
        } else {
            let _ = writeln!(stdout, "{text}");
        }
        let _ = stdout.flush();
    }

    fn line_if_plain(&mut self, text: &str) {
        if !self.table {
            self.line(text);
        }
    }

    fn table(&mut self, live: &Live, running: &[Running], last_event: &str, elapsed: Duration) {
        if !self.table {
            return;
        }
        let (mut spooled, mut acked, mut backlog) = (0, 0, 0);
        for r in running {
            let h = r.pipeline.health();
            spooled += h.spooled;
            acked += h.acknowledged;
            backlog += h.spool_records;
        }
        let scooters: Vec<(String, &str)> =
            running.iter().map(|r| (r.id.clone(), r.model)).collect();
        let footer = [
            format!(
                "{:.0}s  spooled {spooled}  acknowledged {acked}  waiting in spool {backlog}",
                elapsed.as_secs_f64()
            ),
            format!("last event: {last_event}"),
        ];
        // Laid out afresh at every redraw, for the size the terminal has now.
        let size = terminal::size();
        let (width, height) = terminal::usable(size);
        let lines = render::layout(&render::rows(live, &scooters), &footer, width, height);
        let mut stdout = std::io::stdout().lock();
        let _ = self.screen.draw(&mut stdout, &lines, size.0);
        let _ = stdout.flush();
    }

    /// Leaves the table on screen; what follows goes below it.
    fn finish(&mut self) {
        self.screen.forget();
    }
}
