//! Properties over generated input: whatever the chunking, the decoders agree; whatever the
//! position, what the emulator writes decodes back to it; no input makes a decoder panic.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use m365_gps::emulate::RoutePoint;
use m365_gps::emulate::synth::{Talker, cgnssinfo_payload, cgpsinfo_payload, nmea_epoch};
use m365_gps::nmea::{NmeaDecoder, decode_all};
use m365_gps::sim7600::{self, parse_cgnssinfo, parse_cgpsinfo};
use proptest::prelude::*;

fn point() -> impl Strategy<Value = RoutePoint> {
    (
        -89.9f64..89.9,
        -179.9f64..179.9,
        -400.0f64..9000.0,
        0.0f64..60.0,
        0.0f64..359.9,
        // Two-digit years cover 2000-2079 (gpsd's century rule).
        946_684_800i64..3_471_292_800,
        0u32..100,
    )
        .prop_map(|(lat, lon, alt, speed, course, secs, centis)| RoutePoint {
            time: chrono::DateTime::from_timestamp(secs, centis * 10_000_000).unwrap(),
            lat,
            lon,
            alt_m: (alt * 10.0f64).round() / 10.0,
            speed_mps: speed,
            course_deg: course,
        })
}

proptest! {
    #[test]
    fn synthesised_nmea_round_trips(p in point(), gn in any::<bool>()) {
        let talker = if gn { Talker::Gn } else { Talker::Gp };
        let epochs = decode_all(nmea_epoch(&p, talker).as_bytes());
        prop_assert_eq!(epochs.len(), 1);
        let fix = epochs[0].fix.clone().expect("a fix");
        // Five decimals of minutes: 1/6e6 degree.
        prop_assert!((fix.lat - p.lat).abs() < 2e-7, "{} vs {}", fix.lat, p.lat);
        prop_assert!((fix.lon - p.lon).abs() < 2e-7, "{} vs {}", fix.lon, p.lon);
        prop_assert_eq!(fix.alt_msl_m, Some(p.alt_m));
        prop_assert!((fix.speed_mps.unwrap() - p.speed_mps).abs() < 1e-3);
        prop_assert_eq!(fix.time.map(|t| t.timestamp()), Some(p.time.timestamp()));
    }

    #[test]
    fn synthesised_sim7600_replies_round_trip(p in point()) {
        let fix = parse_cgpsinfo(&cgpsinfo_payload(Some(&p))).unwrap().unwrap();
        prop_assert!((fix.lat - p.lat).abs() < 2e-8 && (fix.lon - p.lon).abs() < 2e-8);
        let info = parse_cgnssinfo(&cgnssinfo_payload(Some(&p))).unwrap();
        let fix = info.fix.unwrap();
        prop_assert!((fix.lat - p.lat).abs() < 2e-8 && (fix.lon - p.lon).abs() < 2e-8);
    }

    #[test]
    fn chunking_never_changes_nmea_epochs(
        points in proptest::collection::vec(point(), 1..6),
        noise in proptest::collection::vec(any::<u8>(), 0..64),
        cut in 1usize..40,
    ) {
        // Sort so the epochs have increasing times, with binary noise in the middle.
        let mut bytes = Vec::new();
        for (i, p) in points.iter().enumerate() {
            if i == 1 {
                bytes.extend_from_slice(&noise);
            }
            bytes.extend_from_slice(nmea_epoch(p, Talker::Gp).as_bytes());
        }
        let whole = decode_all(&bytes);
        let mut d = NmeaDecoder::new();
        let mut split = Vec::new();
        for chunk in bytes.chunks(cut) {
            split.extend(d.push(chunk));
        }
        split.extend(d.flush());
        prop_assert_eq!(whole, split);
    }

    #[test]
    fn arbitrary_bytes_never_panic_any_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        for epoch in decode_all(&bytes) {
            if let Some(fix) = epoch.fix {
                prop_assert!(fix.lat.abs() <= 90.0 && fix.lon.abs() <= 180.0);
            }
        }
        for ex in sim7600::exchanges(&bytes) {
            for line in &ex.info {
                let _ = parse_cgpsinfo(line);
                let _ = parse_cgnssinfo(line);
            }
        }
        let _ = m365_gps::capture::decode(&bytes);
    }
}
