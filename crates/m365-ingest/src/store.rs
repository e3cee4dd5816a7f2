//! Writes batches of decoded messages into PostgreSQL, one transaction per batch. Inserts are
//! idempotent: `m365_records` has the record id (and time) as its key and `ON CONFLICT DO
//! NOTHING`, and only the records that insert returned as new give rows to the earlier tables,
//! so a batch written twice (redelivered after a crash) stores every record once. Dead letters,
//! status events and availability changes are idempotent the same way, and ride events by their
//! record id.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_postgres::{Client, NoTls};
use tracing::{debug, warn};
use uuid::Uuid;

use crate::compat;
use crate::config::DatabaseSettings;
use crate::decode::{Event, RideEvent};
use crate::error::StoreError;
use crate::record::{IngestRecord, time_source_name};
use crate::schema::{self, LocationStorage, SchemaInfo};
use crate::topic::TopicKind;

/// What a message turned into.
#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    /// Records to store.
    Records(Vec<IngestRecord>),
    /// An availability or status message.
    Event(Event),
    /// A ride event (boxed: larger than the other variants).
    RideEvent(Box<RideEvent>),
    /// A message that cannot be stored: the reason and the payload, for the dead-letter table.
    Dead {
        /// Why.
        reason: String,
        /// The message as received.
        payload: Vec<u8>,
    },
}

/// One received message, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// The topic it came on.
    pub topic: String,
    /// MQTT 5 content type, if any.
    pub content_type: Option<String>,
    /// What it holds.
    pub content: Content,
}

impl Item {
    /// Records in this item.
    pub fn record_count(&self) -> usize {
        match &self.content {
            Content::Records(r) => r.len(),
            _ => 0,
        }
    }
}

/// What a written batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Records stored for the first time.
    pub inserted: u64,
    /// Records that were already stored (redeliveries).
    pub duplicates: u64,
    /// Messages stored in the dead-letter table.
    pub dead_letters: u64,
    /// Rows of the earlier tables a record could not give (a reading missing or too large).
    pub skipped_rows: u64,
    /// Events stored.
    pub events: u64,
}

impl std::ops::AddAssign for Outcome {
    fn add_assign(&mut self, o: Outcome) {
        self.inserted += o.inserted;
        self.duplicates += o.duplicates;
        self.dead_letters += o.dead_letters;
        self.skipped_rows += o.skipped_rows;
        self.events += o.events;
    }
}

/// A connection to the database with the schema checked.
#[derive(Debug)]
pub struct Store {
    client: Client,
    location: LocationStorage,
    worker: String,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for Store {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

fn read_password(path: &Path) -> Result<String, StoreError> {
    let text = std::fs::read_to_string(path).map_err(|e| StoreError::PasswordFile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(text.strip_suffix('\n').unwrap_or(&text).to_owned())
}

/// Opens a connection named `worker` (shown in `pg_stat_activity.application_name`).
pub async fn connect(
    settings: &DatabaseSettings,
    worker: &str,
) -> Result<(Client, tokio::task::JoinHandle<()>), StoreError> {
    let mut cfg: tokio_postgres::Config = settings
        .url
        .expose()
        .parse()
        .map_err(|e| StoreError::Schema(format!("database URL: {e}")))?;
    if let Some(p) = &settings.password_file {
        cfg.password(read_password(p)?);
    }
    cfg.application_name(worker)
        .connect_timeout(Duration::from_secs(10))
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30));
    let (client, connection) = cfg.connect(NoTls).await?;
    let driver = tokio::spawn(async move {
        if let Err(e) = connection.await {
            debug!(error = %e, "database connection ended");
        }
    });
    Ok((client, driver))
}

impl Store {
    /// Connects and brings the schema up to date.
    pub async fn open(
        settings: &DatabaseSettings,
        worker: &str,
    ) -> Result<(Store, SchemaInfo), StoreError> {
        let (mut client, driver) = connect(settings, worker).await?;
        let info = schema::migrate(&mut client, settings.postgis, settings.timescaledb).await?;
        Ok((
            Store {
                client,
                location: info.location,
                worker: worker.to_owned(),
                driver,
            },
            info,
        ))
    }

