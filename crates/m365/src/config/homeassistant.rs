//! `[homeassistant]`: MQTT discovery messages so Home Assistant creates the scooter's sensors.

use super::reader::Section;

pub(crate) const KEYS: &[&str] = &["discovery", "prefix"];

/// The effective `[homeassistant]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HomeAssistantConfig {
    /// Publish retained discovery configs at start-up.
    pub discovery: bool,
    /// Home Assistant's discovery prefix.
    pub prefix: String,
}

impl Default for HomeAssistantConfig {
    fn default() -> Self {
        Self {
            discovery: false,
            prefix: "homeassistant".to_owned(),
        }
    }
}

pub(crate) fn read(section: &mut Section<'_, '_>) -> HomeAssistantConfig {
    let d = HomeAssistantConfig::default();
    HomeAssistantConfig {
        discovery: section.bool("discovery").map_or(d.discovery, |b| b.value),
        prefix: section
            .non_empty_string("prefix")
            .map_or(d.prefix, |p| p.value),
    }
}
