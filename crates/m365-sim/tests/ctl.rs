//! `m365-sim ctl` against a running `m365-sim serve`: every command is checked by its effect as
//! a BLE central (BlueZ's D-Bus API on the simulator's bus) or the scooter's counters see it,
//! and bad input gets one clear message and a non-zero exit.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use m365_fakebluez::{ADAPTER_PATH, BLUEZ_NAME, BluezAddress, device_path};

const BIN: &str = env!("CARGO_BIN_EXE_m365-sim");

/// Upper bound for anything the test waits for.
const PATIENCE: Duration = Duration::from_secs(20);

fn dbus_available() -> bool {
    if m365_fakebluez::isolation::daemon_available() {
        return true;
    }
    assert!(
        !m365_testdata::in_ci(),
        "dbus-daemon is required under CI (Debian package `dbus`)"
    );
    eprintln!("skipped: dbus-daemon not installed");
    false
}

/// A running `m365-sim serve`, stopped with SIGTERM on drop.
struct Served {
    child: Child,
    bus: String,
    gps: Option<String>,
    macs: Vec<String>,
}

impl Served {
    fn start(args: &[&str]) -> Served {
        let mut child = Command::new(BIN)
            .arg("serve")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("m365-sim runs");
        let stdout = child.stdout.take().expect("stdout");
        let lines: Vec<String> = BufReader::new(stdout)
            .lines()
            .map(|l| l.expect("utf-8 line"))
            .take_while(|l| l != "READY")
            .collect();
        let bus = lines
            .iter()
            .find_map(|l| l.strip_prefix("DBUS_SYSTEM_BUS_ADDRESS="))
            .expect("bus line")
            .to_owned();
        let gps = lines
            .iter()
            .find_map(|l| l.strip_prefix("M365_SIM_GPS="))
            .map(str::to_owned);
        let macs = lines
            .iter()
            .filter_map(|l| l.strip_prefix("M365_SIM_SCOOTER="))
            .filter_map(|l| l.split(' ').next())
            .map(str::to_owned)
            .collect();
        Served {
            child,
            bus,
            gps,
            macs,
        }
    }

    fn ctl(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("ctl")
            .args(["--bus", &self.bus])
            .args(args)
            .output()
            .expect("m365-sim ctl runs")
    }

    /// Runs a command that must succeed; returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(
            out.status.success(),
            "ctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Runs a command that must fail; returns its stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(!out.status.success(), "ctl {args:?} should have failed");
        assert!(out.stdout.is_empty(), "nothing on stdout on failure");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn counters(&self, mac: &str) -> BTreeMap<String, u64> {
        let json = self.ok(&["counters", mac, "--json"]);
        let value: serde_json::Value = serde_json::from_str(&json).expect("counters are JSON");
        value
            .as_object()
            .expect("a JSON object")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().expect("a count")))
            .collect()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// A minimal BLE central speaking BlueZ's D-Bus API directly, as btleplug does.
struct Central {
    conn: zbus::Connection,
}

impl Central {
    async fn new(bus: &str) -> Central {
        let conn = zbus::connection::Builder::address(bus)
            .expect("bus address")
            .build()
            .await
            .expect("bus reachable");
        let central = Central { conn };
        central
            .call(ADAPTER_PATH, "org.bluez.Adapter1", "StartDiscovery")
            .await
            .expect("discovery starts");
        central
    }

    async fn call(&self, path: &str, iface: &str, method: &str) -> zbus::Result<()> {
        self.conn
            .call_method(Some(BLUEZ_NAME), path, Some(iface), method, &())
            .await
            .map(drop)
    }

    /// `Device1.Connect`, once the device has been discovered.
    async fn connect(&self, mac: &str) -> zbus::Result<()> {
        let address: BluezAddress = mac.parse().expect("a MAC");
        let path = device_path(address);
        let started = Instant::now();
        loop {
            match self.call(&path, "org.bluez.Device1", "Connect").await {
                // Not discovered yet.
                Err(zbus::Error::MethodError(name, _, _))
                    if (name.as_str() == "org.freedesktop.DBus.Error.UnknownObject"
                        || name.as_str() == "org.freedesktop.DBus.Error.UnknownMethod")
                        && started.elapsed() < PATIENCE =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => return other,
            }
        }
    }
}

