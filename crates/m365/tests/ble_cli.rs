//! `m365 scan`, `m365 register` and `m365 info` run as a user runs them, against simulated
//! scooters served by the fake BlueZ on a private D-Bus (the binary finds it through
//! `DBUS_SYSTEM_BUS_ADDRESS`, as it would find `m365-sim serve`): output, files and exit codes.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use m365_fakebluez::{BluezAddress, FakeBluez, HeartRateMonitor, PrivateBus, SYSTEM_BUS_ENV};
use m365_sim::bluez::{DEFAULT_PHYSICS_TICK, ServedScooter};
use m365_sim::{Generation, Model, Scooter, ScooterConfig};

/// Simulated scooters (and one heart-rate monitor) on the fake BlueZ, driven from a thread of
/// their own until dropped.
struct World {
    bus_address: String,
    scooters: Vec<(String, String)>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn dbus_daemon_installed() -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| dir.join("dbus-daemon").is_file())
    })
}

impl World {
    /// `None` (with a notice) when there is no dbus-daemon and `CI` is unset.
    fn start(configs: Vec<ScooterConfig>) -> Option<World> {
        if !dbus_daemon_installed() {
            assert!(
                std::env::var_os("CI").is_none(),
                "dbus-daemon is not installed"
            );
            eprintln!("skipping: dbus-daemon is not installed");
            return None;
        }
        let (ready_tx, ready_rx) = std_mpsc::channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let bus = PrivateBus::start().expect("private bus");
                let fake = FakeBluez::start(bus.address()).await.expect("fake BlueZ");
                let mut served = Vec::new();
                let mut scooters = Vec::new();
                for config in configs {
                    let scooter = Scooter::new(config).expect("scooter");
                    scooters.push((
                        scooter.profile().address_string(),
                        scooter.profile().esc_serial_str(),
                    ));
                    served.push(
                        ServedScooter::start(&fake, scooter, DEFAULT_PHYSICS_TICK)
                            .expect("served scooter"),
                    );
                }
                fake.add_peripheral(HeartRateMonitor::new(
                    BluezAddress::new([0xC0, 0xFF, 0xEE, 0, 0, 9]),
                    72,
                ))
                .expect("heart-rate monitor");
                ready_tx.send((bus.address().to_owned(), scooters)).unwrap();
                let _ = stop_rx.await;
                drop(served);
                drop(fake);
                drop(bus);
            });
        });
        let (bus_address, scooters) = ready_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the simulator started");
        Some(World {
            bus_address,
            scooters,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    fn m365(&self, dir: &Path, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_m365"))
            .args(args)
            .current_dir(dir)
            .env(SYSTEM_BUS_ENV, &self.bus_address)
            .env_remove("M365_CONFIG")
            .env_remove("STATE_DIRECTORY")
            .output()
            .expect("run m365")
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn scooter(model: Model, generation: Generation, seed: u64) -> ScooterConfig {
    let mut config = ScooterConfig::new(model, seed).with_generation(generation);
    config.auto_press = Some(Duration::from_secs(1));
    config.link = None;
    config
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn scan_lists_the_scooters_as_json_lines_and_skips_other_devices() {
    let Some(world) = World::start(vec![
        scooter(Model::Pro2, Generation::MiAuth, 1),
        scooter(Model::M365, Generation::Xor, 2),
    ]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = world.m365(dir.path(), &["scan", "--timeout", "2", "--json"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut seen: Vec<(String, String)> = stdout
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            assert!(v["name"].as_str().unwrap().starts_with("MIScooter"), "{v}");
            (
                v["address"].as_str().unwrap().to_owned(),
                v["protocol"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    seen.sort();
    let mut wanted = vec![
        (world.scooters[0].0.clone(), "miauth".to_owned()),
        (world.scooters[1].0.clone(), "xor".to_owned()),
    ];
    wanted.sort();
    assert_eq!(seen, wanted);
}

#[test]
fn register_then_info_with_the_written_token() {
    let Some(world) = World::start(vec![scooter(Model::Pro2, Generation::MiAuth, 3)]) else {
        return;
    };
    let (mac, serial) = world.scooters[0].clone();
    let dir = tempfile::tempdir().unwrap();
    let out = world.m365(
        dir.path(),
        &["register", &mac, "--token-file", "scooter.token"],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("press its power button"), "{stderr}");
    assert!(
        stdout.contains("Token written to scooter.token"),
        "{stdout}"
    );
    let token = std::fs::read(dir.path().join("scooter.token")).unwrap();
    assert_eq!(token.len(), 12);
    let hex: String = token.iter().map(|b| format!("{b:02x}")).collect();
    assert!(
        !stdout.contains(&hex) && !stderr.contains(&hex),
        "the token is never printed"
    );

    // A second registration would orphan this token: refused without --force.
    let out = world.m365(
        dir.path(),
        &["register", &mac, "--token-file", "scooter.token"],
    );
    assert_eq!(out.status.code(), Some(64));
    assert!(text(&out.stderr).contains("--force"));

    std::fs::write(
        dir.path().join("martinete.toml"),
        format!("[scooter]\nmac = \"{mac}\"\ntoken_file_path = \"scooter.token\"\n"),
    )
    .unwrap();
    let out = world.m365(dir.path(), &["info", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(info["identity"]["serial"], serial.as_str());
    assert_eq!(info["identity"]["address"], mac.as_str());
    assert_eq!(info["cells_mv"].as_array().unwrap().len(), 10);
    assert!(info["battery"]["voltage_v"].as_f64().unwrap() > 30.0);
    assert!(info["errors"]["error"]["meaning"].is_string());

    let out = world.m365(dir.path(), &["info"]);
    let table = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    for heading in [
        "Identity", "Versions", "Battery", "Cells", "Settings", "Errors",
    ] {
        assert!(table.contains(heading), "{table}");
    }
    assert!(table.contains(&serial), "{table}");
}

#[test]
fn info_with_a_foreign_token_asks_for_pairing() {
    let Some(world) = World::start(vec![scooter(Model::Pro2, Generation::MiAuth, 4)]) else {
        return;
    };
    let (mac, _) = world.scooters[0].clone();
    let dir = tempfile::tempdir().unwrap();
    let out = world.m365(dir.path(), &["register", &mac]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    std::fs::write(dir.path().join("other.token"), [5u8; 12]).unwrap();
    std::fs::write(
        dir.path().join("martinete.toml"),
        format!(
            "[scooter]\nmac = \"{mac}\"\ntoken_file_path = \"other.token\"\nscan_timeout = 5\n"
        ),
    )
    .unwrap();
    let out = world.m365(dir.path(), &["info"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(77), "{stderr}");
    assert!(stderr.contains("other.token"), "{stderr}");
}

#[test]
fn nothing_in_range_and_bad_addresses_have_their_exit_codes() {
    let Some(world) = World::start(vec![]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = world.m365(dir.path(), &["scan", "--timeout", "1"]);
    assert_eq!(out.status.code(), Some(69), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("0 scooters found"));

    let out = world.m365(dir.path(), &["register", "not-a-mac"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(
        text(&out.stderr).contains("not a Bluetooth address"),
        "{}",
        text(&out.stderr)
    );

    std::fs::write(
        dir.path().join("martinete.toml"),
        "[scooter]\nmac = \"D5:01:45:37:ED:FD\"\nscan_timeout = 2\n",
    )
    .unwrap();
    let out = world.m365(dir.path(), &["info"]);
    assert_eq!(out.status.code(), Some(69), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("D5:01:45:37:ED:FD"));
}
