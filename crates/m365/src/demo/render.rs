//! How the demo shows what the broker delivered: one `key=value` line per record in plain mode
//! (scripts, logs, pipes), or a table redrawn in place on a terminal. Pure formatting, no I/O.

use m365_pipeline::encoding::json::JsonV1;

use super::view::Live;

/// A record as one plain line: `rec scooter=… seq=… speed=…km/h …`.
pub fn record_line(r: &JsonV1) -> String {
    let num = |v: Option<f64>, digits: usize, unit: &str| {
        v.map_or_else(|| "none".to_owned(), |v| format!("{v:.digits$}{unit}"))
    };
    let gps = match &r.gps {
        Some(g) => format!(
            "gps={:.5},{:.5} gps_age={:.1}s",
            g.lat_deg,
            g.lon_deg,
            g.age_ms as f64 / 1000.0
        ),
        None => "gps=none".to_owned(),
    };
    format!(
        "rec scooter={} seq={} speed={} battery={} voltage={} current={} temp={} odo={} range={} {gps}",
        r.scooter_id,
        r.seq,
        num(r.speed_kmh, 1, "km/h"),
        r.battery
            .percent
            .map_or_else(|| "none".to_owned(), |p| format!("{p}%")),
        num(r.battery.voltage_v, 2, "V"),
        num(r.battery.current_a, 2, "A"),
        num(r.frame_temp_c, 1, "C"),
        num(r.odometer_m.map(|m| f64::from(m) / 1000.0), 2, "km"),
        num(r.range_km, 1, "km"),
    )
}

/// The table of the terminal view: a header, one row per scooter, then `footer` lines.
pub fn table(live: &Live, scooters: &[(String, &str)], footer: &[String]) -> Vec<String> {
    let mut lines = vec![format!(
        "{:<13} {:<9} {:>5} {:>10} {:>5} {:>7} {:>8} {:>10}  {:<28} {}",
        "scooter",
        "model",
        "seq",
        "speed",
        "batt",
        "voltage",
        "temp",
        "odometer",
        "position (fix age)",
        "broker"
    )];
    for (id, model) in scooters {
        let view = live.scooters.get(id);
        let online = if view.is_some_and(|v| v.online) {
            "online"
        } else {
            "offline"
        };
        let row = match view.and_then(|v| v.last.as_ref()) {
            Some(r) => {
                let position = r.gps.as_ref().map_or_else(
                    || "no fix".to_owned(),
                    |g| {
                        format!(
                            "{:.5},{:.5} ({:.1}s)",
                            g.lat_deg,
                            g.lon_deg,
                            g.age_ms as f64 / 1000.0
                        )
                    },
                );
                format!(
                    "{:<13} {:<9} {:>5} {:>10} {:>5} {:>7} {:>8} {:>10}  {:<28} {}",
                    id,
                    model,
                    r.seq,
                    r.speed_kmh.map_or("-".into(), |v| format!("{v:.1} km/h")),
                    r.battery.percent.map_or("-".into(), |p| format!("{p} %")),
                    r.battery
                        .voltage_v
                        .map_or("-".into(), |v| format!("{v:.2} V")),
                    r.frame_temp_c.map_or("-".into(), |v| format!("{v:.1} °C")),
                    r.odometer_m
                        .map_or("-".into(), |m| format!("{:.2} km", f64::from(m) / 1000.0)),
                    position,
                    online
                )
            }
            None => format!(
                "{id:<13} {model:<9} {:>5} waiting for the first record",
                "-"
            ),
        };
        lines.push(row);
    }
    lines.push(String::new());
    lines.extend(footer.iter().cloned());
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::view::ViewEvent;
    use m365_gps::chrono::Utc;
    use m365_pipeline::{BatteryReadings, Record, Sample, ScooterReadings};

    fn record(seq: u64) -> JsonV1 {
        let sample = Sample {
            scooter_id: "d5014537edfd".into(),
            system_time: Utc::now(),
            scooter: ScooterReadings {
                speed_kmh: Some(18.25),
                odometer_m: Some(1_306_083),
                frame_temp_c: Some(24.0),
                range_km: Some(31.0),
                ..ScooterReadings::default()
            },
            battery: BatteryReadings {
                percent: Some(87),
                voltage_v: Some(40.123),
                current_a: Some(3.2),
                ..BatteryReadings::default()
            },
            gps: None,
        };
        JsonV1::from_record(&Record::from_sample(sample, seq))
    }

    #[test]
    fn a_plain_line_carries_the_values_with_units() {
        let line = record_line(&record(7));
        assert_eq!(
            line,
            "rec scooter=d5014537edfd seq=7 speed=18.2km/h battery=87% voltage=40.12V \
             current=3.20A temp=24.0C odo=1306.08km range=31.0km gps=none"
        );
    }

    #[test]
    fn the_table_has_a_row_per_scooter() {
        let mut live = Live::default();
        live.apply(&ViewEvent::Record(Box::new(record(3))));
        let lines = table(
            &live,
            &[
                ("d5014537edfd".into(), "pro2"),
                ("aaaaaaaaaaaa".into(), "m365"),
            ],
            &["footer".into()],
        );
        assert_eq!(lines.len(), 5, "{lines:#?}");
        assert!(
            lines[1].contains("18.2 km/h") && lines[1].contains("87 %"),
            "{}",
            lines[1]
        );
        assert!(lines[2].contains("waiting"), "{}", lines[2]);
        assert_eq!(lines[4], "footer");
    }
}
