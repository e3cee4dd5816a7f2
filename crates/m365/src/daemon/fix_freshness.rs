//! When a GPS fix stops being a position: a fix older than `[gps] max_age` is no fix at all, in
//! every encoding. With the receiver unplugged or in a tunnel the source keeps its last fix; sent
//! with new timestamps it would show a parked scooter while the wheel says 20 km/h. Losing and
//! regaining a usable fix is logged once each.

use std::time::Duration;

use m365_gps::Fix;

/// What happened to the usable fix at one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// As before.
    None,
    /// The first samples have no fix (a receiver takes a while after power-up).
    NotYet,
    /// The first usable fix.
    Acquired,
    /// The fix went stale (`Some(age)`) or the source has none.
    Lost(Option<Duration>),
    /// A usable fix again.
    Back,
}

/// Filters the source's latest fix by age and notices when that changes.
#[derive(Debug, Clone)]
pub struct FixFreshness {
    max_age: Duration,
    /// Whether the previous sample had a usable fix (`None` before the first sample).
    usable: Option<bool>,
    /// Whether any sample had one yet.
    ever: bool,
}

impl FixFreshness {
    /// Fixes older than `max_age` are no fix.
    pub fn new(max_age: Duration) -> FixFreshness {
        FixFreshness {
            max_age,
            usable: None,
            ever: false,
        }
    }

    /// The fix a sample may carry, given the source's latest fix and its age; logs a change.
    pub fn take(&mut self, latest: Option<(Fix, Duration)>) -> Option<(Fix, Duration)> {
        let age = latest.as_ref().map(|(_, age)| *age);
        let usable = latest.filter(|(_, age)| *age <= self.max_age);
        match self.note(usable.is_some(), age) {
            Change::Lost(Some(age)) => tracing::warn!(
                ?age,
                max_age = ?self.max_age,
                "GPS fix lost: the last one is too old; records carry no position until it is back"
            ),
            Change::Lost(None) => tracing::warn!("no GPS fix: records carry no position"),
            Change::NotYet => tracing::info!("no GPS fix yet: records carry no position until one"),
            Change::Acquired => tracing::info!("GPS fix acquired"),
            Change::Back => tracing::info!("GPS fix back"),
            Change::None => {}
        }
        usable
    }

    /// Records whether this sample has a usable fix; the change since the previous sample.
    fn note(&mut self, usable: bool, age: Option<Duration>) -> Change {
        let before = self.usable.replace(usable);
        let ever = self.ever;
        self.ever |= usable;
        match (before, usable) {
            (None, false) => Change::NotYet,
            (_, true) if !ever => Change::Acquired,
            (Some(true), true) | (Some(false), false) => Change::None,
            (Some(true), false) => Change::Lost(age),
            (None | Some(false), true) => Change::Back,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use m365_gps::{FixMode, FixQuality, FixSource};

    fn fix() -> Fix {
        Fix {
            time: None,
            lat: 43.3,
            lon: -8.4,
            alt_msl_m: None,
            speed_mps: Some(5.0),
            course_deg: None,
            mode: FixMode::TwoD,
            quality: FixQuality::Gps,
            sats_used: Some(7),
            hdop: None,
            pdop: None,
            vdop: None,
            source: FixSource::Nmea,
        }
    }

    #[test]
    fn a_stale_fix_is_no_fix_and_losing_and_regaining_it_is_noticed_once_each() {
        let secs = Duration::from_secs;
        let mut f = FixFreshness::new(secs(5));
        assert!(f.take(Some((fix(), secs(1)))).is_some());
        assert_eq!(f.usable, Some(true));
        assert!(f.take(Some((fix(), secs(5)))).is_some(), "at the limit");
        assert_eq!(f.note(true, Some(secs(5))), Change::None);

        let mut f = FixFreshness::new(secs(5));
        assert_eq!(f.note(true, Some(secs(1))), Change::Acquired);
        assert_eq!(f.note(false, Some(secs(6))), Change::Lost(Some(secs(6))));
        assert_eq!(f.note(false, Some(secs(7))), Change::None, "said once");
        assert_eq!(f.note(true, Some(secs(0))), Change::Back);
        assert_eq!(f.note(true, Some(secs(0))), Change::None);
        assert_eq!(f.note(false, None), Change::Lost(None));
    }

    #[test]
    fn the_filter_drops_what_is_older_than_max_age() {
        let mut f = FixFreshness::new(Duration::from_secs(5));
        assert!(
            f.take(Some((fix(), Duration::from_millis(5_001))))
                .is_none()
        );
        assert!(f.take(None).is_none());
        assert!(f.take(Some((fix(), Duration::from_millis(200)))).is_some());
    }

    #[test]
    fn starting_without_a_fix_is_not_a_loss() {
        let mut f = FixFreshness::new(Duration::from_secs(5));
        assert_eq!(f.note(false, None), Change::NotYet);
        assert_eq!(f.note(false, None), Change::None);
        assert_eq!(f.note(true, None), Change::Acquired);
        assert_eq!(f.note(false, None), Change::Lost(None));
        assert_eq!(f.note(true, None), Change::Back);
    }
}
