//! The MQTT side of remote commands: one long-lived task with a connection of its own (client
//! id `<client>-cmd`, no last will), subscribed to every scooter's command topic, feeding the
//! [`Desk`], handing accepted commands to the scooters' tasks as [`CommandRequest`]s, and
//! publishing every acknowledgement with QoS 1 on the scooter's result topic.
//!
//! - The session is kept by the broker (not clean), so commands published while the gateway is
//!   away are delivered when it is back, and acknowledged (most as `expired` by then). The
//!   subscriptions are renewed after every reconnect all the same.
//! - An acknowledgement stays in the task until the broker has acknowledged it (PUBACK), and is
//!   published again after a reconnect; expiries and the scooters' answers keep being handled
//!   while the broker is away.
//! - A command's id is saved in the replay file before the command is handed out; when that
//!   fails, the command is refused (`failed`) rather than risk carrying it out twice.
//! - Reconnects follow `[mqtt] reconnect_min` / `reconnect_max` with the workspace's back-off.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU8;
use std::time::{Duration, SystemTime};

use m365_backoff::Backoff;
use m365_pipeline::MqttConfig as WireMqtt;
use m365_pipeline::mqtt::{ConnectParams, Connection, NetEvent};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::desk::{Decision, Desk};
use super::message::{CommandId, Refusal};
use super::replay::{ReplayFile, ReplayMemory};
use super::result::CommandResult;
use super::{CommandRequest, Reply, withdraw};
use crate::config::{CommandName, CommandsConfig};

/// Acknowledgements published and not yet acknowledged by the broker, at most.
const WINDOW: usize = 16;
/// While commands are pending, the expiries are checked at least this often (the wall clock
/// may be set while the task waits).
const MAX_TICK: Duration = Duration::from_secs(1);

/// One scooter as the listener serves it.
#[derive(Debug, Clone)]
pub struct ScooterCommands {
    /// The scooter's id.
    pub scooter_id: String,
    /// The topic its commands arrive on (`{id}` replaced).
    pub topic: String,
    /// The topic its acknowledgements are published on (`{id}` replaced).
    pub result_topic: String,
    /// The commands it accepts; the others are refused (`not_allowed`).
    pub allow: BTreeSet<CommandName>,
    /// Where its accepted commands go: the task that owns its link.
    pub requests: mpsc::Sender<CommandRequest>,
}

impl ScooterCommands {
    /// Scooter `scooter_id` with the topics of `commands` and the allow list `allow` (its
    /// `[[scooter]]` entry's, which defaults to `[commands] allow`).
    pub fn new(
        commands: &CommandsConfig,
        scooter_id: &str,
        allow: BTreeSet<CommandName>,
        requests: mpsc::Sender<CommandRequest>,
    ) -> ScooterCommands {
        ScooterCommands {
            scooter_id: scooter_id.to_owned(),
            topic: commands.topic_for(scooter_id),
            result_topic: commands.result_topic_for(scooter_id),
            allow,
            requests,
        }
    }
}

/// What the listener is doing, for health reports and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListenerStatus {
    /// Connected to the broker.
    pub connected: bool,
    /// Every command topic's subscription was acknowledged on this connection.
    pub subscribed: bool,
    /// Commands handed to scooters and not acknowledged yet.
    pub pending: usize,
    /// Acknowledgements the broker has not taken yet.
    pub unacknowledged: usize,
}

/// The running listener.
#[derive(Debug)]
pub struct Listener {
    /// The task; it runs until aborted.
    pub task: JoinHandle<()>,
    /// Its state, updated as it changes.
    pub status: watch::Receiver<ListenerStatus>,
}

