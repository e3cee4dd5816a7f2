//! Which scooter this is and which protocol it speaks (protocol.md §7, §2.1, §5.6).
//!
//! Facts per model live in one table, [`MODELS`]. Detection works from what a client sees in
//! order: the advertisement (name and manufacturer data) before connecting, the GATT
//! characteristics after connecting, and the BLE firmware version register (ESC 0x68) once any
//! link works. The simulator uses [`advertised_manufacturer_data`] to advertise like a real
//! scooter.

use crate::gatt::{CHAR_AVDTP, CHAR_KEY, CHAR_UART_NOTIFY, CHAR_UART_WRITE, CHAR_UPNP, COMPANY_ID};

/// The Xiaomi UART protocol generations this crate speaks (protocol.md §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Generation {
    /// A: plain `55 AA` frames.
    Plain,
    /// B: XOR-obfuscated `55 AB` frames.
    Xor,
    /// D: Mi-auth login and AES-CCM `55 AB` frames.
    MiAuth,
}

impl Generation {
    /// The generation code of advertised manufacturer-data byte 1 (§2.1).
    pub const fn advert_code(self) -> u8 {
        match self {
            Generation::Plain => 0,
            Generation::Xor => 1,
            Generation::MiAuth => 2,
        }
    }
}

impl core::fmt::Display for Generation {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Generation::Plain => "plain 55 AA",
            Generation::Xor => "XOR 55 AB",
            Generation::MiAuth => "Mi-auth 55 AB",
        })
    }
}

/// What detection concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Detected {
    /// A generation this crate speaks.
    Generation(Generation),
    /// Generation C (`5A A5`, NinebotCrypto): a Xiaomi or Ninebot scooter this crate does not
    /// speak to.
    Ninebot,
}

/// Scooter models of the m365 family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Model {
    /// m365 (classic, 2016).
    M365,
    /// Mi Pro (first generation).
    Pro,
    /// Pro 2.
    Pro2,
    /// 1S (also sold in Germany under its own model code).
    OneS,
    /// Lite / "Mi Lite 1S".
    Lite,
    /// Mi 3 / "Pro 3".
    Mi3,
    /// Essential.
    Essential,
}

/// How a model reports ESC register 0x75.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpeedModeKind {
    /// 0 = ECO off, 1 = ECO on (m365).
    EcoFlag,
    /// 0 normal, 1 ECO, 2 sport (newer models).
    ThreeModes,
}

/// Facts about one model. `None` means no source gives the figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelInfo {
    /// The model.
    pub model: Model,
    /// Human name.
    pub name: &'static str,
    /// Advertised manufacturer-data byte 0 values (§2.1); empty when unknown.
    pub codes: &'static [u8],
    /// Cells in series.
    pub cells: Option<u8>,
    /// Nominal pack voltage, V.
    pub nominal_voltage_v: Option<u8>,
    /// Pack capacity, mAh (from the BMS design capacity or published figures).
    pub capacity_mah: Option<u16>,
    /// Generations this crate speaks that units of the model have shipped with, oldest first.
    pub generations: &'static [Generation],
    /// Whether some units speak NinebotCrypto (generation C) instead.
    pub ninebot_on_some_firmware: bool,
    /// Meaning of ESC 0x75.
    pub speed_mode: SpeedModeKind,
}

/// The model table (protocol.md §7; codes from §2.1; Essential pack from §7).
pub const MODELS: &[ModelInfo] = &[
    ModelInfo {
        model: Model::M365,
        name: "m365",
        codes: &[0x20],
        cells: Some(10),
        nominal_voltage_v: Some(36),
        // BMS 0x18 in the CamiAlfa sample.
        capacity_mah: Some(7800),
        generations: &[Generation::Plain, Generation::Xor],
        ninebot_on_some_firmware: true,
        speed_mode: SpeedModeKind::EcoFlag,
    },
    ModelInfo {
        model: Model::Pro,
        name: "Mi Pro",
        codes: &[0x22],
        cells: None,
        nominal_voltage_v: None,
        capacity_mah: None,
        generations: &[Generation::Xor, Generation::MiAuth],
        ninebot_on_some_firmware: true,
        speed_mode: SpeedModeKind::ThreeModes,
    },
    ModelInfo {
        model: Model::Pro2,
        name: "Pro 2",
        codes: &[0x28],
        cells: Some(10),
        nominal_voltage_v: Some(36),
        capacity_mah: Some(12800),
        generations: &[Generation::MiAuth],
        ninebot_on_some_firmware: true,
        speed_mode: SpeedModeKind::ThreeModes,
    },
    ModelInfo {
        model: Model::OneS,
        name: "1S",
        codes: &[0x2B, 0x25],
        cells: Some(10),
        nominal_voltage_v: Some(36),
        capacity_mah: Some(7650),
        generations: &[Generation::MiAuth],
        ninebot_on_some_firmware: true,
        speed_mode: SpeedModeKind::ThreeModes,
    },
    ModelInfo {
        model: Model::Lite,
        name: "Lite",
        codes: &[0x29],
        cells: None,
        nominal_voltage_v: None,
        capacity_mah: None,
        generations: &[Generation::MiAuth],
        ninebot_on_some_firmware: true,
        speed_mode: SpeedModeKind::ThreeModes,
    },
    ModelInfo {
        model: Model::Mi3,
        name: "Mi 3",
        codes: &[0x2E],
        cells: None,
        nominal_voltage_v: None,
        capacity_mah: None,
        generations: &[Generation::MiAuth],
        ninebot_on_some_firmware: false,
        speed_mode: SpeedModeKind::ThreeModes,
    },
    ModelInfo {
        model: Model::Essential,
        name: "Essential",
        codes: &[],
        // 10S2P pack.
        cells: Some(10),
        nominal_voltage_v: Some(36),
        capacity_mah: None,
        generations: &[Generation::MiAuth],
        ninebot_on_some_firmware: false,
        speed_mode: SpeedModeKind::ThreeModes,
    },
];

