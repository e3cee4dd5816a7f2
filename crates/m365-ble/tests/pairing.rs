//! Registration through the in-process transport: the button pressed in time gives a token
//! that logs in; no press gives a clear error after the retries; an existing token file is
//! protected; generations A and B need no pairing; `E1`/`E3` restart registration; a token the
//! scooter rejects or calls invalid (`22`) asks for pairing, naming the file.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::tamper::{Tampered, control, pass_events, pass_writes};
use common::*;
use m365_ble::BleError;
use m365_ble::link::ScooterLink;
use m365_ble::pairing::{self, PairingOptions, PairingProgress};
use m365_ble::transport::TransportEvent;
use m365_proto::gatt::Char;
use m365_sim::in_process::{InProcessTransport, SimScooter};
use m365_sim::{Generation, Model, ScooterConfig};

#[tokio::test(start_paused = true)]
async fn button_pressed_gives_a_token_that_logs_in() {
    let dir = tempfile::tempdir().unwrap();
    let sim = pro2(1);
    let path = dir.path().join(".mi-token");
    let mut transport = InProcessTransport::new(vec![sim.clone()]);
    let mut progress = Vec::new();
    let registered = pairing::register(
        &mut transport,
        sim.address(),
        &PairingOptions::new(path.clone()),
        &mut |p| progress.push(p),
    )
    .await
    .unwrap();
    assert_eq!(registered.token_path, path);
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len(), 12);
    let stored = sim.with(|s| s.stored_token().map(|t| t.0)).unwrap();
    assert_eq!(bytes, stored, "the file holds the scooter's token");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(progress.contains(&PairingProgress::Attempt { attempt: 1 }));

    let mut link = ScooterLink::open(transport, config(&sim, path))
        .await
        .unwrap();
    let sample = link.sample().await.unwrap();
    assert!(sample.battery.voltage_v > 30.0, "{sample:?}");
    assert_eq!(sim.counters().logins, 1);
}

#[tokio::test(start_paused = true)]
async fn no_press_is_a_clear_error_after_retrying_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ScooterConfig::new(Model::Pro2, 2);
    config.auto_press = None;
    let sim = SimScooter::new(config).unwrap();
    let path = dir.path().join(".mi-token");
    let mut transport = InProcessTransport::new(vec![sim.clone()]);
    let mut options = PairingOptions::new(path.clone());
    options.attempts = 2;
    let mut progress = Vec::new();
    let err = pairing::register(&mut transport, sim.address(), &options, &mut |p| {
        progress.push(p)
    })
    .await
    .unwrap_err();
    assert!(
        matches!(err, BleError::ButtonNeverPressed { attempts: 2 }),
        "{err}"
    );
    assert!(err.to_string().contains("power button"), "{err}");
    assert!(!path.exists(), "no token written");
    let c = sim.counters();
    assert_eq!(c.registration_attempts, 2, "restarted from R1");
    assert_eq!(c.beeps, 2);
    assert_eq!(
        c.connects, 2,
        "disconnected and reconnected between attempts"
    );
    assert!(progress.contains(&PairingProgress::ButtonNotPressed));
    assert!(progress.contains(&PairingProgress::Countdown { remaining: 5 }));
    assert!(progress.contains(&PairingProgress::Countdown { remaining: 1 }));
}

#[tokio::test(start_paused = true)]
async fn a_press_during_the_countdown_lets_the_retry_pass() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ScooterConfig::new(Model::OneS, 3);
    // Too late for the first attempt's 3 s wait, but within 5 s of the beep: the next
    // attempt finds the registration window open.
    config.auto_press = Some(Duration::from_millis(4_000));
    let sim = SimScooter::new(config).unwrap();
    let path = dir.path().join(".mi-token");
    let mut transport = InProcessTransport::new(vec![sim.clone()]);
    let registered = pairing::register(
        &mut transport,
        sim.address(),
        &PairingOptions::new(path.clone()),
        &mut |_| {},
    )
    .await
    .unwrap();
    assert_eq!(registered.attempts, 2);
    assert_eq!(sim.counters().registrations, 1);
    assert_eq!(std::fs::read(&path).unwrap().len(), 12);
}