/// Why the listener cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    /// The broker settings are unusable (URL, TLS files, reconnect bounds).
    #[error("cannot prepare the command connection: {0}")]
    Broker(#[from] m365_pipeline::error::ConfigError),
    /// A topic to subscribe to or publish on is unusable.
    #[error("the command topic {0:?} is unusable: {1}")]
    Topic(String, &'static str),
}

/// Starts the listener for `scooters` on the broker of `mqtt` (the pipeline's settings),
/// accepting expiries up to `max_ttl` ahead and keeping the replay memory in `replay_file`.
///
/// Returns at once; the task runs until aborted. Fails only when the settings cannot work.
pub fn spawn(
    mqtt: &WireMqtt,
    scooters: Vec<ScooterCommands>,
    max_ttl: Duration,
    replay_file: PathBuf,
) -> Result<Listener, ListenerError> {
    mqtt.validate()?;
    check_topics(&scooters)?;
    let window = u16::try_from(WINDOW.max(scooters.len())).unwrap_or(u16::MAX);
    // Its own client id: the broker would otherwise close the telemetry connection.
    let mut params = mqtt.connect_params(format!("{}-cmd", mqtt.client), window, None)?;
    // The broker keeps the session, and with it the commands sent while the gateway is away.
    params.clean_session = false;
    let (status_tx, status) = watch::channel(ListenerStatus::default());
    let mqtt = mqtt.clone();
    let task = tokio::spawn(async move {
        let replay = ReplayFile::new(replay_file);
        let loaded = {
            let replay = replay.clone();
            tokio::task::spawn_blocking(move || replay.load(SystemTime::now())).await
        };
        let seen = loaded.unwrap_or_else(|_| ReplayMemory::new());
        let state = State::new(scooters, max_ttl, seen, replay, status_tx);
        run(state, mqtt, params).await;
    });
    Ok(Listener { task, status })
}

/// Command topics: plain, one per scooter, none of them a result topic.
fn check_topics(scooters: &[ScooterCommands]) -> Result<(), ListenerError> {
    let results: HashSet<&str> = scooters.iter().map(|s| s.result_topic.as_str()).collect();
    let mut seen = HashSet::new();
    for s in scooters {
        for topic in [&s.topic, &s.result_topic] {
            if topic.is_empty() {
                return Err(ListenerError::Topic(topic.clone(), "it is empty"));
            }
            if topic.contains(['+', '#', '\0']) {
                return Err(ListenerError::Topic(
                    topic.clone(),
                    "it contains a wildcard (+ or #)",
                ));
            }
        }
        if !seen.insert(s.topic.as_str()) {
            return Err(ListenerError::Topic(
                s.topic.clone(),
                "it is the command topic of two scooters",
            ));
        }
        if results.contains(s.topic.as_str()) {
            return Err(ListenerError::Topic(
                s.topic.clone(),
                "it is also a result topic: results would come back as commands",
            ));
        }
    }
    Ok(())
}

async fn run(mut state: State, mqtt: WireMqtt, params: ConnectParams) {
    let (min, max) = mqtt.reconnect_bounds();
    let mut backoff = Backoff::new(min, max);
    let mut rng = StdRng::from_entropy();
    let mut warned = false;
    loop {
        // Read at each attempt, as the pipeline does, so a rotated password is picked up.
        let error = match mqtt.credentials() {
            Ok(credentials) => {
                let attempt = ConnectParams {
                    credentials,
                    ..params.clone()
                };
                let (conn, mut events) = Connection::open(&attempt);
                let error = state.serve(&conn, &mut events, &mut backoff).await;
                drop(conn);
                if state.was_connected {
                    warned = false;
                }
                error
            }
            Err(e) => e.to_string(),
        };
        state.disconnected();
        let delay = backoff.next_delay(&mut rng);
        if warned {
            tracing::debug!(%error, retry_in = ?delay, "command connection");
        } else {
            tracing::warn!(%error, retry_in = ?delay, "command connection down; retrying");
            warned = true;
        }
        state.idle(delay).await;
    }
}

/// Acknowledgements waiting for the broker.
#[derive(Debug, Default)]
struct Outbox {
    next: u64,
    /// Not acknowledged by the broker yet, in the order they were made.
    unacked: BTreeMap<u64, (String, Vec<u8>)>,
    /// Published on the current connection.
    published: HashSet<u64>,
    /// Published, waiting for the packet id rumqttc gives them (in publish order).
    awaiting_pkid: VecDeque<u64>,
    by_pkid: HashMap<u16, u64>,
}

impl Outbox {
    fn push(&mut self, topic: String, payload: Vec<u8>) {
        self.unacked.insert(self.next, (topic, payload));
        self.next += 1;
    }

    /// A new connection: everything not acknowledged goes again.
    fn reset(&mut self) {
        self.published.clear();
        self.awaiting_pkid.clear();
        self.by_pkid.clear();
    }

    /// Publishes what is not on its way yet, within the window.
    fn flush(&mut self, conn: &Connection) -> Result<(), String> {
        for (key, (topic, payload)) in &self.unacked {
            if self.published.len() >= WINDOW {
                break;
            }
            if self.published.contains(key) {
                continue;
            }
            conn.publish(topic, payload.clone(), false, Some("application/json"))?;
            self.published.insert(*key);
            self.awaiting_pkid.push_back(*key);
        }
        Ok(())
    }

    fn sent(&mut self, pkid: u16) {
        if let Some(key) = self.awaiting_pkid.pop_front() {
            self.by_pkid.insert(pkid, key);
        }
    }

    fn acked(&mut self, pkid: u16, result: Result<(), String>) {
        let Some(key) = self.by_pkid.remove(&pkid) else {
            return;
        };
        self.published.remove(&key);
        if let Some((topic, _)) = self.unacked.remove(&key)
            && let Err(reason) = result
        {
            // Publishing it again would be refused again: the broker's ACL must allow it.
            tracing::warn!(%topic, %reason, "the broker refused a command acknowledgement");
        }
    }
}

struct State {
    desk: Desk,
    scooters: HashMap<String, ScooterCommands>,
    /// Command topic → scooter id.
    topics: HashMap<String, String>,
    replay: ReplayFile,
    replies_tx: mpsc::UnboundedSender<Reply>,
    replies: mpsc::UnboundedReceiver<Reply>,
    claims: HashMap<CommandId, Arc<AtomicU8>>,
    outbox: Outbox,
    status: watch::Sender<ListenerStatus>,
    connected: bool,
    was_connected: bool,
    subscribed: usize,
}

impl State {
    fn new(
        scooters: Vec<ScooterCommands>,
        max_ttl: Duration,
        seen: ReplayMemory,
        replay: ReplayFile,
        status: watch::Sender<ListenerStatus>,
    ) -> State {
        let desk = Desk::new(
            scooters
                .iter()
                .map(|s| (s.scooter_id.clone(), s.allow.clone())),
            max_ttl,
            seen,
        );
        let topics = scooters
            .iter()
            .map(|s| (s.topic.clone(), s.scooter_id.clone()))
            .collect();
        let scooters = scooters
            .into_iter()
            .map(|s| (s.scooter_id.clone(), s))
            .collect();
        let (replies_tx, replies) = mpsc::unbounded_channel();
        State {
            desk,
            scooters,
            topics,
            replay,
            replies_tx,
            replies,
            claims: HashMap::new(),
            outbox: Outbox::default(),
            status,
            connected: false,
            was_connected: false,
            subscribed: 0,
        }
    }

    /// One connection, until it ends; returns why it ended.
    async fn serve(
        &mut self,
        conn: &Connection,
        events: &mut mpsc::Receiver<NetEvent>,
        backoff: &mut Backoff,
    ) -> String {
        self.was_connected = false;
        loop {
            self.report();
            let tick = self.tick();
            let flushed = tokio::select! {
                event = events.recv() => match event {
                    None => return "the connection ended".to_owned(),
                    Some(NetEvent::Closed(reason)) => return reason.to_string(),
                    Some(event) => self.on_event(conn, event, backoff).await,
                },
                Some(reply) = self.replies.recv() => {
                    self.on_reply(reply);
                    Ok(())
                }
                () = sleep_for(tick) => {
                    self.on_tick();
                    Ok(())
                }
            };
            let flushed = flushed.and_then(|()| {
                if self.connected {
                    self.outbox.flush(conn)
                } else {
                    Ok(())
                }
            });
            if let Err(error) = flushed {
                return error;
            }
        }
    }

    async fn on_event(
        &mut self,
        conn: &Connection,
        event: NetEvent,
        backoff: &mut Backoff,
    ) -> Result<(), String> {
        match event {
            NetEvent::Connected => {
                backoff.reset();
                self.connected = true;
                self.was_connected = true;
                self.subscribed = 0;
                self.outbox.reset();
                tracing::info!(topics = self.topics.len(), "command connection up");
                for topic in self.topics.keys() {
                    conn.subscribe(topic)?;
                }
            }
            NetEvent::Subscribed(Ok(())) => self.subscribed += 1,
            NetEvent::Subscribed(Err(reason)) => {
                tracing::warn!(
                    %reason,
                    "the broker refused a command topic subscription: its ACL must let this \
                     client read the command topics"
                );
            }
            NetEvent::Message { topic, payload } => self.on_message(&topic, &payload).await,
            NetEvent::Sent(pkid) => self.outbox.sent(pkid),
            NetEvent::Acked(pkid, result) => self.outbox.acked(pkid, result),
            NetEvent::DisconnectSent | NetEvent::Closed(_) => {}
        }
        Ok(())
    }

    async fn on_message(&mut self, topic: &str, payload: &[u8]) {
        let Some(scooter_id) = self.topics.get(topic).cloned() else {
            tracing::debug!(%topic, "message on a topic that is no scooter's command topic");
            return;
        };
        match self
            .desk
            .on_message(&scooter_id, payload, SystemTime::now())
        {
            Decision::Ignore(malformed) => tracing::warn!(
                scooter = %scooter_id,
                error = %malformed.error,
                "ignored a command message without a readable id (nobody to acknowledge)"
            ),
            Decision::Refuse(result) => self.acknowledge(result),
            Decision::Dispatch {
                scooter_id,
                command,
            } => {
                let id = command.id.clone();
                // Saved before anything is done: a restart must not carry it out again.
                let memory = self.desk.seen().clone();
                let replay = self.replay.clone();
                let saved = tokio::task::spawn_blocking(move || replay.save(&memory))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|saved| saved.map_err(|e| e.to_string()));
                if let Err(error) = saved {
                    tracing::warn!(%error, "cannot record a command id; refusing the command");
                    let refusal = Refusal::Failed(format!(
                        "the gateway cannot record the command id: {error}"
                    ));
                    if let Some(result) = self.desk.refuse(&id, refusal) {
                        self.acknowledge(result);
                    }
                    return;
                }
                tracing::info!(scooter = %scooter_id, %id, action = %command.action, "command accepted");
                let Some(scooter) = self.scooters.get(&scooter_id) else {
                    return;
                };
                let request = CommandRequest::new(command, self.replies_tx.clone());
                self.claims.insert(id.clone(), request.claim());
                match scooter.requests.try_send(request) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(request)) => {
                        request.forget();
                        self.claims.remove(&id);
                        if let Some(result) = self.desk.refuse(&id, Refusal::Busy) {
                            self.acknowledge(result);
                        }
                    }
                    Err(mpsc::error::TrySendError::Closed(request)) => {
                        // Nobody serves the scooter now: the command waits for its expiry.
                        tracing::debug!(scooter = %scooter_id, %id, "the scooter's task is not running");
                        drop(request);
                    }
                }
            }
        }
    }

    fn on_reply(&mut self, reply: Reply) {
        let outcome = match reply.outcome {
            Some(outcome) => outcome,
            // Dropped before it started: it waits for its expiry (`offline`).
            None if !reply.started => return,
            None => Err(
                "the scooter's task stopped before confirming the command; its outcome is unknown"
                    .to_owned(),
            ),
        };
        self.claims.remove(&reply.id);
        match self.desk.completed(&reply.id, outcome) {
            Some(result) => self.acknowledge(result),
            None => tracing::info!(
                id = %reply.id,
                "a scooter answered a command already acknowledged; the answer is dropped"
            ),
        }
    }

    fn on_tick(&mut self) {
        let claims = &self.claims;
        let results = self.desk.expired(SystemTime::now(), |id| {
            claims.get(id).is_none_or(|claim| withdraw(claim))
        });
        for result in results {
            self.claims.remove(&result.id);
            self.acknowledge(result);
        }
    }

    fn acknowledge(&mut self, result: CommandResult) {
        let Some(scooter) = self.scooters.get(&result.scooter_id) else {
            return;
        };
        match &result.outcome {
            Ok(_) => {
                tracing::info!(scooter = %result.scooter_id, id = %result.id, "command carried out");
            }
            Err(refusal) => tracing::info!(
                scooter = %result.scooter_id,
                id = %result.id,
                code = refusal.code(),
                reason = %refusal,
                "command refused"
            ),
        }
        self.outbox
            .push(scooter.result_topic.clone(), result.payload());
    }

    /// How long to wait for the next expiry, if anything is pending.
    fn tick(&self) -> Option<Duration> {
        self.desk.next_deadline().map(|deadline| {
            deadline
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO)
                .min(MAX_TICK)
        })
    }

    fn disconnected(&mut self) {
        self.connected = false;
        self.subscribed = 0;
        self.outbox.reset();
        self.report();
    }

    /// Waits `delay` before the next connection attempt, still handling the scooters' answers
    /// and the expiries (their acknowledgements wait in the outbox).
    async fn idle(&mut self, delay: Duration) {
        let until = tokio::time::Instant::now() + delay;
        loop {
            self.report();
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return;
            }
            let tick = self.tick().map_or(left, |t| t.min(left));
            tokio::select! {
                Some(reply) = self.replies.recv() => self.on_reply(reply),
                () = tokio::time::sleep(tick) => self.on_tick(),
            }
        }
    }

    fn report(&self) {
        let status = ListenerStatus {
            connected: self.connected,
            subscribed: self.connected && self.subscribed >= self.topics.len(),
            pending: self.desk.pending(),
            unacknowledged: self.outbox.unacked.len(),
        };
        self.status.send_if_modified(|current| {
            if *current == status {
                false
            } else {
                *current = status;
                true
            }
        });
    }
}

