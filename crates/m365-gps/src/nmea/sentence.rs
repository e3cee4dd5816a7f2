//! Typed decoding of the sentences that carry a fix: RMC, GGA, GNS, GSA, VTG, GLL and ZDA, from
//! any talker (GP, GN, GL, GA, GB, BD, ...).
//!
//! Every field is decoded strictly (see [`FieldError`]); a sentence with a malformed field is
//! rejected as a whole rather than half-used. Fields after the ones we need are ignored, so
//! NMEA 4.10 additions (RMC navigational status, GSA system id) and vendor extras are accepted.

use chrono::{NaiveDate, NaiveTime};

use crate::fields::{self, Axis, FieldError};
use crate::nmea::reader::RawSentence;

/// Why a checksum-valid sentence could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SentenceError {
    /// Fewer fields than the sentence type requires.
    #[error("{kind}: {got} fields, at least {want} required")]
    TooFewFields {
        /// Sentence type.
        kind: &'static str,
        /// Fields present (without the address).
        got: usize,
        /// Fields required.
        want: usize,
    },
    /// A field failed strict decoding.
    #[error("{kind} field {index}: {source}")]
    Field {
        /// Sentence type.
        kind: &'static str,
        /// 1-based field index.
        index: usize,
        /// What was wrong.
        source: FieldError,
    },
    /// A status or mode letter outside the defined set.
    #[error("{kind} field {index}: unexpected {value:?}")]
    Letter {
        /// Sentence type.
        kind: &'static str,
        /// 1-based field index.
        index: usize,
        /// The text found.
        value: String,
    },
}

/// A UTC time field: the raw text (the key that ties the sentences of one epoch together) and
/// its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UtcField {
    /// As sent, e.g. `095255.810`.
    pub raw: String,
    /// Decoded.
    pub time: NaiveTime,
}

/// RMC: recommended minimum data.
#[derive(Debug, Clone, PartialEq)]
pub struct Rmc {
    /// Time of the fix.
    pub utc: Option<UtcField>,
    /// `A` (true) or `V` (false). A `V` RMC is never a fix, whatever else it carries.
    pub valid: bool,
    /// Latitude and longitude, when present.
    pub position: Option<(f64, f64)>,
    /// Speed over ground, knots.
    pub speed_knots: Option<f64>,
    /// Course over ground, degrees true.
    pub course_deg: Option<f64>,
    /// Date (gpsd's century rules).
    pub date: Option<NaiveDate>,
    /// FAA mode indicator (NMEA 2.3+), e.g. `A`, `D`, `R`, `F`, `N`.
    pub faa_mode: Option<char>,
}

/// GGA: fix data with altitude and quality.
#[derive(Debug, Clone, PartialEq)]
pub struct Gga {
    /// Time of the fix.
    pub utc: Option<UtcField>,
    /// Latitude and longitude, when present.
    pub position: Option<(f64, f64)>,
    /// Quality indicator: 0 none, 1 GPS, 2 DGPS, 3 PPS, 4 RTK fixed, 5 RTK float, 6 estimated.
    pub quality: u32,
    /// Satellites used.
    pub sats_used: Option<u32>,
    /// Horizontal dilution of precision.
    pub hdop: Option<f64>,
    /// Altitude above mean sea level, metres.
    pub alt_msl_m: Option<f64>,
}

/// GNS: multi-constellation fix data.
#[derive(Debug, Clone, PartialEq)]
pub struct Gns {
    /// Time of the fix.
    pub utc: Option<UtcField>,
    /// Latitude and longitude, when present.
    pub position: Option<(f64, f64)>,
    /// One mode letter per constellation; all `N` means no fix.
    pub modes: String,
    /// Satellites used.
    pub sats_used: Option<u32>,
    /// Horizontal dilution of precision.
    pub hdop: Option<f64>,
    /// Altitude above mean sea level, metres.
    pub alt_msl_m: Option<f64>,
}

impl Gns {
    /// Whether any constellation reports a fix.
    pub fn has_fix(&self) -> bool {
        self.modes.chars().any(|c| c != 'N')
    }
}

/// GSA: fix dimension and DOPs.
#[derive(Debug, Clone, PartialEq)]
pub struct Gsa {
    /// 1 no fix, 2 2D, 3 3D.
    pub mode: u32,
    /// Satellites listed as used in this sentence.
    pub sats_listed: u32,
    /// Position DOP.
    pub pdop: Option<f64>,
    /// Horizontal DOP.
    pub hdop: Option<f64>,
    /// Vertical DOP.
    pub vdop: Option<f64>,
}

