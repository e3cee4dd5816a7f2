//! What a simulated scooter tells its driver: link changes it wants, the beep, pairing and
//! login outcomes, power changes. Events never carry the token or session keys.

use std::time::Instant;

use m365_proto::control::Refusal;

/// What the scooter reports to its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScooterEvent {
    /// A client connected.
    Connected,
    /// The link ended.
    Disconnected,
    /// The scooter wants the link dropped (power-off, a link fault): the driver disconnects.
    DropLink,
    /// The scooter beeps: someone is registering, press the power button.
    Beep,
    /// A button press opened the registration window.
    WindowOpened {
        /// When it closes.
        until: Instant,
    },
    /// A registration succeeded; the token is stored (and persisted).
    Registered,
    /// A registration failed (`12` sent).
    RegistrationRejected(String),
    /// The pairing could not be persisted; it stays valid in memory.
    StateNotSaved(String),
    /// A login succeeded; the UART is encrypted.
    LoggedIn,
    /// A login was refused (`E0`, `E2`).
    LoginRefused(Refusal),
    /// A login failed (`23` sent, or the client went silent).
    LoginFailed(String),
    /// A reconnect within the grace period resumed the previous session.
    SessionResumed,
    /// The session ended early (fault).
    SessionExpired,
    /// The ESC rebooted (0x78).
    Rebooted,
    /// The scooter powered off (0x79).
    PoweredOff,
    /// The power button turned the scooter on.
    PoweredOn,
}
