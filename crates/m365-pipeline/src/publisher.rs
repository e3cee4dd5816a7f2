//! The publishing task: the thin I/O driver around the pure parts. It owns the spool, the
//! publish window and at most one MQTT connection, and moves data one way:
//! sample → record (spool commit) → MQTT → PUBACK → spool delete.
//!
//! Everything between the sampler and the broker is bounded: the sample channel
//! (`channel_capacity`, a full channel drops the new sample and counts it), the window
//! (`max_in_flight` messages), the live queue of the window, rumqttc's request queue (sized to
//! the window) and the spool on disk (`max_records`, `max_bytes`, `max_age_s`). A stuck broker
//! therefore never grows memory; it grows the spool up to its bounds.
//!
//! Ride events travel through the spool like telemetry, but are published one per message on
//! the events topic, in the first (primary) output's encoding. Every other output, and every
//! output when no events topic is configured, acknowledges them as soon as they are committed;
//! a telemetry message never carries one. A planned batch that mixes the two is cut where they
//! meet: the leading part is published and the rest handed back to the window.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use m365_backoff::Backoff;

use crate::config::{OutputConfig, PipelineConfig};
use crate::encoding::Encoding;
use crate::error::{ConfigError, SpoolError};
use crate::failure::{ErrorKind, LastError};
use crate::health::{BrokerState, Counter, Health, HealthSnapshot};
use crate::mqtt::{CloseReason, ConnectParams, Connection, NetEvent};
use crate::record::Sample;
use crate::spool::{Spool, StoredRecord};
use crate::window::{Kind, OutputLimits, Plan, PublishWindow, Submitted};

/// How long the retained `offline` and the DISCONNECT may take at shutdown, after the records'
/// grace period.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Why the pipeline could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The spool cannot be used at all.
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

/// The sampler's side of the pipeline.
#[derive(Debug, Clone)]
pub struct PipelineHandle {
    tx: mpsc::Sender<Sample>,
    health: Arc<Health>,
    available: Arc<tokio::sync::watch::Sender<bool>>,
}

/// Reads the pipeline's counters without keeping it alive ([`PipelineHandle::monitor`]).
#[derive(Debug, Clone)]
pub struct HealthMonitor(Arc<Health>);

impl HealthMonitor {
    /// The counters now.
    pub fn snapshot(&self) -> HealthSnapshot {
        self.0.snapshot()
    }
}

/// Returned by [`PipelineHandle::try_submit`] when the sample was not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubmitError {
    /// The pipeline is busy (spool writes behind); the sample was dropped and counted.
    #[error("pipeline busy: sample dropped")]
    Full,
    /// The pipeline stopped.
    #[error("pipeline stopped")]
    Closed,
}

impl PipelineHandle {
    /// Hands a sample over without waiting. A full channel drops it (counted in
    /// `dropped_channel`): the sampler must keep its own pace.
    pub fn try_submit(&self, sample: Sample) -> Result<(), SubmitError> {
        self.health.add(Counter::Sampled, 1);
        self.tx.try_send(sample).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                self.health.add(Counter::DroppedChannel, 1);
                SubmitError::Full
            }
            mpsc::error::TrySendError::Closed(_) => SubmitError::Closed,
        })
    }

    /// Hands a sample over, waiting while the channel is full.
    pub async fn submit(&self, sample: Sample) -> Result<(), SubmitError> {
        self.health.add(Counter::Sampled, 1);
        self.tx.send(sample).await.map_err(|_| SubmitError::Closed)
    }

    /// Says whether the scooter itself is reachable: the retained availability message becomes
    /// `online` or `offline` (at once when connected, else at the next connection). It starts
    /// `online`, so a pipeline whose owner never calls this reports the connection alone; the
    /// last will still says `offline` when the connection is lost.
    pub fn set_available(&self, available: bool) {
        self.available
            .send_if_modified(|a| std::mem::replace(a, available) != available);
    }

    /// Current counters.
    pub fn health(&self) -> HealthSnapshot {
        self.health.snapshot()
    }

    /// The counters, readable after the pipeline stopped: unlike a handle, a monitor does not
    /// keep the pipeline running, so a caller can drop its handles, wait for the task, and then
    /// read the final figures (the last acknowledgements included).
    pub fn monitor(&self) -> HealthMonitor {
        HealthMonitor(self.health.clone())
    }

    /// The latest connection or spool error, if the last attempt failed; cleared when a
    /// connection comes up. Its [`LastError::kind`] tells a refused password from an outage.
    pub fn last_error(&self) -> Option<LastError> {
        self.health.last_error()
    }

    /// The kind of [`PipelineHandle::last_error`].
    pub fn last_error_kind(&self) -> Option<ErrorKind> {
        self.health.last_error_kind()
    }
}

