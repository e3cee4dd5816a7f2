//! With the link model on, notifications leave only at connection events, a few per event,
//! after the controller's processing delay.

mod common;

use std::time::Duration;

use common::{Bench, UartClient};
use m365_proto::registers::{bms, esc};
use m365_sim::link::LinkTiming;
use m365_sim::scooter::Processing;
use m365_sim::{Generation, Model, ScooterConfig};

fn timed_session(interval_ms: u64) -> (Bench, UartClient, LinkTiming) {
    let timing = LinkTiming::with_interval(Duration::from_millis(interval_ms)).expect("in range");
    let mut c = ScooterConfig::new(Model::Pro2, 71).with_generation(Generation::MiAuth);
    c.link = Some(timing);
    c.processing = Processing {
        esc: timing.esc_delay,
        bms: timing.bms_delay,
    };
    let mut bench = Bench::new(c);
    let (_, client) = bench.paired_session();
    (bench, client, timing)
}

#[test]
fn answers_leave_at_the_next_connection_event_after_processing() {
    let (mut bench, mut client, timing) = timed_session(30);
    let connected = bench.now;
    // The session's connection started at `connected`: events fall every 30 ms from there.
    bench.advance(Duration::from_millis(1));
    let asked = bench.now;
    assert!(bench.request(&mut client, &esc::read_range()).is_some());
    let waited = bench.now - asked;
    // Asked 1 ms after an event, ready 8 ms later: leaves at the next event, 29 ms later.
    assert_eq!(waited, Duration::from_millis(29));
    assert_eq!(
        (bench.now - connected).as_nanos() % timing.conn_interval.as_nanos(),
        0
    );

    // The BMS is slower: 15 ms. Asked 20 ms after an event, it misses the next one.
    bench.advance(Duration::from_millis(20));
    let asked = bench.now;
    assert!(
        bench
            .request(&mut client, &bms::read_battery_info())
            .is_some()
    );
    assert_eq!(bench.now - asked, Duration::from_millis(40));
}

#[test]
fn long_answers_spread_over_events_when_packets_per_event_are_few() {
    // The 0x20-byte motor block under Mi-auth: LEN 0x22, 50 bytes, 3 notifications.
    for (per_event, expected_ms) in [(4, 50), (1, 150)] {
        let timing = LinkTiming {
            conn_interval: Duration::from_millis(50),
            packets_per_event: per_event,
            ..LinkTiming::default()
        };
        let mut c = ScooterConfig::new(Model::Pro2, 72).with_generation(Generation::MiAuth);
        c.link = Some(timing.validated().expect("valid"));
        let mut bench = Bench::new(c);
        let (_, mut client) = bench.paired_session();
        // The login ended with a notification, i.e. on a connection event.
        let asked = bench.now;
        assert!(
            bench
                .request(&mut client, &esc::read_motor_info())
                .is_some()
        );
        assert_eq!(
            bench.now - asked,
            Duration::from_millis(expected_ms),
            "{per_event} packets per event"
        );
    }
}
