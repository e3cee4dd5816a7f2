//! Combines the sentences of one receiver cycle ("epoch") into at most one [`Fix`], the way gpsd
//! reports it.
//!
//! Sentences that carry a UTC time (RMC, GGA, GNS, GLL) belong to the epoch of that exact time
//! field; VTG and GSA carry none and belong to the epoch in progress. The rules, checked against
//! gpsd's own regression output for real receivers:
//!
//! - An `A` RMC is a fix. A `V` RMC is not, even when it carries coordinates.
//! - Altitude comes only from a GGA/GNS of the same epoch: an altitude is never carried over.
//! - Speed is the RMC's knots × 1852/3600 (the VTG's when the RMC has none).
//! - Mode is gpsd's at the moment the RMC arrives. An `A` RMC is 3D when a GGA/GNS of the same
//!   epoch already gave an altitude; otherwise it keeps the running mode if that is 2D or 3D, and
//!   is 2D if not. The running mode follows GGA (quality 0: no fix; at least 4 satellites and an
//!   altitude: 3D; 3 satellites: 2D) and GSA (1/2/3, unless the same epoch's GGA said more). So a
//!   receiver that sends RMC before GGA reports 2D in its very first epoch, exactly as gpsd does.
//! - Quality from the GGA (2 DGPS, 4 RTK fixed, 5 RTK float, ...) or else the RMC mode letter.
//! - Date from the RMC (or the last RMC/ZDA date); odd dates are reported as sent.
//!
//! An epoch is reported once it has its RMC and, for receivers that send GGA/GNS, that too: no
//! need to wait for the next cycle. Until the first cycle has shown whether the receiver sends
//! GGA at all, epochs are reported when the next one starts (or on [`EpochAssembler::flush`]).

use chrono::{NaiveDate, TimeZone, Utc};

use crate::fields::knots_to_mps;
use crate::fix::{Fix, FixMode, FixQuality, FixSource};
use crate::nmea::sentence::{Gga, Gns, Rmc, Sentence, UtcField, Vtg};

/// The outcome of one receiver epoch: a fix, or the explicit absence of one.
#[derive(Debug, Clone, PartialEq)]
pub struct Epoch {
    /// The epoch's raw UTC field (empty for receivers that send `$GPRMC,,V,...`).
    pub utc_field: String,
    /// Input line of the RMC that defined the epoch, when there was one.
    pub rmc_line: Option<u64>,
    /// The fix, or `None`: no fix in this epoch.
    pub fix: Option<Fix>,
}

#[derive(Debug, Default)]
struct Pending {
    key: String,
    rmc: Option<(Rmc, u64)>,
    gga: Option<Gga>,
    gns: Option<Gns>,
    vtg: Option<Vtg>,
    /// Mode evidence when the RMC arrived.
    mode_at_rmc: Option<FixMode>,
    /// Mode the epoch's own GGA/GNS implied, to let it outrank a weaker GSA.
    gga_mode: Option<FixMode>,
    reported: bool,
}

/// Turns decoded sentences into [`Epoch`]s. Pure state machine: no I/O, no clock.
#[derive(Debug, Default)]
pub struct EpochAssembler {
    current: Option<Pending>,
    mode: Option<FixMode>,
    pdop: Option<f64>,
    hdop_gsa: Option<f64>,
    vdop: Option<f64>,
    last_date: Option<NaiveDate>,
    /// Learned from the first complete cycle: does this receiver send GGA/GNS?
    sends_gga: Option<bool>,
    seen_rmc: bool,
}

