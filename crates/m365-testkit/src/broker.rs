//! A real MQTT broker on a loopback port for one test, and a subscriber that collects what it
//! receives.
//!
//! [`Broker::start`] runs a `mosquitto` of its own when one is installed (`/usr/sbin/mosquitto`
//! or `mosquitto` on `PATH`), otherwise the embedded `rumqttd`, and prints which. Under `CI`
//! (see [`in_ci`]) a missing mosquitto fails the test instead: CI never goes green on the
//! fallback by accident. [`BROKER_ENV`] chooses explicitly: `embedded` or `mosquitto`.
//!
//! The broker's port is a [`ReservedPort`] held for the broker's whole life, so no other test can
//! take it, not even while the broker is stopped, and a restart gets the same port back.
//! mosquitto is ready when its own log says `running` (read from its standard error), and a
//! start that fails because the port is taken after all is retried on another one.
//!
//! Only loopback is used. The embedded broker serves plain MQTT without authentication and
//! cannot be stopped; cases that need more check [`require_mosquitto`] first.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, SubscribeReasonCode};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

pub use crate::in_ci;
use crate::net::{ReservedPort, wait_listening};

/// Environment variable choosing the broker: `embedded` forces the embedded `rumqttd`,
/// `mosquitto` requires mosquitto; unset or empty picks mosquitto when installed.
pub const BROKER_ENV: &str = "M365_TEST_BROKER";

/// Where mosquitto is looked for before `PATH`.
pub const MOSQUITTO: &str = "/usr/sbin/mosquitto";

/// How long a broker may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Starts on a port that turned out to be taken are retried on another one this many times.
const START_ATTEMPTS: usize = 5;
/// A restart on the same port is retried for this long while the port is still in use.
const RESTART_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between two restart attempts.
const RESTART_PAUSE: Duration = Duration::from_millis(50);
/// How long [`subscribe`] waits for the broker's SUBACK.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(20);
/// Pause of a subscriber between reconnection attempts while its broker is away.
const RECONNECT_PAUSE: Duration = Duration::from_millis(20);
/// How often [`Inbox::wait_for`] re-checks its condition when no message arrives (conditions may
/// look at other state than the inbox).
const CONDITION_POLL: Duration = Duration::from_millis(10);

/// MQTT protocol versions a broker serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MqttVersion {
    /// MQTT 3.1.1.
    V311,
    /// MQTT 5.
    V5,
}

/// Which broker [`Broker::start`] runs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Choice {
    Mosquitto(PathBuf),
    /// The embedded broker, and why.
    Embedded(&'static str),
}

/// The mosquitto binary, if installed.
pub fn mosquitto_path() -> Option<PathBuf> {
    let fixed = Path::new(MOSQUITTO);
    if fixed.is_file() {
        return Some(fixed.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("mosquitto"))
        .find(|candidate| candidate.is_file())
}

fn forced() -> Option<&'static str> {
    match std::env::var(BROKER_ENV).as_deref() {
        Err(_) | Ok("") => None,
        Ok("embedded") => Some("embedded"),
        Ok("mosquitto") => Some("mosquitto"),
        Ok(other) => panic!("{BROKER_ENV}={other:?}: expected `embedded` or `mosquitto`"),
    }
}

/// The broker to run; panics when mosquitto is required (under `CI`, or by [`BROKER_ENV`]) and
/// not installed.
fn choice() -> Choice {
    decide(forced(), mosquitto_path(), in_ci()).unwrap_or_else(|why| panic!("{why}"))
}

/// The rule behind [`choice`]: what [`BROKER_ENV`] forces, the mosquitto found, whether under CI.
fn decide(forced: Option<&str>, found: Option<PathBuf>, ci: bool) -> Result<Choice, String> {
    match (forced, found) {
        (Some("embedded"), _) => Ok(Choice::Embedded("chosen by M365_TEST_BROKER")),
        (_, Some(path)) => Ok(Choice::Mosquitto(path)),
        (Some(_), None) => Err(format!(
            "{BROKER_ENV}=mosquitto, but mosquitto is not installed ({MOSQUITTO}, PATH)"
        )),
        (None, None) if ci => Err(format!(
            "mosquitto is not installed ({MOSQUITTO}, PATH) and CI is set: refusing to fall back \
             to the embedded broker (install mosquitto, or set {BROKER_ENV}=embedded)"
        )),
        (None, None) => Ok(Choice::Embedded("mosquitto not found")),
    }
}

