//! The worker: receives messages, decodes them, writes them to PostgreSQL in batches and
//! acknowledges each message only after the transaction holding its rows committed.
//!
//! * A batch is written when it holds `[batch] size` records, when `linger` passed since its
//!   first message, or when it holds `[mqtt] in_flight` messages (the broker sends no more
//!   until some are acknowledged).
//! * A message that cannot be decoded becomes a dead letter in the same transaction and is
//!   acknowledged with the others: it never blocks the messages behind it.
//! * The database is unreachable: nothing is acknowledged (the broker keeps the messages and,
//!   once `in_flight` are outstanding, stops sending); the batch is retried with back-off on a
//!   new connection until it commits.
//! * The database refuses the data of a batch (which the checks before the insert should make
//!   impossible): the messages are written one by one, and the one that is refused becomes a
//!   dead letter with the database's reason.

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::config::Config;
use crate::decode::{Decoded, decode};
use crate::error::{Disposition, StoreError};
use crate::mqtt::{Delivery, Link, LinkState, MqttSetupError};
use crate::store::{Content, Item, Outcome, Store};
use crate::topic::Topics;
use m365_backoff::Backoff;
use rand::SeedableRng;
use rand::rngs::StdRng;

/// How often the running totals are logged.
const STATS_EVERY: Duration = Duration::from_secs(60);

/// How long a stopping worker tries to commit what it holds.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Why the worker stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The MQTT side cannot be set up (TLS files, password file).
    #[error(transparent)]
    Mqtt(#[from] MqttSetupError),
    /// The broker refused the credentials or the client id.
    #[error("the broker refused the connection: {0}")]
    BrokerRefused(String),
    /// A database error that waiting cannot fix.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A stop request shared by the tasks: set once, seen by every clone.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// Sets a [`Shutdown`].
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

impl Shutdown {
    /// A new stop request and its trigger.
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (ShutdownTrigger(tx), Shutdown(rx))
    }

    /// Whether stopping was requested.
    pub fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    /// Waits until stopping is requested (or the trigger is dropped).
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|v| *v).await;
    }
}

impl ShutdownTrigger {
    /// Requests the stop.
    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }
}

/// Totals of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// What the batches did.
    pub outcome: Outcome,
    /// Messages acknowledged.
    pub acknowledged: u64,
    /// Messages committed but not acknowledged because their connection had ended (the broker
    /// resends them; they are then found to be duplicates).
    pub not_acknowledged: u64,
    /// Batches committed.
    pub batches: u64,
}

/// Turns a delivery into what the store writes.
pub fn to_item(topics: &Topics, d: &Delivery) -> Item {
    let p = &d.publish;
    let content_type = p.properties.as_ref().and_then(|pp| pp.content_type.clone());
    let dead = |topic: String, reason: String| Item {
        topic,
        content_type: content_type.clone(),
        content: Content::Dead {
            reason,
            payload: p.payload.to_vec(),
        },
    };
    let Ok(topic) = std::str::from_utf8(&p.topic) else {
        return dead(
            String::from_utf8_lossy(&p.topic).into_owned(),
            "the topic is not UTF-8".into(),
        );
    };
    let Some(m) = topics.classify(topic) else {
        return dead(
            topic.to_owned(),
            "the topic matches no configured filter".into(),
        );
    };
    match decode(&m, content_type.as_deref(), &p.payload) {
        Ok(Decoded::Records(r)) => Item {
            topic: topic.to_owned(),
            content_type,
            content: Content::Records(r),
        },
        Ok(Decoded::Event(e)) => Item {
            topic: topic.to_owned(),
            content_type,
            content: Content::Event(e),
        },
        Ok(Decoded::RideEvent(e)) => Item {
            topic: topic.to_owned(),
            content_type,
            content: Content::RideEvent(e),
        },
        Err(why) => dead(topic.to_owned(), why.0),
    }
}

/// The messages held for the next transaction, and when it is due.
#[derive(Debug, Default)]
struct Batch {
    deliveries: Vec<Delivery>,
    items: Vec<Item>,
    records: usize,
    deadline: Option<Instant>,
}

impl Batch {
    /// Adds a message received at `now`; the first one sets the deadline `linger` later.
    fn push(&mut self, d: Delivery, item: Item, now: Instant, linger: Duration) {
        self.records += item.record_count();
        self.deadline.get_or_insert(now + linger);
        self.items.push(item);
        self.deliveries.push(d);
    }

