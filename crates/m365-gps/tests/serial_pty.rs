//! The serial code path end to end: emulated devices on real pseudo-terminals, read by the same
//! source tasks that read hardware, fed with the shared captures; unplug and replug included.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use m365_gps::emulate::{
    self, ModemModel, NmeaFeed, NmeaReceiverConfig, Pace, RoutePoint, Sim7600ModemConfig,
};
use m365_gps::nmea::decode_all;
use m365_gps::sim7600::{InfoCommand, Sim7600, Sim7600Error};
use m365_gps::source::{Backoff, GpsHandle, SourceConfig, SourceState};
use tokio::sync::watch;
use tokio_serial::SerialPortBuilderExt;

/// Guards against a hung test; the conditions below are normally met in milliseconds.
const GUARD: Duration = Duration::from_secs(60);

async fn wait_for(
    rx: &mut watch::Receiver<SourceState>,
    what: &str,
    cond: impl FnMut(&SourceState) -> bool,
) -> SourceState {
    let got = match tokio::time::timeout(GUARD, rx.wait_for(cond)).await {
        Ok(Ok(s)) => Some(s.clone()),
        _ => None,
    };
    got.unwrap_or_else(|| panic!("timed out waiting for {what}: {:?}", *rx.borrow()))
}

fn nmea_captures(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "nmea"))
        .collect();
    v.sort();
    v
}

fn fast_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(20), Duration::from_millis(200))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_capture_through_a_pty_gives_the_decoded_epochs() {
    let Some(dir) = m365_testdata::require(
        "every_capture_through_a_pty_gives_the_decoded_epochs",
        "testdata/gps/nmea",
    ) else {
        return;
    };
    let mut captures = nmea_captures(&dir);
    captures.push(dir.join("../sim7600/nmea_port_nofix.nmea"));
    for path in captures {
        let bytes = std::fs::read(&path).unwrap();
        let expected = decode_all(&bytes);
        let want_fixes = expected.iter().filter(|e| e.fix.is_some()).count() as u64;
        let want_last = expected.iter().rev().find_map(|e| e.fix.clone());

        // The source starts first, on a link that does not exist yet, so its subscriber sees
        // every epoch; then the receiver is "plugged in". Accelerated, so the first chunk is
        // written before the reader opens and later ones arrive while it reads, like a receiver
        // that was already running.
        let tmp = tempfile::tempdir().unwrap();
        let link = tmp.path().join("ttyACM0");
        let handle = GpsHandle::spawn_with_backoff(
            SourceConfig::Nmea {
                path: link.clone(),
                baud: 9600,
            },
            fast_backoff(),
        );
        let mut epochs = handle.epochs();
        let mut config = NmeaReceiverConfig::new(NmeaFeed::Replay(bytes), Pace::Accelerated(50.0));
        config.symlink = Some(link);
        let emu = emulate::nmea_receiver::spawn(config).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let mut got = Vec::new();
        while got.len() < expected.len() {
            let e = tokio::time::timeout(GUARD, epochs.recv())
                .await
                .unwrap_or_else(|_| panic!("{name}: {} of {} epochs", got.len(), expected.len()))
                .unwrap();
            got.push(e.fix);
        }
        let want: Vec<_> = expected.iter().map(|e| e.fix.clone()).collect();
        assert_eq!(
            got, want,
            "{name}: every epoch, in order, as decoded from the file"
        );
        let mut rx = handle.subscribe();
        let state = wait_for(&mut rx, &name, |s| s.epochs == expected.len() as u64).await;
        assert_eq!(state.fixes, want_fixes, "{name}");
        assert_eq!(state.last_fix.map(|(f, _)| f), want_last, "{name}");
        assert!(state.connected, "{name}");
        if name.contains("corrupted") {
            assert!(state.rejected > 0, "{name}: rejects counted");
        }
        handle.stop();
        emu.stop();
    }
}