/// Whether [`Broker::start`] runs mosquitto (installed and not overridden by [`BROKER_ENV`]).
pub fn have_mosquitto() -> bool {
    forced() != Some("embedded") && mosquitto_path().is_some()
}

/// For cases that need what only mosquitto offers (stop and restart, passwords, TLS, its log):
/// `true` when mosquitto will run. Otherwise prints that `what` is not run and returns `false`;
/// under `CI` a missing mosquitto panics instead (an explicit `M365_TEST_BROKER=embedded` still
/// skips).
pub fn require_mosquitto(what: &str) -> bool {
    if have_mosquitto() {
        return true;
    }
    if forced().is_none() && in_ci() {
        panic!("{what}: needs mosquitto, which is not installed, and CI is set");
    }
    println!("{what}: needs mosquitto, and the embedded broker is in use; not run");
    false
}

/// A client id no other client of this test run uses.
pub fn client_id(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Extra broker settings. Everything but the defaults needs mosquitto.
#[derive(Default, Clone)]
pub struct BrokerOptions {
    /// Keep sessions and queued messages across restarts (so a subscriber misses nothing while
    /// the broker is down).
    pub persistence: bool,
    /// Require this user name and password.
    pub credentials: Option<(String, String)>,
    /// Serve TLS with this PEM certificate and key.
    pub tls: Option<(String, String)>,
    /// Also write mosquitto's log to `mosquitto.log` in [`Broker::dir`] ([`Broker::log`] has it
    /// either way).
    pub log: bool,
}

impl std::fmt::Debug for BrokerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerOptions")
            .field("persistence", &self.persistence)
            .field(
                "credentials",
                &self
                    .credentials
                    .as_ref()
                    .map(|(user, _)| (user, "<redacted>")),
            )
            .field("tls", &self.tls.is_some())
            .field("log", &self.log)
            .finish()
    }
}

/// Why a mosquitto start failed.
enum StartError {
    /// The port was taken: try another (first start) or again (restart).
    AddressInUse(String),
    /// Anything else, with what mosquitto said.
    Failed(String),
}

#[derive(Debug)]
struct Mosquitto {
    bin: PathBuf,
    conf: PathBuf,
    reservation: ReservedPort,
    child: Option<Child>,
    /// Everything mosquitto wrote to its standard error, over all its runs.
    log: Arc<Mutex<String>>,
}

#[derive(Debug)]
struct Embedded {
    v4: ReservedPort,
    v5: ReservedPort,
    why: &'static str,
    started: bool,
}

#[derive(Debug)]
enum Kind {
    Mosquitto(Mosquitto),
    Embedded(Embedded),
}

/// A broker for one test, stopped when dropped.
#[derive(Debug)]
pub struct Broker {
    /// The broker's port (the MQTT 5 one for the embedded broker; see [`Broker::port_of`]).
    pub port: u16,
    kind: Kind,
    dir: tempfile::TempDir,
}