    fn is_empty(&self) -> bool {
        self.deliveries.is_empty()
    }

    /// Whether to write now: `max_records` records, `max_messages` messages (the broker sends
    /// no more until some are acknowledged), or the deadline passed.
    fn due(&self, now: Instant, max_records: usize, max_messages: usize) -> bool {
        !self.is_empty()
            && (self.records >= max_records
                || self.deliveries.len() >= max_messages
                || self.deadline.is_some_and(|d| d <= now))
    }
}

/// The database connection with reconnects.
struct Db<'a> {
    cfg: &'a Config,
    worker: &'a str,
    store: Option<Store>,
    backoff: Backoff,
    rng: StdRng,
    failures: u32,
}

/// Waiting for the database was cut short by a stop request.
struct Interrupted;

enum Fail {
    Interrupted,
    Fatal(StoreError),
}

impl<'a> Db<'a> {
    fn new(cfg: &'a Config, worker: &'a str) -> Self {
        Db {
            cfg,
            worker,
            store: None,
            backoff: Backoff::new(cfg.database.reconnect_min.0, cfg.database.reconnect_max.0),
            rng: StdRng::from_entropy(),
            failures: 0,
        }
    }

    /// Waits out an outage: logs, then sleeps the back-off delay unless stopping.
    async fn pause(&mut self, e: &StoreError, stop: &mut Shutdown) -> Result<(), Interrupted> {
        self.failures += 1;
        let delay = self.backoff.next_delay(&mut self.rng);
        if self.failures == 1 || self.failures.is_power_of_two() {
            warn!(error = %e, retry_in = ?delay, failures = self.failures,
                "database unavailable: holding the messages unacknowledged");
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => Ok(()),
            _ = stop.wait() => Err(Interrupted),
        }
    }

    /// The open store, connecting (and checking the schema) as needed.
    async fn store(&mut self, stop: &mut Shutdown) -> Result<&mut Store, Fail> {
        loop {
            if self.store.as_ref().is_some_and(|s| !s.is_closed()) {
                break;
            }
            self.store = None;
            match Store::open(&self.cfg.database, self.worker).await {
                Ok((s, info)) => {
                    if self.failures > 0 {
                        info!(failures = self.failures, "database reachable again");
                    }
                    debug!(?info, "schema ready");
                    self.store = Some(s);
                }
                Err(e) if e.disposition() == Disposition::Fatal => return Err(Fail::Fatal(e)),
                Err(e) => self
                    .pause(&e, stop)
                    .await
                    .map_err(|Interrupted| Fail::Interrupted)?,
            }
        }
        self.store.as_mut().ok_or(Fail::Interrupted)
    }

    /// Writes `items` in one transaction, through outages. `Err(BadData)` is returned as is.
    async fn write(
        &mut self,
        items: &[Item],
        stop: &mut Shutdown,
    ) -> Result<Result<Outcome, StoreError>, Fail> {
        loop {
            let store = self.store(stop).await?;
            match store.write(items).await {
                Ok(o) => {
                    self.failures = 0;
                    self.backoff.reset();
                    return Ok(Ok(o));
                }
                Err(e) => match e.disposition() {
                    Disposition::Retry => continue,
                    Disposition::BadData => return Ok(Err(e)),
                    Disposition::Fatal => return Err(Fail::Fatal(e)),
                    Disposition::Outage => {
                        self.store = None;
                        self.pause(&e, stop)
                            .await
                            .map_err(|Interrupted| Fail::Interrupted)?;
                    }
                },
            }
        }
    }

    /// Writes a batch; on refused data, message by message with dead letters for the refused.
    async fn commit(&mut self, items: &mut [Item], stop: &mut Shutdown) -> Result<Outcome, Fail> {
        match self.write(items, stop).await? {
            Ok(o) => return Ok(o),
            Err(e) => {
                warn!(error = %e, "the database refused a batch: writing its messages one by one")
            }
        }
        let mut total = Outcome::default();
        for item in items.iter_mut() {
            match self.write(std::slice::from_ref(item), stop).await? {
                Ok(o) => total += o,
                Err(e) => {
                    error!(topic = %item.topic, error = %e, "message refused by the database: dead-lettered");
                    let payload = match &item.content {
                        Content::Dead { payload, .. } => payload.clone(),
                        _ => Vec::new(),
                    };
                    item.content = Content::Dead {
                        reason: format!("refused by the database: {e}"),
                        payload,
                    };
                    match self.write(std::slice::from_ref(item), stop).await? {
                        Ok(o) => total += o,
                        Err(e) => error!(error = %e, "dead letter refused too: message dropped"),
                    }
                }
            }
        }
        Ok(total)
    }
}

