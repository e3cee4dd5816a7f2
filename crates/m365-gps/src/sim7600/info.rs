//! Decoding the SIM7600's GNSS answers: `+CGPS: <on>,<mode>`, `+CGPSINFO: ...` (9 fields) and
//! `+CGNSSINFO: ...` (16 fields), into [`Fix`]es.
//!
//! `+CGPSINFO: ,,,,,,,,` is the modem's "no fix", and is `Ok(None)` here, never 0,0. A reply whose
//! latitude or longitude is present but not `ddmm.mmmmmm` is corrupt (some firmware truncates a
//! field about once in a hundred polls) and is an error, so the caller keeps the previous fix
//! instead of publishing a wrong one.

use chrono::{TimeZone, Utc};

use crate::fields::{self, Axis, FieldError, knots_to_mps};
use crate::fix::{Fix, FixMode, FixQuality, FixSource};

/// Why a reply could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InfoError {
    /// Wrong number of comma-separated fields.
    #[error("{what}: {got} fields, expected {want}")]
    FieldCount {
        /// Which reply.
        what: &'static str,
        /// Fields found.
        got: usize,
        /// Fields expected.
        want: usize,
    },
    /// A field failed strict decoding.
    #[error("{what} field {index}: {source}")]
    Field {
        /// Which reply.
        what: &'static str,
        /// 1-based field index.
        index: usize,
        /// What was wrong.
        source: FieldError,
    },
    /// Position present but date or time missing.
    #[error("{0}: position without date and time")]
    NoTime(&'static str),
}

/// `+CGPS: <on>,<mode>`: whether the GNSS session runs, and its mode (1 standalone, 2 UE-based,
/// 3 UE-assisted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CgpsStatus {
    /// Session running.
    pub on: bool,
    /// Positioning mode.
    pub mode: u8,
}

/// Decodes the payload of `+CGPS:` (`1,1`).
pub fn parse_cgps_status(payload: &str) -> Result<CgpsStatus, InfoError> {
    let f: Vec<&str> = payload.split(',').map(str::trim).collect();
    let [on, mode] = f.as_slice() else {
        return Err(InfoError::FieldCount {
            what: "+CGPS",
            got: f.len(),
            want: 2,
        });
    };
    let num = |i: usize, s: &str| -> Result<u8, InfoError> {
        s.parse().map_err(|_| InfoError::Field {
            what: "+CGPS",
            index: i,
            source: FieldError::Number(s.to_owned()),
        })
    };
    let on = num(1, on)?;
    Ok(CgpsStatus {
        on: on == 1,
        mode: num(2, mode)?,
    })
}

/// `+CGNSSINFO:` decoded: the satellite counts and DOPs come even without a position.
#[derive(Debug, Clone, PartialEq)]
pub struct CgnssInfo {
    /// Fix mode field (2 = 2D, 3 = 3D), when present.
    pub fix_mode: Option<u8>,
    /// GPS satellites used.
    pub sv_gps: Option<u8>,
    /// GLONASS satellites used.
    pub sv_glonass: Option<u8>,
    /// BeiDou satellites used.
    pub sv_beidou: Option<u8>,
    /// Position DOP.
    pub pdop: Option<f64>,
    /// Horizontal DOP.
    pub hdop: Option<f64>,
    /// Vertical DOP.
    pub vdop: Option<f64>,
    /// The fix, when the reply has a position.
    pub fix: Option<Fix>,
}

/// The fields shared by both replies, starting at latitude.
struct Common<'a> {
    what: &'static str,
    f: &'a [&'a str],
    /// Index (0-based) of the latitude field.
    at: usize,
}

impl Common<'_> {
    fn get(&self, k: usize) -> &str {
        self.f.get(self.at + k).copied().unwrap_or("")
    }

    fn wrap<T>(&self, k: usize, r: Result<T, FieldError>) -> Result<T, InfoError> {
        r.map_err(|source| InfoError::Field {
            what: self.what,
            index: self.at + k + 1,
            source,
        })
    }

    /// lat, N/S, lon, E/W, date, UTC, alt, speed (knots), course.
    fn fix(&self, mode: FixMode, quality: FixQuality) -> Result<Option<Fix>, InfoError> {
        let lat = self.wrap(
            0,
            fields::coordinate(self.get(0), self.get(1), Axis::Latitude),
        )?;
        let lon = self.wrap(
            2,
            fields::coordinate(self.get(2), self.get(3), Axis::Longitude),
        )?;
        let (lat, lon) = match (lat, lon) {
            (Some(lat), Some(lon)) => (lat, lon),
            (None, None) => return Ok(None),
            _ => {
                return Err(InfoError::Field {
                    what: self.what,
                    index: self.at + 1,
                    source: FieldError::HalfCoordinate,
                });
            }
        };
        let date = self.wrap(4, fields::ddmmyy(self.get(4)))?;
        let time = self.wrap(5, fields::utc_time(self.get(5)))?;
        let (Some(date), Some(time)) = (date, time) else {
            return Err(InfoError::NoTime(self.what));
        };
        Ok(Some(Fix {
            time: Some(Utc.from_utc_datetime(&date.and_time(time))),
            lat,
            lon,
            alt_msl_m: self.wrap(6, fields::number(self.get(6)))?,
            speed_mps: self.wrap(7, fields::number(self.get(7)))?.map(knots_to_mps),
            course_deg: self.wrap(8, fields::number(self.get(8)))?,
            mode,
            quality,
            sats_used: None,
            hdop: None,
            pdop: None,
            vdop: None,
            source: FixSource::Sim7600,
        }))
    }
}