impl EpochAssembler {
    /// A fresh assembler (no mode, no date known).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a sentence that started on input line `line`; returns the epochs it completes.
    pub fn push(&mut self, sentence: Sentence, line: u64) -> Vec<Epoch> {
        let mut out = Vec::new();
        match sentence {
            Sentence::Rmc(rmc) => {
                let key = key_of(rmc.utc.as_ref());
                if let Some(date) = rmc.date {
                    self.last_date = Some(date);
                }
                self.seen_rmc = true;
                let running = self.mode;
                let p = self.enter(key, Slot::Rmc, &mut out);
                // An altitude from this epoch's GGA/GNS makes an `A` RMC a 3D fix, as in gpsd.
                let epoch_alt = p
                    .gga
                    .as_ref()
                    .is_some_and(|g| g.quality > 0 && g.alt_msl_m.is_some())
                    || p.gns
                        .as_ref()
                        .is_some_and(|g| g.has_fix() && g.alt_msl_m.is_some());
                let mode_at_rmc = match (rmc.valid, epoch_alt, running) {
                    (false, _, _) => FixMode::NoFix,
                    (true, true, _) => FixMode::ThreeD,
                    (true, false, Some(m @ (FixMode::TwoD | FixMode::ThreeD))) => m,
                    (true, false, _) => FixMode::TwoD,
                };
                p.mode_at_rmc = Some(mode_at_rmc);
                p.rmc = Some((rmc, line));
                self.mode = Some(mode_at_rmc);
            }
            Sentence::Gga(gga) => {
                let key = key_of(gga.utc.as_ref());
                let implied = gga_mode(gga.quality > 0, gga.sats_used, gga.alt_msl_m);
                let p = self.enter(key, Slot::Gga, &mut out);
                p.gga = Some(gga);
                if implied.is_some() {
                    p.gga_mode = implied;
                }
                if implied.is_some() {
                    self.mode = implied;
                }
            }
            Sentence::Gns(gns) => {
                let key = key_of(gns.utc.as_ref());
                let implied = gga_mode(gns.has_fix(), gns.sats_used, gns.alt_msl_m);
                let p = self.enter(key, Slot::Gns, &mut out);
                // GGA is the reference when both come; GNS only fills in.
                let use_gns = p.gga.is_none() && implied.is_some();
                if use_gns {
                    p.gga_mode = implied;
                }
                p.gns = Some(gns);
                if use_gns {
                    self.mode = implied;
                }
            }
            Sentence::Gll(gll) => {
                // Only its time matters here: it opens or continues an epoch.
                let key = key_of(gll.utc.as_ref());
                self.enter(key, Slot::Gll, &mut out);
            }
            Sentence::Vtg(vtg) => {
                if let Some(p) = self.current.as_mut() {
                    p.vtg = Some(vtg);
                }
            }
            Sentence::Gsa(gsa) => {
                let said = match gsa.mode {
                    3 => FixMode::ThreeD,
                    2 => FixMode::TwoD,
                    _ => FixMode::NoFix,
                };
                let gga_said = self.current.as_ref().and_then(|p| p.gga_mode);
                self.mode = Some(match gga_said {
                    Some(g) if rank(g) > rank(said) => g,
                    _ => said,
                });
                // Several GSAs per cycle (one per constellation) repeat the same DOPs.
                self.pdop = gsa.pdop.or(self.pdop);
                self.hdop_gsa = gsa.hdop.or(self.hdop_gsa);
                self.vdop = gsa.vdop.or(self.vdop);
            }
            Sentence::Zda(zda) => {
                if let Some(date) = zda.date {
                    self.last_date = Some(date);
                }
            }
            Sentence::Other => {}
        }
        self.report_if_complete(&mut out);
        out
    }

    /// Reports the epoch in progress (end of input, or the receiver went quiet).
    pub fn flush(&mut self) -> Vec<Epoch> {
        let mut out = Vec::new();
        if let Some(p) = self.current.take() {
            self.finish(p, &mut out);
        }
        out
    }

