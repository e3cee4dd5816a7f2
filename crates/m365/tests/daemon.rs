//! `m365 run` end to end, as systemd runs it: a simulated Pro 2 served on the fake BlueZ (on a
//! private D-Bus), an MQTT broker on a reserved loopback port (the workspace's test broker:
//! mosquitto when installed, else an embedded rumqttd), a configuration file written here, and the `m365` binary with
//! `NOTIFY_SOCKET` aimed at a socket of this test. The scooter's pairing is seeded on both
//! sides (its state file and `.mi-token`), as after `m365 register`.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use m365_fakebluez::{FakeBluez, PrivateBus};
use m365_gps::emulate::{
    EmulatorHandle, NmeaFeed, NmeaReceiverConfig, Pace, RoutePoint, straight_line,
};
use m365_proto::keys::Token;
use m365_sim::bluez::{DEFAULT_PHYSICS_TICK, ServedScooter};
use m365_sim::state_file::{self, PairingState};
use m365_sim::{Fault, Model, Scooter, ScooterConfig};
use m365_testkit::broker::{BrokerOptions, require_mosquitto, subscribe_stream};
use m365_testkit::net::ReservedPort;

const BIN: &str = env!("CARGO_BIN_EXE_m365");
/// Upper bound of any wait; the tests assert what happened, not how fast.
const WAIT: Duration = Duration::from_secs(30);

/// Where the daemon finds its broker.
struct Broker {
    port: u16,
    /// MQTT protocol the client should speak (`"5"` with mosquitto; the embedded broker
    /// relays MQTT 5 publishes to 3.1.1 subscribers badly).
    protocol: &'static str,
    _broker: Option<m365_testkit::broker::Broker>,
    _reserved: Option<ReservedPort>,
}

impl Broker {
    async fn start() -> Broker {
        Broker::start_with(None).await
    }

    /// With `credentials`, only that user name and password are accepted (mosquitto only).
    async fn start_with(credentials: Option<(&str, &str)>) -> Broker {
        let broker = m365_testkit::broker::Broker::start(BrokerOptions {
            credentials: credentials.map(|(u, p)| (u.to_owned(), p.to_owned())),
            ..Default::default()
        })
        .await;
        let version = broker.versions()[0];
        Broker {
            port: broker.port_of(version),
            protocol: match version {
                m365_testkit::broker::MqttVersion::V5 => "5",
                m365_testkit::broker::MqttVersion::V311 => "3.1.1",
            },
            _broker: Some(broker),
            _reserved: None,
        }
    }

    /// A port where nothing listens (reserved, so no other test's broker gets it).
    fn nobody() -> Broker {
        let reserved = ReservedPort::new();
        Broker {
            port: reserved.port(),
            protocol: "5",
            _broker: None,
            _reserved: Some(reserved),
        }
    }
}

