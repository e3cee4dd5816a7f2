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
