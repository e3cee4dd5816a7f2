//! Reconnect back-off: exponential from `reconnect_min` to `reconnect_max`, with jitter so a
//! fleet of scooters leaving the same tunnel (or a broker restart) does not reconnect in
//! lock-step. Pure: the random source is passed in, the caller sleeps.

use std::time::Duration;

use rand::Rng;

/// Exponential back-off with "equal jitter": the n-th delay is drawn uniformly from
/// `[d/2, d]` where `d = min(max, min · 2ⁿ)`, and never below `min`.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// A back-off between `min` and `max` (`max` is raised to `min` if lower).
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max: max.max(min),
            attempt: 0,
        }
    }

    /// Delay before the next attempt.
    pub fn next_delay<R: Rng + ?Sized>(&mut self, rng: &mut R) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(20)).unwrap_or(u32::MAX);
        let ceiling = self.min.saturating_mul(factor).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let floor = (ceiling / 2).max(self.min);
        if ceiling <= floor {
            return ceiling;
        }
        let span = (ceiling - floor).as_micros() as u64;
        floor + Duration::from_micros(rng.gen_range(0..=span))
    }

    /// A connection succeeded: start again from `min`.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Attempts since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn delays_grow_stay_in_bounds_and_jitter() {
        let min = Duration::from_millis(500);
        let max = Duration::from_secs(8);
        let mut rng = StdRng::seed_from_u64(7);
        let mut b = Backoff::new(min, max);
        let delays: Vec<Duration> = (0..12).map(|_| b.next_delay(&mut rng)).collect();
        for d in &delays {
            assert!(*d >= min && *d <= max, "{d:?}");
        }
        // Late delays sit in [max/2, max].
        assert!(delays[8..].iter().all(|d| *d >= max / 2));
        // Jitter: not all late delays are equal.
        assert!(delays[8..].windows(2).any(|w| w[0] != w[1]));
        b.reset();
        assert_eq!(b.next_delay(&mut rng), min);
    }

    #[tokio::test(start_paused = true)]
    async fn sleeping_the_delays_advances_the_paused_clock_within_bounds() {
        let min = Duration::from_secs(1);
        let max = Duration::from_secs(60);
        let mut rng = StdRng::seed_from_u64(1);
        let mut b = Backoff::new(min, max);
        let start = tokio::time::Instant::now();
        let mut expected_floor = Duration::ZERO;
        let mut expected_ceiling = Duration::ZERO;
        for n in 0..10u32 {
            let ceiling = (min * 2u32.pow(n)).min(max);
            expected_floor += (ceiling / 2).max(min);
            expected_ceiling += ceiling;
            tokio::time::sleep(b.next_delay(&mut rng)).await;
        }
        let waited = start.elapsed();
        assert!(
            waited >= expected_floor && waited <= expected_ceiling,
            "{waited:?}"
        );
    }
}
