//! Ride events and adaptive sampling end to end through the real process: simulated scooters on
//! the fake BlueZ (a private D-Bus), steered from the test (a scripted ride, the lock, a
//! charger, error codes, a dropped link), a real broker, and the `m365` binary. What the
//! simulator does must come out on the events topic (`m365/{id}/events`, schema `m365.event`),
//! each event with its record id and time; and a parked, locked scooter must be sampled slowly
//! until it is unlocked, then fast again within one sample. A scooter that goes away is told as
//! `connection_lost` while it is away, stamped with the time it went.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, SystemTime};

use m365_gps::chrono::{DateTime, Utc};
use m365_gps::emulate::{EmulatorHandle, NmeaFeed, NmeaReceiverConfig, Pace, RoutePoint};
use m365_sim::{Fault, Scooter, Script};
use m365_testkit::broker::subscribe_stream;
use serde_json::{Value, json};
use support::{Harness, WAIT, standing};

/// Fast sampling, every sample published, and trips that end after one second standing.
const QUICK: &str = r#"
[telemetry]
interval = "300ms"
parked_interval = "300ms"
heartbeat = "0s"

[events]
trip_end_after = "1s"
"#;

/// The time of an event or record (`ts`, RFC 3339).
fn ts(record: &Value) -> DateTime<Utc> {
    let text = record["ts"]
        .as_str()
        .unwrap_or_else(|| panic!("no ts: {record}"));
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("ts {text:?}: {e}"))
        .with_timezone(&Utc)
}

/// Checks the envelope every event has: schema, scooter, a record id (a UUID) and a time no
/// earlier than `since` and not in the future.
fn check_envelope(event: &Value, scooter: &str, since: DateTime<Utc>) {
    assert_eq!(event["v"], json!(1), "{event}");
    assert_eq!(event["schema"], json!("m365.event"), "{event}");
    assert_eq!(event["scooter_id"], json!(scooter), "{event}");
    let id = event["record_id"].as_str().unwrap_or_default();
    let groups: Vec<usize> = id.split('-').map(str::len).collect();
    assert!(
        groups == [8, 4, 4, 4, 12] && id.chars().all(|c| c == '-' || c.is_ascii_hexdigit()),
        "record_id is a UUID: {event}"
    );
    let at = ts(event);
    let now = Utc::now();
    assert!(
        at >= since - m365_gps::chrono::TimeDelta::seconds(1)
            && at <= now + m365_gps::chrono::TimeDelta::seconds(1),
        "{at} is within the test ({since} .. {now}): {event}"
    );
    assert!(event["seq"].is_u64(), "{event}");
    assert!(event["data"].is_object(), "{event}");
}

/// Every event of `events` has its envelope, a record id of its own, and they are numbered
/// without gaps, in time order.
fn check_all(events: &[Value], scooter: &str, since: DateTime<Utc>) {
    for e in events {
        check_envelope(e, scooter, since);
    }
    let mut ids: Vec<&str> = events
        .iter()
        .map(|e| e["record_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        ids.len(),
        events.len(),
        "record ids are unique: {events:#?}"
    );
    for pair in events.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        assert_eq!(
            b["seq"].as_u64(),
            a["seq"].as_u64().map(|s| s + 1),
            "events numbered without gaps: {a} then {b}"
        );
        assert!(ts(a) <= ts(b), "in time order: {a} then {b}");
    }
}

