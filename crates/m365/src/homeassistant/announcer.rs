//! The long-lived MQTT client that keeps Home Assistant's discovery configs in place: one
//! connection of its own (client id `<client>-ha`, the pipeline's broker, credentials and TLS
//! through [`m365_pipeline::MqttConfig::connect_params`] and
//! [`m365_pipeline::MqttConfig::credentials`]) that
//!
//! - publishes every config retained with QoS 1 on each connection (a broker that restarted
//!   without persistence has lost them);
//! - subscribes to `<prefix>/status` and publishes them again when Home Assistant says `online`
//!   there (its birth message after a restart);
//! - watches the scooter descriptions (a `tokio::sync::watch` channel) and republishes the
//!   configs that changed, e.g. once a scooter's model and firmware are known;
//! - removes configs nobody serves any more: an empty retained message on every config topic a
//!   departed scooter (listed in the state file, gone from the configuration) could have used,
//!   and on those of entities a scooter no longer offers;
//! - says `online` on the gateway's availability topic, with `offline` as its last will.
//!
//! Failures are logged once and retried with the workspace's back-off.

use std::collections::{BTreeSet, VecDeque};
use std::path::PathBuf;

use m365_backoff::Backoff;
use m365_pipeline::MqttConfig as WireMqtt;
use m365_pipeline::mqtt::{ConnectParams, Connection, NetEvent};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::DiscoveryError;
use super::description::{GatewayDiscovery, ScooterDiscovery};
use super::entities::{gateway_config_topics, messages_for, possible_config_topics};
use super::message::{PAYLOAD_AVAILABLE, PAYLOAD_NOT_AVAILABLE};
use super::state_file::{self, Announced};

/// Publishes awaiting their acknowledgement at once.
const WINDOW: u16 = 16;

/// The state file's usual name, in the state directory (beside the spool):
/// [`AnnouncerSettings::state_file`] is `<state directory>/homeassistant.json`.
pub const STATE_FILE_NAME: &str = "homeassistant.json";

/// What the announcer needs besides the broker settings and the scooters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnouncerSettings {
    /// Home Assistant's discovery prefix (`homeassistant`); its birth topic is
    /// `<prefix>/status`.
    pub prefix: String,
    /// The gateway device.
    pub gateway: GatewayDiscovery,
    /// Where the ids announced last time are kept: a small JSON file in the state directory,
    /// [`STATE_FILE_NAME`] (e.g. `/var/lib/m365/homeassistant.json`). `None`: departed scooters
    /// are not removed.
    pub state_file: Option<PathBuf>,
}

/// Starts the announcer for the broker of `mqtt` (the pipeline's settings; the client id is
/// `<mqtt.client>-ha`) and returns its task: it runs until aborted (abort it at shutdown; the
/// broker then publishes the gateway's `offline`). `scooters` carries the current descriptions:
/// send a new list (or use [`super::update_device`]) and the configs that changed are
/// republished; if its sender is dropped the last list stays announced. Fails only when the
/// broker settings themselves are unusable.
pub fn spawn_announcer(
    mqtt: &WireMqtt,
    settings: AnnouncerSettings,
    scooters: watch::Receiver<Vec<ScooterDiscovery>>,
) -> Result<JoinHandle<()>, DiscoveryError> {
    mqtt.validate()?;
    let params = mqtt.connect_params(
        // Its own client id: the broker would otherwise close the telemetry connection.
        format!("{}-ha", mqtt.client),
        WINDOW + 2,
        Some((
            settings.gateway.availability_topic.clone(),
            PAYLOAD_NOT_AVAILABLE.as_bytes().to_vec(),
        )),
    )?;
    let (min, max) = mqtt.reconnect_bounds();
    let mqtt = mqtt.clone();
    Ok(tokio::spawn(async move {
        let mut state = State::new(settings, scooters);
        let mut backoff = Backoff::new(min, max);
        let mut rng = StdRng::from_entropy();
        // Whether the current outage was reported: once per outage, the retries at debug level.
        let mut warned = false;
        loop {
            // Read at each attempt, as the pipeline does, so a rotated password is picked up.
            let (error, was_connected) = match mqtt.credentials() {
                Ok(credentials) => {
                    let attempt = ConnectParams {
                        credentials,
                        ..params.clone()
                    };
                    state.connection(&attempt, &mut backoff).await
                }
                Err(e) => (e.to_string(), false),
            };
            if was_connected {
                warned = false;
            }
            let delay = backoff.next_delay(&mut rng);
            if warned {
                tracing::debug!(%error, retry_in = ?delay, "Home Assistant discovery");
            } else {
                tracing::warn!(
                    %error,
                    retry_in = ?delay,
                    "Home Assistant discovery cannot reach the broker; retrying"
                );
                warned = true;
            }
            tokio::time::sleep(delay).await;
        }
    }))
}

