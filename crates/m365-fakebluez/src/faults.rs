//! Injected link faults of one device, as plain state: what the next connects will answer, until
//! when the device cannot be connected, and until when it does not advertise at all. The D-Bus
//! side consults it; [`crate::DeviceControl`] sets it.
//!
//! By default a device that cannot be reached behaves like one BlueZ cannot hear: a `Connect()`
//! waits for it (and succeeds the moment it can be reached again, or fails after the connect
//! timeout). [`Harshness`] asks for the harsher variants a test may want on top.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use crate::bluez_error::BluezError;

/// Variants of a link fault that are harsher than what BlueZ itself does, for tests that want
/// them on purpose. The default (both off) is BlueZ's behaviour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Harshness {
    /// While the device cannot be reached, `Connect()` fails at once with
    /// `le-connection-abort-by-local` instead of waiting for it.
    pub fail_at_once: bool,
    /// The GATT objects are removed when this fault takes the link down (BlueZ keeps them, its
    /// attribute cache being on by default): writes then fail with `UnknownObject`.
    pub remove_gatt: bool,
}

/// Fault state of one device.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    /// Errors for the next connects, in order, answered at once.
    pub(crate) failing_connects: VecDeque<BluezError>,
    /// Every connect answers `InProgress` until `RemoveDevice` clears it.
    pub(crate) stale_in_progress: bool,
    /// Time a connect takes before it can succeed.
    pub(crate) connect_delay: Duration,
    /// Not connectable until then, though still advertising (a radio fade after a link drop).
    pub(crate) unreachable_until: Option<Instant>,
    /// Out of range (neither advertising nor connectable) from `.0` until `.1`.
    pub(crate) out_of_range: Option<(Instant, Instant)>,
    /// While unreachable, connects fail at once ([`Harshness::fail_at_once`]).
    pub(crate) fail_at_once: bool,
}

impl Faults {
    /// Whether the device is out of range at `now`.
    pub(crate) fn is_out_of_range(&self, now: Instant) -> bool {
        self.out_of_range.is_some_and(|(_, until)| now < until)
    }

    /// Whether the device advertises at `now` (a scan or a pending connect can hear it).
    pub(crate) fn advertising(&self, now: Instant) -> bool {
        !self.is_out_of_range(now)
    }

    /// Whether a connection can be established at `now`.
    pub(crate) fn connectable(&self, now: Instant) -> bool {
        self.advertising(now) && self.unreachable_until.is_none_or(|until| now >= until)
    }

    /// When the device can be connected again, if it cannot be at `now`.
    pub(crate) fn connectable_again(&self, now: Instant) -> Option<Instant> {
        if self.connectable(now) {
            return None;
        }
        let fade = self.unreachable_until.filter(|t| now < *t);
        let away = self
            .out_of_range
            .map(|(_, until)| until)
            .filter(|t| now < *t);
        fade.into_iter().chain(away).max()
    }

    /// What a pending connect meets at `now`: `Some(Ok)` to connect, `Some(Err)` to fail now,
    /// `None` to keep waiting for the device.
    pub(crate) fn connect_outcome(&mut self, now: Instant) -> Option<Result<(), BluezError>> {
        if let Some(err) = self.failing_connects.pop_front() {
            return Some(Err(err));
        }
        if self.connectable(now) {
            return Some(Ok(()));
        }
        self.fail_at_once
            .then(|| Err(BluezError::le_connection_abort_by_local()))
    }

    /// Ends every injected fault (the connect delay is a setting, not a fault, and stays).
    pub(crate) fn clear(&mut self) {
        *self = Faults {
            connect_delay: self.connect_delay,
            ..Faults::default()
        };
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
        assert_eq!(
            faults.connect_outcome(now),
            Some(Err(BluezError::in_progress()))
        );
        assert_eq!(
            faults.connect_outcome(now),
            Some(Err(BluezError::le_connection_abort_by_local()))
        );
        assert_eq!(faults.connect_outcome(now), Some(Ok(())));
    }

    #[test]
    fn an_unreachable_device_is_waited_for_unless_the_fault_is_harsh() {
        let now = Instant::now();
        let later = now + Duration::from_secs(2);
        let mut faults = Faults {
            unreachable_until: Some(now + Duration::from_secs(1)),
            ..Faults::default()
        };
        assert_eq!(faults.connect_outcome(now), None, "waits");
        assert!(faults.advertising(now), "a fade still advertises");
        assert_eq!(
            faults.connectable_again(now),
            Some(now + Duration::from_secs(1))
        );
        assert_eq!(faults.connect_outcome(later), Some(Ok(())));
        assert_eq!(faults.connectable_again(later), None);

        faults.fail_at_once = true;
        faults.unreachable_until = Some(later);
        assert_eq!(
            faults.connect_outcome(now),
            Some(Err(BluezError::le_connection_abort_by_local()))
        );
    }

    #[test]
    fn out_of_range_stops_advertising_until_it_ends() {
        let now = Instant::now();
        let later = now + Duration::from_secs(2);
        let mut faults = Faults {
            out_of_range: Some((now, now + Duration::from_secs(1))),
            unreachable_until: Some(now + Duration::from_millis(500)),
            ..Faults::default()
        };
        assert!(faults.is_out_of_range(now));
        assert!(!faults.advertising(now));
        assert_eq!(
            faults.connectable_again(now),
            Some(now + Duration::from_secs(1)),
            "the later of the two ends"
        );
        assert!(!faults.is_out_of_range(later));
        assert_eq!(faults.connect_outcome(later), Some(Ok(())));
    }

    #[test]
    fn clearing_keeps_the_connect_delay() {
        let now = Instant::now();
        let mut faults = Faults {
            connect_delay: Duration::from_millis(30),
            out_of_range: Some((now, now + Duration::from_secs(60))),
            stale_in_progress: true,
            fail_at_once: true,
            ..Faults::default()
        };
        faults.failing_connects.push_back(BluezError::in_progress());
        faults.clear();
        assert!(faults.connectable(now));
        assert!(!faults.stale_in_progress && !faults.fail_at_once);
        assert!(faults.failing_connects.is_empty());
        assert_eq!(faults.connect_delay, Duration::from_millis(30));
    }
}
