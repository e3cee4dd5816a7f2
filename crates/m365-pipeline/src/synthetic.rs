//! A generator of plausible samples: a scooter riding a loop with a draining battery and a GPS
//! fix that comes and goes. Used by the tests, the benchmarks and the load binary until the BLE
//! sampler feeds real readings; deterministic for a given seed.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use m365_gps::{Fix, FixMode, FixQuality, FixSource};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::record::{BatteryReadings, GpsReading, Sample, ScooterReadings};

/// The generator.
#[derive(Debug, Clone)]
pub struct SyntheticScooter {
    scooter_id: String,
    rng: StdRng,
    t: DateTime<Utc>,
    step_ms: i64,
    n: u64,
    odometer_m: f64,
    trip_m: f64,
    remaining_mah: f64,
    lat: f64,
    lon: f64,
    /// Every `gps_gap_every`-th stretch of 20 samples has no fix (a tunnel).
    gps_gap_every: u64,
}

impl SyntheticScooter {
    /// A scooter called `scooter_id`, starting at `start`, one sample every `step`.
    pub fn new(
        scooter_id: &str,
        seed: u64,
        start: DateTime<Utc>,
        step: std::time::Duration,
    ) -> Self {
        SyntheticScooter {
            scooter_id: scooter_id.to_owned(),
            rng: StdRng::seed_from_u64(seed),
            t: start,
            step_ms: i64::try_from(step.as_millis()).unwrap_or(1000).max(1),
            n: 0,
            odometer_m: 1_306_083.0,
            trip_m: 0.0,
            remaining_mah: 7400.0,
            lat: 43.3623,
            lon: -8.4115,
            gps_gap_every: 5,
        }
    }

    /// Samples taken so far.
    pub fn count(&self) -> u64 {
        self.n
    }

    /// The next sample.
    pub fn next_sample(&mut self) -> Sample {
        let dt = self.step_ms as f64 / 1000.0;
        let phase = self.n as f64 / 50.0;
        let speed_kmh = (18.0 + 7.0 * phase.sin() + self.rng.gen_range(-0.5..0.5)).max(0.0);
        let dist = speed_kmh / 3.6 * dt;
        self.odometer_m += dist;
        self.trip_m += dist;
        let current_a = 2.0 + speed_kmh / 4.0 + self.rng.gen_range(-0.2..0.2);
        self.remaining_mah = (self.remaining_mah - current_a * 1000.0 * dt / 3600.0).max(0.0);
        let percent = (self.remaining_mah / 7800.0 * 100.0)
            .round()
            .clamp(0.0, 100.0) as u8;
        let voltage_v = 33.0 + 8.0 * f64::from(percent) / 100.0;
        self.lat += 0.000_01 * phase.cos() * dt;
        self.lon += 0.000_01 * phase.sin() * dt;
        let uptime_s = u32::try_from(self.n * self.step_ms as u64 / 1000).unwrap_or(u32::MAX);
        let in_tunnel = (self.n / 20) % self.gps_gap_every == self.gps_gap_every - 1;
        let gps = (!in_tunnel).then(|| GpsReading {
            fix: Fix {
                time: Some(self.t - ChronoDuration::milliseconds(200)),
                lat: self.lat,
                lon: self.lon,
                alt_msl_m: Some(35.0 + 5.0 * phase.sin()),
                speed_mps: Some(speed_kmh / 3.6),
                course_deg: Some((phase.to_degrees()).rem_euclid(360.0)),
                mode: FixMode::ThreeD,
                quality: FixQuality::Gps,
                sats_used: Some(9),
                hdop: Some(0.9),
                pdop: Some(1.6),
                vdop: Some(1.3),
                source: FixSource::Simulated,
            },
            age_ms: 200,
        });
        let cell = voltage_v / 10.0;
        let sample = Sample {
            scooter_id: self.scooter_id.clone(),
            system_time: self.t,
            scooter: ScooterReadings {
                speed_kmh: Some((speed_kmh * 1000.0).round() / 1000.0),
                avg_speed_kmh: Some(17.5),
                trip_distance_m: Some((self.trip_m / 10.0).floor() as u32 * 10),
                trip_time_s: Some(uptime_s.saturating_sub(3)),
                odometer_m: Some(self.odometer_m as u32),
                uptime_s: Some(uptime_s),
                frame_temp_c: Some(25.0 + (self.n % 30) as f64 / 10.0),
                range_km: Some((f64::from(percent) * 0.3 * 100.0).round() / 100.0),
                error_code: Some(0),
                warning_code: Some(0),
                locked: Some(false),
            },
            battery: BatteryReadings {
                remaining_mah: Some(self.remaining_mah as u32),
                percent: Some(percent),
                voltage_v: Some((voltage_v * 100.0).round() / 100.0),
                current_a: Some((current_a * 100.0).round() / 100.0),
                power_w: None,
                temp1_c: Some(25),
                temp2_c: Some(26),
                cell_voltages_v: self.n.is_multiple_of(10).then(|| {
                    (0..10)
                        .map(|i| ((cell - f64::from(i) * 0.002) * 1000.0).round() / 1000.0)
                        .collect()
                }),
            },
            gps,
            event: None,
        };
        self.n += 1;
        self.t += ChronoDuration::milliseconds(self.step_ms);
        sample
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_moving() {
        let start = DateTime::parse_from_rfc3339("2025-06-01T12:00:00Z")
            .unwrap()
            .to_utc();
        let step = std::time::Duration::from_millis(500);
        let mut a = SyntheticScooter::new("s", 3, start, step);
        let mut b = SyntheticScooter::new("s", 3, start, step);
        let xs: Vec<Sample> = (0..120).map(|_| a.next_sample()).collect();
        let ys: Vec<Sample> = (0..120).map(|_| b.next_sample()).collect();
        assert_eq!(xs, ys);
        assert!(xs[119].scooter.odometer_m > xs[0].scooter.odometer_m);
        assert_eq!(
            xs[1].system_time - xs[0].system_time,
            ChronoDuration::milliseconds(500)
        );
        assert!(xs.iter().any(|s| s.gps.is_none()), "has a GPS gap");
        assert!(xs.iter().any(|s| s.gps.is_some()));
    }
}
