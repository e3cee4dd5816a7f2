//! The `compact` encoding: several records per message for metered mobile data.
//!
//! Layout: a zlib stream (deflate, RFC 1950) whose content is one JSON object:
//!
//! ```json
//! {"schema":"m365.compact","v":1,"n":3,"scooter_id":"…",
//!  "fields":[{"name":"seq","scale":1,"delta":true}, …],
//!  "record_ids":["0190…", …],
//!  "cols":[[1,1,1], …],
//!  "cell_voltages_mv":[null, [4100,4098,…], …]}
//! ```
//!
//! It stays self-describing: the header names every column, the factor its values were
//! multiplied by before rounding to integers (`value = column / scale`), and whether the column
//! holds differences to the previous non-null value (`delta`, starting from 0). Columns are
//! arrays of integers or `null`. Why this shape: values of one quantity sit together and change
//! little from sample to sample, so deltas are small repeated digits that deflate compresses far
//! better than per-record objects; JSON + zlib needs nothing exotic to decode (any language has
//! both). Deflate is `miniz_oxide`, pure Rust.
//!
//! A ride event is one message of its own: the `json` event document (schema `m365.event`,
//! [`super::json::JsonEventV1`]) as a zlib stream ([`encode_event`], [`decode_event`]). Events
//! are rare and small, so columns would gain nothing; deflate still shortens the key names.

use std::io::{Read, Write};

use flate2::Compression;
use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::EncodeError;
use crate::record::{Record, TimeSource};

/// Schema name in the header.
pub const SCHEMA: &str = "m365.compact";
/// Version of the layout.
pub const VERSION: u32 = 1;
/// Most records in one message (keeps messages far below broker packet limits).
pub const MAX_RECORDS: usize = 1000;

/// One column: name (units in the name), scale and delta flag, and how to read it from a record.
struct Column {
    name: &'static str,
    scale: f64,
    delta: bool,
    get: fn(&Record) -> Option<f64>,
}

fn time_source_code(t: TimeSource) -> f64 {
    match t {
        TimeSource::System => 0.0,
        TimeSource::Gps => 1.0,
        TimeSource::UntrustedSystem => 2.0,
    }
}