    /// Makes `key` the current epoch, finishing the previous one if the time changed or if the
    /// epoch already holds a sentence of this type (receivers without a fix repeat empty time
    /// fields every cycle, so a repeated type is the only sign of a new cycle).
    fn enter(&mut self, key: String, slot: Slot, out: &mut Vec<Epoch>) -> &mut Pending {
        let same = self.current.as_ref().is_some_and(|p| {
            let taken = match slot {
                Slot::Rmc => p.rmc.is_some(),
                Slot::Gga => p.gga.is_some(),
                Slot::Gns => p.gns.is_some(),
                Slot::Gll => false,
            };
            p.key == key && !taken
        });
        if !same {
            if let Some(prev) = self.current.take() {
                self.finish(prev, out);
            }
            self.current = Some(Pending {
                key,
                ..Default::default()
            });
        }
        self.current.get_or_insert_with(Pending::default)
    }

    fn report_if_complete(&mut self, out: &mut Vec<Epoch>) {
        let Some(sends_gga) = self.sends_gga else {
            return;
        };
        let (last_date, dops) = (self.last_date, self.dops());
        let Some(p) = self.current.as_mut() else {
            return;
        };
        if p.reported || p.rmc.is_none() {
            return;
        }
        if !sends_gga || p.gga.is_some() || p.gns.is_some() {
            p.reported = true;
            out.push(build(p, last_date, dops));
        }
    }

    fn finish(&mut self, mut p: Pending, out: &mut Vec<Epoch>) {
        if p.rmc.is_some() || p.gga.is_some() || p.gns.is_some() {
            // The first finished cycle tells whether this receiver sends GGA/GNS.
            self.sends_gga
                .get_or_insert(p.gga.is_some() || p.gns.is_some());
        }
        if p.reported {
            return;
        }
        // Receivers without RMC: GGA/GNS epochs are reported on their own.
        let reportable =
            p.rmc.is_some() || (!self.seen_rmc && (p.gga.is_some() || p.gns.is_some()));
        if reportable {
            p.reported = true;
            out.push(build(&p, self.last_date, self.dops()));
        }
    }

    fn dops(&self) -> Dops {
        Dops {
            pdop: self.pdop,
            hdop: self.hdop_gsa,
            vdop: self.vdop,
        }
    }
}

/// Which sentence is entering an epoch.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Rmc,
    Gga,
    Gns,
    Gll,
}

#[derive(Debug, Clone, Copy)]
struct Dops {
    pdop: Option<f64>,
    hdop: Option<f64>,
    vdop: Option<f64>,
}

fn key_of(utc: Option<&UtcField>) -> String {
    utc.map(|u| u.raw.clone()).unwrap_or_default()
}

fn rank(m: FixMode) -> u8 {
    match m {
        FixMode::NoFix => 0,
        FixMode::TwoD => 1,
        FixMode::ThreeD => 2,
    }
}

/// What a GGA/GNS says about the fix dimension (`None`: not enough to say).
fn gga_mode(has_fix: bool, sats: Option<u32>, alt: Option<f64>) -> Option<FixMode> {
    if !has_fix {
        return Some(FixMode::NoFix);
    }
    match sats {
        Some(n) if n >= 4 && alt.is_some() => Some(FixMode::ThreeD),
        Some(n) if n >= 3 => Some(FixMode::TwoD),
        Some(_) => None,
        None if alt.is_some() => Some(FixMode::ThreeD),
        None => Some(FixMode::TwoD),
    }
}

fn quality(gga: Option<&Gga>, faa: Option<char>) -> FixQuality {
    match gga.map(|g| g.quality) {
        Some(1) => return FixQuality::Gps,
        Some(2) => return FixQuality::Dgps,
        Some(3) => return FixQuality::Pps,
        Some(4) => return FixQuality::RtkFixed,
        Some(5) => return FixQuality::RtkFloat,
        Some(6) => return FixQuality::Estimated,
        _ => {}
    }
    match faa {
        Some('A') => FixQuality::Gps,
        Some('D') => FixQuality::Dgps,
        Some('P') => FixQuality::Pps,
        Some('R') => FixQuality::RtkFixed,
        Some('F') => FixQuality::RtkFloat,
        Some('E') => FixQuality::Estimated,
        _ => FixQuality::Unknown,
    }
}

