//! Strict decoding of the text fields NMEA receivers and the SIM7600 share: `ddmm.mmmm`
//! coordinates, `hhmmss.ss` times and `ddmmyy` dates.
//!
//! Both sources print coordinates the same way, and both occasionally print them corrupted (a
//! SIM7600 firmware truncates `4854.642423` to `48`). One strict parser keeps the rules in one
//! place: whatever does not look exactly like a coordinate is an error, never a guess.

use chrono::{NaiveDate, NaiveTime};

/// Why a field was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    /// A coordinate that is not `d..dmm.m..` with the right number of degree digits.
    #[error("malformed coordinate {0:?}")]
    Coordinate(String),
    /// A hemisphere letter other than N/S (latitude) or E/W (longitude).
    #[error("malformed hemisphere {0:?}")]
    Hemisphere(String),
    /// Only one of the value and its hemisphere letter is present.
    #[error("coordinate and hemisphere must both be present or both be empty")]
    HalfCoordinate,
    /// A time that is not `hhmmss` with an optional fraction.
    #[error("malformed UTC time {0:?}")]
    Time(String),
    /// A date that is not `ddmmyy`, or names no real day.
    #[error("malformed date {0:?}")]
    Date(String),
    /// A number that does not parse.
    #[error("malformed number {0:?}")]
    Number(String),
}

/// Which axis a coordinate belongs to: it fixes the number of degree digits and the letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Axis {
    /// `ddmm.mmmm`, `N`/`S`.
    Latitude,
    /// `dddmm.mmmm`, `E`/`W`.
    Longitude,
}

impl Axis {
    fn degree_digits(self) -> usize {
        match self {
            Axis::Latitude => 2,
            Axis::Longitude => 3,
        }
    }

    fn limit(self) -> f64 {
        match self {
            Axis::Latitude => 90.0,
            Axis::Longitude => 180.0,
        }
    }

    fn sign(self, hemisphere: &str) -> Option<f64> {
        match (self, hemisphere) {
            (Axis::Latitude, "N") | (Axis::Longitude, "E") => Some(1.0),
            (Axis::Latitude, "S") | (Axis::Longitude, "W") => Some(-1.0),
            _ => None,
        }
    }
}

/// Decodes one coordinate: `value` like `4404.13387` (latitude) or `12118.85628` (longitude) and
/// its hemisphere letter. Both empty is `Ok(None)` (the receiver has no position).
///
/// The value must have exactly two (latitude) or three (longitude) degree digits, two minute
/// digits, a decimal point and at least one decimal: that is what every receiver and the SIM7600
/// send, and it is what rejects truncated fields such as `48`.
pub(crate) fn coordinate(
    value: &str,
    hemisphere: &str,
    axis: Axis,
) -> Result<Option<f64>, FieldError> {
    match (value.is_empty(), hemisphere.is_empty()) {
        (true, true) => return Ok(None),
        (false, false) => {}
        _ => return Err(FieldError::HalfCoordinate),
    }
    let sign = axis
        .sign(hemisphere)
        .ok_or_else(|| FieldError::Hemisphere(hemisphere.to_owned()))?;
    let bad = || FieldError::Coordinate(value.to_owned());
    let (int_part, frac_part) = value.split_once('.').ok_or_else(bad)?;
    let deg_digits = axis.degree_digits();
    if int_part.len() != deg_digits + 2
        || !int_part.bytes().all(|b| b.is_ascii_digit())
        || frac_part.is_empty()
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let degrees: f64 = int_part
        .get(..deg_digits)
        .and_then(|d| d.parse().ok())
        .ok_or_else(bad)?;
    let minutes: f64 = value
        .get(deg_digits..)
        .and_then(|m| m.parse().ok())
        .ok_or_else(bad)?;
    if minutes >= 60.0 {
        return Err(bad());
    }
    let decimal = degrees + minutes / 60.0;
    if decimal > axis.limit() {
        return Err(bad());
    }
    Ok(Some(sign * decimal))
}

/// Decodes `hhmmss` with an optional `.f..` fraction (up to nanoseconds). Empty is `Ok(None)`.
pub(crate) fn utc_time(field: &str) -> Result<Option<NaiveTime>, FieldError> {
    if field.is_empty() {
        return Ok(None);
    }
    let bad = || FieldError::Time(field.to_owned());
    let (whole, frac) = match field.split_once('.') {
        Some((w, f)) => (w, f),
        None => (field, ""),
    };
    if whole.len() != 6
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || frac.len() > 9
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let two = |i: usize| -> Option<u32> { whole.get(i..i + 2).and_then(|s| s.parse().ok()) };
    let (h, m, s) = (
        two(0).ok_or_else(bad)?,
        two(2).ok_or_else(bad)?,
        two(4).ok_or_else(bad)?,
    );
    let nanos = if frac.is_empty() {
        0
    } else {
        let digits: u32 = frac.parse().map_err(|_| bad())?;
        // frac.len() is 1..=9, so the scale is at most 10^8 and the product fits in u32.
        let scale = 10u32.pow(9 - u32::try_from(frac.len()).map_err(|_| bad())?);
        digits.checked_mul(scale).ok_or_else(bad)?
    };
    NaiveTime::from_hms_nano_opt(h, m, s, nanos)
        .map(Some)
        .ok_or_else(bad)
}