#[tokio::test(start_paused = true)]
async fn an_existing_token_is_only_replaced_with_force() {
    let dir = tempfile::tempdir().unwrap();
    let sim = pro2(4);
    let path = dir.path().join(".mi-token");
    std::fs::write(&path, [7u8; 12]).unwrap();
    let mut transport = InProcessTransport::new(vec![sim.clone()]);
    let mut options = PairingOptions::new(path.clone());
    let err = pairing::register(&mut transport, sim.address(), &options, &mut |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, BleError::TokenExists { .. }), "{err}");
    assert!(err.to_string().contains("--force"));
    assert_eq!(sim.counters().connects, 0, "the scooter was not touched");
    assert_eq!(std::fs::read(&path).unwrap(), [7u8; 12]);

    options.force = true;
    pairing::register(&mut transport, sim.address(), &options, &mut |_| {})
        .await
        .unwrap();
    let stored = sim.with(|s| s.stored_token().map(|t| t.0)).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), stored);
}

#[tokio::test(start_paused = true)]
async fn plain_and_xor_scooters_need_no_pairing() {
    for (generation, seed) in [(Generation::Plain, 5), (Generation::Xor, 6)] {
        let dir = tempfile::tempdir().unwrap();
        let sim = scooter(Model::M365, generation, seed);
        let mut transport = InProcessTransport::new(vec![sim.clone()]);
        let err = pairing::register(
            &mut transport,
            sim.address(),
            &PairingOptions::new(dir.path().join(".mi-token")),
            &mut |_| {},
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, BleError::PairingNotNeeded(g) if g == generation),
            "{err}"
        );
        assert!(err.to_string().contains("needs no pairing"));
    }
}

