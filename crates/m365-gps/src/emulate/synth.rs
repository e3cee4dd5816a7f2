//! Writes NMEA sentences and SIM7600 replies for a [`RoutePoint`], byte-compatible with what real
//! receivers send (the decoders in this crate read them back in the tests).

use std::fmt::Write as _;

use chrono::Timelike;

use crate::emulate::route::RoutePoint;

/// Which talker the emulated receiver uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Talker {
    /// `$GP...`: GPS-only receivers.
    #[default]
    Gp,
    /// `$GN...`: multi-constellation receivers.
    Gn,
}

impl Talker {
    fn id(self) -> &'static str {
        match self {
            Talker::Gp => "GP",
            Talker::Gn => "GN",
        }
    }
}

/// Satellites, HDOP, PDOP and VDOP the emulated receiver claims.
const SATS: u8 = 8;
const HDOP: f64 = 0.9;
const PDOP: f64 = 1.6;
const VDOP: f64 = 1.3;

const KNOTS_PER_MPS: f64 = 3600.0 / 1852.0;

/// `$<body>*hh\r\n`.
pub fn sentence(body: &str) -> String {
    let sum = body.bytes().fold(0u8, |a, b| a ^ b);
    format!("${body}*{sum:02X}\r\n")
}

/// `ddmm.mmmmm` + hemisphere, with `deg_digits` degree digits and `decimals` minute decimals.
fn ddmm(value: f64, deg_digits: usize, decimals: usize, pos: char, neg: char) -> (String, char) {
    let hemi = if value < 0.0 { neg } else { pos };
    let v = value.abs();
    let mut deg = v.trunc();
    let mut min = (v - deg) * 60.0;
    // Rounding can carry 59.999995 up to 60.00000: move it into the degrees.
    let scale = 10f64.powi(i32::try_from(decimals).unwrap_or(6));
    if (min * scale).round() / scale >= 60.0 {
        deg += 1.0;
        min = 0.0;
    }
    let width = decimals + 3;
    (format!("{deg:0deg_digits$.0}{min:0width$.decimals$}"), hemi)
}

fn hhmmss(p: &RoutePoint) -> String {
    let t = p.time;
    format!(
        "{:02}{:02}{:02}.{:02}",
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond().min(999_999_999) / 10_000_000
    )
}

fn ddmmyy(p: &RoutePoint) -> String {
    p.time.format("%d%m%y").to_string()
}

/// RMC, VTG, GGA and GSA for one epoch (in that order, like u-blox receivers).
pub fn nmea_epoch(p: &RoutePoint, talker: Talker) -> String {
    let t = talker.id();
    let (lat, ns) = ddmm(p.lat, 2, 5, 'N', 'S');
    let (lon, ew) = ddmm(p.lon, 3, 5, 'E', 'W');
    let knots = p.speed_mps * KNOTS_PER_MPS;
    let kmh = p.speed_mps * 3.6;
    let time = hhmmss(p);
    let mut out = String::new();
    out.push_str(&sentence(&format!(
        "{t}RMC,{time},A,{lat},{ns},{lon},{ew},{knots:.3},{:.2},{},,,A",
        p.course_deg,
        ddmmyy(p)
    )));
    out.push_str(&sentence(&format!(
        "{t}VTG,{:.2},T,,M,{knots:.3},N,{kmh:.3},K,A",
        p.course_deg
    )));
    out.push_str(&sentence(&format!(
        "{t}GGA,{time},{lat},{ns},{lon},{ew},1,{SATS:02},{HDOP:.2},{:.1},M,0.0,M,,",
        p.alt_m
    )));
    let mut gsa = format!("{t}GSA,A,3");
    for prn in 1..=12u8 {
        if prn <= SATS {
            let _ = write!(gsa, ",{:02}", prn * 2);
        } else {
            gsa.push(',');
        }
    }
    let _ = write!(gsa, ",{PDOP:.2},{HDOP:.2},{VDOP:.2}");
    out.push_str(&sentence(&gsa));
    out
}

/// A no-fix cycle, byte-identical to what SIM7600 and Quectel modems send without a fix.
pub fn nmea_no_fix_epoch() -> String {
    [
        "$GPGGA,,,,,,0,,,,,,,,*66\r\n",
        "$GPVTG,,T,,M,,N,,K,N*2C\r\n",
        "$GPRMC,,V,,,,,,,,,,N*53\r\n",
        "$GPGSA,A,1,,,,,,,,,,,,,,,*1E\r\n",
    ]
    .concat()
}

