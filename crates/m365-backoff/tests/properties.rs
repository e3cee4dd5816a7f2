//! Properties of the back-off for any bounds and any random draws: delays stay within
//! `[min, max]` and within their attempt's `[floor, ceiling]`, never shrink before the cap, reach
//! the cap, and start over at `min` after a reset. The random source is a scripted `RngCore`, so
//! every case replays exactly.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use m365_backoff::{Backoff, RngCore};
use proptest::prelude::*;

/// An `RngCore` that hands out the given words in turn (then repeats them).
struct Scripted {
    words: Vec<u64>,
    next: usize,
}

impl Scripted {
    fn new(words: Vec<u64>) -> Self {
        Scripted { words, next: 0 }
    }
}

impl RngCore for Scripted {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }

    fn next_u64(&mut self) -> u64 {
        let word = self.words[self.next % self.words.len()];
        self.next += 1;
        word
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let word = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

fn bounds() -> impl Strategy<Value = (Duration, Duration)> {
    (1u64..=60_000, 1u64..=4_000_000)
        .prop_map(|(min, max)| (Duration::from_millis(min), Duration::from_millis(max)))
}

proptest! {
    #[test]
    fn delays_stay_within_min_max_and_their_attempt_bounds(
        (min, max) in bounds(),
        words in prop::collection::vec(any::<u64>(), 1..64),
    ) {
        let mut b = Backoff::new(min, max);
        let mut rng = Scripted::new(words);
        for _ in 0..64 {
            let (floor, ceiling) = (b.floor(), b.ceiling());
            let d = b.next_delay(&mut rng);
            prop_assert!(d >= min && d <= max.max(min), "{d:?} outside [{min:?}, {max:?}]");
            prop_assert!(d >= floor && d <= ceiling, "{d:?} outside [{floor:?}, {ceiling:?}]");
            prop_assert!(d >= ceiling / 2, "equal jitter keeps the upper half: {d:?} < {ceiling:?}/2");
        }
    }

    #[test]
    fn delays_never_shrink_before_the_cap_and_then_stay_capped(
        (min, max) in bounds(),
        words in prop::collection::vec(any::<u64>(), 1..64),
    ) {
        let mut b = Backoff::new(min, max);
        let cap = b.max();
        let mut rng = Scripted::new(words);
        let mut previous = Duration::ZERO;
        let mut previous_ceiling = Duration::ZERO;
        let mut capped = false;
        for _ in 0..64 {
            let ceiling = b.ceiling();
            prop_assert!(ceiling >= previous_ceiling, "the ceiling grows");
            let d = b.next_delay(&mut rng);
            if ceiling < cap {
                // Still doubling: the floor is the previous ceiling.
                prop_assert!(d >= previous_ceiling && d >= previous, "{d:?} after {previous:?}");
            } else {
                capped = true;
                prop_assert!(d >= cap / 2 && d <= cap);
            }
            previous = d;
            previous_ceiling = ceiling;
        }
        // 64 doublings reach any cap from any non-zero minimum.
        prop_assert!(capped);
        prop_assert_eq!(b.ceiling(), cap);
    }

    #[test]
    fn a_reset_starts_over_at_min(
        (min, max) in bounds(),
        failures in 0usize..40,
        words in prop::collection::vec(any::<u64>(), 1..16),
    ) {
        let mut b = Backoff::new(min, max);
        let mut rng = Scripted::new(words);
        for _ in 0..failures {
            b.next_delay(&mut rng);
        }
        prop_assert_eq!(b.attempts(), failures as u32);
        b.reset();
        prop_assert_eq!(b.attempts(), 0);
        prop_assert_eq!(b.next_delay(&mut rng), min);
    }

    #[test]
    fn the_same_draws_give_the_same_delays(
        (min, max) in bounds(),
        words in prop::collection::vec(any::<u64>(), 1..32),
    ) {
        let run = |words: Vec<u64>| {
            let mut b = Backoff::new(min, max);
            let mut rng = Scripted::new(words);
            (0..32).map(|_| b.next_delay(&mut rng)).collect::<Vec<_>>()
        };
        prop_assert_eq!(run(words.clone()), run(words));
    }
}

#[test]
fn different_draws_spread_capped_delays() {
    let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(8));
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(7);
    let delays: Vec<Duration> = (0..16).map(|_| b.next_delay(&mut rng)).collect();
    let late = &delays[8..];
    assert!(
        late.iter()
            .all(|d| *d >= Duration::from_secs(4) && *d <= Duration::from_secs(8))
    );
    assert!(late.windows(2).any(|w| w[0] != w[1]), "{late:?}");
}