#[tokio::test(start_paused = true)]
async fn a_wrong_token_is_rejected_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let sim = pro2(7);
    registered(&sim, dir.path()).await;
    let wrong = dir.path().join("other.mi-token");
    std::fs::write(&wrong, [0x42u8; 12]).unwrap();
    let err = ScooterLink::open(
        InProcessTransport::new(vec![sim.clone()]),
        config(&sim, wrong.clone()),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, BleError::TokenRejected { ref path } if *path == wrong),
        "{err}"
    );
    assert!(err.needs_pairing());
    assert!(
        err.to_string().contains(&wrong.display().to_string()),
        "{err}"
    );
    assert!(err.to_string().contains("m365 register"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_missing_token_file_asks_for_pairing() {
    let dir = tempfile::tempdir().unwrap();
    let sim = pro2(8);
    let path = dir.path().join("absent");
    let err = ScooterLink::open(
        InProcessTransport::new(vec![sim.clone()]),
        config(&sim, path.clone()),
    )
    .await
    .unwrap_err();
    assert!(err.needs_pairing(), "{err}");
    assert!(err.to_string().contains("absent"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_link_lost_during_an_attempt_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let sim = pro2(9);
    sim.with(|s| {
        s.set_fault_schedule(
            SimScooter::now(),
            m365_sim::FaultSchedule::new(vec![(
                Duration::from_millis(500),
                m365_sim::Fault::DropLink {
                    down_for: Duration::from_secs(1),
                },
            )]),
        )
    });
    let path = dir.path().join(".mi-token");
    let mut transport = InProcessTransport::new(vec![sim.clone()]);
    let mut progress = Vec::new();
    let registered = pairing::register(
        &mut transport,
        sim.address(),
        &PairingOptions::new(path.clone()),
        &mut |p| progress.push(p),
    )
    .await
    .unwrap();
    assert_eq!(registered.attempts, 2);
    assert!(
        progress.contains(&PairingProgress::LinkLost),
        "{progress:?}"
    );
    assert_eq!(sim.counters().registrations, 1);
    assert_eq!(std::fs::read(&path).unwrap().len(), 12);
}

#[tokio::test(start_paused = true)]
async fn a_token_the_scooter_calls_invalid_asks_for_pairing() {
    let dir = tempfile::tempdir().unwrap();
    let sim = pro2(10);
    let path = registered(&sim, dir.path()).await;
    // The scooter answers the proof with `22` (LOG_INVALID_LTMK) instead of `21`.
    let transport = Tampered::new(
        InProcessTransport::new(vec![sim.clone()]),
        pass_writes(),
        Box::new(|event| match event {
            TransportEvent::Notification {
                char: Char::Upnp,
                ref data,
            } if data[..] == [0x21, 0, 0, 0] => vec![control(0x22)],
            other => vec![other],
        }),
    );
    let err = ScooterLink::open(transport, config(&sim, path.clone()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, BleError::TokenRejected { path: ref p } if *p == path),
        "{err}"
    );
    assert!(err.needs_pairing());
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn one_login_answer_damaged_on_the_way_does_not_ask_for_pairing() {
    let dir = tempfile::tempdir().unwrap();
    let sim = pro2(11);
    let path = registered(&sim, dir.path()).await;
    // The first `21` arrives as `23`, as one corrupted notification can make it; the next
    // login, on a new connection, is answered normally.
    let mut damaged = 0;
    let transport = Tampered::new(
        InProcessTransport::new(vec![sim.clone()]),
        pass_writes(),
        Box::new(move |event| match event {
            TransportEvent::Notification {
                char: Char::Upnp,
                ref data,
            } if data[..] == [0x21, 0, 0, 0] && damaged == 0 => {
                damaged += 1;
                vec![control(0x23)]
            }
            other => vec![other],
        }),
    );
    let mut link = ScooterLink::open(transport, config(&sim, path))
        .await
        .expect("the second login succeeds");
    link.sample().await.unwrap();
    let c = link.counters();
    assert_eq!((c.logins, c.link_losses), (1, 1), "{c:?}");
    assert_eq!(sim.counters().logins, 2, "the scooter saw both logins");
}

#[tokio::test(start_paused = true)]
async fn e1_and_e3_restart_registration_with_the_button_prompt() {
    for (refusal, seed) in [(0xE1u8, 11u64), (0xE3, 12)] {
        let dir = tempfile::tempdir().unwrap();
        let sim = pro2(seed);
        let path = dir.path().join(".mi-token");
        // The first registration attempt is refused at its first step.
        let mut refused = false;
        let mut transport = Tampered::new(
            InProcessTransport::new(vec![sim.clone()]),
            Box::new(move |char, data| {
                if !refused && char == Char::Upnp && data == [0xA2, 0, 0, 0] {
                    refused = true;
                    (false, vec![control(refusal)])
                } else {
                    (true, vec![])
                }
            }),
            pass_events(),
        );
        let mut progress = Vec::new();
        let registered = pairing::register(
            &mut transport,
            sim.address(),
            &PairingOptions::new(path.clone()),
            &mut |p| progress.push(p),
        )
        .await
        .unwrap_or_else(|e| panic!("{refusal:#x}: {e}"));
        assert_eq!(registered.attempts, 2, "{refusal:#x}");
        assert!(progress.contains(&PairingProgress::ButtonNotPressed));
        assert!(progress.contains(&PairingProgress::Countdown { remaining: 5 }));
        assert!(progress.contains(&PairingProgress::Attempt { attempt: 2 }));
        let c = sim.counters();
        assert_eq!(
            c.registration_attempts, 1,
            "only the retry reached the scooter"
        );
        assert_eq!(c.connects, 2, "disconnected and reconnected in between");
        let stored = sim.with(|s| s.stored_token().map(|t| t.0)).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), stored);
    }
}

#[tokio::test(start_paused = true)]
async fn e2_at_login_reconnects_and_logs_in_on_a_clean_connection() {
    let dir = tempfile::tempdir().unwrap();
    let sim = pro2(13);
    let path = registered(&sim, dir.path()).await;
    // The first login is answered with `E2` (a login on this connection already, §11a Q9).
    let mut refused = false;
    let transport = Tampered::new(
        InProcessTransport::new(vec![sim.clone()]),
        Box::new(move |char, data| {
            if !refused && char == Char::Upnp && data == [0x24, 0, 0, 0] {
                refused = true;
                (false, vec![control(0xE2)])
            } else {
                (true, vec![])
            }
        }),
        pass_events(),
    );
    let before = sim.counters().connects;
    let mut link = ScooterLink::open(transport, config(&sim, path))
        .await
        .unwrap();
    link.sample().await.unwrap();
    assert_eq!(sim.counters().logins, 1);
    assert_eq!(sim.counters().connects - before, 2, "a new connection");
    assert_eq!(link.counters().logins, 1);
}