impl Broker {
    /// Starts a broker and returns once it accepts connections.
    pub async fn start(opts: BrokerOptions) -> Broker {
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            let mut broker = Broker::stopped(opts.clone());
            let Kind::Mosquitto(m) = &mut broker.kind else {
                broker.resume().await;
                return broker;
            };
            match spawn_mosquitto(m).await {
                Ok(()) => {
                    println!("broker: mosquitto on 127.0.0.1:{}", broker.port);
                    return broker;
                }
                Err(StartError::AddressInUse(log)) => last = log,
                Err(StartError::Failed(log)) => panic!("mosquitto did not start:\n{log}"),
            }
        }
        panic!("mosquitto found its port taken {START_ATTEMPTS} times; last log:\n{last}");
    }

    /// A broker with its port reserved and its configuration written, not started yet: for
    /// cases where a client is to find nothing listening first. [`Broker::resume`] starts it.
    pub fn stopped(opts: BrokerOptions) -> Broker {
        let dir = tempfile::tempdir().expect("a temporary directory for the broker");
        match choice() {
            Choice::Mosquitto(bin) => {
                let reservation = ReservedPort::new();
                let port = reservation.port();
                let conf = dir.path().join("mosquitto.conf");
                let text = mosquitto_conf(port, &opts, dir.path());
                std::fs::write(&conf, text).expect("mosquitto.conf written");
                Broker {
                    port,
                    kind: Kind::Mosquitto(Mosquitto {
                        bin,
                        conf,
                        reservation,
                        child: None,
                        log: Arc::default(),
                    }),
                    dir,
                }
            }
            Choice::Embedded(why) => {
                assert!(
                    opts.credentials.is_none() && opts.tls.is_none(),
                    "the embedded broker serves plain MQTT without passwords: check \
                     `require_mosquitto` first"
                );
                let v4 = ReservedPort::new();
                let v5 = ReservedPort::new();
                Broker {
                    port: v5.port(),
                    kind: Kind::Embedded(Embedded {
                        v4,
                        v5,
                        why,
                        started: false,
                    }),
                    dir,
                }
            }
        }
    }

    /// Whether this is mosquitto (which can be stopped, restarted and configured).
    pub fn is_mosquitto(&self) -> bool {
        matches!(self.kind, Kind::Mosquitto(_))
    }

    /// Protocol versions a publisher may use with a [`subscribe`]r (an MQTT 3.1.1 client), the
    /// preferred one first. rumqttd 0.20 cannot forward MQTT 5 publishes that carry properties
    /// to 3.1.1 subscribers, so the embedded broker is used with 3.1.1 only.
    pub fn versions(&self) -> Vec<MqttVersion> {
        match self.kind {
            Kind::Mosquitto(_) => vec![MqttVersion::V5, MqttVersion::V311],
            Kind::Embedded(_) => vec![MqttVersion::V311],
        }
    }

    /// The port for a client speaking `version` (mosquitto serves both on one port, the embedded
    /// broker on one port each).
    pub fn port_of(&self, version: MqttVersion) -> u16 {
        match (&self.kind, version) {
            (Kind::Embedded(e), MqttVersion::V311) => e.v4.port(),
            (Kind::Embedded(e), MqttVersion::V5) => e.v5.port(),
            (Kind::Mosquitto(_), _) => self.port,
        }
    }

    /// Stops mosquitto with SIGTERM (so a persistent broker saves its sessions) and waits for it
    /// to exit. The port stays reserved for [`Broker::resume`]. Panics for the embedded broker,
    /// which cannot be stopped.
    pub fn stop(&mut self) {
        let Kind::Mosquitto(m) = &mut self.kind else {
            panic!("the embedded broker cannot be stopped: check `require_mosquitto` first");
        };
        if let Some(mut child) = m.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same port (or for the first time, after
    /// [`Broker::stopped`]) and returns once it accepts connections. While the port is still in
    /// use it retries for a few seconds.
    pub async fn resume(&mut self) {
        match &mut self.kind {
            Kind::Mosquitto(m) => {
                if m.child.is_some() {
                    return;
                }
                let deadline = tokio::time::Instant::now() + RESTART_TIMEOUT;
                loop {
                    match spawn_mosquitto(m).await {
                        Ok(()) => return,
                        Err(StartError::AddressInUse(log))
                            if tokio::time::Instant::now() >= deadline =>
                        {
                            panic!(
                                "port {} still in use after {RESTART_TIMEOUT:?}:\n{log}",
                                m.reservation.port()
                            )
                        }
                        Err(StartError::AddressInUse(_)) => {
                            // Retry pacing while the old socket goes away, not a wait for it.
                            tokio::time::sleep(RESTART_PAUSE).await;
                        }
                        Err(StartError::Failed(log)) => panic!("mosquitto did not start:\n{log}"),
                    }
                }
            }
            Kind::Embedded(e) => {
                if !e.started {
                    start_embedded(e).await;
                    e.started = true;
                }
            }
        }
    }

    /// What mosquitto logged so far (connections and disconnections included); empty for the
    /// embedded broker.
    pub fn log(&self) -> String {
        match &self.kind {
            Kind::Mosquitto(m) => m.log.lock().expect("log lock").clone(),
            Kind::Embedded(_) => String::new(),
        }
    }

    /// The broker's private directory (configuration, password file, persistence, log file).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `mqtt://127.0.0.1:<port>` for a client speaking `version`.
    pub fn url(&self, version: MqttVersion) -> String {
        format!("mqtt://127.0.0.1:{}", self.port_of(version))
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Kind::Mosquitto(Mosquitto {
            child: Some(child), ..
        }) = &mut self.kind
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn mosquitto_conf(port: u16, opts: &BrokerOptions, dir: &Path) -> String {
    // `user root`: mosquitto started as root otherwise drops to the `mosquitto` user, which
    // cannot write into this private directory (without a word). Run as another user, the
    // setting has no effect.
    let mut conf = format!(
        "user root\nlistener {port} 127.0.0.1\nmax_queued_messages 1000000\n\
         max_inflight_messages 0\n\
         log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\n\
         log_type information\nconnection_messages true\n"
    );
    match &opts.credentials {
        Some((user, pass)) => {
            let file = dir.join("passwd");
            std::fs::write(&file, "").expect("password file created");
            let made = Command::new("mosquitto_passwd")
                .arg("-b")
                .arg(&file)
                .arg(user)
                .arg(pass)
                .status()
                .expect("mosquitto_passwd (installed with mosquitto) runs");
            assert!(made.success(), "mosquitto_passwd failed: {made}");
            conf += &format!("allow_anonymous false\npassword_file {}\n", file.display());
        }
        None => conf += "allow_anonymous true\n",
    }
    if let Some((cert, key)) = &opts.tls {
        let c = dir.join("cert.pem");
        let k = dir.join("key.pem");
        std::fs::write(&c, cert).expect("certificate written");
        std::fs::write(&k, key).expect("key written");
        conf += &format!("certfile {}\nkeyfile {}\n", c.display(), k.display());
    }
    if opts.log {
        conf += &format!("log_dest file {}\n", dir.join("mosquitto.log").display());
    }
    if opts.persistence {
        conf += &format!(
            "persistence true\npersistence_location {}/\nautosave_interval 1\n",
            dir.display()
        );
    } else {
        conf += "persistence false\n";
    }
    conf
}

/// Runs mosquitto and waits for its log to say `running`, or for it to exit.
async fn spawn_mosquitto(m: &mut Mosquitto) -> Result<(), StartError> {
    let mut child = Command::new(&m.bin)
        .arg("-c")
        .arg(&m.conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", m.bin.display()));
    let stderr = child.stderr.take().expect("piped standard error");
    let (lines_tx, mut lines) = mpsc::unbounded_channel::<String>();
    let log = m.log.clone();
    // Drains the pipe for the life of the process (mosquitto would block on a full pipe) and
    // keeps everything for `Broker::log`.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut log = log.lock().expect("log lock");
            log.push_str(&line);
            log.push('\n');
            drop(log);
            let _ = lines_tx.send(line);
        }
    });
    let mut said = String::new();
    let running = tokio::time::timeout(START_TIMEOUT, async {
        while let Some(line) = lines.recv().await {
            said.push_str(&line);
            said.push('\n');
            if line.ends_with(" running") {
                return true;
            }
        }
        false
    })
    .await;
    match running {
        Ok(true) => {
            m.child = Some(child);
            let port = m.reservation.port();
            assert!(
                wait_listening(port, START_TIMEOUT).await,
                "mosquitto said it runs, yet nothing listens on 127.0.0.1:{port}"
            );
            Ok(())
        }
        Ok(false) => {
            let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
            let report = format!("exited ({status}):\n{said}");
            if said.contains("Address already in use") {
                Err(StartError::AddressInUse(report))
            } else {
                Err(StartError::Failed(report))
            }
        }
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(StartError::Failed(format!(
                "not running after {START_TIMEOUT:?}:\n{said}"
            )))
        }
    }
}

