-- The earlier server's tables, as its init script creates them, so its Grafana dashboards and
-- read API keep working. A database that already has them keeps them and their rows.
-- {{LOCATION_TYPE}} is `geography(POINT,4326)` with PostGIS, else the built-in `point`
-- (x = longitude, y = latitude).

CREATE TABLE IF NOT EXISTS general_info (
    time timestamptz NOT NULL,
    speed_kmh DECIMAL(4,2) NOT NULL CHECK (speed_kmh >= 0),
    trip_distance_m INTEGER NOT NULL CHECK (trip_distance_m >= 0),
    uptime_sec INTEGER NOT NULL CHECK (uptime_sec >= 0),
    total_distance_m INTEGER NOT NULL CHECK (total_distance_m >= 0),
    est_distance_left_km DECIMAL(5,2) NOT NULL CHECK (est_distance_left_km >= 0),
    frame_temp DECIMAL(4,2) NOT NULL
);
CREATE INDEX IF NOT EXISTS general_info_time_idx ON general_info (time DESC);
COMMENT ON TABLE general_info IS 'Table storing scooter metrics';
COMMENT ON COLUMN general_info.speed_kmh IS 'Speed of the scooter in km/h';
COMMENT ON COLUMN general_info.total_distance_m IS 'Total distance covered by the scooter in m';
COMMENT ON COLUMN general_info.trip_distance_m IS 'Distance covered during the current trip in m';
COMMENT ON COLUMN general_info.uptime_sec IS 'Uptime of the scooter in seconds';
COMMENT ON COLUMN general_info.est_distance_left_km IS 'Estimated distance left in km';
COMMENT ON COLUMN general_info.frame_temp IS 'Frame temperature in Celsius';

CREATE TABLE IF NOT EXISTS battery_info (
    time timestamptz NOT NULL,
    capacity SMALLINT NOT NULL CHECK (capacity >= 0),
    percent SMALLINT NOT NULL CONSTRAINT valid_percentage CHECK (percent <= 100),
    voltage DECIMAL(4,2) NOT NULL CHECK (voltage >= 0),
    current DECIMAL(5,3) NOT NULL,
    power DECIMAL(5,2) GENERATED ALWAYS AS (voltage * current) STORED,
    temp1 DECIMAL(4,2) NOT NULL,
    temp2 DECIMAL(4,2) NOT NULL
);
CREATE INDEX IF NOT EXISTS battery_info_time_idx ON battery_info (time DESC);
COMMENT ON TABLE battery_info IS 'Table storing battery metrics';
COMMENT ON COLUMN battery_info.capacity IS 'Battery capacity in mAh';
COMMENT ON COLUMN battery_info.percent IS 'Battery charge percentage';
COMMENT ON COLUMN battery_info.current IS 'current going through battery in Amps';
COMMENT ON COLUMN battery_info.voltage IS 'Battery voltage in Volts';
COMMENT ON COLUMN battery_info.power IS 'Calculated power delivered by battery Watts';
COMMENT ON COLUMN battery_info.temp1 IS 'Temperature sensor 1 reading in Celsius';
COMMENT ON COLUMN battery_info.temp2 IS 'Temperature sensor 2 reading in Celsius';

CREATE TABLE IF NOT EXISTS location_info (
    time timestamptz NOT NULL,
    location {{LOCATION_TYPE}} NOT NULL,
    altitude DECIMAL(6,2) NOT NULL,
    gps_speed DECIMAL(4,2) NOT NULL CHECK (gps_speed >= 0)
);
CREATE INDEX IF NOT EXISTS location_info_time_idx ON location_info (time DESC);
COMMENT ON TABLE location_info IS 'Table storing GPS metrics';
COMMENT ON COLUMN location_info.location IS 'Longitude Latitude in DD';
COMMENT ON COLUMN location_info.altitude IS 'Altitude in meters';
COMMENT ON COLUMN location_info.gps_speed IS 'GPS speed in km/h';
