//! Rider settings in the ESC (protocol.md §6.5): KERS level (0x7B), cruise control (0x7C),
//! tail-light / unit flags (0x7D) and the speed mode (0x75).

use super::esc::{REG_CRUISE, REG_KERS, REG_SPEED_MODE, REG_TAIL_LIGHT};
use super::{ReadResponse, RegisterError, Unit};
use crate::frame::Frame;
use crate::model::{Model, SpeedModeKind};

/// Regenerative braking strength (ESC 0x7B).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KersLevel {
    /// 0.
    Weak,
    /// 1.
    Medium,
    /// 2.
    Strong,
    /// Any other value, kept as read.
    Other(u16),
}

impl KersLevel {
    /// From the register value.
    pub fn from_raw(raw: u16) -> KersLevel {
        match raw {
            0 => KersLevel::Weak,
            1 => KersLevel::Medium,
            2 => KersLevel::Strong,
            other => KersLevel::Other(other),
        }
    }

    /// The register value.
    pub fn raw(self) -> u16 {
        match self {
            KersLevel::Weak => 0,
            KersLevel::Medium => 1,
            KersLevel::Strong => 2,
            KersLevel::Other(raw) => raw,
        }
    }
}

impl core::fmt::Display for KersLevel {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            KersLevel::Weak => f.write_str("weak"),
            KersLevel::Medium => f.write_str("medium"),
            KersLevel::Strong => f.write_str("strong"),
            KersLevel::Other(raw) => write!(f, "unknown ({raw})"),
        }
    }
}

/// The flags word at ESC 0x7D (§6.5, §11a Q13).
///
/// Bit 1 (0x0002): tail light always on; clear means lit only when braking (the default).
/// Bit 4 (0x0010): display in mph (newer models). No source gives bit 0 a meaning; one client
/// wrote the value 1 for "on when braking", which no scooter documents, so
/// [`TailLightFlags::with_always_on`] clears bit 0 and never produces 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TailLightFlags(pub u16);

impl TailLightFlags {
    /// Bit 1: tail light always on.
    pub const ALWAYS_ON: u16 = 0x0002;
    /// Bit 4: mph display.
    pub const MPH: u16 = 0x0010;
    /// Bit 0: no documented meaning; never written.
    const UNDOCUMENTED_BIT0: u16 = 0x0001;

    /// Whether the tail light is always on.
    pub fn always_on(self) -> bool {
        self.0 & Self::ALWAYS_ON != 0
    }

    /// Whether the dashboard shows mph.
    pub fn mph(self) -> bool {
        self.0 & Self::MPH != 0
    }

    /// Read-modify-write: the current flags with "always on" set or cleared, every other
    /// documented bit preserved and bit 0 cleared.
    pub fn with_always_on(self, on: bool) -> TailLightFlags {
        let base = self.0 & !(Self::ALWAYS_ON | Self::UNDOCUMENTED_BIT0);
        TailLightFlags(if on { base | Self::ALWAYS_ON } else { base })
    }
}

/// Speed mode at ESC 0x75, unified over the models: on the m365 the register is an ECO flag
/// (0 off = [`SpeedMode::Normal`], 1 on = [`SpeedMode::Eco`]); newer models use 0 normal
/// ("D"), 1 ECO, 2 sport ("S"). The apps read the low byte only, and so does this decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpeedMode {
    /// Normal / drive (ECO off on the m365).
    Normal,
    /// ECO.
    Eco,
    /// Sport (newer models).
    Sport,
    /// A value the model does not define (the whole register).
    Unknown(u16),
}

impl SpeedMode {
    /// Decodes the register for `model`.
    pub fn from_raw(raw: u16, model: Model) -> SpeedMode {
        match (raw & 0xFF, model.info().speed_mode) {
            (0, _) => SpeedMode::Normal,
            (1, _) => SpeedMode::Eco,
            (2, SpeedModeKind::ThreeModes) => SpeedMode::Sport,
            _ => SpeedMode::Unknown(raw),
        }
    }

