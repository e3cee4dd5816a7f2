-- Everything an m365 client sends beyond the earlier tables: every record in full (its id,
-- scooter, sequence, time source, error and warning codes, lock state, cell voltages, the fix
-- with its age and quality), the scooters with their availability and latest status, the
-- availability and status events, and the messages that could not be stored.

CREATE TABLE IF NOT EXISTS m365_records (
    record_id uuid NOT NULL,
    time timestamptz NOT NULL,
    scooter_id text NOT NULL,
    seq bigint,
    ts_source text,
    key_derived boolean NOT NULL DEFAULT false,
    encoding text NOT NULL,
    topic text,
    worker text,
    received_at timestamptz NOT NULL DEFAULT now(),
    speed_kmh double precision,
    avg_speed_kmh double precision,
    trip_distance_m bigint,
    trip_time_s bigint,
    odometer_m bigint,
    uptime_s bigint,
    frame_temp_c double precision,
    range_km double precision,
    error_code integer,
    warning_code integer,
    locked boolean,
    battery_remaining_mah bigint,
    battery_percent smallint,
    battery_voltage_v double precision,
    battery_current_a double precision,
    battery_power_w double precision,
    battery_temp1_c smallint,
    battery_temp2_c smallint,
    cell_voltages_v real[],
    gps_lat_deg double precision,
    gps_lon_deg double precision,
    gps_alt_msl_m double precision,
    gps_speed_kmh double precision,
    gps_course_deg double precision,
    gps_sats_used smallint,
    gps_hdop double precision,
    gps_pdop double precision,
    gps_vdop double precision,
    gps_mode text,
    gps_quality text,
    gps_source text,
    gps_fix_time timestamptz,
    gps_age_ms bigint,
    PRIMARY KEY (record_id, time)
);
CREATE INDEX IF NOT EXISTS m365_records_scooter_time_idx ON m365_records (scooter_id, time DESC);
COMMENT ON TABLE m365_records IS 'Every record as the client sent it, once (deduplicated on record_id)';
COMMENT ON COLUMN m365_records.record_id IS 'UUID v7 minted by the client; for legacy messages a UUID v5 of scooter id and time (key_derived)';
COMMENT ON COLUMN m365_records.seq IS 'Per-scooter sequence number (not in legacy messages)';
COMMENT ON COLUMN m365_records.ts_source IS 'system, gps or untrusted_system (not in legacy messages)';
COMMENT ON COLUMN m365_records.speed_kmh IS 'Speed in km/h, negative backwards (legacy: magnitude)';
COMMENT ON COLUMN m365_records.trip_distance_m IS 'Trip distance in m';
COMMENT ON COLUMN m365_records.odometer_m IS 'Total distance in m';
COMMENT ON COLUMN m365_records.battery_current_a IS 'Battery current in A, negative while charging';
COMMENT ON COLUMN m365_records.cell_voltages_v IS 'Cell voltages in V, cell 1 first';
COMMENT ON COLUMN m365_records.gps_speed_kmh IS 'Speed over ground in km/h';
COMMENT ON COLUMN m365_records.gps_age_ms IS 'Age of the fix when the sample was taken, ms';
COMMENT ON COLUMN m365_records.worker IS 'MQTT client id of the ingest worker that stored the record';

CREATE TABLE IF NOT EXISTS m365_scooters (
    scooter_id text PRIMARY KEY,
    first_seen timestamptz NOT NULL DEFAULT now(),
    last_record_at timestamptz,
    availability text,
    availability_since timestamptz,
    last_status jsonb,
    last_status_at timestamptz
);
COMMENT ON TABLE m365_scooters IS 'One row per scooter: latest record time, availability and status';

CREATE TABLE IF NOT EXISTS m365_events (
    time timestamptz NOT NULL,
    scooter_id text NOT NULL,
    kind text NOT NULL,
    value text,
    detail jsonb,
    received_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (scooter_id, kind, time)
);
COMMENT ON TABLE m365_events IS 'Availability changes (online/offline) and status messages';

CREATE TABLE IF NOT EXISTS m365_dead_letters (
    id bigserial PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    topic text NOT NULL,
    reason text NOT NULL,
    content_type text,
    payload bytea NOT NULL,
    payload_md5 text GENERATED ALWAYS AS (md5(payload)) STORED,
    worker text,
    UNIQUE (topic, payload_md5)
);
COMMENT ON TABLE m365_dead_letters IS 'Messages that could not be stored, with the reason (each distinct message once)';