/// The fields shared by `+CGPSINFO` and `+CGNSSINFO`: lat,N,lon,E,date,UTC,alt,speed,course.
fn sim7600_position(p: &RoutePoint) -> String {
    let (lat, ns) = ddmm(p.lat, 2, 6, 'N', 'S');
    let (lon, ew) = ddmm(p.lon, 3, 6, 'E', 'W');
    let t = p.time;
    format!(
        "{lat},{ns},{lon},{ew},{},{:02}{:02}{:02}.{},{:.1},{:.1},{:.1}",
        ddmmyy(p),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond().min(999_999_999) / 100_000_000,
        p.alt_m,
        p.speed_mps * KNOTS_PER_MPS,
        p.course_deg
    )
}

/// The payload of `+CGPSINFO:` (`,,,,,,,,` without a fix).
pub fn cgpsinfo_payload(p: Option<&RoutePoint>) -> String {
    match p {
        Some(p) => sim7600_position(p),
        None => ",,,,,,,,".to_owned(),
    }
}

/// The payload of `+CGNSSINFO:` (all empty without a fix).
pub fn cgnssinfo_payload(p: Option<&RoutePoint>) -> String {
    match p {
        Some(p) => format!(
            "3,{:02},{:02},00,{},{PDOP:.1},{HDOP:.1},{VDOP:.1}",
            SATS - 3,
            3,
            sim7600_position(p)
        ),
        None => ",,,,,,,,,,,,,,,".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nmea::decode_all;
    use crate::sim7600::{parse_cgnssinfo, parse_cgpsinfo};

    fn point(lat: f64, lon: f64) -> RoutePoint {
        RoutePoint {
            time: "2026-03-01T12:34:56.700Z".parse().unwrap(),
            lat,
            lon,
            alt_m: 42.5,
            speed_mps: 4.2,
            course_deg: 271.25,
        }
    }

    #[test]
    fn synthesised_nmea_decodes_back() {
        for (lat, lon) in [
            (43.3289, -8.4083),
            (-36.7459, 174.7345),
            (0.0, 0.0),
            (-0.5, -179.99),
        ] {
            let p = point(lat, lon);
            let text = nmea_epoch(&p, Talker::Gn);
            let epochs = decode_all(text.as_bytes());
            assert_eq!(epochs.len(), 1, "{text}");
            let fix = epochs[0].fix.as_ref().expect("fix");
            assert!(
                (fix.lat - lat).abs() < 1e-6 && (fix.lon - lon).abs() < 1e-6,
                "{fix:?}"
            );
            assert!((fix.speed_mps.unwrap() - 4.2).abs() < 1e-3);
            assert_eq!(fix.alt_msl_m, Some(42.5));
            assert_eq!(fix.time, Some("2026-03-01T12:34:56.700Z".parse().unwrap()));
        }
    }

    #[test]
    fn minutes_that_round_to_sixty_carry_into_degrees() {
        let (s, h) = ddmm(10.999_999_999, 2, 5, 'N', 'S');
        assert_eq!((s.as_str(), h), ("1100.00000", 'N'));
    }

    #[test]
    fn no_fix_cycle_has_no_fix() {
        let epochs = decode_all(nmea_no_fix_epoch().as_bytes());
        assert_eq!(epochs.len(), 1);
        assert!(epochs[0].fix.is_none());
    }

    #[test]
    fn synthesised_sim7600_payloads_decode_back() {
        let p = point(-33.5, -70.25);
        let fix = parse_cgpsinfo(&cgpsinfo_payload(Some(&p)))
            .unwrap()
            .unwrap();
        assert!((fix.lat + 33.5).abs() < 1e-6 && (fix.lon + 70.25).abs() < 1e-6);
        let info = parse_cgnssinfo(&cgnssinfo_payload(Some(&p))).unwrap();
        assert_eq!(info.fix.unwrap().sats_used, Some(8));
        assert_eq!(parse_cgpsinfo(&cgpsinfo_payload(None)).unwrap(), None);
        assert!(
            parse_cgnssinfo(&cgnssinfo_payload(None))
                .unwrap()
                .fix
                .is_none()
        );
    }
}
