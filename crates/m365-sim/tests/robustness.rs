//! Peer input never panics the scooter: arbitrary bytes on every characteristic, in any
//! generation, before and after login, and arbitrary register requests inside valid frames.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Bench, UartClient, instant_config};
use m365_proto::frame::Frame;
use m365_proto::gatt::Char;
use m365_sim::{Generation, Model};
use proptest::prelude::*;

const CHARS: [Char; 5] = [
    Char::Upnp,
    Char::Avdtp,
    Char::UartWrite,
    Char::UartNotify,
    Char::Key,
];

fn generation(i: u8) -> Generation {
    match i % 3 {
        0 => Generation::MiAuth,
        1 => Generation::Xor,
        _ => Generation::Plain,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn arbitrary_writes_never_panic(
        gen_index in 0u8..3,
        writes in proptest::collection::vec(
            (0usize..CHARS.len(), proptest::collection::vec(any::<u8>(), 0..40), 0u64..300),
            1..40,
        ),
    ) {
        let mut bench = Bench::new(instant_config(Model::Pro2, generation(gen_index), 90));
        bench.connect();
        for (c, data, wait_ms) in writes {
            bench.write(CHARS[c], &data);
            bench.advance(Duration::from_millis(wait_ms));
        }
        // Whatever happened, the scooter still answers a well-formed client.
        bench.disconnect();
        bench.advance(Duration::from_secs(10));
        let g = generation(gen_index);
        let mut client = match g {
            Generation::MiAuth => bench.paired_session().1,
            Generation::Xor => { bench.connect(); bench.xor_client() }
            Generation::Plain => { bench.connect(); UartClient::new(g) }
        };
        prop_assert!(bench.request(&mut client, &m365_proto::registers::esc::read_range()).is_some());
    }

    #[test]
    fn arbitrary_requests_in_valid_frames_never_panic(
        requests in proptest::collection::vec(
            (any::<u8>(), any::<u8>(), any::<u8>(), proptest::collection::vec(any::<u8>(), 0..60)),
            1..30,
        ),
    ) {
        let mut bench = Bench::new(instant_config(Model::Pro2, Generation::MiAuth, 91));
        let (_, mut client) = bench.paired_session();
        for (dir, rw, attr, payload) in requests {
            let frame = Frame { dir, rw, attr, payload };
            let _ = bench.request(&mut client, &frame);
        }
        prop_assert!(bench.scooter.is_connected() || !bench.scooter.ride().powered());
    }
}
