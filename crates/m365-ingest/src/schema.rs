//! The database schema, brought up to date at start-up: embedded SQL migrations, each applied
//! once and recorded in `m365_ingest_migrations`, under an advisory lock so workers starting
//! together do not race. PostGIS is used for `location_info.location` when it is installed or
//! can be created (`[database] postgis = "auto"`), else the built-in `point`; the tables become
//! TimescaleDB hypertables when that extension is installed (`timescaledb = "auto"`).

use tokio_postgres::Client;
use tracing::{info, warn};

use crate::config::{PostgisMode, TimescaleMode};
use crate::error::{StoreError, db_message};

/// Key of the advisory lock held while migrating ("m365" in ASCII).
const MIGRATION_LOCK: i64 = 0x6d33_3635;

/// One migration.
struct Migration {
    version: i32,
    name: &'static str,
    sql: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "earlier server tables",
        sql: include_str!("../migrations/0001_earlier_tables.sql"),
    },
    Migration {
        version: 2,
        name: "m365 tables",
        sql: include_str!("../migrations/0002_m365_tables.sql"),
    },
    Migration {
        version: 3,
        name: "ride events",
        sql: include_str!("../migrations/0003_ride_events.sql"),
    },
];

/// Tables that become hypertables on `time` with TimescaleDB.
pub const TIME_TABLES: &[&str] = &[
    "general_info",
    "battery_info",
    "location_info",
    "m365_records",
    "m365_events",
];

/// How `location_info.location` stores a position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocationStorage {
    /// PostGIS `geography(POINT, 4326)`.
    Geography,
    /// PostgreSQL's `point` (x = longitude, y = latitude).
    Point,
}

/// What start-up found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaInfo {
    /// Migrations applied by this start.
    pub applied: Vec<i32>,
    /// The position column's type.
    pub location: LocationStorage,
    /// Whether the time tables are hypertables.
    pub hypertables: bool,
}

async fn extension_installed(c: &Client, name: &str) -> Result<bool, StoreError> {
    Ok(
        c.query_opt("SELECT 1 FROM pg_extension WHERE extname = $1", &[&name])
            .await?
            .is_some(),
    )
}

async fn extension_available(c: &Client, name: &str) -> Result<bool, StoreError> {
    Ok(c.query_opt(
        "SELECT 1 FROM pg_available_extensions WHERE name = $1",
        &[&name],
    )
    .await?
    .is_some())
}

/// Installs `name` when it is available but not installed; `Ok(false)` when it cannot be.
async fn ensure_extension(c: &Client, name: &str) -> Result<bool, StoreError> {
    if extension_installed(c, name).await? {
        return Ok(true);
    }
    if !extension_available(c, name).await? {
        return Ok(false);
    }
    match c
        .batch_execute(&format!("CREATE EXTENSION IF NOT EXISTS {name}"))
        .await
    {
        Ok(()) => {
            info!(extension = name, "extension created");
            Ok(true)
        }
        Err(e) => {
            // Another worker may have created it meanwhile; otherwise we lack the privilege or
            // the library is not preloaded (TimescaleDB).
            if extension_installed(c, name).await? {
                return Ok(true);
            }
            warn!(extension = name, error = %e, "extension available but could not be created");
            Ok(false)
        }
    }
}

async fn table_exists(c: &Client, name: &str) -> Result<bool, StoreError> {
    Ok(c.query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])
        .await?
        .get(0))
}

/// The type of `location_info.location` as the database has it.
pub async fn location_storage(c: &Client) -> Result<LocationStorage, StoreError> {
    let row = c
        .query_opt(
            "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
             WHERE a.attrelid = to_regclass('location_info') AND a.attname = 'location' \
             AND NOT a.attisdropped",
            &[],
        )
        .await?;
    let ty: String = row
        .map(|r| r.get(0))
        .ok_or_else(|| StoreError::Schema("location_info has no location column".into()))?;
    if ty.starts_with("geography") {
        Ok(LocationStorage::Geography)
    } else if ty == "point" {
        Ok(LocationStorage::Point)
    } else {
        Err(StoreError::Schema(format!(
            "location_info.location has the type {ty}: expected geography(Point,4326) or point"
        )))
    }
}

/// Brings the schema up to date.
pub async fn migrate(
    c: &mut Client,
    postgis: PostgisMode,
    timescale: TimescaleMode,
) -> Result<SchemaInfo, StoreError> {
    // Extensions first, outside the migration transaction: a failed CREATE EXTENSION must not
    // abort it.
    let location_table_exists = table_exists(c, "location_info").await?;
    let use_postgis = match postgis {
        PostgisMode::Off => false,
        PostgisMode::Auto if location_table_exists => false,
        PostgisMode::Auto => ensure_extension(c, "postgis").await?,
    };
    let timescale_on = match timescale {
        TimescaleMode::Off => false,
        TimescaleMode::Auto => ensure_extension(c, "timescaledb").await?,
    };

    let tx = c.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS m365_ingest_migrations (\
             version integer PRIMARY KEY, \
             name text NOT NULL, \
             applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await?;
    let done: Vec<i32> = tx
        .query("SELECT version FROM m365_ingest_migrations", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let location_type = if use_postgis {
        "geography(POINT,4326)"
    } else {
        "point"
    };
    let mut applied = Vec::new();
    for m in MIGRATIONS {
        if done.contains(&m.version) {
            continue;
        }
        let sql = m.sql.replace("{{LOCATION_TYPE}}", location_type);
        tx.batch_execute(&sql).await.map_err(|e| {
            StoreError::Schema(format!(
                "migration {} ({}): {}",
                m.version,
                m.name,
                db_message(&e)
            ))
        })?;
        tx.execute(
            "INSERT INTO m365_ingest_migrations (version, name) VALUES ($1, $2)",
            &[&m.version, &m.name],
        )
        .await?;
        info!(version = m.version, name = m.name, "migration applied");
        applied.push(m.version);
    }
    let mut hypertables = false;
    if timescale_on {
        for table in TIME_TABLES {
            let is_hyper = tx
                .query_opt(
                    "SELECT 1 FROM timescaledb_information.hypertables WHERE hypertable_name = $1",
                    &[table],
                )
                .await?
                .is_some();
            if !is_hyper {
                tx.execute(
                    "SELECT create_hypertable($1::text::regclass, 'time', if_not_exists => TRUE, \
                     migrate_data => TRUE, create_default_indexes => FALSE)",
                    &[table],
                )
                .await
                .map_err(|e| {
                    StoreError::Schema(format!("hypertable {table}: {}", db_message(&e)))
                })?;
                info!(table, "converted to a hypertable");
            }
        }
        hypertables = true;
    }
    tx.commit().await?;
    let location = location_storage(c).await?;
    if postgis == PostgisMode::Auto && location == LocationStorage::Point && !location_table_exists
    {
        warn!("PostGIS is not available: location_info.location stores a built-in point");
    }
    Ok(SchemaInfo {
        applied,
        location,
        hypertables,
    })
}