/// One message to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Item {
    topic: String,
    payload: Vec<u8>,
    /// Whether the payload is JSON (a config), for MQTT 5's content type.
    json: bool,
}

/// What the announcer knows across connections.
struct State {
    settings: AnnouncerSettings,
    scooters: watch::Receiver<Vec<ScooterDiscovery>>,
    /// Whether the sender is still there.
    watching: bool,
    /// The configs as they should be, in publishing order.
    desired: Vec<Item>,
    /// The ids of the scooters in `desired`.
    ids: BTreeSet<String>,
    /// Config topics to empty, until a connection had every one acknowledged.
    to_clear: BTreeSet<String>,
    /// What the state file says now.
    recorded: Option<Announced>,
    /// Whether the configs were announced once (the first time is logged at info level).
    announced_once: bool,
}

impl State {
    fn new(
        settings: AnnouncerSettings,
        mut scooters: watch::Receiver<Vec<ScooterDiscovery>>,
    ) -> Self {
        let current = scooters.borrow_and_update().clone();
        let recorded = settings.state_file.as_deref().and_then(state_file::read);
        let desired = items(&settings, &current);
        let mut to_clear = BTreeSet::new();
        let current_ids: BTreeSet<&str> = current.iter().map(|s| s.scooter_id.as_str()).collect();
        if let Some(last) = &recorded {
            let same_prefix = last.prefix == settings.prefix;
            for id in &last.scooters {
                if !same_prefix || !current_ids.contains(id.as_str()) {
                    tracing::info!(
                        scooter = %id,
                        "removing the Home Assistant device of a scooter no longer configured"
                    );
                    to_clear.extend(possible_config_topics(&last.prefix, id));
                }
            }
            if !same_prefix || last.gateway != settings.gateway.id {
                to_clear.extend(gateway_config_topics(&last.prefix, &last.gateway));
            }
        }
        // Entities a configured scooter could have but does not offer now (a command no longer
        // allowed, GPS removed, …).
        for s in &current {
            to_clear.extend(possible_config_topics(&settings.prefix, &s.scooter_id));
        }
        for item in &desired {
            to_clear.remove(&item.topic);
        }
        let ids = current.iter().map(|s| s.scooter_id.clone()).collect();
        State {
            settings,
            scooters,
            watching: true,
            desired,
            ids,
            to_clear,
            recorded,
            announced_once: false,
        }
    }

    /// Reads the latest descriptions: queues the configs that changed and the removal of the
    /// entities that went away.
    fn refresh(&mut self, out: &mut Outbox) {
        let current = self.scooters.borrow_and_update().clone();
        let desired = items(&self.settings, &current);
        for item in &desired {
            self.to_clear.remove(&item.topic);
            if !self.desired.contains(item) {
                out.push(item.clone());
            }
        }
        for gone in &self.desired {
            if !desired.iter().any(|i| i.topic == gone.topic) {
                self.to_clear.insert(gone.topic.clone());
                out.push(clear(&gone.topic));
            }
        }
        self.desired = desired;
        self.ids = current.into_iter().map(|s| s.scooter_id).collect();
    }

    /// Queues every config (and the pending removals, first).
    fn announce_all(&self, out: &mut Outbox) {
        for topic in &self.to_clear {
            out.push(clear(topic));
        }
        for item in &self.desired {
            out.push(item.clone());
        }
    }

