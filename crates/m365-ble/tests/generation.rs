//! Telling the protocol generation (protocol.md §5.6) through the in-process transport: a
//! scooter with only the Nordic UART is generation A when it answers the plain probe, even if
//! the first answer is lost; a frame that does not answer the probe does not count.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::tamper::{Tampered, pass_writes, rewrite_plain_frames};
use common::*;
use m365_ble::BleError;
use m365_ble::link::ScooterLink;
use m365_sim::in_process::InProcessTransport;
use m365_sim::{Generation, Model};

#[tokio::test(start_paused = true)]
async fn a_lost_probe_answer_is_asked_again() {
    let dir = tempfile::tempdir().unwrap();
    let sim = scooter(Model::M365, Generation::Plain, 41);
    let mut dropped = 0;
    let transport = Tampered::new(
        InProcessTransport::new(vec![sim.clone()]),
        pass_writes(),
        rewrite_plain_frames(move |frame| {
            if dropped == 0 {
                dropped += 1;
                vec![]
            } else {
                vec![frame]
            }
        }),
    );
    let mut link = ScooterLink::open(transport, config(&sim, dir.path().join("unused")))
        .await
        .unwrap();
    assert_eq!(link.generation(), Some(Generation::Plain));
    link.sample().await.unwrap();
    // Two probes and five reads reached the scooter.
    assert_eq!(sim.counters().reads, 7);
}

#[tokio::test(start_paused = true)]
async fn only_the_answer_to_the_probe_counts() {
    let dir = tempfile::tempdir().unwrap();
    let sim = scooter(Model::M365, Generation::Plain, 42);
    // Every answer comes back for another register: no answer to the probe.
    let transport = Tampered::new(
        InProcessTransport::new(vec![sim.clone()]),
        pass_writes(),
        rewrite_plain_frames(|mut frame| {
            frame.attr = frame.attr.wrapping_add(1);
            vec![frame]
        }),
    );
    let err = ScooterLink::open(transport, config(&sim, dir.path().join("unused")))
        .await
        .unwrap_err();
    assert!(matches!(err, BleError::Unsupported(_)), "{err}");
    assert!(err.to_string().contains("NinebotCrypto"), "{err}");
    assert_eq!(sim.counters().reads, 2, "probed twice");
}