/// An output with its topic resolved.
#[derive(Debug, Clone)]
struct Output {
    topic: String,
    encoding: Encoding,
    legacy_no_fix: crate::encoding::NoFix,
}

/// Starts the pipeline for `scooter_id`. Opens the spool (moving a damaged file aside) and
/// spawns the publishing task on the current tokio runtime (call it from within one).
///
/// The task runs until every [`PipelineHandle`] clone is dropped; it then commits what is
/// buffered and, when connected, keeps publishing for up to `shutdown_grace` while
/// acknowledgements come in, publishes the retained `offline` and sends an MQTT DISCONNECT
/// (taking at most one more second). A daemon shuts down cleanly by dropping its handles and
/// awaiting the returned `JoinHandle`. Unacknowledged records stay in the spool for the next
/// start.
pub fn spawn(
    cfg: PipelineConfig,
    scooter_id: &str,
) -> Result<(PipelineHandle, JoinHandle<()>), PipelineError> {
    cfg.mqtt.validate()?;
    let resolve = |t: &str| t.replace("{scooter_id}", scooter_id);
    let outputs_cfg: Vec<OutputConfig> = cfg.mqtt.effective_outputs();
    let outputs: Vec<Output> = outputs_cfg
        .iter()
        .map(|o| Output {
            topic: resolve(&o.topic),
            encoding: o.encoding,
            legacy_no_fix: o.legacy_no_fix,
        })
        .collect();
    let names: Vec<String> = outputs
        .iter()
        .map(|o| format!("{}|{:?}", o.topic, o.encoding))
        .collect();
    let health = Health::new();
    let (spool, report) = Spool::open(&cfg.spool, &names)?;
    if let Some(r) = report {
        health.add(Counter::SpoolRecoveries, 1);
        error!(moved_to = %r.moved_to.display(), reason = %r.reason, "started with a fresh spool");
    }
    let limits: Vec<OutputLimits> = outputs_cfg
        .iter()
        .map(|o| OutputLimits {
            batch: o.batch_size().min(o.encoding.max_batch()),
            linger: o.linger(),
        })
        .collect();
    let window = PublishWindow::new(
        usize::from(cfg.mqtt.max_in_flight),
        usize::from(cfg.mqtt.live_reserved),
        &limits,
    );
    let params = cfg.mqtt.connect_params(
        cfg.mqtt.client.clone(),
        // Room for the control messages on top of the record window.
        cfg.mqtt.max_in_flight.saturating_add(2),
        cfg.mqtt
            .availability_topic
            .as_deref()
            .map(|t| (resolve(t), b"offline".to_vec())),
    )?;
    let (tx, rx) = mpsc::channel(cfg.channel_capacity.max(1));
    let (available_tx, available) = tokio::sync::watch::channel(true);
    let driver = Driver {
        available,
        backoff: {
            let (min, max) = cfg.mqtt.reconnect_bounds();
            Backoff::new(min, max)
        },
        availability_topic: cfg.mqtt.availability_topic.as_deref().map(resolve),
        status_topic: cfg.mqtt.status_topic.as_deref().map(resolve),
        events_topic: cfg.mqtt.events_topic.as_deref().map(resolve),
        status_interval: Duration::from_secs(cfg.mqtt.status_interval.max(1)),
        scooter_id: scooter_id.to_owned(),
        cfg,
        params,
        outputs,
        spool,
        window,
        health: health.clone(),
        rx,
        conn: None,
        events: None,
        reconnect_at: None,
        status_at: None,
        status_dirty: false,
        last_status: None,
        last_dropped: u64::MAX,
        prune_at: Instant::now(),
        rng: StdRng::from_entropy(),
        connected_once: false,
    };
    let task = tokio::spawn(driver.run());
    Ok((
        PipelineHandle {
            tx,
            health,
            available: Arc::new(available_tx),
        },
        task,
    ))
}

