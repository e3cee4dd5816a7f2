//! gpsd's JSON reports (`TPV` for time-position-velocity, `SKY` for satellites and DOPs) into
//! [`Fix`]es. Pure: one line in, one message out.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::fix::{Fix, FixMode, FixQuality, FixSource};

/// Why a line could not be used.
#[derive(Debug, thiserror::Error)]
pub enum GpsdJsonError {
    /// Not a JSON object of the expected shape.
    #[error("malformed gpsd JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A TPV with a fix mode but no usable latitude/longitude.
    #[error("TPV with mode {0} has no position")]
    NoPosition(u8),
}

/// One decoded line.
#[derive(Debug, Clone, PartialEq)]
pub enum GpsdMessage {
    /// A TPV report: a fix, or `None` when gpsd reports mode 0/1 (no fix).
    Tpv(Option<Fix>),
    /// A SKY report was absorbed (its DOPs and satellite count apply to following fixes).
    Sky,
    /// Any other class (VERSION, DEVICES, WATCH, ...).
    Other(String),
}

#[derive(Debug, Deserialize)]
struct Class {
    class: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Tpv {
    #[serde(default)]
    mode: u8,
    time: Option<String>,
    lat: Option<f64>,
    lon: Option<f64>,
    #[serde(rename = "altMSL")]
    alt_msl: Option<f64>,
    /// Older gpsd (before 3.20) names the MSL altitude `alt`.
    alt: Option<f64>,
    speed: Option<f64>,
    track: Option<f64>,
    status: Option<u8>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Sky {
    hdop: Option<f64>,
    pdop: Option<f64>,
    vdop: Option<f64>,
    u_sat: Option<u32>,
    #[serde(default)]
    satellites: Vec<Satellite>,
}

#[derive(Debug, Deserialize)]
struct Satellite {
    #[serde(default)]
    used: bool,
}

/// Decodes gpsd lines, remembering the latest SKY for the following fixes.
#[derive(Debug, Default)]
pub struct GpsdDecoder {
    hdop: Option<f64>,
    pdop: Option<f64>,
    vdop: Option<f64>,
    sats_used: Option<u8>,
}

impl GpsdDecoder {
    /// A fresh decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes one line (without its newline).
    pub fn push_line(&mut self, line: &str) -> Result<GpsdMessage, GpsdJsonError> {
        let class: Class = serde_json::from_str(line)?;
        match class.class.as_str() {
            "TPV" => {
                let tpv: Tpv = serde_json::from_str(line)?;
                self.tpv(tpv).map(GpsdMessage::Tpv)
            }
            "SKY" => {
                let sky: Sky = serde_json::from_str(line)?;
                self.hdop = sky.hdop.filter(|v| v.is_finite());
                self.pdop = sky.pdop.filter(|v| v.is_finite());
                self.vdop = sky.vdop.filter(|v| v.is_finite());
                let counted = sky.satellites.iter().filter(|s| s.used).count();
                let used = sky.u_sat.or_else(|| {
                    (!sky.satellites.is_empty()).then(|| u32::try_from(counted).unwrap_or(u32::MAX))
                });
                self.sats_used = used.map(|n| u8::try_from(n).unwrap_or(u8::MAX));
                Ok(GpsdMessage::Sky)
            }
            other => Ok(GpsdMessage::Other(other.to_owned())),
        }
    }

    fn tpv(&self, tpv: Tpv) -> Result<Option<Fix>, GpsdJsonError> {
        let mode = match tpv.mode {
            2 => FixMode::TwoD,
            3 => FixMode::ThreeD,
            _ => return Ok(None),
        };
        let (Some(lat), Some(lon)) = (tpv.lat, tpv.lon) else {
            return Err(GpsdJsonError::NoPosition(tpv.mode));
        };
        let valid = lat.is_finite()
            && lon.is_finite()
            && (-90.0..=90.0).contains(&lat)
            && (-180.0..=180.0).contains(&lon);
        if !valid {
            return Err(GpsdJsonError::NoPosition(tpv.mode));
        }
        let time = tpv
            .time
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc));
        let quality = match tpv.status {
            None | Some(1) => FixQuality::Gps,
            Some(2) => FixQuality::Dgps,
            Some(3) => FixQuality::RtkFixed,
            Some(4) => FixQuality::RtkFloat,
            Some(5) | Some(6) => FixQuality::Estimated,
            Some(_) => FixQuality::Unknown,
        };
        let finite = |v: Option<f64>| v.filter(|x| x.is_finite());
        Ok(Some(Fix {
            time,
            lat,
            lon,
            alt_msl_m: finite(tpv.alt_msl.or(tpv.alt)).filter(|_| mode == FixMode::ThreeD),
            speed_mps: finite(tpv.speed),
            course_deg: finite(tpv.track),
            mode,
            quality,
            sats_used: self.sats_used,
            hdop: self.hdop,
            pdop: self.pdop,
            vdop: self.vdop,
            source: FixSource::Gpsd,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tpv_with_sky_becomes_a_fix() {
        let mut d = GpsdDecoder::new();
        let sky = r#"{"class":"SKY","device":"/dev/pts/1","hdop":1.01,"pdop":1.71,"vdop":1.38,"satellites":[{"PRN":1,"used":true},{"PRN":2,"used":false},{"PRN":3,"used":true}]}"#;
        assert_eq!(d.push_line(sky).unwrap(), GpsdMessage::Sky);
        let tpv = r#"{"class":"TPV","device":"/dev/pts/1","mode":3,"time":"2017-01-10T00:09:42.000Z","lat":44.068900167,"lon":-121.314272167,"altMSL":1144.9,"speed":0.021,"status":2}"#;
        let GpsdMessage::Tpv(Some(fix)) = d.push_line(tpv).unwrap() else {
            panic!()
        };
        assert_eq!(fix.alt_msl_m, Some(1144.9));
        assert_eq!(fix.sats_used, Some(2));
        assert_eq!(fix.hdop, Some(1.01));
        assert_eq!(fix.quality, FixQuality::Dgps);
        assert_eq!(fix.time.unwrap().to_rfc3339(), "2017-01-10T00:09:42+00:00");
    }

    #[test]
    fn mode_one_is_no_fix_and_junk_is_an_error() {
        let mut d = GpsdDecoder::new();
        assert_eq!(
            d.push_line(r#"{"class":"TPV","mode":1,"lat":0.0,"lon":0.0}"#)
                .unwrap(),
            GpsdMessage::Tpv(None)
        );
        assert!(d.push_line("{not json").is_err());
        assert!(d.push_line(r#"{"class":"TPV","mode":3}"#).is_err());
        assert!(
            d.push_line(r#"{"class":"TPV","mode":2,"lat":95.0,"lon":1.0}"#)
                .is_err()
        );
        assert_eq!(
            d.push_line(r#"{"class":"VERSION","release":"3.25"}"#)
                .unwrap(),
            GpsdMessage::Other("VERSION".into())
        );
    }
}