async fn start_embedded(e: &Embedded) {
    let server = |name: &str, port: u16| {
        serde_json::json!({ "1": {
            "name": name,
            "listen": format!("127.0.0.1:{port}"),
            "next_connection_delay_ms": 1,
            "connections": {
                "connection_timeout_ms": 60000,
                "max_payload_size": 1048576,
                "max_inflight_count": 200
            }
        }})
    };
    let config: rumqttd::Config = serde_json::from_value(serde_json::json!({
        "id": 0,
        "router": {
            "max_connections": 100,
            "max_outgoing_packet_count": 1000,
            "max_segment_size": 104857600,
            "max_segment_count": 10
        },
        "v4": server("v4", e.v4.port()),
        "v5": server("v5", e.v5.port()),
    }))
    .expect("a valid rumqttd configuration");
    // rumqttd runs on threads of its own until the test process ends (it cannot be stopped).
    std::thread::Builder::new()
        .name("test-broker".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            let _ = broker.start();
        })
        .expect("the broker thread starts");
    for port in [e.v4.port(), e.v5.port()] {
        assert!(
            wait_listening(port, START_TIMEOUT).await,
            "the embedded broker does not listen on 127.0.0.1:{port}"
        );
    }
    println!(
        "broker: embedded rumqttd ({}) on 127.0.0.1:{} (MQTT 3.1.1) / {} (MQTT 5)",
        e.why,
        e.v4.port(),
        e.v5.port()
    );
}