struct Driver {
    /// Whether the scooter is reachable ([`PipelineHandle::set_available`]).
    available: tokio::sync::watch::Receiver<bool>,
    cfg: PipelineConfig,
    params: ConnectParams,
    outputs: Vec<Output>,
    spool: Spool,
    window: PublishWindow,
    health: Arc<Health>,
    rx: mpsc::Receiver<Sample>,
    conn: Option<Connection>,
    events: Option<mpsc::Receiver<NetEvent>>,
    backoff: Backoff,
    reconnect_at: Option<Instant>,
    availability_topic: Option<String>,
    status_topic: Option<String>,
    /// Where the primary output's events go; `None`: events are not published.
    events_topic: Option<String>,
    status_interval: Duration,
    status_at: Option<Instant>,
    status_dirty: bool,
    last_status: Option<Instant>,
    last_dropped: u64,
    prune_at: Instant,
    rng: StdRng,
    scooter_id: String,
    connected_once: bool,
}

#[derive(Serialize)]
struct StatusMessage<'a> {
    v: u32,
    scooter_id: &'a str,
    ts: String,
    #[serde(flatten)]
    health: HealthSnapshot,
}

fn t_plus_1s(t: Option<Instant>) -> Instant {
    t.unwrap_or_else(Instant::now) + Duration::from_secs(1)
}

async fn next_event(events: &mut Option<mpsc::Receiver<NetEvent>>) -> Option<NetEvent> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

impl Driver {
    async fn run(mut self) {
        self.connect();
        loop {
            self.pump();
            self.update_gauges();
            let deadline = [
                self.spool.flush_deadline().map(Instant::from_std),
                self.window.next_deadline().map(Instant::from_std),
                self.reconnect_at,
                self.status_at,
                Some(self.prune_at),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                sample = self.rx.recv() => match sample {
                    Some(s) => self.on_sample(s),
                    None => break,
                },
                ev = next_event(&mut self.events) => match ev {
                    Some(ev) => self.on_net(ev),
                    None => self.on_closed(CloseReason::Other("connection task ended".into())),
                },
                Ok(()) = self.available.changed() => {
                    if self.window.is_connected() {
                        self.publish_availability();
                    }
                }
                _ = tokio::time::sleep_until(deadline) => self.on_timer(),
            }
        }
        self.shutdown().await;
    }

    /// Every handle dropped: commit what is buffered; if connected, publish what the broker
    /// acknowledges within `shutdown_grace`, then the retained `offline` and a DISCONNECT, so
    /// the broker ends the session normally (the last will is only for abrupt ends).
    /// Unacknowledged records stay spooled for the next start.
    async fn shutdown(&mut self) {
        let r = self.spool.flush_at(Self::now_std());
        self.after_commit(r);
        if !self.window.is_connected() {
            self.update_gauges();
            info!(
                spooled = self.spool.stats().records,
                "pipeline stopped (not connected)"
            );
            return;
        }
        self.window.stop_lingering();
        let grace = Duration::from_secs_f64(self.cfg.mqtt.shutdown_grace);
        let deadline = Instant::now() + grace;
        loop {
            self.pump();
            // `pump` fills every free slot, so nothing in flight means nothing left to send.
            if !self.window.is_connected() || self.window.in_flight() == 0 {
                break;
            }
            if !self.await_net(deadline).await {
                break;
            }
        }
        let left = self.spool.stats().records;
        // The control messages get their own short bounds after the records' grace: half for
        // the PUBACK of `offline`, half for the DISCONNECT, so a broker that stopped
        // acknowledging still gets the DISCONNECT.
        let deadline = Instant::now() + CLOSE_TIMEOUT / 2;
        if let Some(topic) = self.availability_topic.clone() {
            self.publish_control(&topic, b"offline".to_vec());
            while self.window.is_connected() && self.window.in_flight() > 0 {
                if !self.await_net(deadline).await {
                    break;
                }
            }
        }
        let deadline = Instant::now() + CLOSE_TIMEOUT / 2;
        let mut clean = false;
        if let Some(conn) = self.conn.as_ref().filter(|_| self.window.is_connected()) {
            match conn.disconnect() {
                Ok(()) => {
                    while let Ok(Some(ev)) =
                        tokio::time::timeout_at(deadline, next_event(&mut self.events)).await
                    {
                        match ev {
                            NetEvent::DisconnectSent => {
                                clean = true;
                                break;
                            }
                            NetEvent::Closed(_) => break,
                            _ => {}
                        }
                    }
                }
                Err(e) => warn!(error = %e, "DISCONNECT not queued"),
            }
        }
        self.conn = None;
        self.events = None;
        self.window.on_disconnected();
        self.health.set_broker(BrokerState::Idle);
        self.update_gauges();
        info!(
            unacknowledged = left,
            disconnected = clean,
            "pipeline stopped"
        );
    }

