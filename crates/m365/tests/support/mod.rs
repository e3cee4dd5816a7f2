//! Test support shared by the end-to-end tests of `m365 run` with several scooters: simulated
//! scooters on one fake BlueZ (a private D-Bus), steered from the test, the broker to use, and
//! the `m365` process.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use m365_fakebluez::{FakeBluez, PrivateBus};
use m365_proto::keys::Token;
use m365_sim::bluez::{DEFAULT_PHYSICS_TICK, ServedScooter};
use m365_sim::state_file::{self, PairingState};
use m365_sim::{Fault, Model, Scooter, ScooterConfig};
use m365_testkit::broker::{Broker, MqttVersion};

/// The `m365` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_m365");
/// Upper bound of any wait; the tests assert what happened, not how fast.
pub const WAIT: Duration = Duration::from_secs(40);

/// What the test asks of one simulated scooter.
pub enum Steer {
    /// A fault, as the fake BlueZ applies it.
    Fault(Fault),
    /// Anything done to the scooter's model (ride, lock, charge, errors).
    With(Box<dyn FnOnce(&mut Scooter) + Send>),
}

/// Several simulated scooters on one fake BlueZ, driven from a thread of its own until dropped.
pub struct Depot {
    /// The private bus, for `DBUS_SYSTEM_BUS_ADDRESS`.
    pub bus_address: String,
    /// Each scooter's address, in the order given.
    pub addresses: Vec<String>,
    steer: tokio::sync::mpsc::UnboundedSender<(usize, Steer)>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Depot {
    /// `None` (with a notice) when there is no dbus-daemon and `CI` is unset.
    pub fn start(configs: Vec<ScooterConfig>) -> Option<Depot> {
        if !m365_fakebluez::isolation::daemon_available() {
            assert!(
                std::env::var_os("CI").is_none(),
                "dbus-daemon is not installed"
            );
            eprintln!("skipping: dbus-daemon is not installed");
            return None;
        }
        let (ready_tx, ready_rx) = std_mpsc::channel();
        let (stop, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (steer, mut steer_rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Steer)>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let bus = PrivateBus::start().expect("private bus");
                let fake = FakeBluez::start(bus.address()).await.expect("fake BlueZ");
                let mut served = Vec::new();
                let mut addresses = Vec::new();
                for config in configs {
                    let scooter = Scooter::new(config).expect("scooter");
                    addresses.push(scooter.profile().address_string());
                    served.push(
                        ServedScooter::start(&fake, scooter, DEFAULT_PHYSICS_TICK)
                            .expect("served scooter"),
                    );
                }
                ready_tx
                    .send((bus.address().to_owned(), addresses))
                    .unwrap();
                loop {
                    tokio::select! {
                        _ = &mut stop_rx => break,
                        Some((i, what)) = steer_rx.recv() => match what {
                            Steer::Fault(fault) => served[i].apply_fault(fault).await,
                            Steer::With(f) => served[i].with_scooter(f),
                        },
                    }
                }
                drop(served);
                drop(fake);
                drop(bus);
            });
        });
        let (bus_address, addresses) = ready_rx.recv_timeout(WAIT).expect("the depot started");
        Some(Depot {
            bus_address,
            addresses,
            steer,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Depot {
    /// Applies `fault` to scooter `i`.
    pub fn fault(&self, i: usize, fault: Fault) {
        self.steer.send((i, Steer::Fault(fault))).unwrap();
    }

    /// Runs `f` on scooter `i`'s model.
    pub fn with(&self, i: usize, f: impl FnOnce(&mut Scooter) + Send + 'static) {
        self.steer.send((i, Steer::With(Box::new(f)))).unwrap();
    }
}

impl Drop for Depot {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A Pro 2 whose pairing with `token` is already stored in `state_dir`.
pub fn paired_scooter(state_dir: &Path, token: &Token, seed: u64) -> ScooterConfig {
    let mut config = ScooterConfig::new(Model::Pro2, seed);
    config.link = None;
    config.state_dir = Some(state_dir.to_path_buf());
    let address = Scooter::new(config.clone()).unwrap().profile().address;
    state_file::save(
        &state_file::path_for(state_dir, &address),
        &PairingState {
            token: Some(token.clone()),
            did: None,
        },
    )
    .unwrap();
    config
}

/// The broker's port and the MQTT version to speak there (mosquitto speaks both; the embedded
/// fallback broker one per port).
pub fn broker_port(broker: &Broker) -> (u16, &'static str) {
    let version = broker.versions()[0];
    let protocol = match version {
        MqttVersion::V5 => "5",
        MqttVersion::V311 => "3.1.1",
    };
    (broker.port_of(version), protocol)
}

pub fn spawn_m365(config: &Path, bus: &str, notify: &Path, dir: &Path) -> Child {
    let log = std::fs::File::create(dir.join("m365.log")).unwrap();
    Command::new(BIN)
        .args(["run", "--config"])
        .arg(config)
        .current_dir(dir)
        .env("DBUS_SYSTEM_BUS_ADDRESS", bus)
        .env("NOTIFY_SOCKET", notify)
        .env_remove("WATCHDOG_USEC")
        .env_remove("M365_MQTT_PASSWORD")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("m365 starts")
}

pub fn log_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("m365.log")).unwrap_or_default()
}

impl Depot {
    /// Runs `f` on scooter `i`'s model and returns what it returns (what the simulator shows).
    pub async fn read<T: Send + 'static>(
        &self,
        i: usize,
        f: impl FnOnce(&mut Scooter) -> T + Send + 'static,
    ) -> T {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.with(i, move |scooter| {
            let _ = tx.send(f(scooter));
        });
        tokio::time::timeout(WAIT, rx)
            .await
            .expect("the depot answers in time")
            .expect("the depot runs")
    }
}