impl Central {
    /// Writes `data` to the characteristic `uuid` of the connected device `mac`.
    async fn write(&self, mac: &str, uuid: u128, data: &[u8]) -> zbus::Result<()> {
        let address: BluezAddress = mac.parse().expect("a MAC");
        let device = device_path(address);
        let wanted = m365_fakebluez::Uuid::from_u128(uuid).to_string();
        let objects = zbus::fdo::ObjectManagerProxy::builder(&self.conn)
            .destination(BLUEZ_NAME)?
            .path("/")?
            .build()
            .await?
            .get_managed_objects()
            .await?;
        let path = objects
            .iter()
            .find_map(|(path, interfaces)| {
                let uuid = interfaces
                    .get("org.bluez.GattCharacteristic1")?
                    .get("UUID")?;
                let uuid = <&str>::try_from(uuid).ok()?;
                (path.as_str().starts_with(&device) && uuid.eq_ignore_ascii_case(&wanted))
                    .then(|| path.to_string())
            })
            .expect("the characteristic is exported while connected");
        let options: HashMap<&str, zbus::zvariant::Value<'_>> = HashMap::new();
        self.conn
            .call_method(
                Some(BLUEZ_NAME),
                path.as_str(),
                Some("org.bluez.GattCharacteristic1"),
                "WriteValue",
                &(data, options),
            )
            .await
            .map(drop)
    }
}

fn error_name(result: zbus::Result<()>) -> String {
    match result {
        Err(zbus::Error::MethodError(name, message, _)) => {
            format!("{}: {}", name.as_str(), message.unwrap_or_default())
        }
        other => panic!("expected a D-Bus error, got {other:?}"),
    }
}