/// Decodes `ddmmyy`. Empty is `Ok(None)`.
///
/// The century follows gpsd: years are 20yy, except that 2080 and later wrap to 19yy, so the
/// week-rollover date `220899` some receivers send after a cold boot reads as 1999-08-22, as gpsd
/// reports it. A day that does not exist (31 February) is an error.
pub(crate) fn ddmmyy(field: &str) -> Result<Option<NaiveDate>, FieldError> {
    if field.is_empty() {
        return Ok(None);
    }
    let bad = || FieldError::Date(field.to_owned());
    if field.len() != 6 || !field.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let two = |i: usize| -> Option<u32> { field.get(i..i + 2).and_then(|s| s.parse().ok()) };
    let (d, m, y) = (
        two(0).ok_or_else(bad)?,
        two(2).ok_or_else(bad)?,
        two(4).ok_or_else(bad)?,
    );
    let mut year = 2000 + i32::try_from(y).map_err(|_| bad())?;
    if year >= 2080 {
        year -= 100;
    }
    NaiveDate::from_ymd_opt(year, m, d)
        .map(Some)
        .ok_or_else(bad)
}

/// Decodes an optional decimal number. Empty is `Ok(None)`; anything but a finite number is an
/// error.
pub(crate) fn number(field: &str) -> Result<Option<f64>, FieldError> {
    if field.is_empty() {
        return Ok(None);
    }
    match field.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(Some(v)),
        _ => Err(FieldError::Number(field.to_owned())),
    }
}

/// Decodes an optional unsigned integer (satellite counts, quality indicators).
pub(crate) fn integer(field: &str) -> Result<Option<u32>, FieldError> {
    if field.is_empty() {
        return Ok(None);
    }
    field
        .parse::<u32>()
        .map(Some)
        .map_err(|_| FieldError::Number(field.to_owned()))
}

/// Knots to metres per second, exactly as gpsd converts RMC and VTG speeds.
pub(crate) fn knots_to_mps(knots: f64) -> f64 {
    knots * 1852.0 / 3600.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinates_decode_with_sign() {
        let lat = coordinate("2712.6404", "S", Axis::Latitude)
            .unwrap()
            .unwrap();
        assert!((lat - -27.210_673_333).abs() < 1e-8, "{lat}");
        let lon = coordinate("12118.85628", "W", Axis::Longitude)
            .unwrap()
            .unwrap();
        assert!((lon - -121.314_271_333).abs() < 1e-8, "{lon}");
        assert_eq!(coordinate("", "", Axis::Latitude), Ok(None));
    }

    #[test]
    fn truncated_or_odd_coordinates_are_rejected() {
        for (v, h, axis) in [
            ("48", "N", Axis::Latitude),
            ("4854", "N", Axis::Latitude),
            ("485.642423", "N", Axis::Latitude),
            ("4854.", "N", Axis::Latitude),
            ("4860.0000", "N", Axis::Latitude),
            ("9100.0000", "N", Axis::Latitude),
            ("00250.293354", "N", Axis::Longitude),
            ("0025a.293354", "E", Axis::Longitude),
            ("4854.642423", "", Axis::Latitude),
            ("-854.642423", "N", Axis::Latitude),
        ] {
            assert!(coordinate(v, h, axis).is_err(), "{v} {h} accepted");
        }
    }

    #[test]
    fn times_keep_their_fraction() {
        let t = utc_time("095255.810").unwrap().unwrap();
        assert_eq!(t.to_string(), "09:52:55.810");
        let t = utc_time("131719.20").unwrap().unwrap();
        assert_eq!(t.to_string(), "13:17:19.200");
        assert_eq!(utc_time("").unwrap(), None);
        for bad in ["9525", "256000", "095260", "0952x5", "095255.1234567890"] {
            assert!(utc_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dates_follow_gpsd_century_rules() {
        assert_eq!(
            ddmmyy("070419").unwrap(),
            NaiveDate::from_ymd_opt(2019, 4, 7)
        );
        assert_eq!(
            ddmmyy("220899").unwrap(),
            NaiveDate::from_ymd_opt(1999, 8, 22)
        );
        assert_eq!(
            ddmmyy("161279").unwrap(),
            NaiveDate::from_ymd_opt(2079, 12, 16)
        );
        for bad in ["310219", "001220", "011320", "0101", "ab0120"] {
            assert!(ddmmyy(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn knots_convert_like_gpsd() {
        assert!((knots_to_mps(1.93) - 0.992_877_8).abs() < 1e-6);
    }
}