fn route_from(lat: f64, lon: f64) -> Box<dyn Iterator<Item = RoutePoint> + Send> {
    let start = RoutePoint {
        time: "2026-05-01T08:00:00Z".parse().unwrap(),
        lat,
        lon,
        alt_m: 12.0,
        speed_mps: 6.0,
        course_deg: 90.0,
    };
    Box::new(emulate::straight_line(start, chrono::Duration::seconds(1)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nmea_receiver_unplug_and_replug_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("ttyGPS");
    let mut config = NmeaReceiverConfig::new(
        NmeaFeed::Route(route_from(-33.9, 18.4)),
        Pace::Accelerated(50.0),
    );
    config.symlink = Some(link.clone());
    config.garbage_every = Some(4);
    let mut emu = emulate::nmea_receiver::spawn(config).unwrap();
    assert_eq!(std::fs::read_link(&link).unwrap(), emu.pty_path().unwrap());
    let handle = GpsHandle::spawn_with_backoff(
        SourceConfig::Nmea {
            path: link.clone(),
            baud: 9600,
        },
        fast_backoff(),
    );
    let mut rx = handle.subscribe();
    let before = wait_for(&mut rx, "first fixes", |s| s.fixes >= 5).await;
    let (fix_before, _) = before.last_fix.clone().unwrap();
    assert!(fix_before.lat < -33.0 && fix_before.lon > 18.0);

    emu.unplug().await;
    assert!(!link.exists());
    let down = wait_for(&mut rx, "disconnect", |s| !s.connected).await;
    assert_eq!(down.failures, 1);
    // The last fix is kept while the device is gone.
    let (kept, _) = handle.latest().expect("last fix kept");
    assert!(kept.time >= fix_before.time);

    emu.replug().await;
    // The replugged device has a new pts number (the emulator keeps the old one until it
    // stops); the link points at the live one.
    assert_eq!(std::fs::read_link(&link).unwrap(), emu.pty_path().unwrap());
    let fixes_at_replug = rx.borrow().fixes;
    let after = wait_for(&mut rx, "fixes after replug", |s| {
        s.connected && s.fixes >= fixes_at_replug + 5
    })
    .await;
    let (fix_after, _) = after.last_fix.unwrap();
    assert!(fix_after.time > kept.time, "fresh fixes after replug");
    assert!(after.rejected > 0, "injected garbage was counted");
    assert!(after.connect_attempts >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim7600_modem_polls_reject_corruption_and_survive_replug() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("ttyUSB2");
    let mut route = route_from(43.3, -8.4);
    let model = ModemModel::new(Box::new(move || route.next())).with_corrupt_every(3);
    let mut emu = emulate::sim7600_modem::spawn(Sim7600ModemConfig {
        model,
        symlink: Some(link.clone()),
    })
    .unwrap();
    let handle = GpsHandle::spawn_with_backoff(
        SourceConfig::Sim7600 {
            path: link.clone(),
            baud: 115_200,
            command: InfoCommand::Cgnssinfo,
            interval: Duration::from_millis(20),
        },
        fast_backoff(),
    );
    let mut rx = handle.subscribe();
    let s = wait_for(&mut rx, "modem fixes", |s| s.fixes >= 6).await;
    assert!(s.rejected >= 1, "every third reply is corrupt: {s:?}");
    let (fix, _) = s.last_fix.unwrap();
    assert_eq!(fix.sats_used, Some(8));
    assert!(fix.lat > 43.0 && fix.lon < -8.0);

    emu.unplug().await;
    wait_for(&mut rx, "modem disconnect", |s| !s.connected).await;
    emu.replug().await;
    let n = rx.borrow().fixes;
    // A new modem starts with GNSS off: the source switches it on again.
    wait_for(&mut rx, "modem fixes after replug", |s| {
        s.connected && s.fixes >= n + 3
    })
    .await;
}

/// Replays each recorded transcript through an emulated modem and drives it with the driver,
/// issuing the recorded commands: the driver sees what the real modem said.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_transcripts_through_a_pty() {
    let Some(dir) =
        m365_testdata::require("recorded_transcripts_through_a_pty", "testdata/gps/sim7600")
    else {
        return;
    };
    let rows = common::read_csv(&dir.join("expected.csv"));
    let mut files: Vec<String> = rows.iter().map(|r| r["file"].clone()).collect();
    files.dedup();
    for file in files {
        let transcript = std::fs::read(dir.join(&file)).unwrap();
        let model = ModemModel::new(Box::new(|| None)).with_transcript(&transcript);
        let emu = emulate::sim7600_modem::spawn(Sim7600ModemConfig {
            model,
            symlink: None,
        })
        .unwrap();
        let port = tokio_serial::new(emu.path().unwrap().to_string_lossy(), 115_200)
            .open_native_async()
            .unwrap();
        let mut modem = Sim7600::new(port);
        for row in rows.iter().filter(|r| r["file"] == file) {
            let ctx = format!("{file} exchange {}", row["exchange"]);
            match row["command"].as_str() {
                "AT+CGPS?" => {
                    let st = modem.status().await.unwrap();
                    assert_eq!(st.on, row["cgps_on"] == "1", "{ctx}");
                }
                "AT+CGPS=1" => {
                    let ex = modem.command("AT+CGPS=1").await.unwrap();
                    let text = format!("{:?}", ex.result).to_uppercase();
                    assert_eq!(text, row["final_result"], "{ctx}");
                }
                cmd @ ("AT+CGPSINFO" | "AT+CGNSSINFO") => {
                    let which = if cmd == "AT+CGPSINFO" {
                        InfoCommand::Cgpsinfo
                    } else {
                        InfoCommand::Cgnssinfo
                    };
                    match (modem.poll(which).await, row["valid_fix"].as_str()) {
                        (Ok(Some(fix)), "true") => {
                            let lat: f64 = row["lat"].parse().unwrap();
                            assert!((fix.lat - lat).abs() < 1e-9, "{ctx}");
                        }
                        (Ok(None), "false") => {}
                        (Err(Sim7600Error::Reply { .. }), "false") => {}
                        (other, want) => panic!("{ctx}: {other:?}, valid_fix {want}"),
                    }
                }
                other => panic!("{ctx}: unexpected command {other}"),
            }
        }
        emu.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_position_feed_follows_the_channel_and_loses_fix() {
    let start = RoutePoint {
        time: "2026-05-01T08:00:00Z".parse().unwrap(),
        lat: 40.4168,
        lon: -3.7038,
        alt_m: 667.0,
        speed_mps: 3.0,
        course_deg: 180.0,
    };
    let (position, rx) = watch::channel(Some(start.clone()));
    let mut config = NmeaReceiverConfig::new(
        NmeaFeed::Live {
            position: rx,
            period: Duration::from_millis(20),
        },
        Pace::RealTime,
    );
    config.talker = emulate::Talker::Gn;
    let emu = emulate::nmea_receiver::spawn(config).unwrap();
    let handle = GpsHandle::spawn_with_backoff(
        SourceConfig::Nmea {
            path: emu.path().unwrap(),
            baud: 9600,
        },
        fast_backoff(),
    );
    let mut epochs = handle.epochs();
    let mut next = async || {
        tokio::time::timeout(GUARD, epochs.recv())
            .await
            .expect("an epoch in time")
            .expect("source running")
    };
    let first = next().await.fix.expect("fix");
    assert!((first.lat - 40.4168).abs() < 1e-6 && (first.lon + 3.7038).abs() < 1e-6);

    // The ride moves on: later epochs report the new position.
    let moved = RoutePoint {
        time: "2026-05-01T08:00:10Z".parse().unwrap(),
        lat: 40.42,
        ..start
    };
    position.send_replace(Some(moved));
    loop {
        let fix = next().await.fix.expect("fix");
        if (fix.lat - 40.42).abs() < 1e-6 {
            break;
        }
    }
    // Sky view lost: no-fix epochs, and the last fix is kept.
    position.send_replace(None);
    loop {
        if next().await.fix.is_none() {
            break;
        }
    }
    let (kept, _) = handle.latest().unwrap();
    assert!((kept.lat - 40.42).abs() < 1e-6);
}