/// Runs one worker until `stop` is set. `worker` is its MQTT client id, also recorded with the
/// rows it writes.
pub async fn run(cfg: Config, worker: String, stop: Shutdown) -> Result<Totals, RunError> {
    run_observed(cfg, worker, stop, watch::channel(LinkState::Connecting).0).await
}

/// [`run`], publishing the broker connection's state to `observer` (e.g. to know when the
/// subscriptions are in place).
pub async fn run_observed(
    cfg: Config,
    worker: String,
    mut stop: Shutdown,
    observer: watch::Sender<LinkState>,
) -> Result<Totals, RunError> {
    let topics = Topics::new(&cfg.mqtt);
    let mut db = Db::new(&cfg, &worker);
    // The schema first: no message is taken before the database can hold it.
    match db.store(&mut stop).await {
        Ok(_) => {}
        Err(Fail::Interrupted) => return Ok(Totals::default()),
        Err(Fail::Fatal(e)) => return Err(e.into()),
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<Delivery>();
    let link = Link::start(&cfg.mqtt, &worker, &topics, tx)?;
    info!(worker = %worker, broker = %cfg.mqtt.broker, filters = ?topics.subscriptions(),
        database = %cfg.database.url.redacted(), "ingest started");
    let mut state = link.state();
    let batch_records = cfg.batch.size.0;
    let batch_messages = usize::from(cfg.mqtt.in_flight.0);
    let linger = cfg.batch.linger.0;

    let mut totals = Totals::default();
    let mut batch = Batch::default();
    let mut next_stats = Instant::now() + STATS_EVERY;
    let mut result = Ok(());

    loop {
        let now = Instant::now();
        if batch.due(now, batch_records, batch_messages) || (!batch.is_empty() && stop.is_set()) {
            match db.commit(&mut batch.items, &mut stop).await {
                Ok(o) => {
                    totals.outcome += o;
                    totals.batches += 1;
                    for d in &batch.deliveries {
                        if link.ack(d).await {
                            totals.acknowledged += 1;
                        } else {
                            totals.not_acknowledged += 1;
                        }
                    }
                    debug!(
                        messages = batch.deliveries.len(),
                        records = batch.records,
                        inserted = o.inserted,
                        duplicates = o.duplicates,
                        dead_letters = o.dead_letters,
                        "batch committed"
                    );
                }
                Err(Fail::Interrupted) => {
                    info!(
                        messages = batch.deliveries.len(),
                        "stopping with a batch not committed: the broker keeps it"
                    );
                }
                Err(Fail::Fatal(e)) => {
                    result = Err(RunError::Store(e));
                }
            }
            batch = Batch::default();
            if result.is_err() {
                break;
            }
        }
        if stop.is_set() {
            break;
        }
        if Instant::now() >= next_stats {
            next_stats = Instant::now() + STATS_EVERY;
            info!(
                inserted = totals.outcome.inserted,
                duplicates = totals.outcome.duplicates,
                dead_letters = totals.outcome.dead_letters,
                skipped_rows = totals.outcome.skipped_rows,
                acknowledged = totals.acknowledged,
                "running totals"
            );
        }
        let wake = batch.deadline.unwrap_or(next_stats).min(next_stats);
        tokio::select! {
            biased;
            _ = stop.wait() => {}
            changed = state.changed() => {
                if changed.is_err() {
                    break;
                }
                let s = state.borrow_and_update().clone();
                let _ = observer.send(s.clone());
                if let LinkState::Refused(why) = s {
                    result = Err(RunError::BrokerRefused(why));
                    break;
                }
            }
            d = rx.recv() => {
                let Some(d) = d else { break };
                let item = to_item(&topics, &d);
                if let Content::Dead { reason, .. } = &item.content {
                    warn!(topic = %item.topic, reason = %reason, "undecodable message: dead-lettered");
                }
                batch.push(d, item, Instant::now(), linger);
            }
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
    // What is still held is committed within a short grace (a stop during an outage leaves it
    // to the broker).
    if result.is_ok() && !batch.is_empty() {
        let (trigger, mut grace) = Shutdown::new();
        let t = tokio::spawn(async move {
            tokio::time::sleep(STOP_GRACE).await;
            trigger.trigger();
        });
        if let Ok(o) = db.commit(&mut batch.items, &mut grace).await {
            totals.outcome += o;
            for d in &batch.deliveries {
                if link.ack(d).await {
                    totals.acknowledged += 1;
                }
            }
        }
        t.abort();
    }
    link.stop(Duration::from_secs(2)).await;
    info!(
        inserted = totals.outcome.inserted,
        duplicates = totals.outcome.duplicates,
        dead_letters = totals.outcome.dead_letters,
        acknowledged = totals.acknowledged,
        "ingest stopped"
    );
    result.map(|()| totals)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MqttSettings;
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::mqttbytes::v5::Publish;

    fn delivery(topic: &[u8], payload: &[u8]) -> Delivery {
        let mut p = Publish::new("", QoS::AtLeastOnce, payload.to_vec(), None);
        p.topic = topic.to_vec().into();
        Delivery {
            publish: p,
            generation: 1,
        }
    }

    #[test]
    fn deliveries_become_records_events_or_dead_letters() {
        let topics = Topics::new(&MqttSettings::default());
        let item = to_item(&topics, &delivery(b"m365/s1/availability", b"online"));
        assert!(matches!(item.content, Content::Event(_)));
        let item = to_item(&topics, &delivery(b"m365/s1/telemetry", b"\x00\x01"));
        match item.content {
            Content::Dead { reason, payload } => {
                assert!(reason.contains("neither JSON"), "{reason}");
                assert_eq!(payload, b"\x00\x01");
            }
            other => panic!("{other:?}"),
        }
        let item = to_item(&topics, &delivery(b"other/topic", b"{}"));
        assert!(
            matches!(&item.content, Content::Dead { reason, .. } if reason.contains("no configured filter"))
        );
        let item = to_item(&topics, &delivery(b"m365/\xff/telemetry", b"{}"));
        assert!(matches!(&item.content, Content::Dead { reason, .. } if reason.contains("UTF-8")));
    }

    fn item_with(n: usize) -> Item {
        Item {
            topic: "m365/s/telemetry".into(),
            content_type: None,
            content: Content::Records(
                (0..n)
                    .map(|i| crate::record::IngestRecord {
                        record_id: uuid::Uuid::from_u128(i as u128),
                        key: crate::record::KeySource::RecordId,
                        scooter_id: "s".into(),
                        seq: Some(i as u64),
                        time: chrono::DateTime::UNIX_EPOCH,
                        ts_source: None,
                        encoding: m365_pipeline::Encoding::Compact,
                        scooter: Default::default(),
                        battery: Default::default(),
                        gps: None,
                    })
                    .collect(),
            ),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_is_due_after_linger_or_when_full() {
        let linger = Duration::from_millis(200);
        let mut b = Batch::default();
        assert!(!b.due(Instant::now(), 10, 100), "empty");
        b.push(delivery(b"t", b""), item_with(1), Instant::now(), linger);
        tokio::time::advance(Duration::from_millis(150)).await;
        // A later message does not move the deadline.
        b.push(delivery(b"t", b""), item_with(1), Instant::now(), linger);
        tokio::time::advance(Duration::from_millis(49)).await;
        assert!(!b.due(Instant::now(), 10, 100));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(
            b.due(Instant::now(), 10, 100),
            "200 ms after the first message"
        );

        let mut b = Batch::default();
        b.push(delivery(b"t", b""), item_with(50), Instant::now(), linger);
        assert!(b.due(Instant::now(), 50, 100), "a compact message fills it");
        let mut b = Batch::default();
        for _ in 0..3 {
            b.push(delivery(b"t", b""), item_with(0), Instant::now(), linger);
        }
        assert!(
            b.due(Instant::now(), 50, 3),
            "as many messages as may be in flight"
        );
        assert_eq!(b.records, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_request_reaches_every_clone() {
        let (trigger, stop) = Shutdown::new();
        let mut a = stop.clone();
        let mut b = stop;
        let waiter = tokio::spawn(async move {
            a.wait().await;
            tokio::time::Instant::now()
        });
        tokio::time::sleep(Duration::from_secs(3)).await;
        let at = tokio::time::Instant::now();
        trigger.trigger();
        assert_eq!(waiter.await.unwrap(), at);
        b.wait().await;
        assert!(b.is_set());
    }
}
