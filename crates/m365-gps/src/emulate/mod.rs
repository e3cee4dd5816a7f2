//! Emulated GPS hardware on pseudo-terminals, for the scooter simulator, the demo and tests:
//! an NMEA receiver ([`nmea_receiver`]) and a SIM7600 modem ([`sim7600_modem`]). Clients open
//! the emulated device by path exactly like real hardware, so the serial code path is the one
//! that runs in production.

pub mod handle;
pub mod nmea_receiver;
pub mod pty;
pub mod route;
pub mod sim7600_modem;
pub mod synth;

pub use handle::EmulatorHandle;
pub use nmea_receiver::{NmeaFeed, NmeaReceiverConfig, Pace};
pub use route::{RoutePoint, straight_line};
pub use sim7600_modem::{ModemModel, Sim7600ModemConfig};
pub use synth::Talker;