/// One message a subscriber received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The topic it was published to.
    pub topic: String,
    /// Its payload, as published.
    pub payload: Vec<u8>,
    /// Whether the broker delivered it as a retained message.
    pub retain: bool,
}

/// Subscriber settings.
#[derive(Default, Clone)]
pub struct SubscriberOptions {
    /// Log in with this user name and password.
    pub credentials: Option<(String, String)>,
    /// Start a clean session. By default the session persists (QoS 1, a fixed client id), so a
    /// broker that persists sessions keeps what arrives while it is down and the subscriber
    /// comes back.
    pub clean_session: bool,
}

impl std::fmt::Debug for SubscriberOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriberOptions")
            .field(
                "credentials",
                &self
                    .credentials
                    .as_ref()
                    .map(|(user, _)| (user, "<redacted>")),
            )
            .field("clean_session", &self.clean_session)
            .finish()
    }
}

#[derive(Debug, Default)]
struct Shared {
    messages: Mutex<Vec<Message>>,
    errors: Mutex<Vec<String>>,
    arrived: Notify,
}

/// Aborts the subscriber task once the last [`Inbox`] clone is gone.
#[derive(Debug)]
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Messages received by a [`subscribe`]r, in arrival order. A default `Inbox` has no subscriber
/// (its [`Inbox::wait_for`] then waits for other conditions).
#[derive(Debug, Clone, Default)]
pub struct Inbox {
    shared: Arc<Shared>,
    _task: Option<Arc<AbortOnDrop>>,
}

impl Inbox {
    /// Everything received so far.
    pub fn messages(&self) -> Vec<Message> {
        self.shared.messages.lock().expect("inbox lock").clone()
    }

    /// How many messages arrived.
    pub fn len(&self) -> usize {
        self.shared.messages.lock().expect("inbox lock").len()
    }

    /// Whether nothing arrived yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The payloads received on `topic`, in arrival order.
    pub fn on(&self, topic: &str) -> Vec<Vec<u8>> {
        self.shared
            .messages
            .lock()
            .expect("inbox lock")
            .iter()
            .filter(|m| m.topic == topic)
            .map(|m| m.payload.clone())
            .collect()
    }

    /// Connection errors the subscriber saw (it reconnects after each).
    pub fn errors(&self) -> Vec<String> {
        self.shared.errors.lock().expect("inbox lock").clone()
    }