impl Model {
    /// Every model, in table order.
    pub fn all() -> impl Iterator<Item = Model> {
        MODELS.iter().map(|m| m.model)
    }

    /// The model's facts.
    pub fn info(self) -> &'static ModelInfo {
        // Every variant has a row; the fallback is the first row only to avoid a panic path.
        MODELS
            .iter()
            .find(|m| m.model == self)
            .unwrap_or(&MODELS[0])
    }

    /// The model advertising `code` in manufacturer-data byte 0.
    pub fn from_code(code: u8) -> Option<Model> {
        MODELS
            .iter()
            .find(|m| m.codes.contains(&code))
            .map(|m| m.model)
    }

    /// The model's main advertised code, if known.
    pub fn code(self) -> Option<u8> {
        self.info().codes.first().copied()
    }
}

impl core::fmt::Display for Model {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.info().name)
    }
}

/// Prefix of every scooter's advertised local name.
pub const NAME_PREFIX: &str = "MIScooter";

/// Whether an advertised name is a scooter's: it starts with `MIScooter` (the rule every source
/// scanner uses).
pub fn is_scooter_name(name: &str) -> bool {
    name.starts_with(NAME_PREFIX)
}

/// The 4 decimal digits of a `MIScooterNNNN` name (the last 4 digits of the ESC serial, as far
/// as known), or `None` for any other name.
pub fn name_digits(name: &str) -> Option<u16> {
    let digits = name.strip_prefix(NAME_PREFIX)?;
    if digits.len() == 4 && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()
    } else {
        None
    }
}

/// The advertised name for a scooter whose ESC serial ends in `digits`.
pub fn advertised_name(digits: u16) -> String {
    format!("{NAME_PREFIX}{:04}", digits % 10_000)
}

/// Manufacturer data under company 0x424E, decoded (§2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManufacturerData {
    /// Byte 0: model code.
    pub model_code: u8,
    /// Byte 1: protocol generation code (0 plain, 1 XOR, 2 encrypted).
    pub generation_code: u8,
    /// Whether byte 5 makes the six bytes sum to 0xFF. One known real sample does not, so a
    /// mismatch is reported, not refused.
    pub check_ok: bool,
}

/// Why manufacturer data could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AdvertError {
    /// Another company's data.
    #[error("company id {0:#06x} is not 0x424e")]
    OtherCompany(u16),
    /// Fewer than 6 bytes.
    #[error("manufacturer data has {0} bytes, expected 6")]
    TooShort(usize),
}

impl ManufacturerData {
    /// Decodes the data after the company id.
    pub fn parse(company: u16, data: &[u8]) -> Result<ManufacturerData, AdvertError> {
        if company != COMPANY_ID {
            return Err(AdvertError::OtherCompany(company));
        }
        let bytes: &[u8; 6] = data
            .get(..6)
            .and_then(|d| d.try_into().ok())
            .ok_or(AdvertError::TooShort(data.len()))?;
        let sum = bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b));
        Ok(ManufacturerData {
            model_code: bytes[0],
            generation_code: bytes[1],
            check_ok: sum == 0xFF,
        })
    }

    /// The model, if the code is in the table.
    pub fn model(&self) -> Option<Model> {
        Model::from_code(self.model_code)
    }

    /// The protocol the advertisement announces. Code 2 means Mi-auth on the Xiaomi models of
    /// the table and NinebotCrypto on Ninebot models; with a model code outside the table it
    /// decides nothing, because the Essential (Mi-auth) advertises a code no source gives.
    /// An unknown generation code gives `None` too. Confirm with [`detect_from_gatt`] after
    /// connecting.
    pub fn detected(&self) -> Option<Detected> {
        match (self.generation_code, self.model()) {
            (0, _) => Some(Detected::Generation(Generation::Plain)),
            (1, _) => Some(Detected::Generation(Generation::Xor)),
            (2, Some(_)) => Some(Detected::Generation(Generation::MiAuth)),
            _ => None,
        }
    }
}

