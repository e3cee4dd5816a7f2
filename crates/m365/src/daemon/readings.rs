//! Turns one telemetry sample read over BLE, plus the latest GPS fix, into the pipeline's
//! [`Sample`]. Only unit scaling and renaming happen here; the register decoding lives in
//! `m365-proto` and the record format in `m365-pipeline`.

use std::time::Duration;

use m365_ble::Telemetry;
use m365_gps::Fix;
use m365_gps::chrono::{DateTime, Utc};
use m365_pipeline::{BatteryReadings, GpsReading, Sample, ScooterReadings};

/// Builds the sample for `scooter_id` from `telemetry`, taken at `system_time`, with the latest
/// fix and its age (`None`: no fix yet).
pub fn sample(
    scooter_id: &str,
    system_time: DateTime<Utc>,
    telemetry: &Telemetry,
    gps: Option<(Fix, Duration)>,
) -> Sample {
    let motor = &telemetry.motor;
    let battery = &telemetry.battery;
    Sample {
        scooter_id: scooter_id.to_owned(),
        system_time,
        scooter: ScooterReadings {
            speed_kmh: Some(motor.speed_kmh),
            avg_speed_kmh: Some(motor.average_speed_kmh),
            trip_distance_m: Some(motor.trip_distance_m),
            trip_time_s: Some(u32::from(telemetry.session.riding_s)),
            odometer_m: Some(motor.total_distance_m),
            uptime_s: Some(u32::from(motor.uptime_s)),
            frame_temp_c: Some(motor.frame_temperature_c),
            range_km: Some(telemetry.range_km),
            error_code: Some(motor.error.raw()),
            warning_code: Some(motor.warning.raw()),
            locked: Some(motor.status.locked()),
        },
        battery: BatteryReadings {
            remaining_mah: Some(u32::from(battery.remaining_mah)),
            // The BMS reports 0–100; anything above is a decoding surprise, not a charge level.
            percent: u8::try_from(battery.percent).ok().filter(|p| *p <= 100),
            voltage_v: Some(battery.voltage_v),
            current_a: Some(battery.current_a),
            power_w: Some(battery.power_w()),
            temp1_c: Some(battery.temperature1_c),
            temp2_c: Some(battery.temperature2_c),
            cell_voltages_v: telemetry.cells.as_ref().map(|c| c.volts().collect()),
        },
        gps: gps.map(|(fix, age)| GpsReading {
            fix,
            age_ms: u64::try_from(age.as_millis()).unwrap_or(u64::MAX),
        }),
        event: None,
    }
}
