//! The one back-off policy of `m365`: exponential delays with a cap and "equal jitter", as a pure
//! value. It holds no clock and sleeps nowhere: the caller asks for the next delay, waits it out
//! however it waits, and reports a success with [`Backoff::reset`]. Randomness is passed in, as
//! an [`RngCore`] or as one uniform draw, so tests choose their draws.
//!
//! The n-th delay (from 0, counted since the last reset) is drawn uniformly from
//! `[max(min, c/2), c]` where `c = min(max, min · 2ⁿ)` ("equal jitter" in the AWS taxonomy, with
//! the floor kept at `min`). So:
//!
//! - every delay lies in `[min, max]`: `min` is the shortest wait, `max` the longest;
//! - the first delay is exactly `min`;
//! - until the cap, each delay is at least the previous one's ceiling, so delays never shrink
//!   while they grow; once capped they stay in `[max/2, max]`;
//! - clients that failed together spread out instead of retrying in lock-step.
//!
//! ```
//! use std::time::Duration;
//! use m365_backoff::Backoff;
//!
//! let mut b = Backoff::new(Duration::from_millis(250), Duration::from_secs(5));
//! assert_eq!(b.next_delay_at(0.7), Duration::from_millis(250));
//! let second = b.next_delay_at(0.5);
//! assert!(second >= Duration::from_millis(250) && second <= Duration::from_millis(500));
//! b.reset();
//! assert_eq!(b.next_delay_at(0.9), Duration::from_millis(250));
//! ```
#![forbid(unsafe_code)]

use core::time::Duration;

pub use rand_core::RngCore;

/// Exponential back-off from `min` to `max` with equal jitter; see the crate documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// A back-off whose delays lie between `min` and `max` (`max` is raised to `min` if lower).
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max: max.max(min),
            attempt: 0,
        }
    }

    /// The shortest delay (and the first one).
    pub fn min(&self) -> Duration {
        self.min
    }

    /// The longest delay.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// Delays handed out since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// The upper bound of the next delay: `min · 2ⁿ`, capped at `max`.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt).unwrap_or(0);
        match self.min.checked_mul(factor) {
            Some(d) if factor != 0 => d.min(self.max),
            _ => self.max,
        }
    }

    /// The lower bound of the next delay: half the ceiling, never below `min`.
    pub fn floor(&self) -> Duration {
        (self.ceiling() / 2).max(self.min)
    }

    /// The next delay, drawing its jitter from `rng`.
    pub fn next_delay<R: RngCore + ?Sized>(&mut self, rng: &mut R) -> Duration {
        self.next_delay_at(unit(rng.next_u64()))
    }

    /// The next delay for a uniform draw `uniform` in `[0, 1]` (0 gives the floor, 1 the
    /// ceiling; values outside are clamped, NaN counts as 0).
    pub fn next_delay_at(&mut self, uniform: f64) -> Duration {
        let floor = self.floor();
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let u = if uniform.is_nan() {
            0.0
        } else {
            uniform.clamp(0.0, 1.0)
        };
        (floor + (ceiling - floor).mul_f64(u)).min(ceiling)
    }

    /// A success: the next delay is `min` again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// A uniform draw in `[0, 1)` from 64 random bits (the top 53, an `f64`'s precision).
fn unit(bits: u64) -> f64 {
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn floors_and_ceilings_double_then_cap() {
        let mut b = Backoff::new(ms(250), ms(5000));
        let mut bounds = Vec::new();
        for _ in 0..7 {
            bounds.push((b.floor().as_millis(), b.ceiling().as_millis()));
            b.next_delay_at(0.0);
        }
        assert_eq!(
            bounds,
            [
                (250, 250),
                (250, 500),
                (500, 1000),
                (1000, 2000),
                (2000, 4000),
                (2500, 5000),
                (2500, 5000)
            ]
        );
    }

    #[test]
    fn draws_map_onto_the_range_and_outliers_are_clamped() {
        let mut b = Backoff::new(ms(100), ms(10_000));
        b.next_delay_at(0.5);
        let at = |u: f64| b.clone().next_delay_at(u);
        assert_eq!(at(0.0), ms(100));
        assert_eq!(at(1.0), ms(200));
        assert_eq!(at(0.5), ms(150));
        assert_eq!(at(-3.0), ms(100));
        assert_eq!(at(7.0), ms(200));
        assert_eq!(at(f64::NAN), ms(100));
    }

    #[test]
    fn a_max_below_min_is_raised_and_huge_attempt_counts_stay_capped() {
        let mut b = Backoff::new(ms(800), ms(100));
        assert_eq!(b.max(), ms(800));
        assert_eq!(b.next_delay_at(1.0), ms(800));
        let mut b = Backoff::new(Duration::from_secs(3600), Duration::MAX);
        for _ in 0..200 {
            b.next_delay_at(1.0);
        }
        assert_eq!(b.ceiling(), Duration::MAX);
        let mut b = Backoff::new(ms(1), ms(60_000));
        for _ in 0..100 {
            b.next_delay_at(0.3);
        }
        assert_eq!(b.ceiling(), ms(60_000));
        assert_eq!(b.attempts(), 100);
    }

    #[test]
    fn unit_covers_zero_to_just_below_one() {
        assert_eq!(unit(0), 0.0);
        assert!(unit(u64::MAX) < 1.0);
        assert!(unit(u64::MAX) > 0.999_999);
        assert_eq!(unit(1 << 63), 0.5);
    }
}