    /// Everything published on a connection was acknowledged: the removals are done, and the
    /// state file can say what is announced now.
    fn settled(&mut self) {
        self.to_clear.clear();
        if !self.announced_once {
            tracing::info!(
                prefix = %self.settings.prefix,
                configs = self.desired.len(),
                "Home Assistant discovery announced"
            );
            self.announced_once = true;
        } else {
            tracing::debug!(
                configs = self.desired.len(),
                "Home Assistant discovery announced"
            );
        }
        let Some(path) = self.settings.state_file.as_deref() else {
            return;
        };
        let now = Announced::new(
            &self.settings.prefix,
            &self.settings.gateway.id,
            self.ids.clone(),
        );
        if self.recorded.as_ref() == Some(&now) {
            return;
        }
        match state_file::write(path, &now) {
            Ok(()) => self.recorded = Some(now),
            Err(error) => tracing::warn!(
                path = %path.display(),
                %error,
                "cannot record what Home Assistant discovery announced; a scooter removed \
                 from the configuration later keeps its device in Home Assistant"
            ),
        }
    }

    /// One connection, until it fails; returns why, and whether it had come up.
    async fn connection(
        &mut self,
        params: &ConnectParams,
        backoff: &mut Backoff,
    ) -> (String, bool) {
        let mut connected = false;
        let error = self.run_connection(params, backoff, &mut connected).await;
        (error, connected)
    }

    async fn run_connection(
        &mut self,
        params: &ConnectParams,
        backoff: &mut Backoff,
        connected: &mut bool,
    ) -> String {
        let (conn, mut events) = Connection::open(params);
        let birth_topic = format!("{}/status", self.settings.prefix);
        let mut out = Outbox::default();
        loop {
            let event = tokio::select! {
                event = events.recv() => event,
                changed = self.scooters.changed(), if self.watching => {
                    match changed {
                        Ok(()) => self.refresh(&mut out),
                        // The daemon dropped its sender: the last list stays announced.
                        Err(_) => self.watching = false,
                    }
                    if *connected && let Err(e) = out.pump(&conn) {
                        return e;
                    }
                    continue;
                }
            };
            match event {
                None => return "the connection ended".to_owned(),
                Some(NetEvent::Connected) => {
                    *connected = true;
                    backoff.reset();
                    // Subscribed before anything is published: once the configs reach the
                    // broker, so has the subscription.
                    if let Err(e) = conn.subscribe(&birth_topic) {
                        return e;
                    }
                    // Whatever was queued for the last connection is published again anyway,
                    // from the latest descriptions.
                    self.refresh(&mut Outbox::default());
                    out = Outbox::default();
                    out.push(Item {
                        topic: self.settings.gateway.availability_topic.clone(),
                        payload: PAYLOAD_AVAILABLE.as_bytes().to_vec(),
                        json: false,
                    });
                    self.announce_all(&mut out);
                }
                Some(NetEvent::Message { topic, payload }) => {
                    if topic == birth_topic && payload.trim_ascii() == PAYLOAD_AVAILABLE.as_bytes()
                    {
                        tracing::debug!("Home Assistant came online; announcing again");
                        self.announce_all(&mut out);
                    }
                }
                Some(NetEvent::Acked(_, result)) => {
                    out.in_flight = out.in_flight.saturating_sub(1);
                    if let Err(reason) = result {
                        tracing::warn!(%reason, "the broker refused a discovery message");
                    }
                }
                Some(NetEvent::Subscribed(Err(reason))) => {
                    tracing::warn!(
                        %reason,
                        topic = %birth_topic,
                        "cannot follow Home Assistant's status; discovery is announced again \
                         only when this connection is"
                    );
                }
                Some(NetEvent::Closed(reason)) => return reason.to_string(),
                Some(_) => {}
            }
            if *connected {
                if let Err(e) = out.pump(&conn) {
                    return e;
                }
                if out.idle() && out.published > 0 {
                    out.published = 0;
                    self.settled();
                }
            }
        }
    }
}

/// The messages of one connection waiting to leave, and how many are out.
#[derive(Default)]
struct Outbox {
    queue: VecDeque<Item>,
    /// Published, not yet acknowledged.
    in_flight: u16,
    /// Published since the last time everything was acknowledged.
    published: usize,
}