/// The six manufacturer-data bytes a scooter of `model_code` speaking `generation` advertises:
/// `<model> <gen> 00 00 00 <check>`, the check byte bringing the sum to 0xFF.
pub fn advertised_manufacturer_data(model_code: u8, generation: Generation) -> [u8; 6] {
    let gen_code = generation.advert_code();
    let check = 0xFFu8.wrapping_sub(model_code).wrapping_sub(gen_code);
    [model_code, gen_code, 0, 0, 0, check]
}

/// What the GATT table says (§5.6 steps 2–4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GattDetection {
    /// The generation is certain from the characteristics.
    Generation(Generation),
    /// Only the Nordic UART service: send [`PLAIN_PROBE`]; an answer means
    /// [`Generation::Plain`], silence means NinebotCrypto ([`probe_outcome`]).
    ProbePlain,
    /// No UART characteristics: not a scooter of this family.
    NotAScooter,
}

/// Plain read of the ESC firmware version (ESC 0x1A, 2 bytes), the generation-A probe.
pub const PLAIN_PROBE: [u8; 9] = [0x55, 0xAA, 0x03, 0x20, 0x01, 0x1A, 0x02, 0xBF, 0xFF];

/// Detects the generation from the characteristic UUIDs found on the device.
pub fn detect_from_gatt(characteristics: impl IntoIterator<Item = u128>) -> GattDetection {
    let (mut upnp, mut avdtp, mut key, mut uart_w, mut uart_n) =
        (false, false, false, false, false);
    for c in characteristics {
        match c {
            CHAR_UPNP => upnp = true,
            CHAR_AVDTP => avdtp = true,
            CHAR_KEY => key = true,
            CHAR_UART_WRITE => uart_w = true,
            CHAR_UART_NOTIFY => uart_n = true,
            _ => {}
        }
    }
    if !(uart_w && uart_n) {
        GattDetection::NotAScooter
    } else if upnp && avdtp {
        GattDetection::Generation(Generation::MiAuth)
    } else if key {
        GattDetection::Generation(Generation::Xor)
    } else {
        GattDetection::ProbePlain
    }
}

/// Outcome of [`PLAIN_PROBE`]: an answer means generation A, none means NinebotCrypto.
pub fn probe_outcome(answered: bool) -> Detected {
    if answered {
        Detected::Generation(Generation::Plain)
    } else {
        Detected::Ninebot
    }
}

