//! Mobile data per day: what one scooter sends over MQTT in a typical day (1 h of riding, 23 h
//! parked and locked) at a fixed 1 s interval against adaptive sampling, per encoding, with the
//! real encoders and the daemon's own event detector and adaptive decisions. Prints the tables
//! quoted in docs/benchmarks.md ("Mobile data per day").
//!
//! `cargo run -p m365 --example data_per_day`
// An example with fixed, known-good inputs: a failing `unwrap`/`expect` is a bug in it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use m365::daemon::adaptive::{Adaptive, AdaptiveConfig};
use m365::daemon::ride_events::{EventConfig, RideEvents};
use m365_gps::chrono::{DateTime, Duration as ChronoDuration, TimeZone, Utc};
use m365_gps::{Fix, FixMode, FixQuality, FixSource};
use m365_pipeline::{
    BatteryReadings, Encoding, EventKind, GpsReading, Record, Sample, ScooterReadings,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const DAY_S: u64 = 86_400;
/// Riding from 0 s; the last 90 s of this stretch the scooter stands, then it is locked.
const RIDE_S: u64 = 3_600;
const ID: &str = "aabbccddeeff";
/// The daemon's default topics, `{id}` replaced by a 12-digit scooter id.
const TELEMETRY_TOPIC: &str = "m365/aabbccddeeff/telemetry";
const EVENTS_TOPIC: &str = "m365/aabbccddeeff/events";
const STATUS_TOPIC: &str = "m365/aabbccddeeff/status";
/// `[mqtt] keep_alive` default, and the pipeline's status period.
const KEEP_ALIVE_S: u64 = 30;
const STATUS_EVERY_S: u64 = 60;
/// Compact batches at most this many records (the default `batch`).
const COMPACT_BATCH: usize = 50;
/// Estimated per-message cost below MQTT, each way: TLS 1.3 record (5 header + 16 tag + 1 type)
/// and TCP/IPv4 headers with timestamps (20 + 32); the ACKs ride on the answers.
const BELOW_MQTT_PER_PACKET: u64 = 22 + 52;
const PACK_MAH: f64 = 12_400.0;

/// One simulated second of the ride, precomputed (the ride integrates speed into distance).
#[derive(Clone, Copy)]
struct RideSecond {
    speed_kmh: f64,
    current_a: f64,
    odometer_m: f64,
    riding_s: u32,
    mah_used: f64,
    lat: f64,
    lon: f64,
    course: f64,
}

/// The day: a commute, then the scooter parked and locked at the destination.
struct Day {
    start: DateTime<Utc>,
    ride: Vec<RideSecond>,
    odometer0: f64,
    percent0: f64,
}

impl Day {
    fn new(seed: u64) -> Day {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut ride = Vec::with_capacity(RIDE_S as usize);
        let (mut speed, mut odo, mut riding, mut mah) = (0.0_f64, 1_306_083.0, 0u32, 0.0);
        let (mut lat, mut lon, mut course) = (43.3623_f64, -8.4115_f64, 40.0_f64);
        let mut target = 22.0;
        for t in 0..RIDE_S {
            // Standing 30 s at the start, a 25 s traffic light every 4 minutes, standing for
            // the last 90 s before the lock.
            let stopped = t < 30 || t % 240 >= 215 || t >= RIDE_S - 90;
            if t % 20 == 0 {
                target = rng.gen_range(17.0..25.5);
            }
            let want = if stopped { 0.0 } else { target };
            let before = speed;
            speed = if want > speed {
                (speed + 1.6).min(want)
            } else {
                (speed - 3.5).max(want)
            };
            if speed > 0.0 {
                speed = (speed + rng.gen_range(-0.3..0.3)).max(0.5);
            }
            let accel = speed - before;
            let current_a = if speed == 0.0 {
                rng.gen_range(0.15..0.35)
            } else if accel < -1.0 {
                // Regenerative braking.
                rng.gen_range(-2.5..-1.0)
            } else {
                1.2 + 0.24 * speed + 1.5 * accel.max(0.0) + rng.gen_range(-0.3..0.3)
            };
            odo += speed / 3.6;
            if speed > 0.0 {
                riding += 1;
            }
            mah += current_a * 1000.0 / 3600.0;
            if t % 60 == 0 {
                course = (course + rng.gen_range(-70.0..70.0)).rem_euclid(360.0);
            }
            let step = speed / 3.6;
            lat += step * course.to_radians().cos() / 111_195.0;
            lon += step * course.to_radians().sin() / (111_195.0 * lat.to_radians().cos());
            ride.push(RideSecond {
                speed_kmh: speed,
                current_a,
                odometer_m: odo,
                riding_s: riding,
                mah_used: mah,
                lat,
                lon,
                course,
            });
        }
        Day {
            start: Utc.with_ymd_and_hms(2025, 6, 2, 7, 30, 0).unwrap(),
            ride,
            odometer0: 1_306_083.0,
            percent0: 88.0,
        }
    }

    /// The sample the daemon would read `t` seconds into the day; the same `t` always gives the
    /// same sample (noise seeded by time), so both schedules sample one and the same day.
    fn sample_at(&self, t: u64) -> Sample {
        let mut rng = StdRng::seed_from_u64(0x5eed ^ t.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let system_time = self.start + ChronoDuration::seconds(t as i64);
        let last = self.ride[self.ride.len() - 1];
        let (r, riding) = match self.ride.get(t as usize) {
            Some(r) => (*r, true),
            None => (last, false),
        };
        let parked_s = t.saturating_sub(RIDE_S) as f64;
        let hour_of_day = 7.5 + t as f64 / 3600.0;
        let ambient = 18.0 + 4.0 * ((hour_of_day - 9.0) / 24.0 * std::f64::consts::TAU).sin();
        let heat = if riding {
            13.0 * (t as f64 / 1500.0).min(1.0)
        } else {
            13.0 * (-parked_s / 1200.0).exp()
        };
        let frame_temp =
            ((ambient + 2.0 + heat + rng.gen_range(-0.15..0.15)) * 10.0).round() / 10.0;
        let battery_temp = (ambient + 1.0 + heat * 0.5).round() as i16;
        // The parked scooter and the Pi beside it draw a little: about a point every 2.5 h.
        let standby_mah = parked_s / 8_950.0 * PACK_MAH / 100.0;
        let remaining = (PACK_MAH * self.percent0 / 100.0 - r.mah_used - standby_mah).max(0.0);
        let percent = (remaining / PACK_MAH * 100.0).round();
        let current = if riding {
            r.current_a
        } else {
            rng.gen_range(-0.02..0.04)
        };
        let sag = if riding { 0.06 * current } else { 0.0 };
        let voltage =
            ((33.0 + 0.092 * percent - sag + rng.gen_range(-0.02..0.02)) * 100.0).round() / 100.0;
        let current = (current * 100.0).round() / 100.0;
        let speed = if riding { r.speed_kmh } else { 0.0 };
        let distance = r.odometer_m - self.odometer0;
        let cells: Vec<f64> = (0..10)
            .map(|_| ((voltage / 10.0 + rng.gen_range(-0.004..0.004)) * 1000.0).round() / 1000.0)
            .collect();
        let (lat, lon, hdop) = if riding {
            (r.lat, r.lon, rng.gen_range(0.7..1.3))
        } else {
            // Parked under a roof edge: a few metres of jitter, now and then a poor fix.
            let poor = rng.gen_bool(0.05);
            let spread = if poor { 40.0 } else { 2.5 };
            (
                last.lat + rng.gen_range(-spread..spread) / 111_195.0,
                last.lon + rng.gen_range(-spread..spread) / 81_000.0,
                if poor {
                    rng.gen_range(5.5..9.0)
                } else {
                    rng.gen_range(0.8..1.8)
                },
            )
        };
        let age_ms = rng.gen_range(0..1000u64);
        let fix = Fix {
            time: Some(system_time - ChronoDuration::milliseconds(age_ms as i64)),
            lat: (lat * 1e7).round() / 1e7,
            lon: (lon * 1e7).round() / 1e7,
            alt_msl_m: Some(
                ((35.0 + distance / 400.0 + rng.gen_range(-0.5..0.5)) * 10.0).round() / 10.0,
            ),
            speed_mps: Some(((speed / 3.6 + rng.gen_range(0.0..0.1)) * 100.0).round() / 100.0),
            course_deg: riding.then_some((r.course * 10.0).round() / 10.0),
            mode: FixMode::ThreeD,
            quality: FixQuality::Gps,
            sats_used: Some(rng.gen_range(7..12)),
            hdop: Some((hdop * 10.0_f64).round() / 10.0),
            pdop: Some((hdop * 17.0_f64).round() / 10.0),
            vdop: Some((hdop * 14.0_f64).round() / 10.0),
            source: FixSource::Nmea,
        };
        let avg = if r.riding_s > 0 {
            distance / f64::from(r.riding_s) * 3.6
        } else {
            0.0
        };
        Sample {
            scooter_id: ID.into(),
            system_time,
            scooter: ScooterReadings {
                speed_kmh: Some((speed * 1000.0).round() / 1000.0),
                avg_speed_kmh: Some((avg * 1000.0).round() / 1000.0),
                trip_distance_m: Some((distance / 10.0).floor() as u32 * 10),
                trip_time_s: Some(r.riding_s),
                odometer_m: Some(r.odometer_m as u32),
                uptime_s: Some(t as u32 + 120),
                frame_temp_c: Some(frame_temp),
                range_km: Some((percent * 0.45 * 100.0).round() / 100.0),
                error_code: Some(0),
                warning_code: Some(if riding { 0 } else { 9 }),
                locked: Some(!riding),
            },
            battery: BatteryReadings {
                remaining_mah: Some(remaining as u32),
                percent: Some(percent as u8),
                voltage_v: Some(voltage),
                current_a: Some(current),
                power_w: Some((voltage * current * 100.0).round() / 100.0),
                temp1_c: Some(battery_temp),
                temp2_c: Some(battery_temp - 1),
                cell_voltages_v: Some(cells),
            },
            gps: Some(GpsReading { fix, age_ms }),
            event: None,
        }
    }
}

/// What one schedule sent in the day.
struct Run {
    /// Published samples and the second they were taken.
    published: Vec<(u64, Sample)>,
    samples: u64,
    events: Vec<(u64, EventKind)>,
}

fn run(day: &Day, config: AdaptiveConfig) -> Run {
    let t0 = Instant::now();
    let mut events = RideEvents::new(EventConfig::default());
    let mut adaptive = Adaptive::new(config);
    let mut out = Run {
        published: Vec::new(),
        samples: 0,
        events: Vec::new(),
    };
    let mut t = 0u64;
    while t < DAY_S {
        let sample = day.sample_at(t);
        let now = t0 + Duration::from_secs(t);
        let raised = events.observe(now, &sample);
        let decision = adaptive.after_sample(now, &sample, !raised.is_empty());
        out.samples += 1;
        out.events.extend(raised.into_iter().map(|e| (t, e)));
        if decision.publish {
            out.published.push((t, sample));
        }
        t += decision.next_interval.as_secs().max(1);
    }
    out
}

/// Messages as the publish window forms them: `legacy`/`json` one record each, `compact` up
/// to [`COMPACT_BATCH`] records that came within `linger` of the batch's first. Each message
/// with the second it leaves.
fn messages(published: &[(u64, Sample)], encoding: Encoding, linger_s: u64) -> Vec<(u64, usize)> {
    let records: Vec<Record> = published
        .iter()
        .enumerate()
        .map(|(i, (_, s))| Record::from_sample(s.clone(), i as u64 + 1))
        .collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < records.len() {
        let first = published[i].0;
        let mut j = i + 1;
        if encoding == Encoding::Compact {
            while j < records.len() && j - i < COMPACT_BATCH && published[j].0 < first + linger_s {
                j += 1;
            }
        }
        let payload = encoding.encode(&records[i..j]).unwrap();
        let sent = if encoding == Encoding::Compact && j - i < COMPACT_BATCH {
            first + linger_s
        } else {
            published[j - 1].0
        };
        out.push((sent, payload.len()));
        i = j;
    }
    out
}

fn varint_len(n: usize) -> usize {
    match n {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// A QoS 1 PUBLISH: fixed header, topic, packet id, (MQTT 5: properties with the content type),
/// payload.
fn publish_len(topic: &str, payload: usize, content_type: Option<&str>) -> usize {
    let props = content_type.map_or(0, |ct| {
        let p = 1 + 2 + ct.len();
        varint_len(p) + p
    });
    let rest = 2 + topic.len() + 2 + props + payload;
    1 + varint_len(rest) + rest
}

const PUBACK: usize = 4;

#[derive(Default, Clone, Copy)]
struct Bytes {
    messages: u64,
    payload: u64,
    mqtt5: u64,
    mqtt311: u64,
    wire: u64,
}

impl Bytes {
    fn add(&mut self, topic: &str, payload: usize, content_type: &str) {
        self.messages += 1;
        self.payload += payload as u64;
        self.mqtt5 += (publish_len(topic, payload, Some(content_type)) + PUBACK) as u64;
        self.mqtt311 += (publish_len(topic, payload, None) + PUBACK) as u64;
        self.wire += (publish_len(topic, payload, Some(content_type)) + PUBACK) as u64
            + 2 * BELOW_MQTT_PER_PACKET;
    }
}

fn kb(b: u64) -> String {
    let k = (b as f64 / 1000.0).round() as u64;
    let s = k.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    format!("{out} kB")
}

/// PINGREQ/PINGRESP pairs: one per keep-alive period without an outgoing packet.
fn pings(mut sent: Vec<u64>) -> u64 {
    sent.sort_unstable();
    sent.dedup();
    let mut n = 0;
    let mut last = 0;
    for t in sent.into_iter().chain([DAY_S]) {
        n += t.saturating_sub(last).saturating_sub(1) / KEEP_ALIVE_S;
        last = t;
    }
    n
}

fn main() {
    let day = Day::new(7);
    let fast = Duration::from_secs(1);
    let schedules = [
        ("fixed 1 s", run(&day, AdaptiveConfig::fixed(fast))),
        (
            "adaptive 1 s / 30 s / 10 min",
            run(&day, AdaptiveConfig::new(fast)),
        ),
    ];
    let encodings = [
        (Encoding::Legacy, 0),
        (Encoding::Json, 0),
        (Encoding::Compact, 5),
        (Encoding::Compact, 60),
    ];
    let label = |encoding: Encoding, linger: u64| match encoding {
        Encoding::Compact => format!("`compact`, linger {linger} s"),
        other => format!("`{}`", other.name()),
    };

    let (first, end_of_ride, last) = (
        day.sample_at(0),
        day.sample_at(RIDE_S - 1),
        day.sample_at(DAY_S - 1),
    );
    println!(
        "ride: {:.1} km, battery {:?} → {:?} %; parked: battery → {:?} %",
        f64::from(end_of_ride.scooter.odometer_m.unwrap() - first.scooter.odometer_m.unwrap())
            / 1000.0,
        first.battery.percent.unwrap(),
        end_of_ride.battery.percent.unwrap(),
        last.battery.percent.unwrap()
    );
    for (name, r) in &schedules {
        let ride = r.published.iter().filter(|(t, _)| *t < RIDE_S).count();
        println!(
            "{name}: {} samples, {} published ({} while riding or unlocked, {} parked), {} events",
            r.samples,
            r.published.len(),
            ride,
            r.published.len() - ride,
            r.events.len()
        );
    }
    let parked: Vec<u64> = schedules[1]
        .1
        .published
        .iter()
        .map(|(t, _)| *t)
        .filter(|t| *t >= RIDE_S)
        .collect();
    let heartbeats = parked
        .windows(2)
        .filter(|w| w[1] - w[0] >= 600 - 15)
        .count();
    println!(
        "adaptive, parked: {} published: the first parked sample, {heartbeats} after 10 min of silence (heartbeats), {} with news",
        parked.len(),
        parked.len().saturating_sub(heartbeats + 1)
    );
    let adaptive_events: Vec<&str> = schedules[1]
        .1
        .events
        .iter()
        .map(|(_, e)| e.name())
        .collect();
    println!("events of the day: {}", adaptive_events.join(", "));
    println!();
    println!(
        "| Schedule | Encoding | Records | Messages | Payload | MQTT 5 (PUBLISH + PUBACK) | MQTT 3.1.1 | ≈ with TLS + TCP/IPv4 | Fixed ÷ adaptive |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut sent_times: Vec<Vec<u64>> = Vec::new();
    let mut fixed_mqtt5 = Vec::new();
    for (k, (sname, r)) in schedules.iter().enumerate() {
        for (e, (encoding, linger)) in encodings.into_iter().enumerate() {
            let msgs = messages(&r.published, encoding, linger);
            let mut b = Bytes::default();
            for (_, len) in &msgs {
                b.add(TELEMETRY_TOPIC, *len, encoding.content_type());
            }
            if encoding == Encoding::Compact && linger == 5 {
                sent_times.push(msgs.iter().map(|(t, _)| *t).collect());
            }
            let ratio = if k == 0 {
                fixed_mqtt5.push(b.mqtt5);
                "".to_owned()
            } else {
                format!("{:.0}×", fixed_mqtt5[e] as f64 / b.mqtt5 as f64)
            };
            println!(
                "| {sname} | {} | {} | {} | {} | {} | {} | {} | {ratio} |",
                label(encoding, linger),
                r.published.len(),
                b.messages,
                kb(b.payload),
                kb(b.mqtt5),
                kb(b.mqtt311),
                kb(b.wire)
            );
        }
    }

    // What else goes over the link: events, the retained status, keep-alive pings.
    println!();
    println!("| Other traffic per day | Messages | MQTT 5 | ≈ with TLS + TCP/IPv4 |");
    println!("|---|---|---|---|");
    let r = &schedules[1].1;
    for (encoding, _) in &encodings[..3] {
        let encoding = *encoding;
        let mut b = Bytes::default();
        for (i, (t, e)) in r.events.iter().enumerate() {
            let sample = Sample::event(
                ID,
                day.start + ChronoDuration::seconds(*t as i64),
                e.clone(),
                day.sample_at(*t).gps,
            );
            let payload = encoding
                .encode_event(&Record::from_sample(sample, i as u64 + 1))
                .unwrap();
            b.add(EVENTS_TOPIC, payload.len(), encoding.content_type());
        }
        println!(
            "| events on `{EVENTS_TOPIC}`, `{}` | {} | {} | {} |",
            encoding.name(),
            b.messages,
            kb(b.mqtt5),
            kb(b.wire)
        );
    }
    let status = serde_json::json!({
        "v": 1, "scooter_id": ID, "ts": "2025-06-02T19:42:07.123Z",
        "sampled": 4_321, "dropped_channel": 0, "spooled": 4_321, "published": 4_321,
        "acknowledged": 4_321, "dropped_spool": 0, "spool_records": 0, "spool_bytes": 65_536,
        "in_flight": 0, "connect_failures": 0, "spool_recoveries": 0, "quarantined": 0,
        "broker": "connected",
    });
    let status_len = serde_json::to_vec(&status).unwrap().len();
    let mut b = Bytes::default();
    for _ in 0..DAY_S / STATUS_EVERY_S {
        b.add(STATUS_TOPIC, status_len, "text/plain");
    }
    println!(
        "| status on `{STATUS_TOPIC}` every {STATUS_EVERY_S} s ({status_len} B payload) | {} | {} | {} |",
        b.messages,
        kb(b.mqtt5),
        kb(b.wire)
    );
    for ((sname, _), sent) in schedules.iter().zip(&sent_times) {
        let mut all = sent.clone();
        all.extend((0..DAY_S / STATUS_EVERY_S).map(|k| k * STATUS_EVERY_S));
        let n = pings(all);
        println!(
            "| keep-alive pings ({KEEP_ALIVE_S} s), {sname}, `compact` linger 5 s | {n} | {} | {} |",
            kb(n * 4),
            kb(n * (4 + 2 * BELOW_MQTT_PER_PACKET))
        );
    }
}
