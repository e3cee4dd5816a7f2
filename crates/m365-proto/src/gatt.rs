//! The GATT layout of the scooters (protocol.md §2.2): which service and characteristic each
//! protocol message travels on. Machines in this crate name characteristics with [`Char`];
//! drivers map them to real UUIDs with the constants here.

/// Xiaomi's FE95 service (Mi-auth control point and parcel transport).
pub const SERVICE_FE95: u128 = 0x0000fe95_0000_1000_8000_00805f9b34fb;
/// UPNP ("control point"): short Mi-auth commands and results.
pub const CHAR_UPNP: u128 = 0x00000010_0000_1000_8000_00805f9b34fb;
/// AVDTP ("standard auth"): the parcel transport.
pub const CHAR_AVDTP: u128 = 0x00000019_0000_1000_8000_00805f9b34fb;
/// KEY: first bytes of the generation-B XOR keystream (only on generation B).
pub const CHAR_KEY: u128 = 0x00000014_0000_1000_8000_00805f9b34fb;
/// FE95 version characteristic (read, short version string) from Xiaomi's library.
pub const CHAR_VERSION: u128 = 0x00000004_0000_1000_8000_00805f9b34fb;
/// Nordic UART service.
pub const SERVICE_NUS: u128 = 0x6e400001_b5a3_f393_e0a9_e50e24dcca9e;
/// UART-W: client → scooter frames (write, write without response).
pub const CHAR_UART_WRITE: u128 = 0x6e400002_b5a3_f393_e0a9_e50e24dcca9e;
/// UART-N: scooter → client frames (notify).
pub const CHAR_UART_NOTIFY: u128 = 0x6e400003_b5a3_f393_e0a9_e50e24dcca9e;

/// Manufacturer-data company identifier advertised by the scooters (`4E 42`, "NB").
pub const COMPANY_ID: u16 = 0x424E;

/// Largest ATT payload every implementation assumes (default MTU 23).
pub const ATT_PAYLOAD: usize = 20;

/// A characteristic a protocol machine reads, writes or hears from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Char {
    /// FE95 / 0x0010.
    Upnp,
    /// FE95 / 0x0019.
    Avdtp,
    /// NUS 0x0002, client → scooter.
    UartWrite,
    /// NUS 0x0003, scooter → client.
    UartNotify,
    /// FE95 / 0x0014 (generation B).
    Key,
}

impl Char {
    /// The 128-bit UUID of this characteristic.
    pub const fn uuid(self) -> u128 {
        match self {
            Char::Upnp => CHAR_UPNP,
            Char::Avdtp => CHAR_AVDTP,
            Char::UartWrite => CHAR_UART_WRITE,
            Char::UartNotify => CHAR_UART_NOTIFY,
            Char::Key => CHAR_KEY,
        }
    }

    /// The characteristic with this UUID, if it is one the protocol uses.
    pub const fn from_uuid(uuid: u128) -> Option<Char> {
        match uuid {
            CHAR_UPNP => Some(Char::Upnp),
            CHAR_AVDTP => Some(Char::Avdtp),
            CHAR_UART_WRITE => Some(Char::UartWrite),
            CHAR_UART_NOTIFY => Some(Char::UartNotify),
            CHAR_KEY => Some(Char::Key),
            _ => None,
        }
    }
}

/// One BLE write or notification a machine wants sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where it goes.
    pub char: Char,
    /// At most [`ATT_PAYLOAD`] bytes.
    pub data: Vec<u8>,
}