/// VTG: course and speed.
#[derive(Debug, Clone, PartialEq)]
pub struct Vtg {
    /// Course over ground, degrees true.
    pub course_deg: Option<f64>,
    /// Speed over ground, knots.
    pub speed_knots: Option<f64>,
    /// Whether the mode indicator says the data is valid (absent counts as valid).
    pub valid: bool,
}

/// GLL: position and time.
#[derive(Debug, Clone, PartialEq)]
pub struct Gll {
    /// Latitude and longitude, when present.
    pub position: Option<(f64, f64)>,
    /// Time of the position.
    pub utc: Option<UtcField>,
    /// `A` or `V`.
    pub valid: bool,
}

/// ZDA: date with a four-digit year.
#[derive(Debug, Clone, PartialEq)]
pub struct Zda {
    /// Time.
    pub utc: Option<UtcField>,
    /// Date, when all three fields are present and name a real day.
    pub date: Option<NaiveDate>,
}

/// A decoded sentence.
#[derive(Debug, Clone, PartialEq)]
pub enum Sentence {
    /// RMC.
    Rmc(Rmc),
    /// GGA.
    Gga(Gga),
    /// GNS.
    Gns(Gns),
    /// GSA.
    Gsa(Gsa),
    /// VTG.
    Vtg(Vtg),
    /// GLL.
    Gll(Gll),
    /// ZDA.
    Zda(Zda),
    /// Any other type (GSV, TXT, proprietary): valid, but nothing to do with a fix.
    Other,
}

/// Field access with 1-based indices matching the NMEA documentation.
struct Fields<'a> {
    kind: &'static str,
    f: Vec<&'a str>,
}

impl<'a> Fields<'a> {
    fn new(kind: &'static str, raw: &'a RawSentence, want: usize) -> Result<Self, SentenceError> {
        let f: Vec<&str> = raw.fields().collect();
        let got = f.len().saturating_sub(1);
        if got < want {
            return Err(SentenceError::TooFewFields { kind, got, want });
        }
        Ok(Fields { kind, f })
    }

    fn get(&self, i: usize) -> &'a str {
        self.f.get(i).copied().unwrap_or("")
    }

    fn count(&self) -> usize {
        self.f.len().saturating_sub(1)
    }

    fn wrap<T>(&self, i: usize, r: Result<T, FieldError>) -> Result<T, SentenceError> {
        r.map_err(|source| SentenceError::Field {
            kind: self.kind,
            index: i,
            source,
        })
    }

    fn utc(&self, i: usize) -> Result<Option<UtcField>, SentenceError> {
        let raw = self.get(i);
        let time = self.wrap(i, fields::utc_time(raw))?;
        Ok(time.map(|time| UtcField {
            raw: raw.to_owned(),
            time,
        }))
    }

    /// Latitude at `i`, `i+1`; longitude at `i+2`, `i+3`. A position needs both.
    fn position(&self, i: usize) -> Result<Option<(f64, f64)>, SentenceError> {
        let lat = self.wrap(
            i,
            fields::coordinate(self.get(i), self.get(i + 1), Axis::Latitude),
        )?;
        let lon = self.wrap(
            i + 2,
            fields::coordinate(self.get(i + 2), self.get(i + 3), Axis::Longitude),
        )?;
        match (lat, lon) {
            (Some(lat), Some(lon)) => Ok(Some((lat, lon))),
            (None, None) => Ok(None),
            _ => Err(SentenceError::Field {
                kind: self.kind,
                index: i,
                source: FieldError::HalfCoordinate,
            }),
        }
    }

    fn number(&self, i: usize) -> Result<Option<f64>, SentenceError> {
        self.wrap(i, fields::number(self.get(i)))
    }

    fn integer(&self, i: usize) -> Result<Option<u32>, SentenceError> {
        self.wrap(i, fields::integer(self.get(i)))
    }

    fn letter(&self, i: usize, allowed: &str) -> Result<Option<char>, SentenceError> {
        let v = self.get(i);
        let mut chars = v.chars();
        match (chars.next(), chars.next()) {
            (None, _) => Ok(None),
            (Some(c), None) if allowed.contains(c) => Ok(Some(c)),
            _ => Err(SentenceError::Letter {
                kind: self.kind,
                index: i,
                value: v.to_owned(),
            }),
        }
    }
}