    /// Handles one network event, or returns `false` at `deadline` or when the connection's
    /// event stream ended.
    async fn await_net(&mut self, deadline: Instant) -> bool {
        match tokio::time::timeout_at(deadline, next_event(&mut self.events)).await {
            Ok(Some(ev)) => {
                self.on_net(ev);
                true
            }
            Ok(None) | Err(_) => false,
        }
    }

    fn now_std() -> std::time::Instant {
        Instant::now().into_std()
    }

    fn on_sample(&mut self, s: Sample) {
        let result = self.spool.append(s, Self::now_std());
        self.after_commit(result);
    }

    fn after_commit(&mut self, result: Result<Vec<StoredRecord>, SpoolError>) {
        match result {
            Ok(rows) if !rows.is_empty() => {
                self.health.add(Counter::Spooled, rows.len() as u64);
                let events: Vec<i64> = rows
                    .iter()
                    .filter(|r| r.record.is_event())
                    .map(|r| r.row)
                    .collect();
                if !events.is_empty() {
                    // Outputs that never publish events acknowledge them now: they must not
                    // wait in the spool for a connection that will not send them.
                    // Should that fail, the backlog of the next connection acknowledges them.
                    for output in 0..self.outputs.len() {
                        if !self.publishes_events(output)
                            && let Err(e) = self.spool.ack(output, &events)
                        {
                            self.on_spool_error(e);
                            break;
                        }
                    }
                }
                let ids: Vec<i64> = rows
                    .iter()
                    .filter(|r| !r.record.is_event() || self.events_topic.is_some())
                    .map(|r| r.row)
                    .collect();
                self.window.on_committed(&ids, Self::now_std());
            }
            Ok(_) => {}
            Err(e) => self.on_spool_error(e),
        }
    }

    /// Whether `output` publishes events: only the first, and only with an events topic.
    fn publishes_events(&self, output: usize) -> bool {
        output == 0 && self.events_topic.is_some()
    }

    /// Narrows the records of one plan to what one message carries. On an output that
    /// publishes events: the leading event alone, or the leading run of telemetry; the rest is
    /// handed back to the window. On the others: the telemetry, the events being acknowledged
    /// without a message. Returns `None` when a spool error ended the round.
    fn one_message(
        &mut self,
        output: usize,
        kind: Kind,
        mut records: Vec<StoredRecord>,
    ) -> Option<Vec<StoredRecord>> {
        if self.publishes_events(output) {
            let cut = match records.first() {
                Some(first) if first.record.is_event() => 1,
                _ => records
                    .iter()
                    .position(|r| r.record.is_event())
                    .unwrap_or(records.len()),
            };
            let rest: Vec<i64> = records.split_off(cut).iter().map(|r| r.row).collect();
            self.window.give_back(output, kind, &rest);
            return Some(records);
        }
        let (events, telemetry): (Vec<StoredRecord>, Vec<StoredRecord>) =
            records.into_iter().partition(|r| r.record.is_event());
        if !events.is_empty() {
            let rows: Vec<i64> = events.iter().map(|r| r.row).collect();
            if let Err(e) = self.spool.ack(output, &rows) {
                self.on_spool_error(e);
                return None;
            }
        }
        Some(telemetry)
    }

    fn on_spool_error(&mut self, e: SpoolError) {
        error!(error = %e, "spool");
        self.health
            .set_last_error(Some(LastError::new(ErrorKind::Spool, e.to_string())));
        if matches!(e, SpoolError::Recovered { .. }) {
            self.health.add(Counter::SpoolRecoveries, 1);
            // Row ids restart in the fresh file: drop the connection so no acknowledgement of
            // an old row can be applied to a new one, and start over.
            self.drop_connection();
            self.reconnect_at = Some(Instant::now());
        }
    }