    /// Waits until `condition` holds, up to `timeout`; returns whether it did. It is checked at
    /// once, on every arriving message, and every few milliseconds (it may look at other state).
    pub async fn wait_for(
        &self,
        timeout: Duration,
        mut condition: impl FnMut(&Inbox) -> bool,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let arrived = self.shared.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if condition(self) {
                return true;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return false;
            }
            tokio::select! {
                _ = arrived => {}
                _ = tokio::time::sleep(CONDITION_POLL.min(deadline - now)) => {}
            }
        }
    }

    fn push(&self, message: Message) {
        self.shared
            .messages
            .lock()
            .expect("inbox lock")
            .push(message);
        self.shared.arrived.notify_waiters();
    }
}

/// A QoS 1 subscriber to `filter` on 127.0.0.1:`port` (MQTT 3.1.1) with a persistent session.
/// Returns once the broker acknowledged the subscription (SUBACK); it reconnects and subscribes
/// again whenever the broker goes away and comes back.
pub async fn subscribe(port: u16, filter: &str) -> Inbox {
    subscribe_with(port, filter, &SubscriberOptions::default()).await
}

/// [`subscribe`] with settings.
pub async fn subscribe_with(port: u16, filter: &str, opts: &SubscriberOptions) -> Inbox {
    let inbox = Inbox::default();
    let sink = inbox.clone();
    let task = run_subscriber(port, filter, opts, inbox.shared.clone(), move |m| {
        sink.push(m);
        true
    })
    .await;
    Inbox {
        _task: Some(Arc::new(AbortOnDrop(task))),
        ..inbox
    }
}

/// [`subscribe`], handing each message to the returned channel instead; the subscriber ends
/// when the receiver is dropped.
pub async fn subscribe_stream(port: u16, filter: &str) -> mpsc::UnboundedReceiver<Message> {
    let (tx, rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared::default());
    run_subscriber(
        port,
        filter,
        &SubscriberOptions::default(),
        shared,
        move |m| tx.send(m).is_ok(),
    )
    .await;
    rx
}

/// Publishes one QoS 1 message to 127.0.0.1:`port` (MQTT 3.1.1) and returns once the broker
/// acknowledged it (PUBACK). Anything the broker sent a subscriber before this message reaches
/// that subscriber before it, so a test can publish a marker and wait for it to know nothing
/// else is on its way.
pub async fn publish(port: u16, topic: &str, payload: impl Into<Vec<u8>>, retain: bool) {
    let mut o = MqttOptions::new(client_id("test-pub"), "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(5))
        .set_max_packet_size(1024 * 1024, 1024 * 1024);
    let (client, mut eventloop) = AsyncClient::new(o, 4);
    client
        .try_publish(topic, QoS::AtLeastOnce, retain, payload.into())
        .expect("the request queue has room");
    let acked = tokio::time::timeout(SUBSCRIBE_TIMEOUT, async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
    })
    .await;
    match acked {
        Ok(Ok(())) => {
            let _ = client.try_disconnect();
            // Hands the DISCONNECT to the socket; the connection then ends.
            let _ = tokio::time::timeout(Duration::from_secs(1), eventloop.poll()).await;
        }
        Ok(Err(e)) => panic!("publishing to 127.0.0.1:{port}: {e}"),
        Err(_) => panic!("no PUBACK from 127.0.0.1:{port} within {SUBSCRIBE_TIMEOUT:?}"),
    }
}

