//! How the demo shows what the broker delivered: one `key=value` line per record in plain mode
//! (scripts, logs, pipes), or a table redrawn in place on a terminal, laid out for the
//! terminal's size ([`layout`]). Pure formatting, no I/O.

use m365_pipeline::encoding::json::JsonV1;

use super::view::Live;

/// A record as one plain line: `rec scooter=… seq=… speed=…km/h …`.
pub(crate) fn record_line(r: &JsonV1) -> String {
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

/// A column of the terminal table, left to right as in [`Column::ALL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Column {
    /// The scooter's id; never dropped.
    Scooter,
    /// Its model.
    Model,
    /// Sequence number of the latest record.
    Seq,
    /// Speed.
    Speed,
    /// Battery charge.
    Battery,
    /// Battery voltage.
    Voltage,
    /// Frame temperature.
    Temp,
    /// Odometer.
    Odometer,
    /// Position and the age of its fix.
    Position,
    /// Whether the scooter's client is connected to the broker.
    Broker,
}

/// How many columns the table has.
const COLUMNS: usize = 10;

impl Column {
    /// Every column, left to right.
    pub(crate) const ALL: [Column; COLUMNS] = [
        Column::Scooter,
        Column::Model,
        Column::Seq,
        Column::Speed,
        Column::Battery,
        Column::Voltage,
        Column::Temp,
        Column::Odometer,
        Column::Position,
        Column::Broker,
    ];

    /// Its heading.
    pub(crate) fn header(self) -> &'static str {
        match self {
            Column::Scooter => "scooter",
            Column::Model => "model",
            Column::Seq => "seq",
            Column::Speed => "speed",
            Column::Battery => "batt",
            Column::Voltage => "voltage",
            Column::Temp => "temp",
            Column::Odometer => "odometer",
            Column::Position => "position (fix age)",
            Column::Broker => "broker",
        }
    }

    /// Numbers are right-aligned, so their digits line up.
    fn right_aligned(self) -> bool {
        matches!(
            self,
            Column::Seq
                | Column::Speed
                | Column::Battery
                | Column::Voltage
                | Column::Temp
                | Column::Odometer
        )
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The columns given up, first to last, when the terminal is too narrow for the whole table:
/// first what changes least or tells least in a demo (voltage, odometer, temperature, model),
/// last what shows the data moving (speed, position). With the demo's usual values, an
/// 80-column terminal shows everything but the voltage and the odometer. The scooter id is never
/// dropped; when even it does not fit, lines are cut.
pub(crate) const DROP_ORDER: [Column; COLUMNS - 1] = [
    Column::Voltage,
    Column::Odometer,
    Column::Temp,
    Column::Model,
    Column::Seq,
    Column::Battery,
    Column::Broker,
    Column::Position,
    Column::Speed,
];

/// What a scooter without any record yet shows after its id and model.
const WAITING: &str = "waiting for the first record";

/// One scooter's row: its cells in [`Column::ALL`] order, or only its id and model while no
/// record has arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Row {
    cells: [String; COLUMNS],
    waiting: bool,
}

impl Row {
    fn cell(&self, column: Column) -> &str {
        self.cells.get(column.index()).map_or("", String::as_str)
    }
}

/// The rows of the terminal view, one per scooter in `scooters` (id, model), from what the view
/// received.
pub(crate) fn rows(live: &Live, scooters: &[(String, &str)]) -> Vec<Row> {
    scooters
        .iter()
        .map(|(id, model)| {
            let view = live.scooters.get(id);
            let Some(r) = view.and_then(|v| v.last.as_ref()) else {
                let mut cells: [String; COLUMNS] = Default::default();
                cells[Column::Scooter.index()] = id.clone();
                cells[Column::Model.index()] = (*model).to_owned();
                return Row {
                    cells,
                    waiting: true,
                };
            };
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
            let online = if view.is_some_and(|v| v.online) {
                "online"
            } else {
                "offline"
            };
            Row {
                cells: [
                    id.clone(),
                    (*model).to_owned(),
                    r.seq.to_string(),
                    r.speed_kmh.map_or("-".into(), |v| format!("{v:.1} km/h")),
                    r.battery.percent.map_or("-".into(), |p| format!("{p} %")),
                    r.battery
                        .voltage_v
                        .map_or("-".into(), |v| format!("{v:.2} V")),
                    r.frame_temp_c.map_or("-".into(), |v| format!("{v:.1} °C")),
                    r.odometer_m
                        .map_or("-".into(), |m| format!("{:.2} km", f64::from(m) / 1000.0)),
                    position,
                    online.to_owned(),
                ],
                waiting: false,
            }
        })
        .collect()
}