    fn on_timer(&mut self) {
        let now = Instant::now();
        if self
            .spool
            .flush_deadline()
            .is_some_and(|d| Instant::from_std(d) <= now)
        {
            let r = self.spool.flush_at(Self::now_std());
            self.after_commit(r);
        }
        if self.reconnect_at.is_some_and(|t| t <= now) {
            self.reconnect_at = None;
            self.connect();
        }
        if self.status_at.is_some_and(|t| t <= now) {
            self.status_dirty = true;
            self.status_at = Some(now + self.status_interval);
        }
        if self.prune_at <= now {
            self.prune_at = now + Duration::from_secs(10);
            if let Err(e) = self.spool.prune_expired(Utc::now()) {
                self.on_spool_error(e);
            }
        }
        // Window deadlines (linger) are handled by pump().
    }

    fn connect(&mut self) {
        let mut params = self.params.clone();
        match self.cfg.mqtt.credentials() {
            Ok(credentials) => params.credentials = credentials,
            Err(e) => {
                error!(error = %e, "cannot read the MQTT password; retrying later");
                self.health
                    .set_last_error(Some(LastError::new(ErrorKind::Password, e.to_string())));
                self.schedule_reconnect();
                return;
            }
        }
        debug!(?params, "connecting");
        self.health.set_broker(BrokerState::Connecting);
        let (conn, events) = Connection::open(&params);
        self.conn = Some(conn);
        self.events = Some(events);
    }

    fn schedule_reconnect(&mut self) {
        let delay = self.backoff.next_delay(&mut self.rng);
        info!(
            delay_ms = delay.as_millis() as u64,
            "reconnecting after back-off"
        );
        self.health.set_broker(BrokerState::Backoff);
        self.reconnect_at = Some(Instant::now() + delay);
    }

    fn drop_connection(&mut self) {
        self.conn = None;
        self.events = None;
        self.window.on_disconnected();
    }

    fn on_closed(&mut self, reason: CloseReason) {
        let was_connected = self.window.is_connected();
        self.health
            .set_last_error(Some(LastError::new(reason.kind(), reason.to_string())));
        if was_connected {
            warn!(broker = %self.cfg.mqtt.broker, %reason, "connection lost");
        } else {
            self.health.add(Counter::ConnectFailures, 1);
            match &reason {
                CloseReason::Refused(..) | CloseReason::Tls(_) => {
                    error!(broker = %self.cfg.mqtt.broker, %reason, "cannot connect")
                }
                _ => warn!(broker = %self.cfg.mqtt.broker, %reason, "cannot connect"),
            }
        }
        self.drop_connection();
        self.schedule_reconnect();
    }

    /// The retained availability: `online` while the scooter is reachable.
    fn publish_availability(&mut self) {
        if let Some(topic) = self.availability_topic.clone() {
            let payload: &[u8] = if *self.available.borrow_and_update() {
                b"online"
            } else {
                b"offline"
            };
            self.publish_control(&topic, payload.to_vec());
        }
    }

    fn on_net(&mut self, ev: NetEvent) {
        match ev {
            NetEvent::Connected => {
                info!(broker = %self.cfg.mqtt.broker, resumed = self.connected_once, "connected");
                self.connected_once = true;
                self.backoff.reset();
                self.health.set_last_error(None);
                self.window.on_connected();
                self.health.set_broker(BrokerState::Connected);
                self.publish_availability();
                self.status_dirty = true;
                self.status_at = Some(Instant::now() + self.status_interval);
            }
            NetEvent::Sent(pkid) => self.window.on_packet_sent(pkid),
            NetEvent::Acked(pkid, result) => {
                let Some(s) = self.window.on_ack(pkid) else {
                    return;
                };
                if s.kind == Kind::Control {
                    return;
                }
                match result {
                    Ok(()) => {
                        self.health.add(Counter::Acknowledged, s.rows.len() as u64);
                        if let Err(e) = self.spool.ack(s.output, &s.rows) {
                            self.on_spool_error(e);
                        }
                    }
                    // Kept in the spool: published again after the next reconnect.
                    Err(reason) => warn!(
                        pkid,
                        %reason,
                        topic = self.outputs.get(s.output).map(|o| o.topic.as_str()),
                        "broker refused a publish"
                    ),
                }
            }
            NetEvent::Closed(reason) => self.on_closed(reason),
            // Only asked for while shutting down, which waits for it itself.
            NetEvent::DisconnectSent => {}
            // The publisher subscribes to nothing.
            NetEvent::Subscribed(_) | NetEvent::Message { .. } => {}
        }
    }

    fn publish_control(&mut self, topic: &str, payload: Vec<u8>) {
        let Some(conn) = &self.conn else { return };
        match conn.publish(topic, payload, true, Some("text/plain")) {
            Ok(()) => self.window.on_submitted(Submitted {
                output: 0,
                rows: Vec::new(),
                kind: Kind::Control,
            }),
            Err(e) => warn!(error = %e, "control publish not queued"),
        }
    }