/// The names of `events` other than connection losses and recoveries: a test about rides,
/// locks or charging must not fail because a loaded machine made the radio miss an answer (a
/// lost link is told, and is another test's subject).
fn ride_names(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["event"].as_str().unwrap_or_default().to_owned())
        .filter(|n| n != "connection_lost" && n != "connection_restored")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scripted_ride_is_told_as_trip_started_then_trip_ended() {
    let since = Utc::now();
    let Some(mut h) = Harness::new(vec![standing(801)], &["s0"], &[""], QUICK).await else {
        return;
    };
    h.start(&["s0"], None).await;
    let odometer_before = h.depot.read(0, |s| s.ride().odometer_m()).await;
    let skip = h.events("s0").len();
    // 1 s up to 18 km/h, 4 s at 18 km/h, 1 s down to a stop: about 25 m.
    h.depot.with(0, |s| {
        s.ride_mut().set_script(Script::Trace(vec![
            (0.0, 0.0),
            (1.0, 18.0),
            (5.0, 18.0),
            (6.0, 0.0),
        ]));
    });
    let started = h.event("s0", "trip_started", skip).await;
    let ended = h.event("s0", "trip_ended", skip).await;
    let (odometer_after, speed) = h
        .depot
        .read(0, |s| (s.ride().odometer_m(), s.ride().speed_kmh()))
        .await;
    assert_eq!(speed, 0.0, "the ride is over");
    let ridden = odometer_after - odometer_before;
    assert!(
        (20.0..30.0).contains(&ridden),
        "the simulator rode {ridden} m"
    );

    assert_eq!(
        ride_names(&h.events("s0")[skip..]),
        ["trip_started", "trip_ended"],
        "{:#?}",
        h.events("s0")
    );
    let start = &started["data"];
    let odometer_start = start["odometer_m"].as_f64().expect("an odometer");
    assert!(
        (odometer_start - odometer_before).abs() <= 2.0,
        "{start} vs the simulator's {odometer_before} m"
    );
    assert!(
        start["battery_percent"].as_u64().is_some_and(|p| p <= 100),
        "{start}"
    );

    let end = &ended["data"];
    let distance = end["distance_m"].as_f64().expect("a distance");
    assert!(
        (distance - ridden).abs() <= 3.0,
        "trip distance {distance} m, the simulator rode {ridden} m: {end}"
    );
    // Moving (≥ 3 km/h) from 0.17 s to 5.83 s of the script, sampled every 0.3 s.
    let duration = end["duration_s"].as_u64().expect("a duration");
    assert!((4..=7).contains(&duration), "{end}");
    let top = end["top_speed_kmh"].as_f64().unwrap();
    assert!((16.0..=18.5).contains(&top), "{end}");
    // distance / duration, the duration before rounding to whole seconds.
    let average = end["avg_speed_kmh"].as_f64().unwrap();
    let slowest = distance / (duration as f64 + 0.5) * 3.6;
    let fastest = distance / (duration as f64 - 0.5) * 3.6;
    assert!((slowest..=fastest).contains(&average), "{end}");
    assert!(end["energy_wh"].as_f64().is_some_and(|e| e > 0.0), "{end}");
    assert!(end["battery_used_percent"].is_u64(), "{end}");
    assert!(ts(&started) < ts(&ended));

    // A second ride, ended by the lock while the wheel still turns: the trip ends first.
    let skip = h.events("s0").len();
    h.depot.with(0, |s| {
        s.ride_mut()
            .set_script(Script::Trace(vec![(0.0, 0.0), (1.0, 15.0)]));
    });
    h.event("s0", "trip_started", skip).await;
    let moving = h
        .inbox
        .wait_for(WAIT, |i| {
            support::parsed(i, "m365/s0/telemetry")
                .last()
                .is_some_and(|t| t["speed_kmh"].as_f64().is_some_and(|v| v > 10.0))
        })
        .await;
    assert!(moving, "{}", h.log());
    h.depot.with(0, |s| s.ride_mut().lock());
    let ended = h.event("s0", "trip_ended", skip).await;
    h.event("s0", "locked", skip).await;
    assert_eq!(
        ride_names(&h.events("s0")[skip..]),
        ["trip_started", "trip_ended", "locked"],
        "{:#?}",
        h.events("s0")
    );
    assert!(
        ended["data"]["distance_m"].as_u64().is_some_and(|d| d > 0),
        "{ended}"
    );
    check_all(&h.events("s0"), "s0", since);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_charging_errors_warnings_and_a_low_battery_are_told() {
    let since = Utc::now();
    let config = standing(802);
    // The simulator cannot drain its pack to 15 % in seconds: a threshold just above its
    // charge makes the first sample low.
    let percent = Scooter::new(config.clone())
        .unwrap()
        .ride()
        .pack()
        .percent();
    let threshold = (percent + 2).min(100);
    let tail =
        format!("{QUICK}battery_low = {threshold}\n\n[commands]\nallow = [\"lock\", \"unlock\"]\n");
    let Some(mut h) = Harness::new(vec![config], &["s0"], &[""], &tail).await else {
        return;
    };
    h.start(&["s0"], Some("s0")).await;

    // Told at the first sample: the charge is at or below the threshold.
    let low = h.event("s0", "battery_low", 0).await;
    let low_percent = low["data"]["percent"].as_u64().unwrap();
    assert!(
        low_percent <= u64::from(threshold) && low_percent + 2 >= u64::from(percent),
        "{low} (the simulator started at {percent} %)"
    );
    assert_eq!(low["data"]["threshold"], json!(threshold), "{low}");

    // Locked by a remote command, unlocked on the scooter, locked on the scooter, unlocked by
    // a remote command: each change is one event.
    let mut n = h.events("s0").len();
    let ack = h
        .send("s0", json!({"id": "lock-1", "command": "lock", "ttl": 30}))
        .await;
    assert_eq!(ack["ok"], json!(true), "{ack}");
    h.event("s0", "locked", n).await;
    n = h.events("s0").len();
    h.depot.with(0, |s| s.ride_mut().unlock());
    h.event("s0", "unlocked", n).await;
    n = h.events("s0").len();
    h.depot.with(0, |s| s.ride_mut().lock());
    h.event("s0", "locked", n).await;
    n = h.events("s0").len();
    let ack = h
        .send(
            "s0",
            json!({"id": "unlock-1", "command": "unlock", "ttl": 30}),
        )
        .await;
    assert_eq!(ack["ok"], json!(true), "{ack}");
    h.event("s0", "unlocked", n).await;

    // A charger plugged in, then out.
    n = h.events("s0").len();
    h.depot.with(0, |s| s.ride_mut().set_charging(true));
    let started = h.event("s0", "charging_started", n).await;
    assert!(started["data"]["percent"].is_u64(), "{started}");
    n = h.events("s0").len();
    h.depot.with(0, |s| s.ride_mut().set_charging(false));
    let stopped = h.event("s0", "charging_stopped", n).await;
    assert!(stopped["data"]["percent"].is_u64(), "{stopped}");

    // A controller error raised and cleared, then a warning.
    n = h.events("s0").len();
    h.depot.with(0, |s| s.ride_mut().set_error(21));
    let raised = h.event("s0", "error_raised", n).await;
    assert_eq!(
        raised["data"],
        json!({"code": 21, "text": "BMS communication error"})
    );
    n = h.events("s0").len();
    h.depot.with(0, |s| s.ride_mut().set_error(0));
    let cleared = h.event("s0", "error_cleared", n).await;
    assert_eq!(
        cleared["data"],
        json!({"code": 21, "text": "BMS communication error"})
    );
    n = h.events("s0").len();
    h.depot.with(0, |s| s.ride_mut().set_warning(12));
    let raised = h.event("s0", "warning_raised", n).await;
    assert_eq!(raised["data"]["code"], json!(12), "{raised}");
    n = h.events("s0").len();
    h.depot.with(0, |s| s.ride_mut().set_warning(0));
    let cleared = h.event("s0", "warning_cleared", n).await;
    assert_eq!(cleared["data"]["code"], json!(12), "{cleared}");

    // Exactly these, in this order: nothing told twice, nothing made up (the lock's own
    // warning 9 is no warning event).
    assert_eq!(
        ride_names(&h.events("s0")),
        [
            "battery_low",
            "locked",
            "unlocked",
            "locked",
            "unlocked",
            "charging_started",
            "charging_stopped",
            "error_raised",
            "error_cleared",
            "warning_raised",
            "warning_cleared",
        ],
        "{:#?}",
        h.events("s0")
    );
    check_all(&h.events("s0"), "s0", since);
    h.stop().await;
}

/// An emulated NMEA receiver on a pseudo-terminal, travelling north at `speed_mps`.
fn receiver(speed_mps: f64) -> EmulatorHandle {
    let start = RoutePoint {
        time: Utc::now(),
        lat: 43.36,
        lon: -8.41,
        alt_m: 20.0,
        speed_mps,
        course_deg: 0.0,
    };
    m365_gps::emulate::nmea_receiver::spawn(NmeaReceiverConfig::new(
        NmeaFeed::Route(Box::new(m365_gps::emulate::straight_line(
            start,
            m365_gps::chrono::TimeDelta::seconds(1),
        ))),
        Pace::RealTime,
    ))
    .expect("a pty for the receiver")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_scooter_carried_off_is_told_as_moved_while_locked() {
    let since = Utc::now();
    // The gateway's GPS travels at 12 m/s: the scooter (and the gateway with it) is carried
    // off, its wheel held by the lock.
    let gps = receiver(12.0);
    let device = gps.path().expect("the receiver's device");
    let tail = format!(
        "{QUICK}\n[gps]\nsource = \"serial\"\nkind = \"nmea\"\ndevice = \"{}\"\nbaud = 9600\n",
        device.display()
    );
    let Some(mut h) = Harness::new(vec![standing(803)], &["s0"], &[""], &tail).await else {
        return;
    };
    h.start(&["s0"], None).await;
    let fixed = h
        .inbox
        .wait_for(WAIT, |i| {
            support::parsed(i, "m365/s0/telemetry")
                .last()
                .is_some_and(|t| t["gps"].is_object())
        })
        .await;
    assert!(fixed, "no position in the telemetry; log:\n{}", h.log());
    assert!(
        ride_names(&h.events("s0")).is_empty(),
        "{:#?}",
        h.events("s0")
    );

    h.depot.with(0, |s| s.ride_mut().lock());
    let locked = h.event("s0", "locked", 0).await;
    // Someone pushes it too: the simulator holds the wheel (and sets its alarm flag).
    h.depot.with(0, |s| s.ride_mut().push());
    let moved = h.event("s0", "moved_while_locked", 0).await;
    let data = &moved["data"];
    assert_eq!(data["evidence"], json!("gps"), "{moved}");
    assert!(
        data["distance_m"].as_f64().is_some_and(|d| d > 30.0),
        "beyond the 30 m radius: {moved}"
    );
    assert_eq!(data["speed_kmh"].as_f64(), Some(0.0), "{moved}");
    assert!(
        moved["gps"]["lat_deg"].is_f64(),
        "where it happened: {moved}"
    );
    // 30 m at 12 m/s: a few seconds after the lock.
    let after = (ts(&moved) - ts(&locked)).num_milliseconds();
    assert!(
        (1_000..10_000).contains(&after),
        "{after} ms after the lock"
    );
    assert!(h.depot.read(0, |s| s.ride().alarm()).await);
    assert_eq!(
        ride_names(&h.events("s0")),
        ["locked", "moved_while_locked"],
        "at most one alarm per lock period, and no trip: the wheel never turned"
    );
    check_all(&h.events("s0"), "s0", since);
    h.stop().await;
    drop(gps);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_drop_longer_than_a_sample_is_told_as_connection_lost_then_restored() {
    let since = Utc::now();
    let Some(mut h) = Harness::new(vec![standing(804)], &["s0"], &[""], QUICK).await else {
        return;
    };
    h.start(&["s0"], None).await;
    // Ten sampling intervals without a link.
    h.depot.fault(
        0,
        Fault::DropLink {
            down_for: Duration::from_secs(3),
        },
    );
    let lost = h.event("s0", "connection_lost", 0).await;
    let restored = h.event("s0", "connection_restored", 0).await;
    assert_eq!(
        h.event_names("s0"),
        ["connection_lost", "connection_restored"],
        "{:#?}",
        h.events("s0")
    );
    assert_eq!(lost["data"], json!({}), "{lost}");
    let offline = restored["data"]["offline_s"].as_u64().expect("offline_s");
    assert!(
        (2..=10).contains(&offline),
        "offline for about 3 s: {restored}"
    );
    // Telemetry goes on.
    let n = h.telemetry("s0").len();
    assert!(
        h.inbox
            .wait_for(WAIT, |i| support::parsed(i, "m365/s0/telemetry").len()
                > n + 2)
            .await
    );
    check_all(&h.events("s0"), "s0", since);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_lost_is_told_while_the_scooter_is_away_with_the_time_it_went() {
    let Some(mut h) = Harness::new(vec![standing(805)], &["s0"], &[""], QUICK).await else {
        return;
    };
    h.start(&["s0"], None).await;
    let dropped_at = SystemTime::now();
    let dropped = tokio::time::Instant::now();
    let down_for = Duration::from_secs(6);
    h.depot.fault(0, Fault::DropLink { down_for });
    let lost = h.event("s0", "connection_lost", 0).await;
    let told_after = dropped.elapsed();
    let stamped = (ts(&lost) - DateTime::<Utc>::from(dropped_at)).num_milliseconds();
    let restored = h.event("s0", "connection_restored", 0).await;
    assert!(
        told_after < down_for - Duration::from_secs(2) && stamped.abs() <= 2_000,
        "the link dropped at {}, for {down_for:?} with samples every 300 ms; connection_lost \
         should be published while the scooter is away and carry the time it went away, but it \
         was published {told_after:?} after the drop, stamped {stamped} ms after it ({lost}; \
         then {restored}); log:\n{}",
        DateTime::<Utc>::from(dropped_at),
        h.log()
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_scooter_is_sampled_slowly_and_fast_again_within_one_sample_once_unlocked() {
    let parked_interval = Duration::from_secs(5);
    let Some(mut h) = Harness::new(
        vec![standing(806)],
        &["s0"],
        &[""],
        "[telemetry]\ninterval = \"300ms\"\nparked_interval = \"5s\"\nheartbeat = \"1h\"\n",
    )
    .await
    else {
        return;
    };
    // Parked and locked before the daemon starts.
    h.depot.with(0, |s| s.ride_mut().lock());
    let mut stream = subscribe_stream(h.port, "m365/s0/telemetry").await;
    h.start(&["s0"], None).await;
    let first = tokio::time::timeout(WAIT, stream.recv())
        .await
        .unwrap()
        .unwrap();
    let first: Value = serde_json::from_slice(&first.payload).unwrap();
    assert_eq!(first["locked"], json!(true), "{first}");

    // Parked: over 6 s (20 samples' worth at the fast interval) at most one record (nothing
    // new, the heartbeat an hour away).
    let mut last_parked = ts(&first);
    let window = Duration::from_secs(6);
    let mut parked_records = 0;
    let end = tokio::time::Instant::now() + window;
    while let Ok(Some(m)) = tokio::time::timeout_at(end, stream.recv()).await {
        parked_records += 1;
        last_parked = ts(&serde_json::from_slice(&m.payload).unwrap());
    }
    assert!(parked_records <= 1, "{parked_records} records while parked");

    // Unlocked: the next sample (at most one parked interval away) shows it and is published,
    // and from then on every 300 ms. Records are committed to the spool before they are
    // published, a second at a time: their sample times (`ts`) tell the pace, not arrivals.
    let unlocked_wall = Utc::now();
    h.depot.with(0, |s| s.ride_mut().unlock());
    let mut taken = Vec::new();
    let fast = async {
        while taken.len() < 8 {
            let m = stream.recv().await.expect("subscriber alive");
            let record: Value = serde_json::from_slice(&m.payload).unwrap();
            if record["locked"] == json!(false) || !taken.is_empty() {
                taken.push(ts(&record));
            }
        }
    };
    tokio::time::timeout(WAIT, fast)
        .await
        .unwrap_or_else(|_| panic!("no fast telemetry after unlocking; log:\n{}", h.log()));
    let switched_after = (taken[0] - unlocked_wall).to_std().unwrap_or_default();
    assert!(
        switched_after <= parked_interval + Duration::from_millis(3_000),
        "the first sample showing the unlock was taken {switched_after:?} after it (parked \
         interval {parked_interval:?})"
    );
    let before = (taken[0] - last_parked).num_milliseconds();
    let gaps: Vec<i64> = taken
        .windows(2)
        .map(|w| (w[1] - w[0]).num_milliseconds())
        .collect();
    let mut sorted = gaps.clone();
    sorted.sort_unstable();
    assert!(
        before >= 6_000 && sorted[sorted.len() / 2] < 1_200 && sorted.iter().all(|g| *g < 3_000),
        "records {before} ms apart while parked, then every 300 ms once unlocked; ms apart: \
         {gaps:?}"
    );
    let unlocked = h.event("s0", "unlocked", 0).await;
    assert!(unlocked["record_id"].is_string());

    // Locked again: one record shows it, then the scooter is quiet again.
    h.depot.with(0, |s| s.ride_mut().lock());
    let relocked = async {
        loop {
            let m = stream.recv().await.expect("subscriber alive");
            let record: Value = serde_json::from_slice(&m.payload).unwrap();
            if record["locked"] == json!(true) {
                return;
            }
        }
    };
    tokio::time::timeout(WAIT, relocked)
        .await
        .expect("a record shows the lock");
    let quiet = tokio::time::timeout(Duration::from_millis(2_500), stream.recv()).await;
    assert!(
        quiet.is_err(),
        "parked again: no record within 2.5 s, got {quiet:?}"
    );
    h.stop().await;
}
