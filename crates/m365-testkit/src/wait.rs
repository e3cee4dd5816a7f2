//! Waiting for a condition with a deadline: tests wait for the state they need, never for a
//! fixed time that is either too short on a loaded machine or wasted on an idle one.

use std::time::Duration;

/// How often [`until`] looks at its condition.
pub const POLL: Duration = Duration::from_millis(10);

/// Checks `condition` every [`POLL`] until it holds or `timeout` passed; returns the last result.
/// The deadline follows tokio's clock, so it also works with a paused clock.
pub async fn until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return condition();
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn returns_as_soon_as_the_condition_holds_and_gives_up_at_the_deadline() {
        let start = tokio::time::Instant::now();
        let mut calls = 0;
        assert!(
            until(Duration::from_secs(5), || {
                calls += 1;
                calls == 3
            })
            .await
        );
        assert_eq!(start.elapsed(), 2 * POLL);

        let start = tokio::time::Instant::now();
        assert!(!until(Duration::from_secs(1), || false).await);
        assert!(start.elapsed() >= Duration::from_secs(1));
        assert!(start.elapsed() < Duration::from_secs(1) + 2 * POLL);
    }
}
