//! With the link model on, notifications leave only at connection events, a few per event,
//! after the controller's processing delay.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Bench, UartClient};
use m365_fakebluez::LinkTiming;
use m365_proto::registers::{bms, esc};
use m365_sim::link_timing;
use m365_sim::scooter::Processing;
use m365_sim::{Generation, Model, ScooterConfig};

fn timed_session(interval_ms: u64) -> (Bench, UartClient, LinkTiming) {
    let timing = link_timing::with_interval(Duration::from_millis(interval_ms)).expect("in range");
    let mut c = ScooterConfig::new(Model::Pro2, 71).with_generation(Generation::MiAuth);
    c.link = Some(timing);
    c.processing = Processing {
        esc: Duration::from_millis(8),
        bms: Duration::from_millis(15),
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
        (bench.now - connected).as_nanos()
            % timing.connection_interval().expect("paced").as_nanos(),
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
        let timing = LinkTiming::paced(Duration::from_millis(50), per_event);
        let mut c = ScooterConfig::new(Model::Pro2, 72).with_generation(Generation::MiAuth);
        c.link = Some(timing);
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

#[test]
fn pipelined_requests_are_answered_one_at_a_time_on_the_serial_bus() {
    use std::time::Instant;

    use m365_proto::frame::Frame;
    use m365_proto::gatt::Char;
    use m365_sim::Scooter;

    let ms = Duration::from_millis;
    let mut c = ScooterConfig::new(Model::M365, 73).with_generation(Generation::Plain);
    c.link = None;
    c.processing = Processing {
        esc: ms(8),
        bms: ms(15),
    };
    let mut scooter = Scooter::new(c).expect("scooter");
    let t0 = Instant::now();
    scooter.connect(t0).expect("connects");
    let esc_request = Frame {
        dir: 0x20,
        rw: 0x01,
        attr: 0x1A,
        payload: vec![2],
    };
    let bms_request = Frame {
        dir: 0x22,
        rw: 0x01,
        attr: 0x31,
        payload: vec![2],
    };
    // Both written back to back, before any answer.
    scooter.handle_write(t0, Char::UartWrite, &esc_request.encode());
    scooter.handle_write(t0, Char::UartWrite, &bms_request.encode());

    let answer_dir = |scooter: &mut Scooter| {
        scooter
            .poll_transmit()
            .map(|t| Frame::decode(&t.data).expect("a plain frame").dir)
    };
    assert_eq!(scooter.poll_timeout(), Some(t0 + ms(8)));
    scooter.handle_timeout(t0 + ms(8));
    assert_eq!(
        answer_dir(&mut scooter),
        Some(0x23),
        "the ESC answers first"
    );
    // In parallel the BMS would be ready at 15 ms; on one bus it starts when the ESC is done.
    scooter.handle_timeout(t0 + ms(15));
    assert_eq!(answer_dir(&mut scooter), None);
    assert_eq!(scooter.poll_timeout(), Some(t0 + ms(23)));
    scooter.handle_timeout(t0 + ms(23));
    assert_eq!(answer_dir(&mut scooter), Some(0x25));
}
