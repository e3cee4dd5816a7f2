//! Remote commands end to end through the real process: simulated scooters on the fake BlueZ
//! (a private D-Bus), a real broker, and the `m365` binary with a configuration written here.
//! Each command is published on the scooter's command topic, carried out over btleplug on the
//! simulated scooter, read back, and acknowledged exactly once on the result topic; the
//! simulator's own model shows the change. Every refusal is acknowledged exactly once too, and
//! the replay memory survives a restart of the process. A command for a scooter whose link is
//! down waits for its expiry and is refused as `offline` then (docs/commands.md), also when
//! the link dropped between two samples.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use m365_proto::registers::settings::KersLevel;
use m365_sim::Fault;
use m365_testkit::broker::Inbox;
use serde_json::{Value, json};
use support::{Depot, Harness, WAIT, parsed, results, standing};

/// What an acknowledgement says in short: `ok` or its refusal code; checks its shape.
fn verdict(result: &Value) -> String {
    if result["ok"] == json!(true) {
        assert!(result["error"].is_null(), "{result}");
        assert!(result["state"].is_object(), "{result}");
        "ok".to_owned()
    } else {
        assert_eq!(result["ok"], json!(false), "{result}");
        assert!(result["state"].is_null(), "{result}");
        assert!(
            result["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{result}"
        );
        result["error"]["code"].as_str().unwrap().to_owned()
    }
}

/// id → verdicts, in arrival order.
fn by_id(results: &[Value]) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in results {
        map.entry(r["id"].as_str().unwrap().to_owned())
            .or_default()
            .push(verdict(r));
    }
    map
}

/// The simulated scooter's controls, as its model holds them, in the acknowledgement's shape.
async fn sim_controls(depot: &Depot, i: usize) -> Value {
    depot
        .read(i, |s| {
            let ride = s.ride();
            let kers = match KersLevel::from_raw(ride.kers()) {
                KersLevel::Other(raw) => json!(raw),
                level => json!(level.to_string()),
            };
            json!({
                "powered": ride.powered(),
                "locked": ride.locked(),
                "cruise": ride.cruise(),
                "tail_light": ride.light_flags() & 0x0002 != 0,
                "kers": kers,
            })
        })
        .await
}

