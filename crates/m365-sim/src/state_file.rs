//! What a simulated scooter remembers across restarts: its pairing (token and DID), as a real
//! BLE module keeps them in flash. Without it, restarting the simulator would silently unpair
//! every client, and reconnection tests could not cover "scooter rebooted".
//!
//! One small text file per scooter, named after its address, in a state directory:
//!
//! ```text
//! token=0cf5615003810d89c233a12a
//! did=00626c742e342e31386e35383236366b67673030
//! ```
//!
//! Writes are atomic (temporary file, then rename) and the file is readable only by its owner
//! on Unix, since it holds the token.

use std::io::Write;
use std::path::{Path, PathBuf};

use m365_proto::crypto::DID_LEN;
use m365_proto::keys::Token;
use m365_proto::pairing::Did;

/// The pairing a scooter holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PairingState {
    /// The token of the last successful registration.
    pub token: Option<Token>,
    /// The DID of the BLE module.
    pub did: Option<Did>,
}

/// A state file that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing failed.
    #[error("scooter state file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The content is not what this file writes.
    #[error("scooter state file {path}, line {line}: {reason}; delete the file to unpair")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: &'static str,
    },
}

/// The state file of the scooter with `address` in `dir`.
pub fn path_for(dir: &Path, address: &[u8; 6]) -> PathBuf {
    let name: String = address.iter().map(|b| format!("{b:02x}")).collect();
    dir.join(format!("scooter-{name}.state"))
}

/// Read a state file; a missing file is an unpaired scooter, not an error.
pub fn load(path: &Path) -> Result<PairingState, StateError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(PairingState::default()),
        Err(source) => {
            return Err(StateError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    parse(&text).map_err(|(line, reason)| StateError::Malformed {
        path: path.to_owned(),
        line,
        reason,
    })
}

/// Write a state file atomically, creating the directory if needed.
pub fn save(path: &Path, state: &PairingState) -> Result<(), StateError> {
    let io = |source| StateError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut text = String::new();
    if let Some(token) = &state.token {
        text.push_str(&format!("token={}\n", hex::encode(token.as_bytes())));
    }
    if let Some(did) = &state.did {
        text.push_str(&format!("did={}\n", hex::encode(did.as_bytes())));
    }
    let tmp = path.with_extension("state.tmp");
    {
        let mut file = std::fs::File::create(&tmp).map_err(io)?;
        restrict(&file).map_err(io)?;
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(unix)]
fn restrict(file: &std::fs::File) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn restrict(_file: &std::fs::File) -> std::io::Result<()> {
    Ok(())
}

fn parse(text: &str) -> Result<PairingState, (usize, &'static str)> {
    let mut state = PairingState::default();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err((n, "expected key=value"));
        };
        let bytes = hex::decode(value.trim()).map_err(|_| (n, "value is not hex"))?;
        match key.trim() {
            "token" => {
                let raw: [u8; 12] = bytes
                    .try_into()
                    .map_err(|_| (n, "token must be 12 bytes"))?;
                state.token = Some(Token(raw));
            }
            "did" => {
                let raw: [u8; DID_LEN] =
                    bytes.try_into().map_err(|_| (n, "did must be 20 bytes"))?;
                state.did = Some(Did(raw));
            }
            _ => return Err((n, "unknown key (expected token or did)")),
        }
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("m365-sim-state-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn round_trip_and_missing_file() {
        let dir = temp_dir("rt");
        let path = path_for(&dir, &[0xD5, 1, 2, 3, 4, 5]);
        assert!(path.ends_with("scooter-d50102030405.state"));
        assert_eq!(load(&path).ok(), Some(PairingState::default()));
        let mut did = [b'a'; DID_LEN];
        did[0] = 0;
        let state = PairingState {
            token: Some(Token([7; 12])),
            did: Some(Did(did)),
        };
        assert!(save(&path, &state).is_ok());
        assert_eq!(load(&path).ok(), Some(state));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .map(|m| m.permissions().mode() & 0o777)
                .ok();
            assert_eq!(mode, Some(0o600));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn malformed_files_name_the_line() {
        assert_eq!(parse("token=0102\n"), Err((1, "token must be 12 bytes")));
        assert_eq!(parse("\nfoo\n"), Err((2, "expected key=value")));
        assert_eq!(parse("did=zz\n"), Err((1, "value is not hex")));
        assert_eq!(
            parse("pin=00\n"),
            Err((1, "unknown key (expected token or did)"))
        );
        let dir = temp_dir("bad");
        let path = path_for(&dir, &[0xC0; 6]);
        assert!(std::fs::create_dir_all(&dir).is_ok());
        assert!(std::fs::write(&path, "token=00\n").is_ok());
        let err = load(&path).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("line 1") && err.contains("12 bytes"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