/// Decodes a verified sentence by its type (the last three letters of the address).
pub fn decode(raw: &RawSentence) -> Result<Sentence, SentenceError> {
    let address = raw.fields().next().unwrap_or_default();
    if address.starts_with('P') {
        return Ok(Sentence::Other);
    }
    match address.get(2..) {
        Some("RMC") => rmc(raw).map(Sentence::Rmc),
        Some("GGA") => gga(raw).map(Sentence::Gga),
        Some("GNS") => gns(raw).map(Sentence::Gns),
        Some("GSA") => gsa(raw).map(Sentence::Gsa),
        Some("VTG") => vtg(raw).map(Sentence::Vtg),
        Some("GLL") => gll(raw).map(Sentence::Gll),
        Some("ZDA") => zda(raw).map(Sentence::Zda),
        _ => Ok(Sentence::Other),
    }
}

/// FAA mode letters (NMEA 2.3+ RMC/GLL/VTG, NMEA 4.1 GNS).
const FAA: &str = "ADEFMNPRSCUV";

fn rmc(raw: &RawSentence) -> Result<Rmc, SentenceError> {
    let f = Fields::new("RMC", raw, 11)?;
    let valid = match f.letter(2, "AV")? {
        Some(c) => c == 'A',
        None => false,
    };
    Ok(Rmc {
        utc: f.utc(1)?,
        valid,
        position: f.position(3)?,
        speed_knots: f.number(7)?,
        course_deg: f.number(8)?,
        date: f.wrap(9, fields::ddmmyy(f.get(9)))?,
        faa_mode: if f.count() >= 12 {
            f.letter(12, FAA)?
        } else {
            None
        },
    })
}

fn gga(raw: &RawSentence) -> Result<Gga, SentenceError> {
    let f = Fields::new("GGA", raw, 9)?;
    Ok(Gga {
        utc: f.utc(1)?,
        position: f.position(2)?,
        quality: f.integer(6)?.unwrap_or(0),
        sats_used: f.integer(7)?,
        hdop: f.number(8)?,
        alt_msl_m: f.number(9)?,
    })
}

fn gns(raw: &RawSentence) -> Result<Gns, SentenceError> {
    let f = Fields::new("GNS", raw, 9)?;
    let modes = f.get(6);
    if !modes.chars().all(|c| FAA.contains(c)) {
        return Err(SentenceError::Letter {
            kind: "GNS",
            index: 6,
            value: modes.to_owned(),
        });
    }
    Ok(Gns {
        utc: f.utc(1)?,
        position: f.position(2)?,
        modes: modes.to_owned(),
        sats_used: f.integer(7)?,
        hdop: f.number(8)?,
        alt_msl_m: f.number(9)?,
    })
}

fn gsa(raw: &RawSentence) -> Result<Gsa, SentenceError> {
    // 2 mode fields, 12 PRNs and 3 DOPs; NMEA 4.10 adds a system id (18 fields), NMEA 4.11 a
    // signal id after it (19). Receivers with more PRN slots put the DOPs last.
    let f = Fields::new("GSA", raw, 17)?;
    let n = f.count();
    let pdop_index = if n <= 19 { 15 } else { n - 2 };
    let mode = f.integer(2)?.unwrap_or(1);
    let mut sats_listed = 0u32;
    for i in 3..pdop_index {
        if f.integer(i)?.is_some() {
            sats_listed = sats_listed.saturating_add(1);
        }
    }
    Ok(Gsa {
        mode,
        sats_listed,
        pdop: f.number(pdop_index)?,
        hdop: f.number(pdop_index + 1)?,
        vdop: f.number(pdop_index + 2)?,
    })
}

fn vtg(raw: &RawSentence) -> Result<Vtg, SentenceError> {
    let f = Fields::new("VTG", raw, 8)?;
    let mode = if f.count() >= 9 {
        f.letter(9, FAA)?
    } else {
        None
    };
    Ok(Vtg {
        course_deg: f.number(1)?,
        speed_knots: f.number(5)?,
        valid: !matches!(mode, Some('N')),
    })
}

fn gll(raw: &RawSentence) -> Result<Gll, SentenceError> {
    let f = Fields::new("GLL", raw, 6)?;
    Ok(Gll {
        position: f.position(1)?,
        utc: f.utc(5)?,
        valid: f.letter(6, "AV")? == Some('A'),
    })
}