    /// Decodes a read answer covering 0x75.
    pub fn decode(frame: &Frame, model: Model) -> Result<SpeedMode, RegisterError> {
        let r = ReadResponse::new(frame, Unit::Esc)?;
        Ok(SpeedMode::from_raw(r.u16(REG_SPEED_MODE)?, model))
    }
}

impl core::fmt::Display for SpeedMode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SpeedMode::Normal => f.write_str("normal"),
            SpeedMode::Eco => f.write_str("eco"),
            SpeedMode::Sport => f.write_str("sport"),
            SpeedMode::Unknown(raw) => write!(f, "unknown ({raw})"),
        }
    }
}

/// The settings block, read as 6 bytes at 0x7B.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Settings {
    /// 0x7B.
    pub kers: KersLevel,
    /// 0x7C: 0 off, 1 on (any non-zero value reads as on).
    pub cruise: bool,
    /// 0x7D.
    pub tail_light: TailLightFlags,
}

impl Settings {
    /// Decodes an answer covering 0x7B..0x7D.
    pub fn decode(frame: &Frame) -> Result<Settings, RegisterError> {
        let r = ReadResponse::new(frame, Unit::Esc)?;
        Ok(Settings {
            kers: KersLevel::from_raw(r.u16(REG_KERS)?),
            cruise: r.u16(REG_CRUISE)? != 0,
            tail_light: TailLightFlags(r.u16(REG_TAIL_LIGHT)?),
        })
    }
}

/// Decodes an answer covering 0x7B alone or with its neighbours.
pub fn decode_kers(frame: &Frame) -> Result<KersLevel, RegisterError> {
    Ok(KersLevel::from_raw(
        ReadResponse::new(frame, Unit::Esc)?.u16(REG_KERS)?,
    ))
}

/// Decodes an answer covering 0x7C.
pub fn decode_cruise(frame: &Frame) -> Result<bool, RegisterError> {
    Ok(ReadResponse::new(frame, Unit::Esc)?.u16(REG_CRUISE)? != 0)
}

/// Decodes an answer covering 0x7D.
pub fn decode_tail_light(frame: &Frame) -> Result<TailLightFlags, RegisterError> {
    Ok(TailLightFlags(
        ReadResponse::new(frame, Unit::Esc)?.u16(REG_TAIL_LIGHT)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_light_rmw_keeps_mph_and_never_writes_one() {
        let mph = TailLightFlags(TailLightFlags::MPH);
        assert_eq!(mph.with_always_on(true).0, 0x0012);
        assert_eq!(TailLightFlags(0x0012).with_always_on(false).0, 0x0010);
        assert_eq!(TailLightFlags(1).with_always_on(false).0, 0);
        assert_eq!(TailLightFlags(1).with_always_on(true).0, 2);
        for raw in 0..=u16::MAX {
            for on in [false, true] {
                let w = TailLightFlags(raw).with_always_on(on);
                assert_ne!(w.0, 1);
                assert_eq!(w.always_on(), on);
                assert_eq!(w.0 & !0x0003, raw & !0x0003);
            }
        }
    }

    #[test]
    fn speed_mode_per_model() {
        assert_eq!(SpeedMode::from_raw(1, Model::M365), SpeedMode::Eco);
        assert_eq!(SpeedMode::from_raw(0, Model::M365), SpeedMode::Normal);
        assert_eq!(SpeedMode::from_raw(2, Model::M365), SpeedMode::Unknown(2));
        assert_eq!(SpeedMode::from_raw(2, Model::Pro2), SpeedMode::Sport);
        assert_eq!(
            SpeedMode::from_raw(0x0102, Model::Essential),
            SpeedMode::Sport
        );
        assert_eq!(SpeedMode::from_raw(7, Model::Mi3), SpeedMode::Unknown(7));
    }

    #[test]
    fn kers_round_trip() {
        for raw in 0..10 {
            assert_eq!(KersLevel::from_raw(raw).raw(), raw);
        }
        assert_eq!(KersLevel::Strong.to_string(), "strong");
    }
}