#[tokio::test]
async fn ctl_drives_link_faults_a_central_observes() {
    if !dbus_available() {
        return;
    }
    let served = Served::start(&["--scooters", "2", "--model", "pro2"]);
    let mac = served.macs[0].clone();

    let list = served.ok(&["list"]);
    let rows: Vec<&str> = list.lines().collect();
    assert_eq!(rows.len(), 2, "{list}");
    assert!(rows[0].starts_with(&format!("{mac} MIScooter")), "{list}");
    assert!(rows[0].ends_with("pro2 miauth idle unpaired"), "{list}");

    let central = Central::new(&served.bus).await;

    // Connects fail as injected, then succeed.
    served.ok(&["fail-connect", &mac, "in-progress", "--count", "2"]);
    for _ in 0..2 {
        let err = error_name(central.connect(&mac).await);
        assert!(err.starts_with("org.bluez.Error.InProgress"), "{err}");
    }
    central.connect(&mac).await.expect("third connect succeeds");
    assert!(
        served
            .ok(&["list"])
            .lines()
            .next()
            .is_some_and(|l| l.contains(" connected "))
    );

    // A link drop with a hold-off: the link goes; a connect waits for the hold-off, as BlueZ's
    // does, and succeeds when it ends.
    assert_eq!(served.ok(&["drop-link", &mac, "1500ms"]), "link dropped");
    let started = Instant::now();
    central
        .connect(&mac)
        .await
        .expect("connects when the hold-off ends");
    assert!(started.elapsed() >= Duration::from_millis(1_000));
    let c = served.counters(&mac);
    assert_eq!(c["bluez_link_drops"], 1);
    assert_eq!(c["bluez_successful_connects"], 2);
    assert_eq!(c["bluez_connect_calls"], 4);
    assert_eq!((c["connects"], c["disconnects"]), (2, 1));

    // The harsher variant on demand: connects fail at once; clear-faults ends the hold-off.
    served.ok(&["drop-link", &mac, "10m", "--fail-at-once"]);
    let err = error_name(central.connect(&mac).await);
    assert!(err.contains("le-connection-abort-by-local"), "{err}");
    served.ok(&["clear-faults", &mac]);
    central
        .connect(&mac)
        .await
        .expect("clear-faults ends the hold-off");

    // Out of range: the link drops again, a connect waits until the scooter is back; the
    // other scooter is untouched.
    served.ok(&["out-of-range", &mac, "2s"]);
    let c = served.counters(&mac);
    assert_eq!((c["bluez_link_drops"], c["disconnects"]), (3, 3));
    let other = served.counters(&served.macs[1]);
    assert_eq!(other["bluez_connect_calls"], 0);

    // A registration starts (CMD_SET_KEY on UPNP): the scooter beeps, and a press answers it.
    central.connect(&mac).await.expect("back in range");
    assert_eq!(served.counters(&mac)["bluez_connect_timeouts"], 0);
    let upnp = m365_proto::gatt::Char::Upnp.uuid();
    central
        .write(&mac, upnp, &[0x15, 0x00, 0x00, 0x00])
        .await
        .expect("write to UPNP");
    let c = served.counters(&mac);
    assert_eq!((c["beeps"], c["windows_opened"]), (1, 0));
    let said = served.ok(&["press-button", &mac]);
    assert_eq!(said, "registration window opened");
    let c = served.counters(&mac);
    assert_eq!((c["button_presses"], c["windows_opened"]), (1, 1));

    // A power cycle: the link drops and the scooter is silent until it is back on.
    served.ok(&["power-cycle", &mac, "1s"]);
    let started = Instant::now();
    central.connect(&mac).await.expect("on again");
    assert!(started.elapsed() >= Duration::from_millis(500));
    let c = served.counters(&mac);
    assert_eq!(c["bluez_link_drops"], 4);

    // Switched on early by the button, or healed by clear-faults: back at once, and the link
    // stays up (the scooter is really on).
    for heal in [
        ["press-button", mac.as_str()],
        ["clear-faults", mac.as_str()],
    ] {
        served.ok(&["power-cycle", &mac, "10m"]);
        served.ok(&heal);
        let started = Instant::now();
        central.connect(&mac).await.expect("on again");
        assert!(started.elapsed() < PATIENCE, "{heal:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let row = served.ok(&["list"]);
        assert!(
            row.lines()
                .next()
                .is_some_and(|l| l.contains(" connected ")),
            "{heal:?}: {row}"
        );
    }

    // A stuck connect answers InProgress until the device is removed.
    served.ok(&["stale-in-progress", &served.macs[1]]);
    let err = error_name(central.connect(&served.macs[1]).await);
    assert!(err.starts_with("org.bluez.Error.InProgress"), "{err}");
}

#[test]
fn ctl_commands_change_the_scooter_and_bad_input_is_refused() {
    if !dbus_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let link = dir.path().join("gps");
    let link_arg = link.display().to_string();
    let served = Served::start(&[
        "--model",
        "1s",
        "--protocol",
        "xor",
        "--gps",
        "nmea",
        "--gps-symlink",
        &link_arg,
    ]);
    let mac = served.macs[0].clone();

    // No registration is running: the press is counted but opens no window.
    let said = served.ok(&["press-button", &mac]);
    assert!(said.contains("no registration window"), "{said}");
    let c = served.counters(&mac);
    assert_eq!((c["button_presses"], c["windows_opened"]), (1, 0));

    // Commands that steer the ride and the faults are accepted for a known scooter; MACs are
    // matched without regard to case.
    let lower = mac.to_lowercase();
    for args in [
        vec!["set-speed", &lower, "18"],
        vec!["ride", &mac, "auto"],
        vec!["ride", &mac, "park"],
        vec!["lock", &mac],
        vec!["unlock", &mac],
        vec!["charge", &mac, "on"],
        vec!["drop-notifications", &mac, "30"],
        vec!["corrupt", &mac, "5"],
        vec!["mute-uart", &mac, "on"],
        vec!["mute-uart", &mac, "off"],
        vec!["refuse-login", &mac, "on"],
        vec!["expire-session", &mac],
        vec!["clear-faults", &mac],
    ] {
        served.ok(&args);
    }
    let text = served.ok(&["counters", &mac]);
    assert!(text.lines().any(|l| l == "button_presses 1"), "{text}");

    // The GPS device goes away and comes back (a new pty) behind the same link.
    assert_eq!(served.gps.as_deref(), Some(link_arg.as_str()));
    let pty = std::fs::read_link(&link).expect("the link points at the pty");
    assert!(pty.exists());
    served.ok(&["gps", "unplug"]);
    assert!(!pty.exists(), "{} still there", pty.display());
    assert!(!link.exists(), "the link follows the device");
    let replugged = served.ok(&["gps", "replug"]);
    assert_eq!(replugged, link_arg, "replug names the stable path");
    let new_pty = std::fs::read_link(&link).expect("the link is back");
    assert!(
        new_pty.starts_with("/dev/pts/") && new_pty.exists(),
        "{}",
        new_pty.display()
    );

    // Bad input: one clear message each.
    let err = served.fails(&["press-button", "00:11:22:33:44:55"]);
    assert!(err.contains("no scooter 00:11:22:33:44:55"), "{err}");
    assert!(
        err.contains(&mac),
        "the message lists the known scooters: {err}"
    );
    let err = served.fails(&["drop-link", &mac, "3 parsecs"]);
    assert!(err.contains("bad duration \"3 parsecs\""), "{err}");
    let err = served.fails(&["drop-notifications", &mac, "101"]);
    assert!(err.contains("101"), "{err}");
    let err = served.fails(&["set-speed", &mac, "-3"]);
    assert!(err.contains("-3"), "{err}");

    let out = Command::new(BIN)
        .args([
            "ctl",
            "--bus",
            "unix:path=/nonexistent/m365-sim-bus",
            "list",
        ])
        .output()
        .expect("m365-sim ctl runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach the simulator's bus"), "{err}");
}

#[test]
fn ctl_without_a_bus_address_says_so() {
    let out = Command::new(BIN)
        .args(["ctl", "list"])
        .env_remove("DBUS_SYSTEM_BUS_ADDRESS")
        .output()
        .expect("m365-sim ctl runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--bus"), "{err}");
}