/// Runs the subscriber task and returns it once subscribed; panics when no SUBACK comes.
async fn run_subscriber(
    port: u16,
    filter: &str,
    opts: &SubscriberOptions,
    shared: Arc<Shared>,
    mut deliver: impl FnMut(Message) -> bool + Send + 'static,
) -> JoinHandle<()> {
    let mut o = MqttOptions::new(client_id("test-sub"), "127.0.0.1", port);
    o.set_clean_session(opts.clean_session)
        .set_keep_alive(Duration::from_secs(5))
        .set_max_packet_size(1024 * 1024, 1024 * 1024);
    if let Some((user, pass)) = &opts.credentials {
        o.set_credentials(user, pass);
    }
    let (client, mut eventloop) = AsyncClient::new(o, 64);
    let (ready_tx, ready_rx) = oneshot::channel::<Result<(), String>>();
    let filter = filter.to_owned();
    let errors = shared.clone();
    let task = tokio::spawn(async move {
        let mut ready = Some(ready_tx);
        let mut received = 0u64;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    // Not awaited: the request queue is served by this very loop.
                    if let Err(e) = client.try_subscribe(filter.clone(), QoS::AtLeastOnce) {
                        if let Some(r) = ready.take() {
                            let _ = r.send(Err(format!("cannot subscribe: {e}")));
                        }
                        return;
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    let refused = ack
                        .return_codes
                        .iter()
                        .any(|c| matches!(c, SubscribeReasonCode::Failure));
                    if let Some(r) = ready.take() {
                        let _ = r.send(if refused {
                            Err(format!("the broker refused the subscription to {filter}"))
                        } else {
                            Ok(())
                        });
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    received += 1;
                    let message = Message {
                        topic: p.topic.clone(),
                        payload: p.payload.to_vec(),
                        retain: p.retain,
                    };
                    if !deliver(message) {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    errors
                        .errors
                        .lock()
                        .expect("inbox lock")
                        .push(format!("{e} after {received} messages"));
                    // Reconnection pacing while the broker is away.
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                }
            }
        }
    });
    match tokio::time::timeout(SUBSCRIBE_TIMEOUT, ready_rx).await {
        Ok(Ok(Ok(()))) => task,
        Ok(Ok(Err(why))) => panic!("subscriber on 127.0.0.1:{port}: {why}"),
        Ok(Err(_)) | Err(_) => {
            task.abort();
            panic!(
                "no SUBACK from 127.0.0.1:{port} within {SUBSCRIBE_TIMEOUT:?}; errors: {:?}",
                shared.errors.lock().expect("inbox lock")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Publishes `n` messages ("0", "1", …) to `topic`, each acknowledged before the next.
    async fn publish_n(port: u16, topic: &str, n: usize, retain: bool) {
        for i in 0..n {
            publish(port, topic, i.to_string(), retain).await;
        }
    }

    #[tokio::test]
    async fn a_subscriber_receives_what_is_published_after_its_suback() {
        let broker = Broker::start(BrokerOptions::default()).await;
        let port = broker.port_of(MqttVersion::V311);
        let inbox = subscribe(port, "t/#").await;
        publish_n(port, "t/a", 5, false).await;
        assert!(inbox.wait_for(SUBSCRIBE_TIMEOUT, |i| i.len() >= 5).await);
        let payloads: Vec<Vec<u8>> = (0..5).map(|i| i.to_string().into_bytes()).collect();
        assert_eq!(inbox.on("t/a"), payloads);
        assert!(inbox.on("t/b").is_empty());
    }

    #[tokio::test]
    async fn a_stream_subscriber_hands_over_messages_in_order() {
        let broker = Broker::start(BrokerOptions::default()).await;
        let port = broker.port_of(MqttVersion::V311);
        let mut stream = subscribe_stream(port, "s/+").await;
        publish_n(port, "s/x", 3, false).await;
        for i in 0..3 {
            let m = tokio::time::timeout(SUBSCRIBE_TIMEOUT, stream.recv())
                .await
                .expect("in time")
                .expect("subscriber alive");
            assert_eq!(m.topic, "s/x");
            assert_eq!(m.payload, i.to_string().into_bytes());
        }
    }

    #[tokio::test]
    async fn mosquitto_restarts_on_its_port_and_keeps_the_session() {
        if !require_mosquitto("restart") {
            return;
        }
        let mut broker = Broker::start(BrokerOptions {
            persistence: true,
            log: true,
            ..Default::default()
        })
        .await;
        let port = broker.port;
        let inbox = subscribe(port, "r/#").await;
        broker.stop();
        let refused = tokio::net::TcpStream::connect(("127.0.0.1", port)).await;
        assert!(refused.is_err(), "nothing listens while stopped");
        broker.resume().await;
        assert_eq!(broker.port, port, "the same port again");
        publish_n(port, "r/1", 3, false).await;
        assert!(
            inbox.wait_for(SUBSCRIBE_TIMEOUT, |i| i.len() >= 3).await,
            "the subscriber came back: {:?}",
            inbox.errors()
        );
        assert_eq!(broker.log().matches(" running").count(), 2);
        let file = std::fs::read_to_string(broker.dir().join("mosquitto.log")).unwrap();
        assert!(file.contains("running"), "{file}");
    }

    #[tokio::test]
    async fn a_broker_started_later_is_found_on_the_reserved_port() {
        let mut broker = Broker::stopped(BrokerOptions::default());
        let port = broker.port_of(MqttVersion::V311);
        assert!(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err()
        );
        broker.resume().await;
        let inbox = subscribe(port, "late").await;
        publish_n(port, "late", 1, true).await;
        assert!(inbox.wait_for(SUBSCRIBE_TIMEOUT, |i| i.len() == 1).await);
        // A later subscriber gets it as a retained message.
        let later = subscribe(port, "late").await;
        assert!(later.wait_for(SUBSCRIBE_TIMEOUT, |i| i.len() == 1).await);
        assert!(later.messages()[0].retain);
    }

    #[tokio::test]
    async fn credentials_are_enforced_and_a_subscriber_can_log_in() {
        if !require_mosquitto("credentials") {
            return;
        }
        let broker = Broker::start(BrokerOptions {
            credentials: Some(("u".into(), "p4ss".into())),
            ..Default::default()
        })
        .await;
        let mut wrong = MqttOptions::new(client_id("test-wrong"), "127.0.0.1", broker.port);
        wrong.set_credentials("u", "nope");
        let (_client, mut eventloop) = AsyncClient::new(wrong, 4);
        let refused = tokio::time::timeout(SUBSCRIBE_TIMEOUT, eventloop.poll())
            .await
            .expect("an answer in time");
        assert!(
            matches!(refused, Err(rumqttc::ConnectionError::ConnectionRefused(_))),
            "{refused:?}"
        );
        let opts = SubscriberOptions {
            credentials: Some(("u".into(), "p4ss".into())),
            ..Default::default()
        };
        let inbox = subscribe_with(broker.port, "c", &opts).await;
        assert!(inbox.errors().is_empty(), "{:?}", inbox.errors());
        assert!(!format!("{opts:?}").contains("p4ss"));
    }

    #[tokio::test]
    async fn mosquitto_reports_a_port_taken_by_another_listener() {
        if !require_mosquitto("port taken") {
            return;
        }
        let mut broker = Broker::stopped(BrokerOptions::default());
        // The standard library's listener reuses addresses too, so it can take the port.
        let _thief = std::net::TcpListener::bind(("127.0.0.1", broker.port)).unwrap();
        let Kind::Mosquitto(m) = &mut broker.kind else {
            unreachable!("require_mosquitto said mosquitto");
        };
        match spawn_mosquitto(m).await {
            Err(StartError::AddressInUse(log)) => assert!(log.contains("in use"), "{log}"),
            Ok(()) => panic!("started on a taken port"),
            Err(StartError::Failed(log)) => panic!("not recognised as a taken port:\n{log}"),
        }
    }

    #[test]
    fn ci_refuses_the_fallback_and_the_variable_chooses() {
        let path = PathBuf::from("/opt/mosquitto");
        let found = Some(path.clone());
        assert_eq!(
            decide(None, found.clone(), true),
            Ok(Choice::Mosquitto(path.clone()))
        );
        assert_eq!(
            decide(None, None, false),
            Ok(Choice::Embedded("mosquitto not found"))
        );
        let err = decide(None, None, true).unwrap_err();
        assert!(err.contains("CI is set"), "{err}");
        assert!(matches!(
            decide(Some("embedded"), found.clone(), true),
            Ok(Choice::Embedded(_))
        ));
        assert!(decide(Some("mosquitto"), None, false).is_err());
        assert_eq!(
            decide(Some("mosquitto"), found, false),
            Ok(Choice::Mosquitto(path))
        );
    }

    #[test]
    fn parallel_brokers_get_distinct_ports() {
        let brokers: Vec<Broker> = (0..4)
            .map(|_| Broker::stopped(BrokerOptions::default()))
            .collect();
        let mut ports: Vec<u16> = brokers.iter().map(|b| b.port).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 4);
    }
}
