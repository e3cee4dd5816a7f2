//! Which configured filter a received topic belongs to, and the scooter id it names: a message
//! delivered through a shared subscription carries its real topic, so the ingest matches it
//! against its own filters to know what it is.

use crate::config::{MqttSettings, TopicFilter};

/// What a topic carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicKind {
    /// Records (`legacy`, `json` or `compact`).
    Telemetry,
    /// `online` / `offline`.
    Availability,
    /// The client's status counters.
    Status,
    /// Ride events, one per message.
    RideEvent,
}

impl TopicKind {
    /// As stored in the events table.
    pub fn as_str(self) -> &'static str {
        match self {
            TopicKind::Telemetry => "telemetry",
            TopicKind::Availability => "availability",
            TopicKind::Status => "status",
            TopicKind::RideEvent => "event",
        }
    }
}

/// A received topic, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMatch {
    /// What it carries.
    pub kind: TopicKind,
    /// The scooter it names: the level matched by the filter's first `+`, else the whole topic.
    pub scooter_id: String,
}

/// The filters of one worker, in subscription order.
#[derive(Debug, Clone)]
pub struct Topics {
    filters: Vec<(TopicKind, String)>,
    group: String,
}

impl Topics {
    /// From the `[mqtt]` settings.
    pub fn new(m: &MqttSettings) -> Self {
        let mut filters = Vec::new();
        let mut add = |kind: TopicKind, list: &[TopicFilter]| {
            for f in list {
                filters.push((kind, f.0.clone()));
            }
        };
        add(TopicKind::Telemetry, &m.telemetry);
        add(TopicKind::Availability, &m.availability);
        add(TopicKind::Status, &m.status);
        add(TopicKind::RideEvent, &m.events);
        Topics {
            filters,
            group: m.group.0.clone(),
        }
    }

    /// The filters to subscribe to: `$share/<group>/<filter>`, or the filter alone without a
    /// group.
    pub fn subscriptions(&self) -> Vec<String> {
        self.filters
            .iter()
            .map(|(_, f)| {
                if self.group.is_empty() {
                    f.clone()
                } else {
                    format!("$share/{}/{f}", self.group)
                }
            })
            .collect()
    }

    /// The first filter `topic` matches, or `None`.
    pub fn classify(&self, topic: &str) -> Option<TopicMatch> {
        self.filters.iter().find_map(|(kind, f)| {
            matches(f, topic).map(|id| TopicMatch {
                kind: *kind,
                scooter_id: id.unwrap_or(topic).to_owned(),
            })
        })
    }
}

/// Whether `topic` matches `filter` (MQTT rules, `$`-topics excluded from leading wildcards);
/// `Some(Some(level))` carries the level of the first `+`.
pub fn matches<'t>(filter: &str, topic: &'t str) -> Option<Option<&'t str>> {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return None;
    }
    let mut captured = None;
    let mut t = topic.split('/');
    for f in filter.split('/') {
        match f {
            "#" => return Some(captured),
            "+" => {
                let level = t.next()?;
                if captured.is_none() {
                    captured = Some(level);
                }
            }
            lit => {
                if t.next()? != lit {
                    return None;
                }
            }
        }
    }
    t.next().is_none().then_some(captured)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_follow_mqtt_rules() {
        assert_eq!(
            matches("m365/+/telemetry", "m365/s1/telemetry"),
            Some(Some("s1"))
        );
        assert_eq!(matches("m365/+/telemetry", "m365/s1/status"), None);
        assert_eq!(matches("m365/+/telemetry", "m365/s1/telemetry/x"), None);
        assert_eq!(matches("m365/#", "m365/a/b"), Some(None));
        assert_eq!(matches("m365/#", "m365"), Some(None));
        assert_eq!(
            matches("vehicle/1/realtime", "vehicle/1/realtime"),
            Some(None)
        );
        assert_eq!(matches("+/x", "$SYS/x"), None);
        assert_eq!(matches("+/+/t", "a/b/t"), Some(Some("a")));
    }

    #[test]
    fn classify_and_subscribe() {
        let m = MqttSettings {
            telemetry: vec![
                TopicFilter("m365/+/telemetry".into()),
                TopicFilter("vehicle/1/realtime".into()),
            ],
            ..MqttSettings::default()
        };
        let t = Topics::new(&m);
        assert_eq!(
            t.subscriptions(),
            vec![
                "$share/m365-ingest/m365/+/telemetry",
                "$share/m365-ingest/vehicle/1/realtime",
                "$share/m365-ingest/m365/+/availability",
                "$share/m365-ingest/m365/+/status",
                "$share/m365-ingest/m365/+/events",
            ]
        );
        assert_eq!(
            t.classify("m365/abc/events"),
            Some(TopicMatch {
                kind: TopicKind::RideEvent,
                scooter_id: "abc".into()
            })
        );
        assert_eq!(
            t.classify("m365/abc/availability"),
            Some(TopicMatch {
                kind: TopicKind::Availability,
                scooter_id: "abc".into()
            })
        );
        assert_eq!(
            t.classify("vehicle/1/realtime").map(|m| m.scooter_id),
            Some("vehicle/1/realtime".into())
        );
        assert_eq!(t.classify("other/topic"), None);
    }
}
