//! What an emulated receiver reports: a sequence of route points, supplied by the simulator (its
//! ride model) or generated here for demos and tests.

use chrono::{DateTime, Utc};

/// One position of the emulated vehicle.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutePoint {
    /// UTC time of the position.
    pub time: DateTime<Utc>,
    /// Decimal degrees, south negative.
    pub lat: f64,
    /// Decimal degrees, west negative.
    pub lon: f64,
    /// Altitude above mean sea level, metres.
    pub alt_m: f64,
    /// Speed over ground, metres per second.
    pub speed_mps: f64,
    /// Course over ground, degrees true.
    pub course_deg: f64,
}

/// Metres per degree of latitude (spherical Earth; plenty for a synthetic route).
const M_PER_DEG_LAT: f64 = 111_320.0;

/// A straight ride from `start` at constant speed and course, one point per `step`.
///
/// Used by the demo and tests; the simulator passes its own points instead.
pub fn straight_line(
    start: RoutePoint,
    step: chrono::Duration,
) -> impl Iterator<Item = RoutePoint> + Send + 'static {
    std::iter::successors(Some(start), move |p| {
        let dt = step.as_seconds_f64();
        let d = p.speed_mps * dt;
        let course = p.course_deg.to_radians();
        let dlat = d * course.cos() / M_PER_DEG_LAT;
        let dlon = d * course.sin() / (M_PER_DEG_LAT * p.lat.to_radians().cos().max(1e-6));
        Some(RoutePoint {
            time: p.time.checked_add_signed(step)?,
            lat: (p.lat + dlat).clamp(-89.9, 89.9),
            lon: wrap_lon(p.lon + dlon),
            ..p.clone()
        })
    })
}

fn wrap_lon(lon: f64) -> f64 {
    if lon > 180.0 {
        lon - 360.0
    } else if lon < -180.0 {
        lon + 360.0
    } else {
        lon
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn straight_line_moves_at_the_given_speed() {
        let start = RoutePoint {
            time: "2024-07-15T16:20:16Z".parse().unwrap(),
            lat: 43.0,
            lon: -8.0,
            alt_m: 100.0,
            speed_mps: 5.0,
            course_deg: 0.0,
        };
        let pts: Vec<_> = straight_line(start, chrono::Duration::seconds(1))
            .take(11)
            .collect();
        let moved_m = (pts[10].lat - pts[0].lat) * M_PER_DEG_LAT;
        assert!((moved_m - 50.0).abs() < 1e-6, "{moved_m}");
        assert_eq!(pts[10].lon, -8.0);
        assert_eq!((pts[10].time - pts[0].time).num_seconds(), 10);
    }
}
