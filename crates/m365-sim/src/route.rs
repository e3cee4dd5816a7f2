//! The path a simulated ride follows on the map, so GPS emulation can synthesise fixes that agree
//! with the scooter's own odometer: the ride reports how far it has gone, the route turns that
//! distance into a position and a course.

/// Mean Earth radius, metres (spherical model; ample for a few-kilometre loop).
const EARTH_RADIUS_M: f64 = 6_371_000.0;

/// A point in decimal degrees (south and west negative).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatLon {
    /// Latitude, degrees.
    pub lat: f64,
    /// Longitude, degrees.
    pub lon: f64,
}

/// Where the ride is and where it points at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoutePosition {
    /// Position.
    pub at: LatLon,
    /// Course over ground, degrees clockwise from true north, in `[0, 360)`.
    pub course_deg: f64,
}

/// A closed polyline the ride loops around.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    points: Vec<LatLon>,
    /// Cumulative distance at the start of each segment; `len() == points.len()`.
    starts: Vec<f64>,
    length_m: f64,
}

/// A route with fewer than two distinct points cannot be followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a route needs at least two distinct points")]
pub struct DegenerateRoute;

impl Route {
    /// A closed loop through `points` (the last point connects back to the first).
    pub fn new(points: Vec<LatLon>) -> Result<Route, DegenerateRoute> {
        let n = points.len();
        let mut starts = Vec::with_capacity(n);
        let mut length_m = 0.0;
        for i in 0..n {
            starts.push(length_m);
            let (a, b) = (points[i], points[(i + 1) % n]);
            length_m += distance_m(a, b);
        }
        if n < 2 || length_m <= 0.0 {
            return Err(DegenerateRoute);
        }
        Ok(Route {
            points,
            starts,
            length_m,
        })
    }

    /// A loop of about 2.3 km around a city park: long straight edges for cruising, four
    /// corners for course changes. Centred at `centre`.
    pub fn park_loop(centre: LatLon) -> Route {
        // Offsets in metres (east, north) of the corners.
        let corners = [
            (-400.0, -250.0),
            (400.0, -250.0),
            (400.0, 250.0),
            (-400.0, 250.0),
        ];
        let points = corners
            .iter()
            .map(|&(east, north)| offset(centre, east, north))
            .collect();
        // Four corners 800 m and 500 m apart are never degenerate.
        Route::new(points).unwrap_or_else(|_| Route {
            points: vec![centre],
            starts: vec![0.0],
            length_m: 0.0,
        })
    }

    /// Total length of one lap, metres.
    pub fn length_m(&self) -> f64 {
        self.length_m
    }

    /// Position after travelling `travelled_m` metres from the first point (wraps around the loop).
    pub fn position(&self, travelled_m: f64) -> RoutePosition {
        let n = self.points.len();
        let first = self
            .points
            .first()
            .copied()
            .unwrap_or(LatLon { lat: 0.0, lon: 0.0 });
        if n < 2 || self.length_m <= 0.0 || !travelled_m.is_finite() {
            return RoutePosition {
                at: first,
                course_deg: 0.0,
            };
        }
        let d = travelled_m.rem_euclid(self.length_m);
        // The last segment whose start is ≤ d.
        let i = self.starts.partition_point(|&s| s <= d).saturating_sub(1);
        let a = self.points[i];
        let b = self.points[(i + 1) % n];
        let seg = distance_m(a, b);
        let f = if seg > 0.0 {
            (d - self.starts[i]) / seg
        } else {
            0.0
        };
        RoutePosition {
            at: LatLon {
                lat: a.lat + (b.lat - a.lat) * f,
                lon: a.lon + (b.lon - a.lon) * f,
            },
            course_deg: bearing_deg(a, b),
        }
    }
}

/// Great-circle distance (haversine).
pub fn distance_m(a: LatLon, b: LatLon) -> f64 {
    let (p1, p2) = (a.lat.to_radians(), b.lat.to_radians());
    let dp = p2 - p1;
    let dl = (b.lon - a.lon).to_radians();
    let h = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.sqrt().min(1.0).asin()
}

/// Initial bearing from `a` to `b`, degrees in `[0, 360)`.
pub fn bearing_deg(a: LatLon, b: LatLon) -> f64 {
    let (p1, p2) = (a.lat.to_radians(), b.lat.to_radians());
    let dl = (b.lon - a.lon).to_radians();
    let y = dl.sin() * p2.cos();
    let x = p1.cos() * p2.sin() - p1.sin() * p2.cos() * dl.cos();
    y.atan2(x).to_degrees().rem_euclid(360.0)
}

/// `centre` moved `east` and `north` metres (flat-earth approximation, fine at park scale).
fn offset(centre: LatLon, east: f64, north: f64) -> LatLon {
    let dlat = north / EARTH_RADIUS_M;
    let dlon = east / (EARTH_RADIUS_M * centre.lat.to_radians().cos());
    LatLon {
        lat: centre.lat + dlat.to_degrees(),
        lon: centre.lon + dlon.to_degrees(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CENTRE: LatLon = LatLon {
        lat: 52.5163,
        lon: 13.3777,
    };

    #[test]
    fn park_loop_has_expected_length_and_wraps() {
        let r = Route::park_loop(CENTRE);
        assert!((r.length_m() - 2600.0).abs() < 5.0, "{}", r.length_m());
        let start = r.position(0.0);
        let lap = r.position(r.length_m());
        assert!(distance_m(start.at, lap.at) < 0.01);
    }

    #[test]
    fn position_moves_by_the_travelled_distance_along_a_straight_edge() {
        let r = Route::park_loop(CENTRE);
        let a = r.position(100.0);
        let b = r.position(350.0);
        assert!((distance_m(a.at, b.at) - 250.0).abs() < 0.5);
        // First edge runs east.
        assert!((a.course_deg - 90.0).abs() < 0.5, "{}", a.course_deg);
        // Second edge (after 800 m) runs north.
        assert!(r.position(900.0).course_deg < 0.5 || r.position(900.0).course_deg > 359.5);
    }

    #[test]
    fn degenerate_routes_are_rejected() {
        assert_eq!(Route::new(vec![CENTRE]), Err(DegenerateRoute));
        assert_eq!(Route::new(vec![CENTRE, CENTRE]), Err(DegenerateRoute));
    }
}