fn build(p: &Pending, last_date: Option<NaiveDate>, dops: Dops) -> Epoch {
    let rmc_line = p.rmc.as_ref().map(|(_, line)| *line);
    let epoch = |fix| Epoch {
        utc_field: p.key.clone(),
        rmc_line,
        fix,
    };
    let gga = p.gga.as_ref();
    let gns = p.gns.as_ref();
    let alt_msl_m = gga
        .and_then(|g| g.alt_msl_m)
        .or(gns.and_then(|g| g.alt_msl_m));
    let sats_used = gga
        .and_then(|g| g.sats_used)
        .or(gns.and_then(|g| g.sats_used))
        .and_then(|n| u8::try_from(n).ok());
    let hdop = gga
        .and_then(|g| g.hdop)
        .or(gns.and_then(|g| g.hdop))
        .or(dops.hdop);

    let (position, utc, date, mode, speed_knots, course, faa) = match &p.rmc {
        Some((rmc, _)) => {
            let Some(position) = rmc.position.filter(|_| rmc.valid) else {
                return epoch(None);
            };
            let vtg = p.vtg.as_ref().filter(|v| v.valid);
            (
                position,
                rmc.utc.as_ref(),
                rmc.date.or(last_date),
                p.mode_at_rmc.unwrap_or(FixMode::TwoD),
                rmc.speed_knots.or(vtg.and_then(|v| v.speed_knots)),
                rmc.course_deg.or(vtg.and_then(|v| v.course_deg)),
                rmc.faa_mode,
            )
        }
        None => {
            // A GGA/GNS-only receiver.
            let fixed = gga.map(|g| g.quality > 0).or(gns.map(Gns::has_fix));
            let position = gga
                .and_then(|g| g.position)
                .or(gns.and_then(|g| g.position));
            let (Some(true), Some(position)) = (fixed, position) else {
                return epoch(None);
            };
            let utc = gga
                .and_then(|g| g.utc.as_ref())
                .or(gns.and_then(|g| g.utc.as_ref()));
            let vtg = p.vtg.as_ref().filter(|v| v.valid);
            let mode = p.gga_mode.unwrap_or(FixMode::TwoD);
            (
                position,
                utc,
                last_date,
                mode,
                vtg.and_then(|v| v.speed_knots),
                vtg.and_then(|v| v.course_deg),
                None,
            )
        }
    };
    let time = match (date, utc) {
        (Some(d), Some(u)) => Some(Utc.from_utc_datetime(&d.and_time(u.time))),
        _ => None,
    };
    epoch(Some(Fix {
        time,
        lat: position.0,
        lon: position.1,
        alt_msl_m,
        speed_mps: speed_knots.map(knots_to_mps),
        course_deg: course,
        mode: if mode == FixMode::NoFix {
            FixMode::TwoD
        } else {
            mode
        },
        quality: quality(gga, faa),
        sats_used,
        hdop,
        pdop: dops.pdop,
        vdop: dops.vdop,
        source: FixSource::Nmea,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulate::synth::sentence;
    use crate::nmea::decode_all;

    fn stream(bodies: &[&str]) -> Vec<u8> {
        bodies
            .iter()
            .map(|b| sentence(b))
            .collect::<String>()
            .into_bytes()
    }

    #[test]
    fn v_rmc_with_coordinates_is_not_a_fix() {
        let epochs = decode_all(&stream(&[
            "GPGGA,095257.809,2712.6404,S,15303.1201,E,0,00,00.0,4.0,M,42.2,M,,",
            "GPRMC,095257.809,V,2712.6404,S,15303.1201,E,0.00,0.00,080407,,,A",
        ]));
        assert_eq!(epochs.len(), 1);
        assert_eq!(epochs[0].fix, None);
    }

    #[test]
    fn altitude_is_never_carried_over() {
        let epochs = decode_all(&stream(&[
            "GPGGA,120000.00,4807.0380,N,01131.0000,E,1,08,0.9,545.4,M,46.9,M,,",
            "GPRMC,120000.00,A,4807.0380,N,01131.0000,E,1.0,90.0,010126,,,A",
            // Next epoch: RMC only, its GGA was lost.
            "GPRMC,120001.00,A,4807.0390,N,01131.0000,E,1.0,90.0,010126,,,A",
            "GPGGA,120002.00,4807.0400,N,01131.0000,E,1,08,0.9,546.0,M,46.9,M,,",
            "GPRMC,120002.00,A,4807.0400,N,01131.0000,E,1.0,90.0,010126,,,A",
        ]));
        let alts: Vec<_> = epochs
            .iter()
            .map(|e| e.fix.as_ref().unwrap().alt_msl_m)
            .collect();
        assert_eq!(alts, [Some(545.4), None, Some(546.0)]);
        // The running mode keeps 3D for the epoch without GGA, as gpsd does.
        assert_eq!(epochs[1].fix.as_ref().unwrap().mode, FixMode::ThreeD);
    }

    #[test]
    fn rmc_before_any_gga_is_2d_like_gpsd() {
        let epochs = decode_all(&stream(&[
            "GNRMC,000941.00,A,4404.13387,N,12118.85628,W,0.029,,100117,,,A",
            "GNGGA,000941.00,4404.13387,N,12118.85628,W,1,12,1.01,1144.8,M,-21.4,M,,",
            "GNGSA,A,3,23,09,16,07,26,03,27,22,,,,,1.71,1.01,1.38",
            "GNRMC,000942.00,A,4404.13401,N,12118.85633,W,0.041,,100117,,,A",
            "GNGGA,000942.00,4404.13401,N,12118.85633,W,1,12,1.01,1144.9,M,-21.4,M,,",
        ]));
        let modes: Vec<_> = epochs
            .iter()
            .map(|e| e.fix.as_ref().unwrap().mode)
            .collect();
        assert_eq!(modes, [FixMode::TwoD, FixMode::ThreeD]);
        assert_eq!(epochs[0].fix.as_ref().unwrap().alt_msl_m, Some(1144.8));
        assert_eq!(epochs[1].fix.as_ref().unwrap().pdop, Some(1.71));
    }

    #[test]
    fn gga_only_receivers_report_fixes_without_a_date() {
        let epochs = decode_all(&stream(&[
            "GPGGA,101010.00,5230.0000,N,01324.0000,E,1,05,1.5,34.0,M,39.0,M,,",
            "GPGGA,101011.00,,,,,0,00,,,M,,M,,",
        ]));
        assert_eq!(epochs.len(), 2);
        let fix = epochs[0].fix.as_ref().unwrap();
        assert_eq!((fix.lat, fix.lon), (52.5, 13.4));
        assert_eq!(fix.time, None, "no RMC or ZDA: no date");
        assert_eq!(fix.mode, FixMode::ThreeD);
        assert_eq!(epochs[1].fix, None);
    }

    #[test]
    fn epochs_are_reported_without_waiting_once_the_cycle_is_known() {
        let mut a = EpochAssembler::new();
        let mut d = crate::nmea::NmeaDecoder::new();
        let first = stream(&[
            "GPGGA,120000.00,4807.0380,N,01131.0000,E,1,08,0.9,545.4,M,46.9,M,,",
            "GPRMC,120000.00,A,4807.0380,N,01131.0000,E,1.0,90.0,010126,,,A",
        ]);
        // First cycle: reported only when the next one starts.
        assert!(d.push(&first).is_empty());
        let second = stream(&[
            "GPGGA,120001.00,4807.0390,N,01131.0000,E,1,08,0.9,545.5,M,46.9,M,,",
            "GPRMC,120001.00,A,4807.0390,N,01131.0000,E,1.0,90.0,010126,,,A",
        ]);
        // The GGA of the second cycle closes the first; its RMC completes the second at once.
        let out = d.push(&second);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].utc_field, "120001.00");
        assert!(a.flush().is_empty());
    }
}