/// The column table of version 1. Order is part of the format (the header repeats it).
#[rustfmt::skip]
const COLUMNS: &[Column] = &[
    Column { name: "seq", scale: 1.0, delta: true, get: |r| Some(r.seq as f64) },
    Column { name: "ts_ms", scale: 1.0, delta: true, get: |r| Some(r.timestamp.timestamp_millis() as f64) },
    Column { name: "ts_source", scale: 1.0, delta: false, get: |r| Some(time_source_code(r.time_source)) },
    Column { name: "speed_kmh", scale: 100.0, delta: false, get: |r| r.scooter.speed_kmh },
    Column { name: "avg_speed_kmh", scale: 100.0, delta: false, get: |r| r.scooter.avg_speed_kmh },
    Column { name: "trip_distance_m", scale: 1.0, delta: true, get: |r| r.scooter.trip_distance_m.map(f64::from) },
    Column { name: "trip_time_s", scale: 1.0, delta: true, get: |r| r.scooter.trip_time_s.map(f64::from) },
    Column { name: "odometer_m", scale: 1.0, delta: true, get: |r| r.scooter.odometer_m.map(f64::from) },
    Column { name: "uptime_s", scale: 1.0, delta: true, get: |r| r.scooter.uptime_s.map(f64::from) },
    Column { name: "frame_temp_c", scale: 10.0, delta: false, get: |r| r.scooter.frame_temp_c },
    Column { name: "range_km", scale: 100.0, delta: false, get: |r| r.scooter.range_km },
    Column { name: "error_code", scale: 1.0, delta: false, get: |r| r.scooter.error_code.map(f64::from) },
    Column { name: "warning_code", scale: 1.0, delta: false, get: |r| r.scooter.warning_code.map(f64::from) },
    Column { name: "locked", scale: 1.0, delta: false, get: |r| r.scooter.locked.map(|l| if l { 1.0 } else { 0.0 }) },
    Column { name: "battery_remaining_mah", scale: 1.0, delta: true, get: |r| r.battery.remaining_mah.map(f64::from) },
    Column { name: "battery_percent", scale: 1.0, delta: false, get: |r| r.battery.percent.map(f64::from) },
    Column { name: "battery_voltage_v", scale: 100.0, delta: false, get: |r| r.battery.voltage_v },
    Column { name: "battery_current_a", scale: 100.0, delta: false, get: |r| r.battery.current_a },
    Column { name: "battery_power_w", scale: 10.0, delta: false, get: |r| r.battery.power_w() },
    Column { name: "battery_temp1_c", scale: 1.0, delta: false, get: |r| r.battery.temp1_c.map(f64::from) },
    Column { name: "battery_temp2_c", scale: 1.0, delta: false, get: |r| r.battery.temp2_c.map(f64::from) },
    Column { name: "gps_lat_deg", scale: 1e7, delta: true, get: |r| r.gps.as_ref().map(|g| g.fix.lat) },
    Column { name: "gps_lon_deg", scale: 1e7, delta: true, get: |r| r.gps.as_ref().map(|g| g.fix.lon) },
    Column { name: "gps_alt_msl_m", scale: 10.0, delta: false, get: |r| r.gps.as_ref().and_then(|g| g.fix.alt_msl_m) },
    Column { name: "gps_speed_kmh", scale: 100.0, delta: false, get: |r| r.gps.as_ref().and_then(|g| g.fix.speed_kmh()) },
    Column { name: "gps_course_deg", scale: 10.0, delta: false, get: |r| r.gps.as_ref().and_then(|g| g.fix.course_deg) },
    Column { name: "gps_sats_used", scale: 1.0, delta: false, get: |r| r.gps.as_ref().and_then(|g| g.fix.sats_used.map(f64::from)) },
    Column { name: "gps_hdop", scale: 100.0, delta: false, get: |r| r.gps.as_ref().and_then(|g| g.fix.hdop) },
    Column { name: "gps_age_ms", scale: 1.0, delta: false, get: |r| r.gps.as_ref().map(|g| g.age_ms as f64) },
];

/// Header entry describing one column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldSpec {
    /// Column name, unit in the name.
    pub name: String,
    /// Values were multiplied by this before rounding.
    pub scale: f64,
    /// Values are differences to the previous non-null value.
    pub delta: bool,
}

/// The decompressed document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompactBatch {
    /// Always `m365.compact`.
    pub schema: String,
    /// Layout version.
    pub v: u32,
    /// Number of records.
    pub n: usize,
    /// Scooter id (of the first record; a batch holds one scooter).
    pub scooter_id: String,
    /// Column descriptions.
    pub fields: Vec<FieldSpec>,
    /// Record ids, one per record.
    pub record_ids: Vec<Uuid>,
    /// One array per field, `n` entries each.
    pub cols: Vec<Vec<Option<i64>>>,
    /// Cell voltages in mV per record (`null` when not read).
    pub cell_voltages_mv: Vec<Option<Vec<i64>>>,
}

impl CompactBatch {
    /// The decoded value of `field` for record `index` (scale and deltas undone).
    pub fn value(&self, field: &str, index: usize) -> Option<f64> {
        let col_idx = self.fields.iter().position(|f| f.name == field)?;
        let spec = self.fields.get(col_idx)?;
        let col = self.cols.get(col_idx)?;
        let raw = if spec.delta {
            let mut acc: i64 = 0;
            let mut out = None;
            for (i, v) in col.iter().enumerate().take(index.checked_add(1)?) {
                if let Some(d) = v {
                    acc = acc.checked_add(*d)?;
                    if i == index {
                        out = Some(acc);
                    }
                }
            }
            out?
        } else {
            (*col.get(index)?)?
        };
        Some(raw as f64 / spec.scale)
    }