/// Sends SIGTERM to `child` and waits (up to [`WAIT`]) for its exit code.
pub async fn terminate(child: &mut Child) -> Option<i32> {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        assert!(std::time::Instant::now() < deadline, "m365 did not exit");
        // Polling a child's exit, not a synchronisation.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Kills `child` when dropped, so a failing test leaves no `m365` behind.
pub struct Reaper(pub Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The JSON payloads received on `topic`, parsed.
pub fn parsed(inbox: &m365_testkit::broker::Inbox, topic: &str) -> Vec<serde_json::Value> {
    inbox
        .on(topic)
        .iter()
        .map(|p| serde_json::from_slice(p).expect("JSON"))
        .collect()
}

/// The command acknowledgements on `scooter`'s result topic (the default one), parsed.
pub fn results(inbox: &m365_testkit::broker::Inbox, scooter: &str) -> Vec<serde_json::Value> {
    parsed(inbox, &format!("m365/{scooter}/command/result"))
}

/// A simulated Pro 2 standing still (no scripted ride), unlocked, seeded with `seed`.
pub fn standing(seed: u64) -> ScooterConfig {
    let mut config = ScooterConfig::new(Model::Pro2, seed);
    config.script = m365_sim::Script::Parked;
    config
}

/// One `m365 run` end to end, as the remote-command and ride-event tests drive it: scooters on
/// the fake BlueZ, a real broker, a subscriber to `m365/#`, systemd's notify socket, and the
/// process (started by [`Harness::start`], killed when dropped).
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub depot: Depot,
    pub broker: Broker,
    /// The broker's port for the test's clients (MQTT 3.1.1).
    pub port: u16,
    /// Everything published under `m365/#` since the harness started, in arrival order.
    pub inbox: m365_testkit::broker::Inbox,
    pub config: std::path::PathBuf,
    notify_path: std::path::PathBuf,
    /// systemd's side of `NOTIFY_SOCKET`: the daemon's `STATUS=` lines.
    notify: tokio::net::UnixDatagram,
    child: Option<Reaper>,
    /// Probes sent so far, so every probe id is new.
    probes: usize,
}

impl Harness {
    /// Scooters `configs` (each paired with the test's token) served as `ids`, each
    /// `[[scooter]]` entry with its own extra lines (`entry_lines`), then `[mqtt]` (JSON),
    /// `[spool]`, `[log]` and `tail` (`[telemetry]`, `[commands]`, `[events]`, …). `None` when
    /// there is no dbus-daemon.
    pub async fn new(
        configs: Vec<ScooterConfig>,
        ids: &[&str],
        entry_lines: &[&str],
        tail: &str,
    ) -> Option<Harness> {
        assert_eq!(configs.len(), ids.len());
        assert_eq!(configs.len(), entry_lines.len());
        let dir = tempfile::tempdir().unwrap();
        let sim_state = dir.path().join("sim");
        let token = Token([7; 12]);
        let configs = configs
            .into_iter()
            .map(|mut c| {
                let paired = paired_scooter(&sim_state, &token, c.seed);
                assert_eq!(c.model, paired.model, "paired_scooter pairs a Pro 2");
                c.link = paired.link;
                c.state_dir = paired.state_dir;
                c
            })
            .collect();
        let depot = Depot::start(configs)?;
        let broker = Broker::start(m365_testkit::broker::BrokerOptions::default()).await;
        let (port, protocol) = broker_port(&broker);
        let inbox = m365_testkit::broker::subscribe(port, "m365/#").await;
        let mut entries = String::new();
        for ((id, mac), lines) in ids.iter().zip(&depot.addresses).zip(entry_lines) {
            m365_ble::token_file::write(&dir.path().join(format!(".mi-token-{id}")), &token, false)
                .unwrap();
            entries += &format!(
                "[[scooter]]\nid = \"{id}\"\nmac = \"{mac}\"\n\
                 token_file_path = \".mi-token-{id}\"\n{lines}\n\n"
            );
        }
        let config = dir.path().join("martinete.toml");
        std::fs::write(
            &config,
            format!(
                "{entries}\n[mqtt]\nbroker = \"tcp://127.0.0.1:{port}\"\n\
                 protocol = \"{protocol}\"\nencoding = \"json\"\nreconnect_min = \"500ms\"\n\n\
                 [spool]\npath = \"{spool}\"\n\n[log]\nlevel = \"info\"\n\n{tail}\n",
                spool = dir.path().join("spool.sqlite").display(),
            ),
        )
        .unwrap();
        let notify_path = dir.path().join("notify.sock");
        let notify = tokio::net::UnixDatagram::bind(&notify_path).unwrap();
        Some(Harness {
            dir,
            depot,
            broker,
            port,
            inbox,
            config,
            notify_path,
            notify,
            child: None,
            probes: 0,
        })
    }

    /// Starts `m365 run` and waits until every scooter in `ids` published telemetry, and, with
    /// `probe`, until the command listener answers on that scooter's command topic.
    pub async fn start(&mut self, ids: &[&str], probe: Option<&str>) {
        let before: Vec<usize> = ids.iter().map(|id| self.telemetry(id).len()).collect();
        self.child = Some(Reaper(spawn_m365(
            &self.config,
            &self.depot.bus_address,
            &self.notify_path,
            self.dir.path(),
        )));
        for (id, before) in ids.iter().zip(before) {
            let topic = format!("m365/{id}/telemetry");
            let online = self
                .inbox
                .wait_for(WAIT, |i| i.on(&topic).len() > before)
                .await;
            assert!(online, "{id} never published; log:\n{}", self.log());
        }
        if let Some(scooter) = probe {
            self.listening(scooter).await;
        }
    }

    /// Stops the process with SIGTERM; it exits cleanly.
    pub async fn stop(&mut self) {
        let mut child = self.child.take().expect("m365 runs");
        let code = terminate(&mut child.0).await;
        assert_eq!(code, Some(0), "log:\n{}", self.log());
    }

    /// Publishes already-expired probes (`probe-N`) on `scooter`'s command topic until one is
    /// acknowledged: the listener is subscribed then (a command published before that would be
    /// lost, as the broker keeps nothing for a subscription that does not exist yet).
    pub async fn listening(&mut self, scooter: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            self.probes += 1;
            let id = format!("probe-{}", self.probes);
            self.command(
                scooter,
                serde_json::json!({"id": id, "command": "lock", "ttl": 0}),
            )
            .await;
            let answered = self
                .inbox
                .wait_for(Duration::from_millis(500), |i| {
                    results(i, scooter).iter().any(|r| r["id"] == id.as_str())
                })
                .await;
            if answered {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the command listener never answered; log:\n{}",
                self.log()
            );
        }
    }

    /// Publishes `command` (QoS 1, not retained) on `scooter`'s command topic.
    pub async fn command(&self, scooter: &str, command: serde_json::Value) {
        self.publish_raw(scooter, command.to_string()).await;
    }

    /// Publishes `payload` as is on `scooter`'s command topic.
    pub async fn publish_raw(&self, scooter: &str, payload: impl Into<Vec<u8>>) {
        m365_testkit::broker::publish(
            self.port,
            &format!("m365/{scooter}/command"),
            payload,
            false,
        )
        .await;
    }

    /// Waits for the acknowledgement of command `id` on `scooter`'s result topic.
    pub async fn ack(&self, scooter: &str, id: &str) -> serde_json::Value {
        let arrived = self
            .inbox
            .wait_for(WAIT, |i| results(i, scooter).iter().any(|r| r["id"] == id))
            .await;
        assert!(
            arrived,
            "no acknowledgement of {id}; received {:#?}; log:\n{}",
            results(&self.inbox, scooter),
            self.log()
        );
        results(&self.inbox, scooter)
            .into_iter()
            .find(|r| r["id"] == id)
            .unwrap()
    }

    /// Publishes `command` and returns its acknowledgement.
    pub async fn send(&self, scooter: &str, command: serde_json::Value) -> serde_json::Value {
        let id = command["id"].as_str().unwrap().to_owned();
        self.command(scooter, command).await;
        self.ack(scooter, &id).await
    }

    /// Waits for a `STATUS=` line from the daemon that contains `needle`.
    pub async fn wait_status(&self, needle: &str) {
        let mut seen = Vec::new();
        let found = tokio::time::timeout(WAIT, async {
            let mut buf = vec![0u8; 4096];
            loop {
                let n = self.notify.recv(&mut buf).await.unwrap();
                let line = String::from_utf8_lossy(&buf[..n]).into_owned();
                let hit = line.starts_with("STATUS=") && line.contains(needle);
                seen.push(line);
                if hit {
                    return;
                }
            }
        })
        .await;
        assert!(
            found.is_ok(),
            "no status with {needle:?}; saw {seen:?}; log:\n{}",
            self.log()
        );
    }

    /// `scooter`'s telemetry records so far, parsed.
    pub fn telemetry(&self, scooter: &str) -> Vec<serde_json::Value> {
        parsed(&self.inbox, &format!("m365/{scooter}/telemetry"))
    }

    /// `scooter`'s events so far, parsed.
    pub fn events(&self, scooter: &str) -> Vec<serde_json::Value> {
        parsed(&self.inbox, &format!("m365/{scooter}/events"))
    }

    /// Waits until `scooter` published an event named `name` after its first `skip` events,
    /// and returns the first such event.
    pub async fn event(&self, scooter: &str, name: &str, skip: usize) -> serde_json::Value {
        let topic = format!("m365/{scooter}/events");
        let arrived = self
            .inbox
            .wait_for(WAIT, |i| {
                parsed(i, &topic)
                    .iter()
                    .skip(skip)
                    .any(|e| e["event"] == name)
            })
            .await;
        assert!(
            arrived,
            "no {name} event; events: {:#?}; log:\n{}",
            self.events(scooter),
            self.log()
        );
        self.events(scooter)
            .into_iter()
            .skip(skip)
            .find(|e| e["event"] == name)
            .unwrap()
    }

    /// The names of `scooter`'s events so far, in arrival order.
    pub fn event_names(&self, scooter: &str) -> Vec<String> {
        self.events(scooter)
            .iter()
            .map(|e| e["event"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// The process's log so far.
    pub fn log(&self) -> String {
        log_of(self.dir.path())
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}