/// Columns on screen, as counted here: one per `char`. Everything the view prints is ASCII but
/// for `°` and `…`, which take one column in Western locales; the caller keeps one column spare
/// for terminals where they take two.
pub(crate) fn text_width(text: &str) -> usize {
    text.chars().count()
}

/// `text` cut to at most `width` columns, a cut marked with `…`.
pub(crate) fn fit(text: &str, width: usize) -> String {
    if text_width(text) <= width {
        return text.to_owned();
    }
    match width {
        0 => String::new(),
        _ => text.chars().take(width - 1).chain(['…']).collect(),
    }
}

/// The gap before `column`: one space, two before the position, which follows numbers.
fn gap(column: Column) -> usize {
    if column == Column::Position { 2 } else { 1 }
}

/// The table of the terminal view, laid out for a terminal `width` columns wide and at most
/// `height` lines tall: a header, one row per scooter, a blank line, then `footer`.
///
/// No line is wider than `width`: columns are dropped in [`DROP_ORDER`] until the rest fits,
/// and whatever still does not fit (a long footer, a terminal narrower than a scooter id) is
/// cut. When there are more scooters than lines, the last rows give way to a line saying how
/// many are not shown; the footer stays.
pub(crate) fn layout(rows: &[Row], footer: &[String], width: usize, height: usize) -> Vec<String> {
    // Header, blank line and footer are always there; rows get what is left.
    let room = height.saturating_sub(2 + footer.len());
    let (shown, hidden) = if rows.len() <= room {
        (rows, 0)
    } else {
        let keep = room.saturating_sub(1);
        (rows.get(..keep).unwrap_or(rows), rows.len() - keep)
    };

    let mut widths = Column::ALL.map(|c| text_width(c.header()));
    for row in shown.iter().filter(|r| !r.waiting) {
        for c in Column::ALL {
            widths[c.index()] = widths[c.index()].max(text_width(row.cell(c)));
        }
    }
    let total = |kept: &[Column]| -> usize {
        kept.iter()
            .enumerate()
            .map(|(i, &c)| widths[c.index()] + if i == 0 { 0 } else { gap(c) })
            .sum()
    };
    let mut kept: Vec<Column> = Column::ALL.to_vec();
    for dropped in DROP_ORDER {
        if total(&kept) <= width {
            break;
        }
        kept.retain(|&c| c != dropped);
    }

    let line = |cell: &dyn Fn(Column) -> String| -> String {
        let mut out = String::new();
        for (i, &c) in kept.iter().enumerate() {
            if i > 0 {
                out.extend(std::iter::repeat_n(' ', gap(c)));
            }
            let text = cell(c);
            let pad = widths[c.index()].saturating_sub(text_width(&text));
            if c.right_aligned() {
                out.extend(std::iter::repeat_n(' ', pad));
                out.push_str(&text);
            } else {
                out.push_str(&text);
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        fit(out.trim_end(), width)
    };

    let mut lines = vec![line(&|c| c.header().to_owned())];
    for row in shown {
        if row.waiting {
            // Id and model in their columns (if shown), then the note in place of the rest.
            let head: Vec<Column> = kept
                .iter()
                .copied()
                .filter(|&c| c == Column::Scooter || c == Column::Model)
                .collect();
            let mut text = String::new();
            for (i, &c) in head.iter().enumerate() {
                if i > 0 {
                    text.push(' ');
                }
                text.push_str(&format!("{:<w$}", row.cell(c), w = widths[c.index()]));
            }
            text.push(' ');
            text.push_str(WAITING);
            lines.push(fit(&text, width));
        } else {
            lines.push(line(&|c| row.cell(c).to_owned()));
        }
    }
    if hidden > 0 {
        lines.push(fit(
            &format!(
                "… and {hidden} more scooter{}",
                if hidden == 1 { "" } else { "s" }
            ),
            width,
        ));
    }
    lines.push(String::new());
    lines.extend(footer.iter().map(|l| fit(l, width)));
    // A terminal too short even for the header and the footer: what fits, from the top.
    lines.truncate(height.max(1));
    lines
}

/// The screen rows that lines `widths` columns wide take on a terminal `columns` wide that
/// wraps them: after a terminal is narrowed, terminals that reflow their contents wrap the lines
/// drawn for the wider one, and erasing them means going up this many rows.
pub(crate) fn screen_rows(widths: &[usize], columns: usize) -> usize {
    let columns = columns.max(1);
    widths.iter().map(|&w| w.div_ceil(columns).max(1)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::view::ViewEvent;
    use m365_gps::chrono::Utc;
    use m365_gps::{FixMode, FixQuality, FixSource};
    use m365_pipeline::encoding::json::JsonGps;
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
            event: None,
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
        let lines = layout(
            &rows(
                &live,
                &[
                    ("d5014537edfd".into(), "pro2"),
                    ("aaaaaaaaaaaa".into(), "m365"),
                ],
            ),
            &["footer".into()],
            200,
            50,
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

    /// A record from somewhere else on the map, so positions differ in width.
    fn record_at(id: &str, seq: u64, lat: f64, lon: f64, age_ms: u64) -> JsonV1 {
        let mut r = record(seq);
        r.scooter_id = id.to_owned();
        r.gps = Some(JsonGps {
            lat_deg: lat,
            lon_deg: lon,
            alt_msl_m: None,
            speed_kmh: None,
            course_deg: None,
            mode: FixMode::ThreeD,
            quality: FixQuality::Gps,
            sats_used: None,
            hdop: None,
            pdop: None,
            vdop: None,
            source: FixSource::Nmea,
            fix_time: None,
            age_ms,
        });
        r
    }

    /// Three scooters with records (one far south-west, one without a fix) and one without.
    fn sample_rows() -> Vec<Row> {
        let mut live = Live::default();
        live.apply(&ViewEvent::Record(Box::new(record_at(
            "c45f29b540b6",
            1234,
            -33.91234,
            -170.12345,
            12_345,
        ))));
        live.apply(&ViewEvent::Record(Box::new(record_at(
            "e972c0460d34",
            7,
            52.5,
            13.3,
            12_345,
        ))));
        live.apply(&ViewEvent::Record(Box::new(record(99_999))));
        live.apply(&ViewEvent::Availability {
            scooter_id: "c45f29b540b6".into(),
            online: true,
        });
        rows(
            &live,
            &[
                ("c45f29b540b6".into(), "pro2"),
                ("e972c0460d34".into(), "essential"),
                ("d5014537edfd".into(), "m365"),
                ("aaaaaaaaaaaa".into(), "1s"),
            ],
        )
    }

    /// What `m365 demo --scooters 3` shows a minute in.
    fn demo_rows() -> Vec<Row> {
        let mut live = Live::default();
        let scooters = [
            ("c45f29b540b6", "pro2", 52.51225, 13.34491),
            ("e972c0460d34", "m365", 52.51625, 13.34882),
            ("c9434dcfdc9e", "1s", 52.52025, 13.35292),
        ];
        for (id, _, lat, lon) in scooters {
            live.apply(&ViewEvent::Record(Box::new(record_at(
                id, 61, lat, lon, 900,
            ))));
            live.apply(&ViewEvent::Availability {
                scooter_id: id.into(),
                online: true,
            });
        }
        let ids: Vec<(String, &str)> = scooters
            .iter()
            .map(|(id, model, ..)| ((*id).to_owned(), *model))
            .collect();
        rows(&live, &ids)
    }

    fn footer() -> Vec<String> {
        vec![
            "12s  spooled 41  acknowledged 41  waiting in spool 0".into(),
            "last event: event scooter=c45f29b540b6 link back: session reused, no new login (logins 2)"
                .into(),
        ]
    }

    /// The columns the header line shows.
    fn shown_columns(header: &str) -> Vec<Column> {
        Column::ALL
            .into_iter()
            .filter(|c| header.contains(c.header()))
            .collect()
    }

    #[test]
    fn no_line_is_ever_wider_than_the_terminal() {
        let rows = sample_rows();
        for width in 0..=240 {
            let lines = layout(&rows, &footer(), width, 40);
            assert_eq!(lines.len(), 1 + rows.len() + 1 + footer().len(), "{width}");
            for line in &lines {
                assert!(
                    text_width(line) <= width,
                    "{width} columns, {} wide: {line:?}",
                    text_width(line)
                );
            }
        }
    }

    #[test]
    fn columns_are_dropped_in_the_documented_order() {
        let rows = sample_rows();
        let mut dropped_before = 0;
        for width in (0..=240).rev() {
            let lines = layout(&rows, &footer(), width, 40);
            let shown = shown_columns(&lines[0]);
            let dropped: Vec<Column> = Column::ALL
                .into_iter()
                .filter(|c| !shown.contains(c))
                .collect();
            // Narrower never brings a column back, and what is gone is the start of DROP_ORDER
            // (at the narrowest widths the header itself is cut, hiding more than was dropped).
            assert!(dropped.len() >= dropped_before, "{width}: {dropped:?}");
            dropped_before = dropped.len();
            if !lines[0].is_empty() && !lines[0].contains('…') {
                let mut expected = DROP_ORDER[..dropped.len().min(DROP_ORDER.len())].to_vec();
                expected.sort();
                assert_eq!(dropped, expected, "{width}: {}", lines[0]);
            }
        }
        // Wide enough: everything.
        assert_eq!(
            shown_columns(&layout(&rows, &footer(), 200, 40)[0]),
            Column::ALL
        );
        // The demo on an 80-column terminal (79 usable): all but voltage and odometer.
        let lines = layout(&demo_rows(), &footer(), 79, 40);
        let mut expected = Column::ALL.to_vec();
        expected.retain(|c| *c != Column::Voltage && *c != Column::Odometer);
        assert_eq!(shown_columns(&lines[0]), expected, "{lines:#?}");
        assert!(
            lines[1].contains("52.51225,13.34491 (0.9s)") && lines[1].ends_with("online"),
            "{}",
            lines[1]
        );
        assert!(lines[1..4].iter().all(|l| !l.contains('…')), "{lines:#?}");
        // Wider values (a far longitude, a long model name, a five-digit sequence number) give
        // up more columns at the same width, and nothing is cut but the footer.
        let lines = layout(&rows, &footer(), 79, 40);
        assert_eq!(
            shown_columns(&lines[0]),
            [
                Column::Scooter,
                Column::Seq,
                Column::Speed,
                Column::Battery,
                Column::Position,
                Column::Broker
            ],
            "{lines:#?}"
        );
        assert!(
            lines[1].contains("-33.91234,-170.12345 (12.3s)") && lines[1].ends_with("online"),
            "{}",
            lines[1]
        );
        assert!(lines[1..5].iter().all(|l| !l.contains('…')), "{lines:#?}");
        assert!(lines[4].starts_with("aaaaaaaaaaaa waiting"), "{}", lines[4]);
        // Only the id is never given up.
        let lines = layout(&rows, &footer(), 14, 40);
        assert_eq!(shown_columns(&lines[0]), [Column::Scooter]);
        assert_eq!(lines[1], "c45f29b540b6");
    }

    #[test]
    fn a_short_terminal_shows_fewer_rows_and_says_how_many_are_missing() {
        let rows = sample_rows();
        // Header, 2 rows, "… and 2 more scooters", blank, footer: 7 lines.
        let lines = layout(&rows, &footer(), 120, 7);
        assert_eq!(lines.len(), 7, "{lines:#?}");
        assert!(lines[1].starts_with("c45f29b540b6"));
        assert!(lines[2].starts_with("e972c0460d34"));
        assert_eq!(lines[3], "… and 2 more scooters");
        assert_eq!(lines[6], footer()[1]);
        // Shorter than header and footer together: the top of it.
        assert_eq!(layout(&rows, &footer(), 120, 2).len(), 2);
        assert_eq!(layout(&rows, &footer(), 120, 0).len(), 1);
    }

    #[test]
    fn lines_are_cut_with_a_mark() {
        assert_eq!(fit("abcdef", 6), "abcdef");
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(fit("25.0 °C", 7), "25.0 °C");
        assert_eq!(fit("abcdef", 0), "");
    }

    #[test]
    fn narrowing_a_terminal_that_reflows_takes_more_rows() {
        // Lines 0, 79 and 100 columns wide: one row each at 100 columns, 1 + 2 + 3 at 40.
        assert_eq!(screen_rows(&[0, 79, 100], 100), 3);
        assert_eq!(screen_rows(&[0, 79, 100], 40), 6);
        assert_eq!(screen_rows(&[5], 0), 5);
        assert_eq!(screen_rows(&[], 80), 0);
    }
}