/// Sleeps for `tick`, or forever without one.
async fn sleep_for(tick: Option<Duration>) {
    match tick {
        Some(tick) => tokio::time::sleep(tick).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scooter(id: &str, topic: &str, result_topic: &str) -> ScooterCommands {
        let (requests, _) = mpsc::channel(1);
        ScooterCommands {
            scooter_id: id.into(),
            topic: topic.into(),
            result_topic: result_topic.into(),
            allow: BTreeSet::new(),
            requests,
        }
    }

    #[test]
    fn topics_that_cannot_work_are_refused() {
        let ok = [
            scooter("a", "m/a/c", "m/a/r"),
            scooter("b", "m/b/c", "m/b/r"),
        ];
        assert!(check_topics(&ok).is_ok());
        let cases = [
            (vec![scooter("a", "m/+/c", "m/a/r")], "wildcard"),
            (vec![scooter("a", "m/a/c", "m/#")], "wildcard"),
            (vec![scooter("a", "", "m/a/r")], "empty"),
            (
                vec![scooter("a", "m/c", "m/a/r"), scooter("b", "m/c", "m/b/r")],
                "two scooters",
            ),
            (
                vec![
                    scooter("a", "m/a/c", "m/b/c"),
                    scooter("b", "m/b/c", "m/b/r"),
                ],
                "also a result topic",
            ),
        ];
        for (scooters, says) in cases {
            let error = check_topics(&scooters).unwrap_err();
            assert!(error.to_string().contains(says), "{error}");
        }
    }

    #[test]
    fn the_outbox_resends_what_the_broker_did_not_acknowledge() {
        let mut outbox = Outbox::default();
        outbox.push("r".into(), b"1".to_vec());
        outbox.push("r".into(), b"2".to_vec());
        // Both published, the first acknowledged, then the connection drops.
        outbox.published.extend([0, 1]);
        outbox.awaiting_pkid.extend([0, 1]);
        outbox.sent(7);
        outbox.sent(8);
        outbox.acked(7, Ok(()));
        outbox.acked(99, Ok(()));
        assert_eq!(outbox.unacked.keys().copied().collect::<Vec<_>>(), [1]);
        outbox.reset();
        assert!(outbox.published.is_empty());
        // A refusal by the broker is final (logged, not retried).
        outbox.published.insert(1);
        outbox.awaiting_pkid.push_back(1);
        outbox.sent(3);
        outbox.acked(3, Err("NotAuthorized".into()));
        assert!(outbox.unacked.is_empty());
    }
}
