//! Login on a fresh connection (protocol.md §3.4): proves to the scooter that we hold the
//! token and derives the session keys. Failures name the token file, since the fix is always
//! about that file (pair again, or point at the right one).

use std::path::Path;

use m365_proto::control::Refusal;
use m365_proto::keys::{SessionKeys, Token};
use m365_proto::login::{self, ClientLogin, LoginError};
use rand::rngs::OsRng;

use crate::error::BleError;
use crate::handshake::{drive, now};
use crate::transport::Transport;

/// Logs in with `token` (read from `token_path`, named in errors) on the connected, subscribed
/// transport; returns the session keys.
pub(crate) async fn login<T: Transport>(
    transport: &mut T,
    token: &Token,
    token_path: &Path,
) -> Result<SessionKeys, BleError> {
    let mut machine = ClientLogin::new(now(), &mut OsRng, token.clone(), login::Config::default());
    match drive(transport, &mut machine).await? {
        login::ClientEvent::LoggedIn(keys) => {
            tracing::debug!("logged in");
            Ok(keys)
        }
        // The scooter's proof did not match, it answered `23`, or `22` (LOG_INVALID_LTMK: it
        // holds no valid token for us): only pairing again helps.
        login::ClientEvent::Failed(
            LoginError::TokenRejected | LoginError::Rejected | LoginError::InvalidToken,
        ) => Err(BleError::TokenRejected {
            path: token_path.to_path_buf(),
        }),
        login::ClientEvent::Failed(LoginError::Refused(Refusal::NotRegistered)) => {
            Err(BleError::NotPaired {
                path: token_path.to_path_buf(),
            })
        }
        login::ClientEvent::Failed(e) => Err(BleError::Login(e)),
    }
}
