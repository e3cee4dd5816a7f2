//! Zero-length notifications (protocol.md §2.3): real scooters send one after every UART frame
//! of 20, 40, … bytes, and a client must ignore them wherever they come. Through the in-process
//! transport on tokio's paused clock: the terminators of every sample are counted and change
//! nothing, in every generation; and with empty notifications injected around every
//! notification (a scooter sending them where none is known to, past any transport filter),
//! registration, login, samples and a reconnect all still work. The same through btleplug is in
//! `btleplug.rs`.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::tamper::{Tampered, pass_writes};
use common::*;
use m365_ble::link::ScooterLink;
use m365_ble::pairing::{self, PairingOptions};
use m365_ble::transport::{Transport as _, TransportEvent};
use m365_sim::in_process::InProcessTransport;
use m365_sim::{Generation, Model};

#[tokio::test(start_paused = true)]
async fn terminators_are_counted_and_change_nothing_in_every_generation() {
    let dir = tempfile::tempdir().unwrap();
    // Terminated answers per sample: Mi-auth range (20 bytes on the wire), plain motor info
    // (40 bytes); no XOR answer of a sample ends on a full notification.
    for (model, generation, seed, per_sample) in [
        (Model::Pro2, Generation::MiAuth, 1, 1),
        (Model::M365, Generation::Xor, 2, 0),
        (Model::M365, Generation::Plain, 3, 1),
    ] {
        let sim = scooter(model, generation, seed);
        let token = match generation {
            Generation::MiAuth => registered(&sim, dir.path()).await,
            _ => dir.path().join("none"),
        };
        let mut link = ScooterLink::open(
            InProcessTransport::new(vec![sim.clone()]),
            config(&sim, token),
        )
        .await
        .unwrap();
        for _ in 0..50 {
            link.sample().await.unwrap();
        }
        let c = link.counters();
        assert_eq!(c.answers, 250, "{generation:?}: {c:?}");
        assert_eq!(
            (c.rejected_frames, c.unrelated_frames, c.retries, c.timeouts),
            (0, 0, 0, 0),
            "{generation:?}: {c:?}"
        );
        // Every empty notification the scooter sent after the session began was seen and
        // dropped (registration and key recovery add their own).
        assert!(
            c.empty_notifications >= 50 * per_sample,
            "{generation:?}: {c:?}"
        );
        assert_eq!(
            c.empty_notifications,
            sim.counters().empty_notifications,
            "{generation:?}"
        );
    }
}

/// An event hook that puts an empty notification on the same characteristic before and after
/// every notification.
fn surround_with_empties() -> common::tamper::EventHook {
    Box::new(|event| match event {
        TransportEvent::Notification { char, data } => vec![
            TransportEvent::Notification {
                char,
                data: Vec::new(),
            },
            TransportEvent::Notification { char, data },
            TransportEvent::Notification {
                char,
                data: Vec::new(),
            },
        ],
        other => vec![other],
    })
}

#[tokio::test(start_paused = true)]
async fn registration_login_samples_and_a_reconnect_ignore_empties_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let sim = pro2(4);
    let path = dir.path().join(".mi-token");
    let mut transport = Tampered::new(
        InProcessTransport::new(vec![sim.clone()]),
        pass_writes(),
        surround_with_empties(),
    );
    pairing::register(
        &mut transport,
        sim.address(),
        &PairingOptions::new(path.clone()),
        &mut |_| {},
    )
    .await
    .unwrap();
    assert_eq!(sim.counters().registrations, 1);
    let after_pairing = transport.empty_notifications();
    assert!(
        after_pairing > 20,
        "every parcel step had its empties: {after_pairing}"
    );

    let mut link = ScooterLink::open(transport, config(&sim, path))
        .await
        .unwrap();
    for _ in 0..10 {
        link.sample().await.unwrap();
    }
    // Right after a reconnect too.
    sim.drop_link(Duration::from_secs(1));
    for _ in 0..10 {
        link.sample().await.unwrap();
    }
    let c = link.counters();
    assert_eq!((c.logins, c.link_losses, c.answers), (2, 1, 100), "{c:?}");
    assert_eq!(
        (c.rejected_frames, c.unrelated_frames, c.retries, c.timeouts),
        (0, 0, 0, 0),
        "{c:?}"
    );
    assert!(c.empty_notifications > after_pairing + 2 * 100, "{c:?}");
    assert_eq!(sim.counters().login_failures, 0);
}
