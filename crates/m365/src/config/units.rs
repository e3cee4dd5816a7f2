//! Durations and sizes as users write them (`"500ms"`, `"5s"`, `"7d"`, `"64MiB"`) and as
//! `m365 config check` prints them back, in a form that parses again to the same value.

use std::time::Duration;

/// Parses a duration string: humantime units (`"500ms"`, `"5s"`, `"1m 30s"`, `"7d"`), or a bare
/// number of seconds written as a string (`"2.5"`).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Ok(d) = humantime::parse_duration(text) {
        return Some(d);
    }
    text.parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
}

/// Formats a duration the way the example configuration writes them (`"5s"`, `"100ms"`).
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_owned();
    }
    humantime::format_duration(d).to_string()
}

/// Formats a byte count with the largest binary unit that divides it exactly (`"64MiB"`).
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (unit, name) in UNITS {
        if bytes >= unit && bytes.is_multiple_of(unit) {
            return format!("{}{name}", bytes / unit);
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_every_accepted_form() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("1m 30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("7d"), Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("2.5"), Some(Duration::from_millis(2_500)));
        assert_eq!(parse_duration("abc"), None);
        assert_eq!(parse_duration("-1"), None);
    }

    #[test]
    fn formatted_values_parse_back_to_the_same_value() {
        for d in [
            Duration::from_millis(100),
            Duration::from_secs(5),
            Duration::from_secs(90),
            Duration::from_secs(7 * 86_400),
            Duration::ZERO,
        ] {
            assert_eq!(parse_duration(&format_duration(d)), Some(d), "{d:?}");
        }
        for n in [64 << 20, 1 << 30, 1536, 1000] {
            let text = format_size(n);
            let back = text.parse::<bytesize::ByteSize>().map(|b| b.as_u64());
            assert_eq!(back, Ok(n), "{text}");
        }
        assert_eq!(format_size(64 << 20), "64MiB");
    }
}