/// Every ack of the expected ids, and only those (probes aside), exactly once each.
fn assert_exactly_once(inbox: &Inbox, scooter: &str, expected: &[(&str, &str)]) {
    let received = results(inbox, scooter);
    let mut verdicts = by_id(&received);
    for (id, v) in &verdicts {
        assert_eq!(v.len(), 1, "{id} acknowledged {v:?}; all: {received:#?}");
    }
    verdicts.retain(|id, _| !id.starts_with("probe-"));
    let expected: BTreeMap<String, Vec<String>> = expected
        .iter()
        .map(|(id, v)| ((*id).to_owned(), vec![(*v).to_owned()]))
        .collect();
    assert_eq!(verdicts, expected, "{received:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_is_carried_out_on_the_scooter_and_acknowledged_once() {
    let Some(mut gw) = Harness::new(
        vec![standing(701)],
        &["s0"],
        &[""],
        r#"
[telemetry]
interval = "300ms"
# Parked and locked, the scooter is sampled once an hour and publishes nothing new: a record
# arriving then is the one `sample_now` asked for.
parked_interval = "1h"
heartbeat = "1h"

[commands]
allow = ["lock", "unlock", "tail_light", "cruise", "kers", "sample_now"]
"#,
    )
    .await
    else {
        return;
    };
    gw.start(&["s0"], Some("s0")).await;
    let initial = sim_controls(&gw.depot, 0).await;
    assert_eq!(
        initial,
        json!({"powered": true, "locked": false, "cruise": false, "tail_light": false, "kers": "medium"})
    );

    // Lock: the scooter is locked, and says so in the acknowledgement and in its telemetry.
    let ack = gw
        .send("s0", json!({"id": "lock-1", "command": "lock", "ttl": 30}))
        .await;
    assert_eq!(verdict(&ack), "ok", "{ack}");
    assert_eq!(ack["state"], sim_controls(&gw.depot, 0).await);
    assert_eq!(ack["state"]["locked"], json!(true), "{ack}");
    let shown = gw
        .inbox
        .wait_for(WAIT, |i| {
            parsed(i, "m365/s0/telemetry")
                .last()
                .is_some_and(|t| t["locked"] == json!(true))
        })
        .await;
    assert!(shown, "no telemetry shows the lock; log:\n{}", gw.log());

    // Sample now: parked and locked, nothing else would publish for an hour.
    let before = gw.telemetry("s0").len();
    let ack = gw
        .send(
            "s0",
            json!({"id": "sample-1", "command": "sample_now", "ttl": 30}),
        )
        .await;
    assert_eq!(verdict(&ack), "ok", "{ack}");
    assert_eq!(ack["state"], sim_controls(&gw.depot, 0).await);
    let sampled = gw
        .inbox
        .wait_for(Duration::from_secs(5), |i| {
            parsed(i, "m365/s0/telemetry").len() > before
        })
        .await;
    assert!(
        sampled,
        "sample_now published no telemetry within 5 s; log:\n{}",
        gw.log()
    );
    let record = gw.telemetry("s0")[before].clone();
    assert_eq!(record["locked"], json!(true), "{record}");
    assert!(record["record_id"].is_string() && record["ts"].is_string());

    // Every setting, each read back from the scooter and matching its model.
    let steps = [
        (
            json!({"id": "cruise-on", "command": "cruise", "value": "on", "ttl": 30}),
            "cruise",
            json!(true),
        ),
        (
            json!({"id": "light-on", "command": "tail_light", "value": true, "ttl": 30}),
            "tail_light",
            json!(true),
        ),
        (
            json!({"id": "kers-strong", "command": "kers", "value": "strong", "ttl": 30}),
            "kers",
            json!("strong"),
        ),
        (
            json!({"id": "kers-weak", "command": "kers", "value": "weak", "ttl": 30}),
            "kers",
            json!("weak"),
        ),
        (
            json!({"id": "cruise-off", "command": "cruise", "value": "off", "ttl": 30}),
            "cruise",
            json!(false),
        ),
        (
            json!({"id": "light-off", "command": "tail_light", "value": "off", "ttl": 30}),
            "tail_light",
            json!(false),
        ),
        (
            json!({"id": "unlock-1", "command": "unlock", "ttl": 30}),
            "locked",
            json!(false),
        ),
    ];
    for (command, field, want) in steps {
        let ack = gw.send("s0", command.clone()).await;
        assert_eq!(verdict(&ack), "ok", "{command}: {ack}");
        assert_eq!(ack["state"][field], want, "{command}: {ack}");
        assert_eq!(
            ack["state"],
            sim_controls(&gw.depot, 0).await,
            "{command}: the acknowledgement reports what the scooter holds"
        );
    }
    assert_eq!(
        sim_controls(&gw.depot, 0).await,
        json!({"powered": true, "locked": false, "cruise": false, "tail_light": false, "kers": "weak"})
    );

    // Not in the allow list: refused, and the scooter stays on.
    let ack = gw
        .send(
            "s0",
            json!({"id": "off-1", "command": "power_off", "ttl": 30}),
        )
        .await;
    assert_eq!(verdict(&ack), "not_allowed", "{ack}");
    assert_eq!(sim_controls(&gw.depot, 0).await["powered"], json!(true));

    // A marker last: every acknowledgement made before it has arrived.
    let ack = gw
        .send("s0", json!({"id": "marker", "command": "lock", "ttl": 0}))
        .await;
    assert_eq!(verdict(&ack), "expired", "{ack}");
    assert_exactly_once(
        &gw.inbox,
        "s0",
        &[
            ("lock-1", "ok"),
            ("sample-1", "ok"),
            ("cruise-on", "ok"),
            ("light-on", "ok"),
            ("kers-strong", "ok"),
            ("kers-weak", "ok"),
            ("cruise-off", "ok"),
            ("light-off", "ok"),
            ("unlock-1", "ok"),
            ("off-1", "not_allowed"),
            ("marker", "expired"),
        ],
    );
    // The unlocked scooter is sampled at the fast interval again.
    let n = gw.telemetry("s0").len();
    assert!(
        gw.inbox
            .wait_for(WAIT, |i| parsed(i, "m365/s0/telemetry").len() >= n + 3)
            .await,
        "{}",
        gw.log()
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_off_switches_the_scooter_off_and_the_daemon_finds_it_again() {
    let mut config = standing(711);
    // The simulated rider presses the power button 3 s after the scooter went off.
    config.power_off_hold = Duration::from_secs(3);
    let Some(mut gw) = Harness::new(
        vec![config],
        &["s0"],
        &["reconnect_window = \"30s\"\ncommands = [\"cruise\", \"power_off\"]"],
        "[telemetry]\ninterval = \"300ms\"\nparked_interval = \"300ms\"\nheartbeat = \"0s\"\n",
    )
    .await
    else {
        return;
    };
    gw.start(&["s0"], Some("s0")).await;
    let ack = gw
        .send(
            "s0",
            json!({"id": "cruise-on", "command": "cruise", "value": true, "ttl": 30}),
        )
        .await;
    assert_eq!(verdict(&ack), "ok", "{ack}");
    let connects = gw.depot.read(0, |s| s.counters().connects).await;

    let ack = gw
        .send(
            "s0",
            json!({"id": "off-1", "command": "power_off", "ttl": 30}),
        )
        .await;
    let off_at = m365_gps::chrono::Utc::now();
    assert_eq!(verdict(&ack), "ok", "{ack}; log:\n{}", gw.log());
    // `powered: false`, and the settings as read just before: the scooter keeps them.
    assert_eq!(
        ack["state"],
        json!({"powered": false, "locked": false, "cruise": true, "tail_light": false, "kers": "medium"})
    );
    // The simulator is off (its rider switches it on again 3 s later).
    assert!(!gw.depot.read(0, |s| s.ride().powered()).await);

    // The daemon reconnects once it is on again, and telemetry resumes with a new power-on
    // session (samples taken after the scooter came back); cruise survived.
    let back = off_at + m365_gps::chrono::TimeDelta::seconds(3);
    let taken_after = |t: &Value| {
        t["ts"]
            .as_str()
            .and_then(|ts| m365_gps::chrono::DateTime::parse_from_rfc3339(ts).ok())
            .is_some_and(|ts| ts >= back)
    };
    let resumed = gw
        .inbox
        .wait_for(WAIT, |i| {
            parsed(i, "m365/s0/telemetry").iter().any(taken_after)
        })
        .await;
    assert!(resumed, "telemetry did not resume; log:\n{}", gw.log());
    let sim = gw
        .depot
        .read(0, |s| {
            (s.ride().powered(), s.ride().cruise(), s.counters().connects)
        })
        .await;
    assert!(sim.0 && sim.1, "on again, cruise kept: {sim:?}");
    assert!(sim.2 > connects, "a new connection after power-on: {sim:?}");
    let first_back = gw.telemetry("s0").into_iter().find(taken_after).unwrap();
    assert!(
        first_back["uptime_s"].as_u64().is_some_and(|u| u < 10),
        "a new power-on session: {first_back}"
    );
    let ack = gw
        .send(
            "s0",
            json!({"id": "marker", "command": "cruise", "value": false, "ttl": 30}),
        )
        .await;
    assert_eq!(verdict(&ack), "ok", "{ack}");
    assert_eq!(ack["state"]["powered"], json!(true));
    assert_exactly_once(
        &gw.inbox,
        "s0",
        &[("cruise-on", "ok"), ("off-1", "ok"), ("marker", "ok")],
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_is_acknowledged_once_and_replays_are_refused_across_a_restart() {
    let Some(mut gw) = Harness::new(
        vec![standing(721), standing(722)],
        &["near", "far"],
        &[
            // Its own list replaces `[commands] allow`: no cruise here.
            "commands = [\"lock\", \"unlock\"]",
            "reconnect_window = \"60s\"",
        ],
        r#"
[telemetry]
interval = "300ms"
parked_interval = "300ms"
heartbeat = "0s"

[commands]
allow = ["lock", "unlock", "cruise"]
max_ttl = "1m"
"#,
    )
    .await
    else {
        return;
    };
    gw.start(&["near", "far"], Some("near")).await;

    // The far scooter leaves radio range; the daemon's sampler waits inside a read for the
    // link to come back (the status says "reconnecting" then).
    gw.depot.fault(
        1,
        Fault::OutOfRange {
            for_: Duration::from_secs(600),
        },
    );
    gw.wait_status("far reconnecting").await;
    let sent_offline = tokio::time::Instant::now();
    gw.command(
        "far",
        json!({"id": "far-lock", "command": "lock", "ttl": 3}),
    )
    .await;

    // The near scooter: one of each refusal, and one success to replay.
    let ack = gw
        .send(
            "near",
            json!({"id": "lock-1", "command": "lock", "ttl": 30}),
        )
        .await;
    assert_eq!(verdict(&ack), "ok", "{ack}");
    let refusals = [
        (
            json!({"id": "cruise-1", "command": "cruise", "value": "on", "ttl": 30}),
            "not_allowed",
        ),
        (
            json!({"id": "late-1", "command": "unlock", "expires": "2020-01-01T00:00:00Z"}),
            "expired",
        ),
        (
            json!({"id": "late-2", "command": "unlock", "ttl": 0}),
            "expired",
        ),
        (
            json!({"id": "far-ahead", "command": "unlock", "ttl": 3600}),
            "too_far_ahead",
        ),
        (
            json!({"id": "lock-1", "command": "lock", "ttl": 30}),
            "replayed",
        ),
        (
            json!({"id": "bad-command", "command": "fly", "ttl": 30}),
            "malformed",
        ),
        (
            json!({"id": "bad-value", "command": "lock", "value": "hard", "ttl": 30}),
            "malformed",
        ),
        (json!({"id": "bad-expiry", "command": "lock"}), "malformed"),
        (
            json!({"id": "bad-field", "command": "lock", "expire": "soon", "ttl": 30}),
            "malformed",
        ),
    ];
    for (command, code) in &refusals {
        let id = command["id"].as_str().unwrap();
        let before = results(&gw.inbox, "near").len();
        gw.command("near", command.clone()).await;
        let arrived = gw
            .inbox
            .wait_for(WAIT, |i| results(i, "near").len() > before)
            .await;
        assert!(
            arrived,
            "no acknowledgement of {command}; log:\n{}",
            gw.log()
        );
        let ack = results(&gw.inbox, "near")[before].clone();
        assert_eq!(ack["id"], json!(id), "{ack}");
        assert_eq!(verdict(&ack), *code, "{command}: {ack}");
    }
    // No readable id: nobody to acknowledge; only logged.
    gw.publish_raw("near", "{\"id\": \"broken-json\", \"command\": ")
        .await;
    gw.publish_raw("near", "not json").await;
    // A refusal leaves the scooter as it was: still locked, never cruising.
    assert_eq!(
        sim_controls(&gw.depot, 0).await,
        json!({"powered": true, "locked": true, "cruise": false, "tail_light": false, "kers": "medium"})
    );

    // The far scooter's command waited for its expiry, then was refused as offline.
    let ack = gw.ack("far", "far-lock").await;
    let waited = sent_offline.elapsed();
    assert_eq!(
        verdict(&ack),
        "offline",
        "a command for a scooter whose link is down waits until its expiry and is refused as \
         offline (docs/commands.md, \"Offline scooters and expiry\"): {ack}; log:\n{}",
        gw.log()
    );
    assert!(
        waited >= Duration::from_millis(2_500) && waited < Duration::from_secs(10),
        "refused at its expiry (3 s), after {waited:?}"
    );
    assert!(!gw.depot.read(1, |s| s.ride().locked()).await);

    let ack = gw
        .send(
            "near",
            json!({"id": "marker-1", "command": "unlock", "ttl": 30}),
        )
        .await;
    assert_eq!(verdict(&ack), "ok", "{ack}");
    // Every acknowledgement once (the replay is a second acknowledgement of lock-1, under its
    // id: checked in the loop above, so the count here is of the rest).
    let received = results(&gw.inbox, "near");
    let verdicts = by_id(&received);
    assert_eq!(
        verdicts.get("lock-1"),
        Some(&vec!["ok".to_owned(), "replayed".to_owned()]),
        "{received:#?}"
    );
    for (id, v) in &verdicts {
        if id != "lock-1" {
            assert_eq!(v.len(), 1, "{id}: {v:?}");
        }
    }
    assert_eq!(
        received.len(),
        verdicts.values().map(Vec::len).sum::<usize>(),
        "nothing acknowledged without an id"
    );
    assert!(
        !verdicts.contains_key("broken-json"),
        "an id in a message that is not JSON is not readable: {received:#?}"
    );
    assert_exactly_once(&gw.inbox, "far", &[("far-lock", "offline")]);

    // A restart: the ids seen are remembered (commands-seen.json beside the spool).
    gw.stop().await;
    assert!(
        gw.path().join(m365::commands::REPLAY_FILE).is_file(),
        "the replay memory is kept in the state directory"
    );
    gw.start(&["near"], Some("near")).await;
    let before = results(&gw.inbox, "near").len();
    gw.command(
        "near",
        json!({"id": "lock-1", "command": "lock", "ttl": 30}),
    )
    .await;
    gw.command(
        "near",
        json!({"id": "marker-1", "command": "lock", "ttl": 30}),
    )
    .await;
    let ack = gw
        .send(
            "near",
            json!({"id": "marker-2", "command": "lock", "ttl": 30}),
        )
        .await;
    assert_eq!(verdict(&ack), "ok", "a new id is carried out: {ack}");
    let after: Vec<(String, String)> = results(&gw.inbox, "near")[before..]
        .iter()
        .filter(|r| !r["id"].as_str().unwrap().starts_with("probe-"))
        .map(|r| (r["id"].as_str().unwrap().to_owned(), verdict(r)))
        .collect();
    assert_eq!(
        after,
        [
            ("lock-1".to_owned(), "replayed".to_owned()),
            ("marker-1".to_owned(), "replayed".to_owned()),
            ("marker-2".to_owned(), "ok".to_owned()),
        ],
        "log:\n{}",
        gw.log()
    );
    assert!(gw.depot.read(0, |s| s.ride().locked()).await);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_for_a_scooter_whose_link_just_dropped_is_refused_as_offline_at_its_expiry() {
    let Some(mut gw) = Harness::new(
        vec![standing(731)],
        &["s0"],
        // A slow interval: the command arrives while the sampler waits for its next sample.
        &["interval = \"5s\"\nreconnect_window = \"10s\"\ncommands = [\"lock\"]"],
        "",
    )
    .await
    else {
        return;
    };
    gw.start(&["s0"], Some("s0")).await;
    // Right after a sample, the scooter leaves radio range.
    let n = gw.telemetry("s0").len();
    assert!(
        gw.inbox
            .wait_for(WAIT, |i| parsed(i, "m365/s0/telemetry").len() > n)
            .await
    );
    gw.depot.fault(
        0,
        Fault::OutOfRange {
            for_: Duration::from_secs(600),
        },
    );
    let gone = tokio::time::timeout(WAIT, async {
        while gw.depot.read(0, |s| s.is_connected()).await {
            // Polling the simulator's state until it shows the drop.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(gone.is_ok(), "the simulated scooter never disconnected");
    let sent = tokio::time::Instant::now();
    gw.command(
        "s0",
        json!({"id": "lock-away", "command": "lock", "ttl": 3}),
    )
    .await;
    let ack = gw.ack("s0", "lock-away").await;
    let waited = sent.elapsed();
    assert!(
        verdict(&ack) == "offline" && waited < Duration::from_secs(6),
        "the scooter's link was down when the command arrived: it should wait until its expiry \
         (3 s) and be refused as offline then (docs/commands.md, \"Offline scooters and \
         expiry\"), but it was acknowledged after {waited:?} with {ack}; log:\n{}",
        gw.log()
    );
    assert_exactly_once(&gw.inbox, "s0", &[("lock-away", "offline")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_whose_expiry_passed_while_the_link_was_down_is_never_carried_out() {
    let Some(mut gw) = Harness::new(
        vec![standing(732)],
        &["s0"],
        &["interval = \"5s\"\nreconnect_window = \"30s\"\ncommands = [\"lock\"]"],
        "",
    )
    .await
    else {
        return;
    };
    gw.start(&["s0"], Some("s0")).await;
    // Right after a sample, the link drops for 5 s.
    let n = gw.telemetry("s0").len();
    assert!(
        gw.inbox
            .wait_for(WAIT, |i| parsed(i, "m365/s0/telemetry").len() > n)
            .await
    );
    gw.depot.fault(
        0,
        Fault::DropLink {
            down_for: Duration::from_secs(5),
        },
    );
    let gone = tokio::time::timeout(WAIT, async {
        while gw.depot.read(0, |s| s.is_connected()).await {
            // Polling the simulator's state until it shows the drop.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(gone.is_ok(), "the simulated scooter never disconnected");
    let sent = tokio::time::Instant::now();
    gw.command(
        "s0",
        json!({"id": "lock-late", "command": "lock", "ttl": 2}),
    )
    .await;
    let ack = gw.ack("s0", "lock-late").await;
    let waited = sent.elapsed();
    let locked = gw.depot.read(0, |s| s.ride().locked()).await;
    assert!(
        verdict(&ack) == "offline" && !locked,
        "the command expired 2 s after it arrived, while the link was down: it must not be \
         carried out once the scooter is back, but the scooter is {} and the acknowledgement, \
         {waited:?} after the command, is {ack}; log:\n{}",
        if locked { "locked" } else { "unlocked" },
        gw.log()
    );
}