    fn maybe_publish_status(&mut self) {
        let dropped = self.spool.stats().dropped_total;
        if dropped != self.last_dropped {
            self.status_dirty = true;
        }
        if !self.status_dirty || !self.window.is_connected() {
            return;
        }
        // At most one status message per second, however fast the dropped count moves.
        let now = Instant::now();
        if self
            .last_status
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            if self
                .status_at
                .is_none_or(|s| s > t_plus_1s(self.last_status))
            {
                self.status_at = Some(t_plus_1s(self.last_status));
            }
            return;
        }
        self.last_status = Some(now);
        let Some(topic) = self.status_topic.clone() else {
            self.status_dirty = false;
            return;
        };
        self.update_gauges();
        let msg = StatusMessage {
            v: 1,
            scooter_id: &self.scooter_id,
            ts: Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            health: self.health.snapshot(),
        };
        match serde_json::to_vec(&msg) {
            Ok(payload) => self.publish_control(&topic, payload),
            Err(e) => warn!(error = %e, "status encoding"),
        }
        self.status_dirty = false;
        self.last_dropped = dropped;
    }

    /// Publishes as much as the window allows.
    fn pump(&mut self) {
        self.maybe_publish_status();
        let now = Self::now_std();
        while let Some(plan) = self.window.poll(now) {
            let (output, records, kind) = match plan {
                Plan::Backlog {
                    output,
                    after,
                    limit,
                    batch,
                } => {
                    let (fetched, ids) = match self.spool.scan_pending(output, after, limit) {
                        Ok(f) => f,
                        Err(e) => return self.on_spool_error(e),
                    };
                    // Every row the scan went through, quarantined ones included: the cursor
                    // moves past them.
                    let taken = self.window.take_backlog(output, &ids, limit, batch);
                    let records: Vec<StoredRecord> = fetched
                        .into_iter()
                        .filter(|r| taken.binary_search(&r.row).is_ok())
                        .collect();
                    (output, records, Kind::Backlog)
                }
                Plan::Live { output, rows } => match self.spool.get(output, &rows) {
                    Ok(r) => (output, r, Kind::Live),
                    Err(e) => return self.on_spool_error(e),
                },
            };
            let Some(records) = self.one_message(output, kind, records) else {
                return;
            };
            if records.is_empty() {
                continue;
            }
            let Some(out) = self.outputs.get(output).cloned() else {
                continue;
            };
            let rows: Vec<i64> = records.iter().map(|r| r.row).collect();
            let recs: Vec<crate::record::Record> = records.into_iter().map(|r| r.record).collect();
            let event_topic = match recs.first() {
                Some(r) if r.is_event() => self.events_topic.clone(),
                _ => None,
            };
            let encoded = match (&event_topic, recs.first()) {
                (Some(_), Some(r)) => out.encoding.encode_event(r),
                _ => out.encoding.encode_with(&recs, out.legacy_no_fix),
            };
            let topic = event_topic.as_deref().unwrap_or(&out.topic);
            let payload = match encoded {
                Ok(p) => p,
                Err(e) => {
                    // Never deleted, never blocking the queue: kept in the spool's quarantine
                    // and tried again at the next start.
                    let reason = format!("{} encoding for {topic}: {e}", out.encoding.name());
                    let bad: Vec<(i64, String)> =
                        rows.iter().map(|r| (*r, reason.clone())).collect();
                    if let Err(e) = self.spool.quarantine(output, &bad) {
                        self.on_spool_error(e);
                    }
                    self.update_gauges();
                    continue;
                }
            };
            let Some(conn) = &self.conn else { return };
            if let Err(e) = conn.publish(topic, payload, false, Some(out.encoding.content_type())) {
                warn!(error = %e, "publish queue refused; reconnecting");
                self.on_closed(CloseReason::Other(e));
                return;
            }
            self.health.add(Counter::Published, rows.len() as u64);
            self.window.on_submitted(Submitted { output, rows, kind });
        }
    }

    fn update_gauges(&self) {
        let s = self.spool.stats();
        self.health.set_gauges(
            s.records,
            s.bytes,
            s.dropped_total,
            self.window.in_flight() as u64,
        );
        self.health.set_quarantined(s.quarantined);
    }
}
