//! The empty notification real scooters send after every UART frame whose length on the wire is
//! a multiple of 20 bytes (protocol.md §2.3, §11b), in every generation, and only then.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Bench, UartClient, instant_config};
use m365_proto::registers::{Unit, read_unit};
use m365_sim::{Generation, Model};

/// A connected bench with a ready client of `generation` (paired and logged in for Mi-auth).
fn session(generation: Generation, empty_terminator: bool) -> (Bench, UartClient) {
    let model = match generation {
        Generation::MiAuth => Model::Pro2,
        _ => Model::M365,
    };
    let mut config = instant_config(model, generation, 70);
    config.empty_terminator = empty_terminator;
    let mut bench = Bench::new(config);
    let client = match generation {
        Generation::MiAuth => bench.paired_session().1,
        Generation::Xor => {
            bench.connect();
            bench.xor_client()
        }
        Generation::Plain => {
            bench.connect();
            UartClient::new(Generation::Plain)
        }
    };
    (bench, client)
}

/// Bytes read whose answer is 20, 40 and 22 bytes long on the wire in `generation` (answer
/// LEN = n + 2; wire length LEN + 16, + 10 or + 6).
fn reads(generation: Generation) -> [(u8, usize); 3] {
    let overhead = match generation {
        Generation::MiAuth => 18,
        Generation::Xor => 12,
        Generation::Plain => 8,
    };
    [20, 40, 22].map(|wire| ((wire - overhead) as u8, wire))
}

#[test]
fn frames_of_20_and_40_bytes_end_with_one_empty_notification_in_every_generation() {
    for generation in [Generation::MiAuth, Generation::Xor, Generation::Plain] {
        let (mut bench, mut client) = session(generation, true);
        for (n, wire) in reads(generation) {
            let lengths = bench.notification_lengths(&mut client, &read_unit(Unit::Esc, 0x10, n));
            let mut expected: Vec<usize> = (0..wire / 20).map(|_| 20).collect();
            if wire % 20 == 0 {
                expected.push(0);
            } else {
                expected.push(wire % 20);
            }
            assert_eq!(lengths, expected, "{generation:?}, {wire}-byte answer");
            // The frame itself is whole and valid; the empty notification adds nothing to it.
            let frame = client.reassembler.next_frame().expect("a whole frame");
            assert_eq!(frame.len(), wire);
            assert!(client.reassembler.next_frame().is_none());
        }
        assert_eq!(
            bench.scooter.counters().empty_notifications,
            2,
            "{generation:?}"
        );
    }
}

#[test]
fn the_empty_notification_can_be_turned_off() {
    for generation in [Generation::MiAuth, Generation::Xor, Generation::Plain] {
        let (mut bench, mut client) = session(generation, false);
        let (n, _) = reads(generation)[0];
        let lengths = bench.notification_lengths(&mut client, &read_unit(Unit::Esc, 0x10, n));
        assert_eq!(lengths, [20], "{generation:?}");
        assert_eq!(bench.scooter.counters().empty_notifications, 0);
    }
}
