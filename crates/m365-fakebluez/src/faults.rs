//! Injected link faults of one device, as plain state: what the next connects will answer and
//! until when the device is unreachable. The D-Bus side consults it; [`crate::DeviceControl`]
//! sets it.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use crate::bluez_error::BluezError;

/// Fault state of one device.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    /// Errors for the next connects, in order.
    pub(crate) failing_connects: VecDeque<BluezError>,
    /// Every connect answers `InProgress` until `RemoveDevice` clears it.
    pub(crate) stale_in_progress: bool,
    /// Time a connect takes before it succeeds or fails.
    pub(crate) connect_delay: Duration,
    /// Connects fail until then (after an injected link drop).
    pub(crate) unreachable_until: Option<Instant>,
    /// Out of range (not advertising, connects fail) from `.0` until `.1`.
    pub(crate) out_of_range: Option<(Instant, Instant)>,
}

impl Faults {
    /// Whether the device is out of range at `now`.
    pub(crate) fn is_out_of_range(&self, now: Instant) -> bool {
        self.out_of_range.is_some_and(|(_, until)| now < until)
    }

    /// When the current out-of-range period began, if the device is out of range at `now`.
    pub(crate) fn out_of_range_since(&self, now: Instant) -> Option<Instant> {
        self.out_of_range
            .filter(|(_, until)| now < *until)
            .map(|(since, _)| since)
    }

    /// What a connect completing at `now` answers: an injected error first, then
    /// unreachability, else success.
    pub(crate) fn connect_outcome(&mut self, now: Instant) -> Result<(), BluezError> {
        if let Some(err) = self.failing_connects.pop_front() {
            return Err(err);
        }
        let unreachable = self.unreachable_until.is_some_and(|until| now < until);
        if unreachable || self.is_out_of_range(now) {
            return Err(BluezError::le_connection_abort_by_local());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injected_errors_come_first_and_in_order() {
        let now = Instant::now();
        let mut faults = Faults::default();
        faults.failing_connects.push_back(BluezError::in_progress());
        faults
            .failing_connects
            .push_back(BluezError::le_connection_abort_by_local());
        assert_eq!(faults.connect_outcome(now), Err(BluezError::in_progress()));
        assert_eq!(
            faults.connect_outcome(now),
            Err(BluezError::le_connection_abort_by_local())
        );
        assert_eq!(faults.connect_outcome(now), Ok(()));
    }

    #[test]
    fn unreachable_periods_end() {
        let now = Instant::now();
        let later = now + Duration::from_secs(2);
        let mut faults = Faults {
            unreachable_until: Some(now + Duration::from_secs(1)),
            ..Faults::default()
        };
        assert!(faults.connect_outcome(now).is_err());
        assert_eq!(faults.connect_outcome(later), Ok(()));

        faults.out_of_range = Some((now, now + Duration::from_secs(1)));
        assert!(faults.is_out_of_range(now));
        assert_eq!(faults.out_of_range_since(now), Some(now));
        assert!(faults.connect_outcome(now).is_err());
        assert!(!faults.is_out_of_range(later));
        assert_eq!(faults.out_of_range_since(later), None);
        assert_eq!(faults.connect_outcome(later), Ok(()));
    }
}