/// The protocol implied by the BLE firmware version in ESC 0x68 (hex digits read as the
/// version: 0x0081 = "081"), per the thresholds of §5.6. No source gives exact cut-overs per
/// model, so this is a heuristic; `None` when the version does not decide.
pub fn detect_from_ble_version(model: Option<Model>, version: u16) -> Option<Detected> {
    use Detected::{Generation as G, Ninebot};
    if version <= 0x072 {
        return Some(G(Generation::Plain));
    }
    // "15x and later" is Mi-auth on the newer models.
    let miauth_from = 0x150;
    match model {
        Some(Model::M365) => Some(G(Generation::Xor)),
        Some(Model::Pro) if version < 0x110 => Some(G(Generation::Xor)),
        Some(Model::Pro) if version < miauth_from => Some(Ninebot),
        Some(Model::Pro2 | Model::OneS | Model::Lite) if version < miauth_from => Some(Ninebot),
        _ if version >= miauth_from => Some(G(Generation::MiAuth)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_models_and_back() {
        for (code, model) in [
            (0x20, Model::M365),
            (0x22, Model::Pro),
            (0x25, Model::OneS),
            (0x28, Model::Pro2),
            (0x29, Model::Lite),
            (0x2B, Model::OneS),
            (0x2E, Model::Mi3),
        ] {
            assert_eq!(Model::from_code(code), Some(model), "{code:#x}");
        }
        assert_eq!(Model::from_code(0x21), None);
        assert_eq!(Model::OneS.code(), Some(0x2B));
        assert_eq!(Model::Essential.code(), None);
        assert_eq!(Model::all().count(), 7);
        for m in Model::all() {
            assert_eq!(m.info().model, m);
        }
    }

    #[test]
    fn advertisement_matches_known_samples() {
        // CamiAlfa m365, py9b Pro, the Pro 2 Mi-auth example of §2.1.
        assert_eq!(
            advertised_manufacturer_data(0x20, Generation::Plain),
            [0x20, 0, 0, 0, 0, 0xDF]
        );
        assert_eq!(
            advertised_manufacturer_data(0x22, Generation::Xor),
            [0x22, 1, 0, 0, 0, 0xDC]
        );
        assert_eq!(
            advertised_manufacturer_data(0x28, Generation::MiAuth),
            [0x28, 2, 0, 0, 0, 0xD5]
        );
        let d = ManufacturerData::parse(COMPANY_ID, &[0x28, 2, 0, 0, 0, 0xD5]).unwrap();
        assert!(d.check_ok);
        assert_eq!(d.model(), Some(Model::Pro2));
        assert_eq!(d.detected(), Some(Detected::Generation(Generation::MiAuth)));
        // py9b's "Xiaomi" sample breaks the check byte; it is reported, not refused.
        let x = ManufacturerData::parse(COMPANY_ID, &[0x21, 0, 0, 0, 0, 0xDF]).unwrap();
        assert!(!x.check_ok);
        assert_eq!(x.detected(), Some(Detected::Generation(Generation::Plain)));
        // Code 2 with a model outside the table: Ninebot, or an Essential; undecided.
        let unknown = ManufacturerData::parse(COMPANY_ID, &[0x30, 2, 0, 0, 0, 0xCD]).unwrap();
        assert_eq!(unknown.detected(), None);
        assert_eq!(
            ManufacturerData::parse(0x004C, &[0; 6]),
            Err(AdvertError::OtherCompany(0x004C))
        );
        assert_eq!(
            ManufacturerData::parse(COMPANY_ID, &[0x20]),
            Err(AdvertError::TooShort(1))
        );
    }

    #[test]
    fn names() {
        assert!(is_scooter_name("MIScooter7353"));
        assert!(!is_scooter_name("Mi Band"));
        assert_eq!(name_digits("MIScooter7353"), Some(7353));
        assert_eq!(name_digits("MIScooter73a3"), None);
        assert_eq!(name_digits("MIScooter735"), None);
        assert_eq!(advertised_name(42), "MIScooter0042");
    }

    #[test]
    fn gatt_detection_follows_5_6() {
        let nus = [CHAR_UART_WRITE, CHAR_UART_NOTIFY];
        let with = |extra: &[u128]| detect_from_gatt(nus.iter().chain(extra).copied());
        assert_eq!(
            with(&[CHAR_UPNP, CHAR_AVDTP, CHAR_KEY]),
            GattDetection::Generation(Generation::MiAuth)
        );
        assert_eq!(
            with(&[CHAR_KEY]),
            GattDetection::Generation(Generation::Xor)
        );
        assert_eq!(with(&[CHAR_UPNP]), GattDetection::ProbePlain);
        assert_eq!(with(&[]), GattDetection::ProbePlain);
        assert_eq!(
            detect_from_gatt([CHAR_UPNP, CHAR_AVDTP]),
            GattDetection::NotAScooter
        );
        assert_eq!(probe_outcome(true), Detected::Generation(Generation::Plain));
        assert_eq!(probe_outcome(false), Detected::Ninebot);
        assert_eq!(
            crate::frame::Frame::decode(&PLAIN_PROBE).unwrap().attr,
            0x1A
        );
    }

    #[test]
    fn ble_version_thresholds() {
        use Detected::{Generation as G, Ninebot};
        assert_eq!(
            detect_from_ble_version(Some(Model::M365), 0x071),
            Some(G(Generation::Plain))
        );
        assert_eq!(
            detect_from_ble_version(None, 0x072),
            Some(G(Generation::Plain))
        );
        assert_eq!(
            detect_from_ble_version(Some(Model::M365), 0x081),
            Some(G(Generation::Xor))
        );
        assert_eq!(
            detect_from_ble_version(Some(Model::Pro), 0x100),
            Some(G(Generation::Xor))
        );
        assert_eq!(
            detect_from_ble_version(Some(Model::Pro), 0x122),
            Some(Ninebot)
        );
        assert_eq!(
            detect_from_ble_version(Some(Model::Pro2), 0x132),
            Some(Ninebot)
        );
        assert_eq!(
            detect_from_ble_version(Some(Model::OneS), 0x155),
            Some(G(Generation::MiAuth))
        );
        assert_eq!(
            detect_from_ble_version(None, 0x157),
            Some(G(Generation::MiAuth))
        );
        assert_eq!(detect_from_ble_version(None, 0x129), None);
    }
}