/// The simulated scooter on the fake BlueZ, driven from a thread of its own (the fake wants
/// one thread) until dropped.
struct SimBench {
    bus_address: String,
    scooter_address: String,
    faults: tokio::sync::mpsc::UnboundedSender<Fault>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SimBench {
    /// `None` (with a notice) when there is no dbus-daemon and `CI` is unset.
    fn start(config: ScooterConfig) -> Option<SimBench> {
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
        let (faults, mut fault_rx) = tokio::sync::mpsc::unbounded_channel::<Fault>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let bus = PrivateBus::start().expect("private bus");
                let fake = FakeBluez::start(bus.address()).await.expect("fake BlueZ");
                let scooter = Scooter::new(config).expect("scooter");
                let address = scooter.profile().address_string();
                let served = ServedScooter::start(&fake, scooter, DEFAULT_PHYSICS_TICK)
                    .expect("served scooter");
                ready_tx.send((bus.address().to_owned(), address)).unwrap();
                loop {
                    tokio::select! {
                        _ = &mut stop_rx => break,
                        Some(fault) = fault_rx.recv() => served.apply_fault(fault).await,
                    }
                }
                drop(served);
                drop(fake);
                drop(bus);
            });
        });
        let (bus_address, scooter_address) =
            ready_rx.recv_timeout(WAIT).expect("the simulator started");
        Some(SimBench {
            bus_address,
            scooter_address,
            faults,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for SimBench {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A Pro 2 (Mi-auth) whose pairing with `token` is already stored in `state_dir`.
fn paired_scooter(state_dir: &Path, token: &Token, seed: u64) -> ScooterConfig {
    let mut config = ScooterConfig::new(Model::Pro2, seed);
    // The fake paces the link itself.
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

fn write_config(dir: &Path, mac: &str, broker: &Broker, scan_timeout: &str) -> PathBuf {
    let path = dir.join("martinete.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[scooter]
mac = "{mac}"
token_file_path = "{token}"
scan_timeout = "{scan_timeout}"

[mqtt]
broker = "tcp://127.0.0.1:{port}"
encoding = "json"
protocol = "{protocol}"
reconnect_min = "500ms"

[telemetry]
interval = "500ms"

[spool]
path = "{spool}"

[log]
level = "info"
"#,
            token = dir.join(".mi-token").display(),
            port = broker.port,
            protocol = broker.protocol,
            spool = dir.join("spool.sqlite").display(),
        ),
    )
    .unwrap();
    path
}

/// Starts an emulated NMEA receiver riding north from 43.36 N, and points `config` at it.
fn nmea_receiver(config: &Path) -> EmulatorHandle {
    let start = RoutePoint {
        time: m365_gps::chrono::Utc::now(),
        lat: 43.36,
        lon: -8.41,
        alt_m: 20.0,
        speed_mps: 4.0,
        course_deg: 0.0,
    };
    let receiver = m365_gps::emulate::nmea_receiver::spawn(NmeaReceiverConfig::new(
        NmeaFeed::Route(Box::new(straight_line(
            start,
            m365_gps::chrono::TimeDelta::seconds(1),
        ))),
        Pace::RealTime,
    ))
    .expect("a pty for the receiver");
    let path = receiver.path().expect("the receiver's device");
    let mut text = std::fs::read_to_string(config).unwrap();
    text += &format!(
        "\n[gps]\nsource = \"serial\"\nkind = \"nmea\"\ndevice = \"{}\"\nbaud = 9600\n",
        path.display()
    );
    std::fs::write(config, text).unwrap();
    receiver
}

fn spawn_m365(config: &Path, bus: &str, notify: &Path, dir: &Path) -> Child {
    let log = std::fs::File::create(dir.join("m365.log")).unwrap();
    Command::new(BIN)
        .args(["run", "--config"])
        .arg(config)
        .current_dir(dir)
        .env("DBUS_SYSTEM_BUS_ADDRESS", bus)
        .env("NOTIFY_SOCKET", notify)
        // A one-second watchdog: pings every half second.
        .env("WATCHDOG_USEC", "1000000")
        .env_remove("WATCHDOG_PID")
        .env_remove("M365_MQTT_PASSWORD")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("m365 starts")
}

fn log_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("m365.log")).unwrap_or_default()
}

/// Waits for the child's exit code.
async fn wait_exit(child: &mut Child, limit: Duration) -> Option<i32> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Everything published under `m365/`, as (topic, payload); returns once subscribed (SUBACK).
async fn subscriber(port: u16) -> tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)> {
    let mut stream = subscribe_stream(port, "m365/#").await;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(m) = stream.recv().await {
            if tx.send((m.topic, m.payload)).is_err() {
                return;
            }
        }
    });
    rx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_publishes_telemetry_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let token = Token([7, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    let config = paired_scooter(&dir.path().join("sim"), &token, 501);
    let Some(sim) = SimBench::start(config) else {
        return;
    };
    m365_ble::token_file::write(&dir.path().join(".mi-token"), &token, false).unwrap();
    let broker = Broker::start().await;
    let mut messages = subscriber(broker.port).await;
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(WAIT)).unwrap();
    let config = write_config(dir.path(), &sim.scooter_address, &broker, "20s");
    // An NMEA receiver on a pty, read by the daemon's serial GPS source.
    let receiver = nmea_receiver(&config);
    let mut child = spawn_m365(&config, &sim.bus_address, &notify_path, dir.path());

    // READY=1 first: the daemon is running (the scan may still be going on).
    let mut buf = [0u8; 512];
    let n = notify.recv(&mut buf).expect("a notification");
    assert_eq!(&buf[..n], b"READY=1", "log:\n{}", log_of(dir.path()));

    // Telemetry arrives through the broker with increasing sequence numbers.
    let id: String = sim
        .scooter_address
        .split(':')
        .collect::<String>()
        .to_ascii_lowercase();
    let telemetry = format!("m365/{id}/telemetry");
    let availability = format!("m365/{id}/availability");
    let mut seqs = Vec::new();
    let mut positions = 0;
    let mut online = false;
    let collect = async {
        while !(1..=6).all(|n| seqs.contains(&n)) || positions == 0 {
            let (topic, payload) = messages.recv().await.expect("subscriber alive");
            if topic == telemetry {
                let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
                assert_eq!(v["scooter_id"], id.as_str());
                let percent = v["battery"]["percent"].as_u64().expect("battery percent");
                assert!(percent <= 100, "{v}");
                let volts = v["battery"]["voltage_v"].as_f64().expect("voltage");
                assert!((25.0..=45.0).contains(&volts), "{v}");
                seqs.push(v["seq"].as_u64().expect("seq"));
                if let Some(lat) = v["gps"]["lat_deg"].as_f64() {
                    assert!((lat - 43.36).abs() < 0.01, "the receiver's position: {v}");
                    positions += 1;
                }
            } else if topic == availability {
                online |= payload == b"online";
            }
        }
    };
    tokio::time::timeout(WAIT, collect)
        .await
        .unwrap_or_else(|_| panic!("no telemetry; log:\n{}", log_of(dir.path())));
    assert!(online, "the availability topic said online first");
    // The pipeline sends the newest record of a commit first (live before backlog), so the
    // order on the wire may swap neighbours; what must hold is a gapless, growing series.
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "each record once, gapless from 1"
    );
    // SIGHUP reloads nothing, says so, and does not stop the daemon.
    let hup = Command::new("kill")
        .arg("-HUP")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(hup.success());
    let deadline = Instant::now() + WAIT;
    while !log_of(dir.path()).contains("does not reload") {
        assert!(Instant::now() < deadline, "log:\n{}", log_of(dir.path()));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "still running after SIGHUP"
    );

    // SIGTERM: exit 0 promptly, and the availability topic says offline.
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let code = wait_exit(&mut child, Duration::from_secs(15)).await;
    assert_eq!(code, Some(0), "log:\n{}", log_of(dir.path()));
    // The figures at the stop are the final ones: every sample acknowledged, nothing left.
    let log = log_of(dir.path());
    let stopped = log
        .lines()
        .find(|l| l.contains(" stopped sampled="))
        .unwrap_or_else(|| panic!("no stop summary; log:\n{log}"));
    let figure = |name: &str| -> u64 {
        stopped
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {stopped}"))
    };
    assert!(figure("sampled") > 0, "{stopped}");
    assert_eq!(figure("acknowledged"), figure("sampled"), "{stopped}");
    assert_eq!(figure("backlog"), 0, "{stopped}");
    let offline = async {
        loop {
            let (topic, payload) = messages.recv().await.expect("subscriber alive");
            if topic == availability && payload == b"offline" {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), offline)
        .await
        .expect("availability offline after SIGTERM");
    let mut statuses = Vec::new();
    notify.set_nonblocking(true).unwrap();
    while let Ok(n) = notify.recv(&mut buf) {
        statuses.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert!(
        statuses
            .iter()
            .any(|s| s.starts_with("STATUS=broker connected; scooter logged in")),
        "{statuses:?}"
    );
    assert!(statuses.iter().any(|s| s == "STOPPING=1"), "{statuses:?}");
    assert!(statuses.iter().any(|s| s == "WATCHDOG=1"), "{statuses:?}");
    drop(receiver);
    drop(sim);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scooter_never_found_exits_with_its_code() {
    let dir = tempfile::tempdir().unwrap();
    let token = Token([9; 12]);
    let config = paired_scooter(&dir.path().join("sim"), &token, 502);
    let Some(sim) = SimBench::start(config) else {
        return;
    };
    m365_ble::token_file::write(&dir.path().join(".mi-token"), &token, false).unwrap();
    let broker = Broker::start().await;
    // An address no simulated scooter has.
    let config = write_config(dir.path(), "02:00:00:00:00:01", &broker, "1s");
    let notify_path = dir.path().join("notify.sock");
    let _notify = UnixDatagram::bind(&notify_path).unwrap();
    let mut child = spawn_m365(&config, &sim.bus_address, &notify_path, dir.path());
    let code = wait_exit(&mut child, WAIT).await;
    assert_eq!(
        code,
        Some(i32::from(m365::exit::ExitStatus::ScooterNotFound.code())),
        "log:\n{}",
        log_of(dir.path())
    );
    assert!(log_of(dir.path()).contains("no scooter found"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_broker_credentials_exit_with_their_code() {
    if !require_mosquitto("refused broker credentials (password file)") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let token = Token([5; 12]);
    let config = paired_scooter(&dir.path().join("sim"), &token, 503);
    let Some(sim) = SimBench::start(config) else {
        return;
    };
    m365_ble::token_file::write(&dir.path().join(".mi-token"), &token, false).unwrap();
    let broker = Broker::start_with(Some(("scooter", "right"))).await;
    let config = write_config(dir.path(), &sim.scooter_address, &broker, "20s");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text = text.replace(
        "[mqtt]\n",
        "[mqtt]\nusername = \"scooter\"\npassword = \"wrong-pw-3e7f\"\n",
    );
    std::fs::write(&config, text).unwrap();
    let notify_path = dir.path().join("notify.sock");
    let _notify = UnixDatagram::bind(&notify_path).unwrap();
    let mut child = spawn_m365(&config, &sim.bus_address, &notify_path, dir.path());
    let code = wait_exit(&mut child, WAIT).await;
    let log = log_of(dir.path());
    assert_eq!(
        code,
        Some(i32::from(m365::exit::ExitStatus::BrokerAuth.code())),
        "log:\n{log}"
    );
    assert!(
        !log.contains("wrong-pw-3e7f"),
        "the password is never logged:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_token_file_exits_with_pairing_needed() {
    let dir = tempfile::tempdir().unwrap();
    let token = Token([3; 12]);
    let config = paired_scooter(&dir.path().join("sim"), &token, 504);
    let Some(sim) = SimBench::start(config) else {
        return;
    };
    // No .mi-token on the client side: never registered.
    let broker = Broker::start().await;
    let config = write_config(dir.path(), &sim.scooter_address, &broker, "20s");
    let notify_path = dir.path().join("notify.sock");
    let _notify = UnixDatagram::bind(&notify_path).unwrap();
    let mut child = spawn_m365(&config, &sim.bus_address, &notify_path, dir.path());
    let code = wait_exit(&mut child, WAIT).await;
    let log = log_of(dir.path());
    assert_eq!(
        code,
        Some(i32::from(m365::exit::ExitStatus::NeedsPairing.code())),
        "log:\n{log}"
    );
    assert!(
        log.contains(".mi-token"),
        "the message names the file:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_gps_device_exits_with_its_code() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start().await;
    let config = write_config(dir.path(), "02:00:00:00:00:02", &broker, "20s");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text += "\n[gps]\nsource = \"serial\"\ndevice = \"/dev/ttyM365NONE\"\n";
    std::fs::write(&config, text).unwrap();
    let notify_path = dir.path().join("notify.sock");
    let _notify = UnixDatagram::bind(&notify_path).unwrap();
    // The GPS is checked before the radio is touched: no bus is needed.
    let mut child = spawn_m365(&config, "unix:path=/nonexistent", &notify_path, dir.path());
    let code = wait_exit(&mut child, WAIT).await;
    let log = log_of(dir.path());
    assert_eq!(
        code,
        Some(i32::from(m365::exit::ExitStatus::GpsDeviceMissing.code())),
        "log:\n{log}"
    );
    assert!(log.contains("/dev/ttyM365NONE"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scooter_gone_for_good_exits_with_scooter_lost() {
    let dir = tempfile::tempdir().unwrap();
    let token = Token([4; 12]);
    let config = paired_scooter(&dir.path().join("sim"), &token, 505);
    let Some(sim) = SimBench::start(config) else {
        return;
    };
    m365_ble::token_file::write(&dir.path().join(".mi-token"), &token, false).unwrap();
    let broker = Broker::start().await;
    let mut messages = subscriber(broker.port).await;
    let config = write_config(dir.path(), &sim.scooter_address, &broker, "20s");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text = text.replace("[scooter]\n", "[scooter]\nreconnect_window = \"2s\"\n");
    std::fs::write(&config, text).unwrap();
    let notify_path = dir.path().join("notify.sock");
    let _notify = UnixDatagram::bind(&notify_path).unwrap();
    let mut child = spawn_m365(&config, &sim.bus_address, &notify_path, dir.path());
    // Running and publishing first.
    let first = async {
        loop {
            let (topic, _) = messages.recv().await.expect("subscriber alive");
            if topic.ends_with("/telemetry") {
                return;
            }
        }
    };
    tokio::time::timeout(WAIT, first)
        .await
        .unwrap_or_else(|_| panic!("no telemetry; log:\n{}", log_of(dir.path())));
    // The ride ends: the scooter leaves radio range for longer than the reconnect window.
    sim.faults
        .send(Fault::OutOfRange {
            for_: Duration::from_secs(600),
        })
        .unwrap();
    let gone = tokio::time::Instant::now();
    let code = wait_exit(&mut child, Duration::from_secs(60)).await;
    let log = log_of(dir.path());
    assert_eq!(
        code,
        Some(i32::from(m365::exit::ExitStatus::ScooterLost.code())),
        "log:\n{log}"
    );
    // BlueZ's connect waits up to 25 s for a scooter it cannot hear; the exit still comes no
    // later than the window plus one such wait.
    let took = gone.elapsed();
    assert!(
        took <= Duration::from_secs(2 + 25),
        "exit after {took:?}; log:\n{log}"
    );
    assert!(log.contains("lost the scooter"), "{log}");
}

/// The earlier client's `gpsinfo` keys, all numbers whether there is a fix or not.
fn assert_earlier_gpsinfo(v: &serde_json::Value) {
    let g = &v["gpsinfo"];
    for key in ["latitude", "longitude", "altitude", "gps_speed"] {
        assert!(g[key].is_number(), "gpsinfo.{key}: {v}");
    }
    for key in [
        "speed_kmh",
        "total_distance_m",
        "trip_distance_left_km",
        "uptime_sec",
    ] {
        assert!(v[key].is_number(), "{key}: {v}");
    }
    assert!(v["battery_info"]["voltage"].is_number(), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_sends_zeros_without_a_usable_fix_and_a_stale_fix_is_no_position() {
    let dir = tempfile::tempdir().unwrap();
    let token = Token([5; 12]);
    let config = paired_scooter(&dir.path().join("sim"), &token, 507);
    let Some(sim) = SimBench::start(config) else {
        return;
    };
    m365_ble::token_file::write(&dir.path().join(".mi-token"), &token, false).unwrap();
    let broker = Broker::start().await;
    let mut messages = subscriber(broker.port).await;
    let config = write_config(dir.path(), &sim.scooter_address, &broker, "20s");
    // The earlier server's topic and encoding, a json mirror, and a short fix lifetime.
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "encoding = \"json\"\n",
        "encoding = \"legacy\"\ntopic = \"m365/{id}/legacy\"\n",
    ) + "\n[[mqtt.mirror]]\ntopic = \"m365/{id}/json\"\nencoding = \"json\"\n";
    std::fs::write(&config, text).unwrap();
    // A receiver behind a stable link, so it can be unplugged and plugged in again. The daemon
    // starts first and waits for the device, so it cannot inherit the emulator's descriptors.
    let link = dir.path().join("gps");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text += &format!(
        "\n[gps]\nsource = \"serial\"\nkind = \"nmea\"\ndevice = \"{}\"\nmax_age = \"2s\"\n",
        link.display()
    );
    std::fs::write(&config, text).unwrap();
    let notify_path = dir.path().join("notify.sock");
    let _notify = UnixDatagram::bind(&notify_path).unwrap();
    // Killed however the test ends, so a failed assertion leaves no daemon behind.
    let child = KillOnDrop(spawn_m365(
        &config,
        &sim.bus_address,
        &notify_path,
        dir.path(),
    ));
    let start = RoutePoint {
        time: m365_gps::chrono::Utc::now(),
        lat: 43.36,
        lon: -8.41,
        alt_m: 20.0,
        speed_mps: 4.0,
        course_deg: 0.0,
    };
    let mut receiver_config = NmeaReceiverConfig::new(
        NmeaFeed::Route(Box::new(straight_line(
            start,
            m365_gps::chrono::TimeDelta::seconds(1),
        ))),
        Pace::RealTime,
    );
    receiver_config.symlink = Some(link.clone());
    let mut receiver =
        m365_gps::emulate::nmea_receiver::spawn(receiver_config).expect("a pty for the receiver");
    let id: String = sim
        .scooter_address
        .split(':')
        .collect::<String>()
        .to_ascii_lowercase();
    let json_topic = format!("m365/{id}/json");
    let legacy_topic = format!("m365/{id}/legacy");

    // Waits for a legacy message and its json mirror (same time) matching `want`.
    async fn next_pair(
        messages: &mut tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)>,
        (legacy_topic, json_topic): (&str, &str),
        want: impl Fn(&serde_json::Value, &serde_json::Value) -> bool,
    ) -> (serde_json::Value, serde_json::Value) {
        let mut legacy: std::collections::BTreeMap<String, serde_json::Value> = Default::default();
        let mut json: std::collections::BTreeMap<u64, serde_json::Value> = Default::default();
        loop {
            let (topic, payload) = messages.recv().await.expect("subscriber alive");
            let v: serde_json::Value = serde_json::from_slice(&payload).unwrap_or_default();
            if topic == legacy_topic {
                legacy.insert(v["timestamp"].as_str().unwrap_or("").to_owned(), v);
            } else if topic == json_topic {
                json.insert(v["seq"].as_u64().unwrap_or(0), v);
            }
            // Pair them by time: the legacy payload has no seq.
            for j in json.values() {
                let Some(ts) = j["ts"].as_str() else { continue };
                let stamp = m365_gps::chrono::DateTime::parse_from_rfc3339(ts).ok();
                for l in legacy.values() {
                    let same = l["timestamp"]
                        .as_str()
                        .and_then(|t| m365_gps::chrono::DateTime::parse_from_rfc3339(t).ok())
                        == stamp;
                    if same && want(l, j) {
                        return (l.clone(), j.clone());
                    }
                }
            }
        }
    }
    let has_fix = |l: &serde_json::Value, j: &serde_json::Value| {
        l["gpsinfo"]["latitude"].as_f64().is_some_and(|v| v != 0.0) && j["gps"].is_object()
    };
    let no_fix = |l: &serde_json::Value, j: &serde_json::Value| {
        l["gpsinfo"]["latitude"].as_f64() == Some(0.0) && j["gps"].is_null()
    };

    let (l, j) = tokio::time::timeout(
        WAIT,
        next_pair(&mut messages, (&legacy_topic, &json_topic), has_fix),
    )
    .await
    .unwrap_or_else(|_| panic!("no positions; log:\n{}", log_of(dir.path())));
    assert_earlier_gpsinfo(&l);
    assert!(
        (l["gpsinfo"]["latitude"].as_f64().unwrap() - 43.36).abs() < 0.01,
        "{l}"
    );
    assert!(j["gps"]["age_ms"].as_u64().unwrap() <= 2_000, "{j}");

    // The receiver is pulled out: once its last fix is 2 s old, records carry no position:
    // legacy sends the earlier client's zeros (the earlier server keeps them), json says none.
    receiver.unplug().await;
    let (l, _) = tokio::time::timeout(
        WAIT,
        next_pair(&mut messages, (&legacy_topic, &json_topic), no_fix),
    )
    .await
    .unwrap_or_else(|_| panic!("no fix-less record; log:\n{}", log_of(dir.path())));
    assert_earlier_gpsinfo(&l);
    for key in ["longitude", "altitude", "gps_speed"] {
        assert_eq!(l["gpsinfo"][key].as_f64(), Some(0.0), "{l}");
    }
    assert!(
        l["speed_kmh"].is_number(),
        "speed and battery still there: {l}"
    );

    // Plugged in again: positions come back.
    receiver.replug().await;
    tokio::time::timeout(
        WAIT,
        next_pair(&mut messages, (&legacy_topic, &json_topic), has_fix),
    )
    .await
    .unwrap_or_else(|_| panic!("positions did not come back; log:\n{}", log_of(dir.path())));
    let log = log_of(dir.path());
    assert_eq!(log.matches("GPS fix lost").count(), 1, "{log}");
    assert_eq!(log.matches("GPS fix back").count(), 1, "{log}");
    drop(child);
    drop(sim);
}

/// A child process that is killed when dropped.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[path = "../../m365-pipeline/tests/common/small_fs.rs"]
mod small_fs;

/// The largest `backlog N records` the daemon's status lines reported.
fn backlog_reported(log: &str) -> u64 {
    log.lines()
        .filter_map(|l| l.split("backlog ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_at_start_keeps_the_backlog_and_it_is_sent_once_there_is_room() {
    // The whole test runs on a 2 MiB file system of its own (see `small_fs`).
    let Some(disk) = small_fs::small_fs(
        "a_full_disk_at_start_keeps_the_backlog_and_it_is_sent_once_there_is_room",
        "2m",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let token = Token([6; 12]);
    let config = paired_scooter(&dir.path().join("sim"), &token, 508);
    let Some(sim) = SimBench::start(config) else {
        return;
    };
    m365_ble::token_file::write(&dir.path().join(".mi-token"), &token, false).unwrap();
    // No broker listens on this port: every record stays in the spool.
    let nobody = Broker::nobody();
    let config = write_config(dir.path(), &sim.scooter_address, &nobody, "20s");
    let spool = disk.join("spool.sqlite");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        &format!("path = \"{}\"", dir.path().join("spool.sqlite").display()),
        &format!("path = \"{}\"", spool.display()),
    );
    std::fs::write(&config, text).unwrap();
    let notify_path = dir.path().join("notify.sock");
    let _notify = UnixDatagram::bind(&notify_path).unwrap();

    // A first run spools at least ten records the broker never takes, then stops cleanly.
    let mut child = KillOnDrop(spawn_m365(
        &config,
        &sim.bus_address,
        &notify_path,
        dir.path(),
    ));
    let deadline = Instant::now() + WAIT;
    while backlog_reported(&log_of(dir.path())) < 10 {
        assert!(Instant::now() < deadline, "log:\n{}", log_of(dir.path()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let term = Command::new("kill")
        .arg("-TERM")
        .arg(child.0.id().to_string())
        .status()
        .unwrap();
    assert!(term.success());
    assert_eq!(wait_exit(&mut child.0, WAIT).await, Some(0));
    let spooled = backlog_reported(&log_of(dir.path()));

    // The disk fills up (logs, say); the next start cannot use the spool: it says why, exits
    // with the spool's code, and leaves the file exactly as it was.
    let filler = small_fs::fill(&disk);
    let before = std::fs::read(&spool).unwrap();
    let mut child = KillOnDrop(spawn_m365(
        &config,
        &sim.bus_address,
        &notify_path,
        dir.path(),
    ));
    let code = wait_exit(&mut child.0, WAIT).await;
    let log = log_of(dir.path());
    assert_eq!(
        code,
        Some(i32::from(m365::exit::ExitStatus::SpoolUnusable.code())),
        "log:\n{log}"
    );
    assert!(log.contains("is full"), "log:\n{log}");
    assert_eq!(std::fs::read(&spool).unwrap(), before, "untouched");
    let names: Vec<String> = std::fs::read_dir(&disk)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.contains("corrupt")),
        "nothing moved aside: {names:?}"
    );

    // Room again and a broker: every record of the first run arrives.
    std::fs::remove_file(filler).unwrap();
    let broker = Broker::start().await;
    let mut messages = subscriber(broker.port).await;
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(
            &format!("127.0.0.1:{}", nobody.port),
            &format!("127.0.0.1:{}", broker.port),
        )
        .replace(
            &format!("protocol = \"{}\"", nobody.protocol),
            &format!("protocol = \"{}\"", broker.protocol),
        );
    std::fs::write(&config, text).unwrap();
    let _child = KillOnDrop(spawn_m365(
        &config,
        &sim.bus_address,
        &notify_path,
        dir.path(),
    ));
    let mut seqs = std::collections::BTreeSet::new();
    let all = async {
        while !(1..=spooled).all(|n| seqs.contains(&n)) {
            let (topic, payload) = messages.recv().await.expect("subscriber alive");
            if topic.ends_with("/telemetry") {
                let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
                seqs.insert(v["seq"].as_u64().expect("seq"));
            }
        }
    };
    tokio::time::timeout(WAIT, all)
        .await
        .unwrap_or_else(|_| panic!("backlog not delivered; log:\n{}", log_of(dir.path())));
    drop(sim);
}