    /// Whether the connection is gone.
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Writes `items` in one transaction.
    pub async fn write(&mut self, items: &[Item]) -> Result<Outcome, StoreError> {
        let mut outcome = Outcome::default();
        let tx = self.client.transaction().await?;

        // Records, each once per batch, in key order (two workers writing overlapping batches
        // then lock in the same order and cannot deadlock).
        let mut records: BTreeMap<(Uuid, DateTime<Utc>), (&IngestRecord, &str)> = BTreeMap::new();
        let mut total = 0u64;
        for item in items {
            if let Content::Records(rs) = &item.content {
                for r in rs {
                    total += 1;
                    records
                        .entry((r.record_id, r.time))
                        .or_insert((r, &item.topic));
                }
            }
        }
        if !records.is_empty() {
            let list: Vec<(&IngestRecord, &str)> = records.values().copied().collect();
            let new = insert_records(&tx, &list, &self.worker).await?;
            outcome.inserted = new.len() as u64;
            outcome.duplicates = total - outcome.inserted;
            let fresh: Vec<&IngestRecord> = list
                .iter()
                .map(|(r, _)| *r)
                .filter(|r| new.contains(&(r.record_id, r.time)))
                .collect();
            outcome.skipped_rows = insert_earlier(&tx, &fresh, self.location).await?;
            upsert_scooters(&tx, &list).await?;
        }

        for item in items {
            if let Content::Event(e) = &item.content {
                outcome.events += insert_event(&tx, e).await?;
            }
        }
        // Ride events in key order, as the records (no deadlock between workers).
        let mut rides: BTreeMap<(Uuid, DateTime<Utc>), &RideEvent> = BTreeMap::new();
        for item in items {
            if let Content::RideEvent(e) = &item.content {
                rides.entry((e.record_id, e.time)).or_insert(e.as_ref());
            }
        }
        for e in rides.values() {
            outcome.events += insert_ride_event(&tx, e).await?;
        }

        let dead: Vec<&Item> = items
            .iter()
            .filter(|i| matches!(i.content, Content::Dead { .. }))
            .collect();
        if !dead.is_empty() {
            let mut topics = Vec::new();
            let mut reasons = Vec::new();
            let mut types = Vec::new();
            let mut payloads = Vec::new();
            for i in &dead {
                if let Content::Dead { reason, payload } = &i.content {
                    topics.push(i.topic.as_str());
                    reasons.push(reason.as_str());
                    types.push(i.content_type.as_deref());
                    payloads.push(payload.as_slice());
                }
            }
            tx.execute(
                "INSERT INTO m365_dead_letters (topic, reason, content_type, payload, worker) \
                 SELECT t, r, c, p, $5 FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[]) \
                 AS u(t, r, c, p) ON CONFLICT DO NOTHING",
                &[&topics, &reasons, &types, &payloads, &self.worker],
            )
            .await?;
            outcome.dead_letters = dead.len() as u64;
        }
        tx.commit().await?;
        Ok(outcome)
    }
}

/// Inserts into `m365_records`; returns the keys that were new.
async fn insert_records(
    tx: &tokio_postgres::Transaction<'_>,
    list: &[(&IngestRecord, &str)],
    worker: &str,
) -> Result<HashSet<(Uuid, DateTime<Utc>)>, StoreError> {
    let n = list.len();
    macro_rules! col {
        ($f:expr) => {
            list.iter().map(|(r, _)| $f(*r)).collect::<Vec<_>>()
        };
    }
    let ids: Vec<Uuid> = col!(|r: &IngestRecord| r.record_id);
    let times: Vec<DateTime<Utc>> = col!(|r: &IngestRecord| r.time);
    let scooters: Vec<&str> = list.iter().map(|(r, _)| r.scooter_id.as_str()).collect();
    let seqs: Vec<Option<i64>> = col!(|r: &IngestRecord| r.seq.and_then(|s| i64::try_from(s).ok()));
    let sources: Vec<Option<&str>> = col!(|r: &IngestRecord| r.ts_source.map(time_source_name));
    let derived: Vec<bool> = col!(|r: &IngestRecord| r.key.is_derived());
    let encodings: Vec<&str> = col!(|r: &IngestRecord| r.encoding.name());
    let topics: Vec<&str> = list.iter().map(|(_, t)| *t).collect();
    let s = |f: fn(&IngestRecord) -> Option<f64>| -> Vec<Option<f64>> { col!(f) };
    let i = |f: fn(&IngestRecord) -> Option<i64>| -> Vec<Option<i64>> { col!(f) };
    let speed = s(|r| r.scooter.speed_kmh);
    let avg = s(|r| r.scooter.avg_speed_kmh);
    let trip_m = i(|r| r.scooter.trip_distance_m.map(i64::from));
    let trip_s = i(|r| r.scooter.trip_time_s.map(i64::from));
    let odo = i(|r| r.scooter.odometer_m.map(i64::from));
    let uptime = i(|r| r.scooter.uptime_s.map(i64::from));
    let frame = s(|r| r.scooter.frame_temp_c);
    let range = s(|r| r.scooter.range_km);
    let err: Vec<Option<i32>> = col!(|r: &IngestRecord| r.scooter.error_code.map(i32::from));
    let warn_c: Vec<Option<i32>> = col!(|r: &IngestRecord| r.scooter.warning_code.map(i32::from));
    let locked: Vec<Option<bool>> = col!(|r: &IngestRecord| r.scooter.locked);
    let mah = i(|r| r.battery.remaining_mah.map(i64::from));
    let pct: Vec<Option<i16>> = col!(|r: &IngestRecord| r.battery.percent.map(i16::from));
    let volt = s(|r| r.battery.voltage_v);
    let amp = s(|r| r.battery.current_a);
    let watt = s(|r| r.battery.power_w());
    let t1: Vec<Option<i16>> = col!(|r: &IngestRecord| r.battery.temp1_c);
    let t2: Vec<Option<i16>> = col!(|r: &IngestRecord| r.battery.temp2_c);
    // Ragged arrays cannot be unnested: each record's cells travel as an array literal.
    let cells: Vec<Option<String>> =
        col!(
            |r: &IngestRecord| r.battery.cell_voltages_v.as_ref().map(|c| {
                let parts: Vec<String> = c
                    .iter()
                    .map(|v| {
                        if v.is_finite() {
                            format!("{v}")
                        } else {
                            "NULL".into()
                        }
                    })
                    .collect();
                format!("{{{}}}", parts.join(","))
            })
        );
    let g = |f: fn(&crate::record::Position) -> Option<f64>| -> Vec<Option<f64>> {
        list.iter()
            .map(|(r, _)| r.gps.as_ref().and_then(f))
            .collect()
    };
    let lat = g(|p| Some(p.lat_deg));
    let lon = g(|p| Some(p.lon_deg));
    let alt = g(|p| p.alt_msl_m);
    let gspeed = g(|p| p.speed_kmh);
    let course = g(|p| p.course_deg);
    let sats: Vec<Option<i16>> =
        col!(|r: &IngestRecord| r.gps.as_ref().and_then(|p| p.sats_used.map(i16::from)));
    let hdop = g(|p| p.hdop);
    let pdop = g(|p| p.pdop);
    let vdop = g(|p| p.vdop);
    let gps_text = |f: fn(&crate::record::Position) -> Option<&str>| -> Vec<Option<&str>> {
        list.iter()
            .map(|(r, _)| r.gps.as_ref().and_then(f))
            .collect()
    };
    let mode = gps_text(|p| p.mode.as_deref());
    let quality = gps_text(|p| p.quality.as_deref());
    let source = gps_text(|p| p.source.as_deref());
    let fix_time: Vec<Option<DateTime<Utc>>> =
        col!(|r: &IngestRecord| r.gps.as_ref().and_then(|p| p.fix_time));
    let age: Vec<Option<i64>> = col!(|r: &IngestRecord| r
        .gps
        .as_ref()
        .and_then(|p| p.age_ms)
        .and_then(|a| i64::try_from(a).ok()));
    debug_assert_eq!(ids.len(), n);
    let rows = tx
        .query(
            "INSERT INTO m365_records (record_id, time, scooter_id, seq, ts_source, key_derived, \
             encoding, topic, worker, speed_kmh, avg_speed_kmh, trip_distance_m, trip_time_s, \
             odometer_m, uptime_s, frame_temp_c, range_km, error_code, warning_code, locked, \
             battery_remaining_mah, battery_percent, battery_voltage_v, battery_current_a, \
             battery_power_w, battery_temp1_c, battery_temp2_c, cell_voltages_v, gps_lat_deg, \
             gps_lon_deg, gps_alt_msl_m, gps_speed_kmh, gps_course_deg, gps_sats_used, gps_hdop, \
             gps_pdop, gps_vdop, gps_mode, gps_quality, gps_source, gps_fix_time, gps_age_ms) \
             SELECT u.a1, u.a2, u.a3, u.a4, u.a5, u.a6, u.a7, u.a8, $9, u.a10, u.a11, u.a12, \
             u.a13, u.a14, u.a15, u.a16, u.a17, u.a18, u.a19, u.a20, u.a21, u.a22, u.a23, u.a24, \
             u.a25, u.a26, u.a27, u.a28::real[], u.a29, u.a30, u.a31, u.a32, u.a33, u.a34, u.a35, \
             u.a36, u.a37, u.a38, u.a39, u.a40, u.a41, u.a42 \
             FROM unnest($1::uuid[], $2::timestamptz[], $3::text[], $4::int8[], $5::text[], \
             $6::bool[], $7::text[], $8::text[], $10::float8[], $11::float8[], $12::int8[], \
             $13::int8[], $14::int8[], $15::int8[], $16::float8[], $17::float8[], $18::int4[], \
             $19::int4[], $20::bool[], $21::int8[], $22::int2[], $23::float8[], $24::float8[], \
             $25::float8[], $26::int2[], $27::int2[], $28::text[], $29::float8[], $30::float8[], \
             $31::float8[], $32::float8[], $33::float8[], $34::int2[], $35::float8[], \
             $36::float8[], $37::float8[], $38::text[], $39::text[], $40::text[], \
             $41::timestamptz[], $42::int8[]) \
             AS u(a1, a2, a3, a4, a5, a6, a7, a8, a10, a11, a12, a13, a14, a15, a16, a17, a18, \
             a19, a20, a21, a22, a23, a24, a25, a26, a27, a28, a29, a30, a31, a32, a33, a34, a35, \
             a36, a37, a38, a39, a40, a41, a42) \
             ON CONFLICT DO NOTHING RETURNING record_id, time",
            &[
                &ids, &times, &scooters, &seqs, &sources, &derived, &encodings, &topics, &worker,
                &speed, &avg, &trip_m, &trip_s, &odo, &uptime, &frame, &range, &err, &warn_c,
                &locked, &mah, &pct, &volt, &amp, &watt, &t1, &t2, &cells, &lat, &lon, &alt,
                &gspeed, &course, &sats, &hdop, &pdop, &vdop, &mode, &quality, &source, &fix_time,
                &age,
            ],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Rows for the earlier tables from newly stored records; returns how many rows could not be
/// given (see [`compat`]).
async fn insert_earlier(
    tx: &tokio_postgres::Transaction<'_>,
    fresh: &[&IngestRecord],
    location: LocationStorage,
) -> Result<u64, StoreError> {
    let mut general = Vec::new();
    let mut battery = Vec::new();
    let mut position = Vec::new();
    let mut skipped = 0u64;
    for r in fresh {
        let rows = compat::rows(r);
        for (table, why) in &rows.skipped {
            debug!(record_id = %r.record_id, table, why, "no row for the earlier table");
        }
        skipped += rows.skipped.len() as u64;
        general.extend(rows.general);
        battery.extend(rows.battery);
        position.extend(rows.location);
    }
    if !general.is_empty() {
        let time: Vec<DateTime<Utc>> = general.iter().map(|g| g.time).collect();
        let speed: Vec<f64> = general.iter().map(|g| g.speed_kmh).collect();
        let trip: Vec<i32> = general.iter().map(|g| g.trip_distance_m).collect();
        let up: Vec<i32> = general.iter().map(|g| g.uptime_sec).collect();
        let total: Vec<i32> = general.iter().map(|g| g.total_distance_m).collect();
        let left: Vec<f64> = general.iter().map(|g| g.est_distance_left_km).collect();
        let frame: Vec<f64> = general.iter().map(|g| g.frame_temp).collect();
        tx.execute(
            "INSERT INTO general_info (time, speed_kmh, trip_distance_m, uptime_sec, \
             total_distance_m, est_distance_left_km, frame_temp) \
             SELECT * FROM unnest($1::timestamptz[], $2::float8[], $3::int4[], $4::int4[], \
             $5::int4[], $6::float8[], $7::float8[])",
            &[&time, &speed, &trip, &up, &total, &left, &frame],
        )
        .await?;
    }
    if !battery.is_empty() {
        let time: Vec<DateTime<Utc>> = battery.iter().map(|b| b.time).collect();
        let cap: Vec<i16> = battery.iter().map(|b| b.capacity).collect();
        let pct: Vec<i16> = battery.iter().map(|b| b.percent).collect();
        let volt: Vec<f64> = battery.iter().map(|b| b.voltage).collect();
        let amp: Vec<f64> = battery.iter().map(|b| b.current).collect();
        let t1: Vec<f64> = battery.iter().map(|b| b.temp1).collect();
        let t2: Vec<f64> = battery.iter().map(|b| b.temp2).collect();
        tx.execute(
            "INSERT INTO battery_info (time, capacity, percent, voltage, current, temp1, temp2) \
             SELECT * FROM unnest($1::timestamptz[], $2::int2[], $3::int2[], $4::float8[], \
             $5::float8[], $6::float8[], $7::float8[])",
            &[&time, &cap, &pct, &volt, &amp, &t1, &t2],
        )
        .await?;
    }
    if !position.is_empty() {
        let time: Vec<DateTime<Utc>> = position.iter().map(|p| p.time).collect();
        let lon: Vec<f64> = position.iter().map(|p| p.lon).collect();
        let lat: Vec<f64> = position.iter().map(|p| p.lat).collect();
        let alt: Vec<f64> = position.iter().map(|p| p.altitude).collect();
        let speed: Vec<f64> = position.iter().map(|p| p.gps_speed).collect();
        let point = match location {
            LocationStorage::Geography => "ST_SetSRID(ST_MakePoint(u.lon, u.lat), 4326)::geography",
            LocationStorage::Point => "point(u.lon, u.lat)",
        };
        tx.execute(
            &format!(
                "INSERT INTO location_info (time, location, altitude, gps_speed) \
                 SELECT u.t, {point}, u.alt, u.speed FROM unnest($1::timestamptz[], \
                 $2::float8[], $3::float8[], $4::float8[], $5::float8[]) AS u(t, lon, lat, alt, speed)"
            ),
            &[&time, &lon, &lat, &alt, &speed],
        )
        .await?;
    }
    Ok(skipped)
}

/// Keeps `m365_scooters.last_record_at` current.
async fn upsert_scooters(
    tx: &tokio_postgres::Transaction<'_>,
    list: &[(&IngestRecord, &str)],
) -> Result<(), StoreError> {
    let mut latest: BTreeMap<&str, DateTime<Utc>> = BTreeMap::new();
    for (r, _) in list {
        let e = latest.entry(r.scooter_id.as_str()).or_insert(r.time);
        if r.time > *e {
            *e = r.time;
        }
    }
    let ids: Vec<&str> = latest.keys().copied().collect();
    let times: Vec<DateTime<Utc>> = latest.values().copied().collect();
    tx.execute(
        "INSERT INTO m365_scooters (scooter_id, last_record_at) \
         SELECT * FROM unnest($1::text[], $2::timestamptz[]) \
         ON CONFLICT (scooter_id) DO UPDATE SET last_record_at = \
         GREATEST(m365_scooters.last_record_at, EXCLUDED.last_record_at)",
        &[&ids, &times],
    )
    .await?;
    Ok(())
}

/// Stores a ride event once: `kind` is its name, `detail` its fields with what the message
/// said about the record and the place; a redelivery (same record id and time) is skipped.
/// Returns the events stored.
async fn insert_ride_event(
    tx: &tokio_postgres::Transaction<'_>,
    e: &RideEvent,
) -> Result<u64, StoreError> {
    tx.execute(
        "INSERT INTO m365_scooters (scooter_id) VALUES ($1) ON CONFLICT DO NOTHING",
        &[&e.scooter_id],
    )
    .await?;
    let gps = e.gps.as_ref().map(|g| {
        serde_json::json!({
            "lat_deg": g.lat_deg,
            "lon_deg": g.lon_deg,
            "alt_msl_m": g.alt_msl_m,
            "speed_kmh": g.speed_kmh,
            "course_deg": g.course_deg,
            "sats_used": g.sats_used,
            "hdop": g.hdop,
            "mode": g.mode,
            "quality": g.quality,
            "source": g.source,
            "fix_time": g.fix_time,
            "age_ms": g.age_ms,
        })
    });
    let detail = serde_json::json!({
        "data": e.data,
        "seq": e.seq,
        "ts_source": e.ts_source.map(time_source_name),
        "encoding": e.encoding.name(),
        "key": if e.key.is_derived() { "derived" } else { "record_id" },
        "gps": gps,
    });
    Ok(tx
        .execute(
            "INSERT INTO m365_events (time, scooter_id, kind, detail, record_id) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            &[&e.time, &e.scooter_id, &e.event, &detail, &e.record_id],
        )
        .await?)
}

/// Stores an availability change or a status message; returns the events stored (0 for a
/// repeated availability or a redelivered status).
async fn insert_event(tx: &tokio_postgres::Transaction<'_>, e: &Event) -> Result<u64, StoreError> {
    tx.execute(
        "INSERT INTO m365_scooters (scooter_id) VALUES ($1) ON CONFLICT DO NOTHING",
        &[&e.scooter_id],
    )
    .await?;
    match e.kind {
        TopicKind::Availability => {
            let changed = tx
                .execute(
                    "UPDATE m365_scooters SET availability = $2, availability_since = now() \
                     WHERE scooter_id = $1 AND availability IS DISTINCT FROM $2",
                    &[&e.scooter_id, &e.value],
                )
                .await?;
            if changed == 0 {
                return Ok(0);
            }
            Ok(tx
                .execute(
                    "INSERT INTO m365_events (time, scooter_id, kind, value) \
                     VALUES (now(), $1, 'availability', $2) ON CONFLICT DO NOTHING",
                    &[&e.scooter_id, &e.value],
                )
                .await?)
        }
        TopicKind::Status => {
            tx.execute(
                "UPDATE m365_scooters SET last_status = $2, last_status_at = COALESCE($3, now()) \
                 WHERE scooter_id = $1 AND (last_status_at IS NULL OR $3::timestamptz IS NULL \
                 OR last_status_at <= $3)",
                &[&e.scooter_id, &e.detail, &e.time],
            )
            .await?;
            Ok(tx
                .execute(
                    "INSERT INTO m365_events (time, scooter_id, kind, detail) \
                     VALUES (COALESCE($2, now()), $1, 'status', $3) ON CONFLICT DO NOTHING",
                    &[&e.scooter_id, &e.time, &e.detail],
                )
                .await?)
        }
        TopicKind::Telemetry | TopicKind::RideEvent => {
            warn!(
                kind = e.kind.as_str(),
                "a message was handed over as a status event"
            );
            Ok(0)
        }
    }
}