impl Outbox {
    /// Queues `item`, replacing a queued message for the same topic.
    fn push(&mut self, item: Item) {
        self.queue.retain(|queued| queued.topic != item.topic);
        self.queue.push_back(item);
    }

    /// Publishes what the window allows.
    fn pump(&mut self, conn: &Connection) -> Result<(), String> {
        while self.in_flight < WINDOW {
            let Some(item) = self.queue.pop_front() else {
                break;
            };
            let content_type = item.json.then_some("application/json");
            conn.publish(&item.topic, item.payload, true, content_type)?;
            self.in_flight += 1;
            self.published += 1;
        }
        Ok(())
    }

    fn idle(&self) -> bool {
        self.queue.is_empty() && self.in_flight == 0
    }
}

/// An empty retained message: Home Assistant removes the entity, the broker the retained
/// config.
fn clear(topic: &str) -> Item {
    Item {
        topic: topic.to_owned(),
        payload: Vec::new(),
        json: false,
    }
}

fn items(settings: &AnnouncerSettings, scooters: &[ScooterDiscovery]) -> Vec<Item> {
    messages_for(&settings.prefix, &settings.gateway, scooters)
        .into_iter()
        .map(|m| Item {
            topic: m.topic,
            payload: m.payload.to_string().into_bytes(),
            json: true,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CommandName;
    use crate::homeassistant::StateEncoding;

    fn scooter(id: &str) -> ScooterDiscovery {
        let mut s = ScooterDiscovery::new(id, format!("m365/{id}/telemetry"), StateEncoding::Json);
        s.command_topic = Some(format!("m365/{id}/command"));
        s.allowed = [CommandName::Lock, CommandName::Unlock]
            .into_iter()
            .collect();
        s
    }

    /// The removals a start queues, given what the state file says.
    fn removals(
        last: Option<Announced>,
        prefix: &str,
        scooters: Vec<ScooterDiscovery>,
    ) -> BTreeSet<String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATE_FILE_NAME);
        if let Some(last) = &last {
            state_file::write(&path, last).unwrap();
        }
        let settings = AnnouncerSettings {
            prefix: prefix.into(),
            gateway: GatewayDiscovery::new("pi"),
            state_file: Some(path),
        };
        let (_tx, rx) = watch::channel(scooters);
        State::new(settings, rx).to_clear
    }

    fn ids(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_start_removes_departed_scooters_and_entities_no_longer_offered() {
        let first = removals(None, "homeassistant", vec![scooter("a")]);
        let offered: Vec<String> = messages_for(
            "homeassistant",
            &GatewayDiscovery::new("pi"),
            &[scooter("a")],
        )
        .into_iter()
        .map(|m| m.topic)
        .collect();
        let possible = possible_config_topics("homeassistant", "a");
        assert_eq!(first.len(), possible.len() - (offered.len() - 1));
        assert!(first.iter().all(|t| !offered.contains(t)));
        assert!(first.contains("homeassistant/select/a/kers/config"));

        let last = Announced::new("homeassistant", "pi", ids(&["a", "b"]));
        let second = removals(Some(last), "homeassistant", vec![scooter("a")]);
        for topic in possible_config_topics("homeassistant", "b") {
            assert!(second.contains(&topic), "{topic}");
        }
        assert!(second.iter().all(|t| !offered.contains(t)));
    }

    #[test]
    fn a_new_prefix_or_gateway_id_removes_the_old_topics() {
        let last = Announced::new("ha", "old", ids(&["a"]));
        let gone = removals(Some(last), "homeassistant", vec![scooter("a")]);
        for topic in possible_config_topics("ha", "a")
            .into_iter()
            .chain(gateway_config_topics("ha", "old"))
        {
            assert!(gone.contains(&topic), "{topic}");
        }
        let last = Announced::new("homeassistant", "old", ids(&["a"]));
        let gone = removals(Some(last), "homeassistant", vec![scooter("a")]);
        assert!(gone.contains("homeassistant/binary_sensor/m365_gateway_old/connectivity/config"));
        assert!(!gone.contains("homeassistant/binary_sensor/m365_gateway_pi/connectivity/config"));
    }
}
