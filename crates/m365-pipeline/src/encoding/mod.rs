//! Payload encodings, chosen per topic: `legacy` (what the earlier client published, for servers
//! already deployed), `json` (the documented, versioned schema) and `compact` (batched,
//! columnar, deflate-compressed, for metered mobile data). See `docs/telemetry-schema.md`.
//!
//! Telemetry goes through [`Encoding::encode`]/[`Encoding::encode_with`]; a record carrying a
//! ride event goes alone through [`Encoding::encode_event`] (events never share a message with
//! telemetry).

pub mod compact;
pub mod json;
pub mod legacy;

use serde::{Deserialize, Serialize};

use crate::error::EncodeError;
use crate::record::Record;
pub use legacy::NoFix;

/// How records are turned into MQTT payloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// The earlier client's JSON, one record per message.
    Legacy,
    /// Versioned JSON (`"v": 1`), one record per message.
    Json,
    /// Several records per message, columnar and compressed.
    Compact,
}

impl Encoding {
    /// Encodes `records` into one payload, `legacy` with the earlier client's zeros for a
    /// record without a usable fix. `legacy` and `json` carry exactly one record per message;
    /// given several, they encode the first and the caller must batch by one.
    pub fn encode(self, records: &[Record]) -> Result<Vec<u8>, EncodeError> {
        self.encode_with(records, NoFix::default())
    }

    /// [`Encoding::encode`], with what `legacy` sends without a usable fix. A record carrying
    /// an event is refused ([`EncodeError::EventInTelemetry`]): it goes through
    /// [`Encoding::encode_event`].
    pub fn encode_with(self, records: &[Record], no_fix: NoFix) -> Result<Vec<u8>, EncodeError> {
        let records = match self {
            Encoding::Legacy | Encoding::Json => records.get(..1).unwrap_or_default(),
            Encoding::Compact => records.get(..compact::MAX_RECORDS).unwrap_or(records),
        };
        if records.iter().any(Record::is_event) {
            return Err(EncodeError::EventInTelemetry);
        }
        match self {
            Encoding::Legacy => {
                let r = records.first().ok_or(EncodeError::Empty)?;
                Ok(serde_json::to_vec(&legacy::LegacyTelemetry::from_record(
                    r, no_fix,
                ))?)
            }
            Encoding::Json => {
                let r = records.first().ok_or(EncodeError::Empty)?;
                Ok(serde_json::to_vec(&json::JsonV1::from_record(r))?)
            }
            Encoding::Compact => compact::encode(records),
        }
    }

    /// Encodes one event record into its own message: `json` as schema `m365.event`
    /// ([`json::JsonEventV1`]), `legacy` as a flat object ([`legacy::LegacyEvent`]), `compact` as
    /// the `json` event deflated ([`compact::encode_event`]). The content type is
    /// [`Encoding::content_type`], as for telemetry. [`EncodeError::NotAnEvent`] for telemetry.
    pub fn encode_event(self, record: &Record) -> Result<Vec<u8>, EncodeError> {
        match self {
            Encoding::Legacy => Ok(serde_json::to_vec(&legacy::LegacyEvent::from_record(
                record,
            )?)?),
            Encoding::Json => Ok(serde_json::to_vec(&json::JsonEventV1::from_record(
                record,
            )?)?),
            Encoding::Compact => compact::encode_event(record),
        }
    }

    /// The name used in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Legacy => "legacy",
            Encoding::Json => "json",
            Encoding::Compact => "compact",
        }
    }

    /// MQTT 5 content type of the payload.
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Legacy | Encoding::Json => "application/json",
            Encoding::Compact => "application/zlib",
        }
    }

    /// Most records one message can carry.
    pub fn max_batch(self) -> usize {
        match self {
            Encoding::Legacy | Encoding::Json => 1,
            Encoding::Compact => compact::MAX_RECORDS,
        }
    }
}