    /// Every decoded value of `field` in one pass (scale and deltas undone): `None` when the
    /// header has no such field; an entry is `None` where the record has no value or a delta
    /// overflows. Shorter than `n` when the column is.
    pub fn column(&self, field: &str) -> Option<Vec<Option<f64>>> {
        let col_idx = self.fields.iter().position(|f| f.name == field)?;
        let spec = self.fields.get(col_idx)?;
        let col = self.cols.get(col_idx)?;
        let mut acc: Option<i64> = Some(0);
        Some(
            col.iter()
                .map(|v| {
                    let raw = match (v, spec.delta) {
                        (None, _) => return None,
                        (Some(x), false) => *x,
                        (Some(d), true) => {
                            acc = acc.and_then(|a| a.checked_add(*d));
                            acc?
                        }
                    };
                    Some(raw as f64 / spec.scale)
                })
                .collect(),
        )
    }
}

fn scaled(v: f64, scale: f64) -> Option<i64> {
    let x = (v * scale).round();
    // Non-finite or absurd values become null rather than a wrapped integer.
    (x.is_finite() && x.abs() < 9.0e15).then_some(x as i64)
}

/// Encodes `records` (1 ..= [`MAX_RECORDS`]) into one compressed message.
pub fn encode(records: &[Record]) -> Result<Vec<u8>, EncodeError> {
    let first = records.first().ok_or(EncodeError::Empty)?;
    let records = &records[..records.len().min(MAX_RECORDS)];
    let mut cols = Vec::with_capacity(COLUMNS.len());
    for c in COLUMNS {
        let mut prev: i64 = 0;
        let col: Vec<Option<i64>> = records
            .iter()
            .map(|r| {
                let v = (c.get)(r).and_then(|v| scaled(v, c.scale))?;
                if c.delta {
                    let d = v.checked_sub(prev)?;
                    prev = v;
                    Some(d)
                } else {
                    Some(v)
                }
            })
            .collect();
        cols.push(col);
    }
    let batch = CompactBatch {
        schema: SCHEMA.into(),
        v: VERSION,
        n: records.len(),
        scooter_id: first.scooter_id.clone(),
        fields: COLUMNS
            .iter()
            .map(|c| FieldSpec {
                name: c.name.into(),
                scale: c.scale,
                delta: c.delta,
            })
            .collect(),
        record_ids: records.iter().map(|r| r.record_id).collect(),
        cols,
        cell_voltages_mv: records
            .iter()
            .map(|r| {
                r.battery
                    .cell_voltages_v
                    .as_ref()
                    .map(|cells| cells.iter().filter_map(|v| scaled(*v, 1000.0)).collect())
            })
            .collect(),
    };
    deflate(&serde_json::to_vec(&batch)?)
}

/// Encodes one event record: its `json` event document, deflated.
pub fn encode_event(record: &Record) -> Result<Vec<u8>, EncodeError> {
    let json = serde_json::to_vec(&super::json::JsonEventV1::from_record(record)?)?;
    deflate(&json)
}

/// Decodes a `compact` event message. Bounded like [`decode`].
pub fn decode_event(payload: &[u8]) -> Result<super::json::JsonEventV1, EncodeError> {
    Ok(serde_json::from_slice(&inflate(payload)?)?)
}

fn deflate(json: &[u8]) -> Result<Vec<u8>, EncodeError> {
    let mut z = ZlibEncoder::new(Vec::with_capacity(json.len() / 4), Compression::best());
    z.write_all(json)?;
    Ok(z.finish()?)
}

fn inflate(payload: &[u8]) -> Result<Vec<u8>, EncodeError> {
    let mut json = Vec::new();
    ZlibDecoder::new(payload)
        .take(16 * 1024 * 1024)
        .read_to_end(&mut json)?;
    Ok(json)
}

/// Decodes a `compact` message. Bounded: refuses to inflate beyond 16 MiB.
pub fn decode(payload: &[u8]) -> Result<CompactBatch, EncodeError> {
    Ok(serde_json::from_slice(&inflate(payload)?)?)
}
