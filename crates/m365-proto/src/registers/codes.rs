//! ESC error and warning codes with their meanings (protocol.md §6.9, CamiAlfa's sheet).
//!
//! Errors are read at 0xB0 (motor-info block) or 0x1B, warnings at 0xB1 or 0x1C. Codes not in
//! the sheet are kept as `Unknown(code)` so nothing a scooter sends is lost.

/// An ESC error code (0 = none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 0: no error.
    None,
    /// 10.
    DashboardCommunication,
    /// 11.
    MotorPhaseA,
    /// 12.
    MotorPhaseB,
    /// 13.
    MotorPhaseC,
    /// 14.
    AcceleratorHall,
    /// 15.
    BrakeHall,
    /// 18.
    MotorHall,
    /// 21.
    BmsCommunication,
    /// 22.
    BmsPassword,
    /// 23.
    BmsSerial,
    /// 24.
    SystemVoltage,
    /// 26.
    FlashSave,
    /// 27.
    ControllerPassword,
    /// 28.
    MosHighBridge,
    /// 29.
    MosLowBridge,
    /// 31.
    ProgramJump,
    /// 35.
    ScooterSerial,
    /// 39.
    BatteryTemperatureSensor,
    /// 40.
    ControllerTemperatureSensor,
    /// A code without a documented meaning.
    Unknown(u16),
}

const ERRORS: &[(u16, ErrorCode, &str)] = &[
    (0, ErrorCode::None, "no error"),
    (
        10,
        ErrorCode::DashboardCommunication,
        "dashboard communication abnormal",
    ),
    (11, ErrorCode::MotorPhaseA, "motor phase A current abnormal"),
    (12, ErrorCode::MotorPhaseB, "motor phase B current abnormal"),
    (13, ErrorCode::MotorPhaseC, "motor phase C current abnormal"),
    (
        14,
        ErrorCode::AcceleratorHall,
        "accelerator hall sensor abnormal",
    ),
    (15, ErrorCode::BrakeHall, "brake hall sensor abnormal"),
    (18, ErrorCode::MotorHall, "motor hall sensor abnormal"),
    (21, ErrorCode::BmsCommunication, "BMS communication error"),
    (22, ErrorCode::BmsPassword, "BMS password wrong"),
    (23, ErrorCode::BmsSerial, "BMS serial abnormal"),
    (24, ErrorCode::SystemVoltage, "system voltage abnormal"),
    (26, ErrorCode::FlashSave, "flash save error"),
    (
        27,
        ErrorCode::ControllerPassword,
        "controller password wrong",
    ),
    (28, ErrorCode::MosHighBridge, "MOS high bridge abnormal"),
    (29, ErrorCode::MosLowBridge, "MOS low bridge abnormal"),
    (31, ErrorCode::ProgramJump, "program jumping error"),
    (35, ErrorCode::ScooterSerial, "scooter serial wrong"),
    (
        39,
        ErrorCode::BatteryTemperatureSensor,
        "battery temperature sensor abnormal",
    ),
    (
        40,
        ErrorCode::ControllerTemperatureSensor,
        "controller temperature sensor abnormal",
    ),
];

impl ErrorCode {
    /// The code for a register value.
    pub fn from_raw(raw: u16) -> ErrorCode {
        ERRORS
            .iter()
            .find(|(c, _, _)| *c == raw)
            .map_or(ErrorCode::Unknown(raw), |(_, e, _)| *e)
    }

    /// The register value.
    pub fn raw(self) -> u16 {
        match self {
            ErrorCode::Unknown(raw) => raw,
            known => ERRORS
                .iter()
                .find(|(_, e, _)| *e == known)
                .map_or(0, |(c, _, _)| *c),
        }
    }

    /// Whether this is an error (anything but 0).
    pub fn is_error(self) -> bool {
        self != ErrorCode::None
    }
}

impl core::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match ERRORS.iter().find(|(_, e, _)| e == self) {
            Some((code, _, text)) => write!(f, "{text} ({code})"),
            None => write!(f, "unknown error ({})", self.raw()),
        }
    }
}

/// An ESC warning code (0 = none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WarningCode {
    /// 0: no warning.
    None,
    /// 9: vehicle in lock mode.
    Locked,
    /// 12: battery overcharged, regenerative braking less effective.
    Overcharged,
    /// A code without a documented meaning.
    Unknown(u16),
}

impl WarningCode {
    /// The code for a register value.
    pub fn from_raw(raw: u16) -> WarningCode {
        match raw {
            0 => WarningCode::None,
            9 => WarningCode::Locked,
            12 => WarningCode::Overcharged,
            other => WarningCode::Unknown(other),
        }
    }

    /// The register value.
    pub fn raw(self) -> u16 {
        match self {
            WarningCode::None => 0,
            WarningCode::Locked => 9,
            WarningCode::Overcharged => 12,
            WarningCode::Unknown(raw) => raw,
        }
    }
}

impl core::fmt::Display for WarningCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            WarningCode::None => f.write_str("no warning (0)"),
            WarningCode::Locked => f.write_str("vehicle in lock mode (9)"),
            WarningCode::Overcharged => {
                f.write_str("battery overcharged, regenerative braking less effective (12)")
            }
            WarningCode::Unknown(raw) => write!(f, "unknown warning ({raw})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips() {
        for raw in 0..=100u16 {
            assert_eq!(ErrorCode::from_raw(raw).raw(), raw);
            assert_eq!(WarningCode::from_raw(raw).raw(), raw);
        }
        assert_eq!(ErrorCode::from_raw(21), ErrorCode::BmsCommunication);
        assert_eq!(
            ErrorCode::from_raw(21).to_string(),
            "BMS communication error (21)"
        );
        assert_eq!(ErrorCode::from_raw(77).to_string(), "unknown error (77)");
        assert!(!ErrorCode::from_raw(0).is_error());
        assert_eq!(
            WarningCode::from_raw(9).to_string(),
            "vehicle in lock mode (9)"
        );
        assert_eq!(WarningCode::from_raw(3), WarningCode::Unknown(3));
    }
}
