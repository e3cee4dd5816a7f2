//! The part of `m365` that touches the scooter: transports (btleplug for real BlueZ, in-process
//! for the simulator), the scanner, pairing, login, the encrypted request/response session with
//! pipelined reads, and the reconnection state machine users rely on.
#![forbid(unsafe_code)]