/// Decodes the payload of `+CGPSINFO:`. `Ok(None)` is "no fix".
pub fn parse_cgpsinfo(payload: &str) -> Result<Option<Fix>, InfoError> {
    let f: Vec<&str> = payload.split(',').map(str::trim).collect();
    if f.len() != 9 {
        return Err(InfoError::FieldCount {
            what: "+CGPSINFO",
            got: f.len(),
            want: 9,
        });
    }
    let c = Common {
        what: "+CGPSINFO",
        f: &f,
        at: 0,
    };
    // CGPSINFO says nothing about the dimension; the modem always reports an altitude with a
    // position, which is what gpsd would call 3D.
    c.fix(FixMode::ThreeD, FixQuality::Unknown)
}

/// Decodes the payload of `+CGNSSINFO:`.
pub fn parse_cgnssinfo(payload: &str) -> Result<CgnssInfo, InfoError> {
    const WHAT: &str = "+CGNSSINFO";
    let f: Vec<&str> = payload.split(',').map(str::trim).collect();
    if f.len() != 16 {
        return Err(InfoError::FieldCount {
            what: WHAT,
            got: f.len(),
            want: 16,
        });
    }
    let small = |i: usize| -> Result<Option<u8>, InfoError> {
        let v = fields::integer(f.get(i).copied().unwrap_or("")).map_err(|source| {
            InfoError::Field {
                what: WHAT,
                index: i + 1,
                source,
            }
        })?;
        Ok(v.map(|n| u8::try_from(n).unwrap_or(u8::MAX)))
    };
    let dop = |i: usize| -> Result<Option<f64>, InfoError> {
        fields::number(f.get(i).copied().unwrap_or("")).map_err(|source| InfoError::Field {
            what: WHAT,
            index: i + 1,
            source,
        })
    };
    let fix_mode = small(0)?;
    let (sv_gps, sv_glonass, sv_beidou) = (small(1)?, small(2)?, small(3)?);
    let (pdop, hdop, vdop) = (dop(13)?, dop(14)?, dop(15)?);
    let mode = if fix_mode == Some(2) {
        FixMode::TwoD
    } else {
        FixMode::ThreeD
    };
    let c = Common {
        what: WHAT,
        f: &f,
        at: 4,
    };
    let fix = c.fix(mode, FixQuality::Gps)?.map(|mut fix| {
        let used = [sv_gps, sv_glonass, sv_beidou]
            .into_iter()
            .flatten()
            .fold(0u8, u8::saturating_add);
        fix.sats_used = Some(used);
        fix.pdop = pdop;
        fix.hdop = hdop;
        fix.vdop = vdop;
        fix
    });
    Ok(CgnssInfo {
        fix_mode,
        sv_gps,
        sv_glonass,
        sv_beidou,
        pdop,
        hdop,
        vdop,
        fix,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_fix_is_none_not_zero() {
        assert_eq!(parse_cgpsinfo(",,,,,,,,"), Ok(None));
        let info = parse_cgnssinfo(",,,,,,,,,,,,,,,").unwrap();
        assert!(info.fix.is_none() && info.fix_mode.is_none());
    }

    #[test]
    fn truncated_latitude_is_an_error() {
        let r = parse_cgpsinfo("48,N,00250.293354,E,241023,131719.70,17.6,0.0,");
        assert!(matches!(r, Err(InfoError::Field { index: 1, .. })), "{r:?}");
        let r = parse_cgpsinfo("4854.642423,N,002,E,241023,131719.70,17.6,0.0,");
        assert!(matches!(r, Err(InfoError::Field { index: 3, .. })), "{r:?}");
    }

    #[test]
    fn wrong_field_counts_are_errors() {
        assert!(parse_cgpsinfo("4854.642423,N").is_err());
        assert!(parse_cgnssinfo("2,05,00,00").is_err());
        assert!(parse_cgps_status("1").is_err());
        assert!(parse_cgps_status("x,1").is_err());
    }

    #[test]
    fn speed_is_converted_from_knots() {
        let fix = parse_cgpsinfo("4319.736021,N,00824.498574,W,150724,162016.0,176.0,10.0,90.5")
            .unwrap()
            .unwrap();
        assert!((fix.speed_mps.unwrap() - 5.144_444).abs() < 1e-5);
        assert_eq!(fix.course_deg, Some(90.5));
    }
}
