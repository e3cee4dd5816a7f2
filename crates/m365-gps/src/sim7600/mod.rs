//! The SIMCom SIM7600 4G modem's GNSS, through its AT port: a pure parser of the byte stream
//! ([`at`]), the `+CGPS`/`+CGPSINFO`/`+CGNSSINFO` payloads ([`info`]) and an async [`Sim7600`]
//! driver that switches GNSS on and polls it.

pub mod at;
pub mod driver;
pub mod info;

pub use at::{Exchange, ExchangeReader, FinalResult, exchanges};
pub use driver::{InfoCommand, Sim7600, Sim7600Error};
pub use info::{
    CgnssInfo, CgpsStatus, InfoError, parse_cgnssinfo, parse_cgps_status, parse_cgpsinfo,
};