fn zda(raw: &RawSentence) -> Result<Zda, SentenceError> {
    let f = Fields::new("ZDA", raw, 4)?;
    let (d, m, y) = (f.integer(2)?, f.integer(3)?, f.integer(4)?);
    let date = match (d, m, y) {
        (Some(d), Some(m), Some(y)) => {
            let year = i32::try_from(y).ok();
            year.and_then(|y| NaiveDate::from_ymd_opt(y, m, d))
        }
        _ => None,
    };
    Ok(Zda {
        utc: f.utc(1)?,
        date,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(body: &str) -> RawSentence {
        RawSentence {
            line: 1,
            body: body.to_owned(),
        }
    }

    #[test]
    fn rmc_with_nmea41_fields() {
        let s = decode(&raw(
            "GPRMC,191511.98,A,3645.869415,N,03124.643007,E,4.1,132.8,110922,3.6,E,A,V",
        ))
        .unwrap();
        let Sentence::Rmc(r) = s else { panic!("{s:?}") };
        assert!(r.valid);
        assert_eq!(r.utc.unwrap().raw, "191511.98");
        assert_eq!(r.faa_mode, Some('A'));
        assert_eq!(r.speed_knots, Some(4.1));
        assert_eq!(r.date, NaiveDate::from_ymd_opt(2022, 9, 11));
    }

    #[test]
    fn empty_no_fix_sentences_decode() {
        let Sentence::Rmc(r) = decode(&raw("GPRMC,,V,,,,,,,,,,N")).unwrap() else {
            panic!()
        };
        assert!(!r.valid && r.position.is_none() && r.utc.is_none());
        let Sentence::Gga(g) = decode(&raw("GPGGA,,,,,,0,,,,,,,,")).unwrap() else {
            panic!()
        };
        assert_eq!(g.quality, 0);
        assert_eq!(g.alt_msl_m, None);
        let Sentence::Gsa(g) = decode(&raw("GPGSA,A,1,,,,,,,,,,,,,,,")).unwrap() else {
            panic!()
        };
        assert_eq!((g.mode, g.sats_listed, g.pdop), (1, 0, None));
    }

    #[test]
    fn gsa_variants_find_the_dops() {
        let Sentence::Gsa(g) =
            decode(&raw("GNGSA,A,3,13,14,15,17,19,,,,,,,,3.8,1.2,3.6,1")).unwrap()
        else {
            panic!()
        };
        assert_eq!((g.pdop, g.hdop, g.vdop), (Some(3.8), Some(1.2), Some(3.6)));
        assert_eq!(g.sats_listed, 5);
        let Sentence::Gsa(g) =
            decode(&raw("GPGSA,A,3,20,,,,13,31,,04,,,,,02.7,01.4,02.3")).unwrap()
        else {
            panic!()
        };
        assert_eq!((g.pdop, g.hdop, g.vdop), (Some(2.7), Some(1.4), Some(2.3)));
        // NMEA 4.11 with system and signal ids.
        let Sentence::Gsa(g) =
            decode(&raw("GNGSA,A,3,13,12,22,19,08,21,,,,,,,1.05,0.64,0.83,4,1")).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (g.pdop, g.hdop, g.vdop),
            (Some(1.05), Some(0.64), Some(0.83))
        );
        // 24 PRN slots (Navior CH-4701).
        let Sentence::Gsa(g) = decode(&raw(
            "GPGSA,A,3,27,23,13,07,25,,,,,,,,,,,,,,,,,,,,07.9,06.0,05.2",
        ))
        .unwrap() else {
            panic!()
        };
        assert_eq!((g.pdop, g.hdop, g.vdop), (Some(7.9), Some(6.0), Some(5.2)));
        assert_eq!(g.sats_listed, 5);
    }

    #[test]
    fn malformed_fields_reject_the_sentence() {
        for body in [
            "GPRMC,000344.03,A,4808.9992,N,4,02.3",
            "GPRMC,000345.03,X,4808.9993,N,01135.0798,E,000.1,000.0,070419,003.0,E,A",
            "GPRMC,000345.03,A,4808.9993,N,01135.0798,E,fast,000.0,070419,003.0,E,A",
            "GPRMC,000345.03,A,4808.9993,N,01135.0798,E,000.1,000.0,310219,003.0,E,A",
            "GPGGA,000413.00,0000.0000,N,000000.0000,E,0,00,0.0,,M,,M,,",
            "GPGSA,A,1,,,,,,,,,,,,,N",
        ] {
            assert!(decode(&raw(body)).is_err(), "{body}");
        }
    }

    #[test]
    fn unknown_and_proprietary_are_other() {
        assert_eq!(
            decode(&raw("PLCS,REV,PLN012054S07,070312,145743")).unwrap(),
            Sentence::Other
        );
        assert_eq!(decode(&raw("GPGSV,1,1,00")).unwrap(), Sentence::Other);
    }
}
