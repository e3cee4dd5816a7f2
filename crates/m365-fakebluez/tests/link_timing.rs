//! The link timing model seen through btleplug: a burst of notifications is carried in as many
//! connection events as the model allows, in order, and nothing is lost.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use btleplug::api::{Peripheral as _, WriteType};
use common::*;
use futures::StreamExt;
use m365_fakebluez::isolation::isolated_bus;
use m365_fakebluez::{FakeBluez, LinkTiming};

#[tokio::test]
async fn notification_burst_takes_the_modelled_connection_events() {
    let Some(bus) = isolated_bus("notification_burst_takes_the_modelled_connection_events") else {
        return;
    };
    let fake = FakeBluez::start(bus.address()).await.unwrap();
    let control = fake.add_peripheral(Echo::new(1, -60)).unwrap();
    // 4 packets per 40 ms event: the write takes one event, the 12 notifications three more.
    control.set_link_timing(LinkTiming::paced(Duration::from_millis(40), 4));
    let (adapter, mut events) = central().await;
    let p = scan_for(&adapter, &mut events, 1).await;
    let write = connect_and_subscribe(&p).await;
    let mut notes = p.notifications().await.unwrap();

    let before = control.link_stats();
    p.write(&write, &[BURST, 12], WriteType::WithoutResponse)
        .await
        .unwrap();
    let mut received = Vec::new();
    while received.len() < 12 {
        let note = tokio::time::timeout(WAIT, notes.next())
            .await
            .unwrap()
            .unwrap();
        received.push(note.value);
    }
    let after = control.link_stats();
    let expected: Vec<Vec<u8>> = (0..12u8).map(|i| vec![i]).collect();
    assert_eq!(received, expected);
    assert_eq!(after.packets - before.packets, 13);
    assert_eq!(after.connection_events - before.connection_events, 4);
}

#[tokio::test]
async fn instant_link_counts_packets_but_no_events() {
    let Some(bus) = isolated_bus("instant_link_counts_packets_but_no_events") else {
        return;
    };
    let fake = FakeBluez::start(bus.address()).await.unwrap();
    let control = fake.add_peripheral(Echo::new(1, -60)).unwrap();
    let (adapter, mut events) = central().await;
    let p = scan_for(&adapter, &mut events, 1).await;
    let write = connect_and_subscribe(&p).await;
    let mut notes = p.notifications().await.unwrap();
    p.write(&write, &[BURST, 30], WriteType::WithoutResponse)
        .await
        .unwrap();
    for i in 0..30u8 {
        let note = tokio::time::timeout(WAIT, notes.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(note.value, [i]);
    }
    let stats = control.link_stats();
    // StartNotify's CCCD write and its response, the write, and 30 notifications.
    assert_eq!(stats.packets, 33);
    assert_eq!(stats.connection_events, 0);
}
