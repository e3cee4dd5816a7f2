//! The `.mi-token` file (protocol.md §4.4): exactly the 12 raw token bytes, no header, as the
//! other clients store it. The token itself ([`Token`]) is pure protocol data and lives in
//! `m365-proto`; reading and writing the file is I/O, so it lives here with the rest of the
//! client's I/O.
//!
//! Writing is atomic (a temporary file in the same folder, then a rename), readable only by the
//! owner on Unix, and refuses to replace a *different* token unless asked: losing the token means
//! pressing the scooter's button and registering again.

use std::io::Write;
use std::path::{Path, PathBuf};

use m365_proto::keys::{TOKEN_LEN, Token};

/// The conventional file name.
pub const DEFAULT_FILE_NAME: &str = ".mi-token";

/// What went wrong with a token file.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    /// No file at the path.
    #[error("no token file at {path}: register (pair) with the scooter first")]
    Missing {
        /// The path looked at.
        path: PathBuf,
    },
    /// The file is not 12 bytes long.
    #[error("token file {path}: expected exactly {TOKEN_LEN} bytes, found {found}")]
    WrongLength {
        /// The file.
        path: PathBuf,
        /// Its length.
        found: u64,
    },
    /// A different token is stored and overwriting was not asked for.
    #[error(
        "token file {path} already holds a different token; refusing to overwrite it (ask \
         explicitly to replace it)"
    )]
    Different {
        /// The file.
        path: PathBuf,
    },
    /// Any other I/O failure.
    #[error("token file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Reads the token stored at `path`.
pub fn read(path: &Path) -> Result<Token, TokenFileError> {
    let io = |source: std::io::Error| TokenFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(TokenFileError::Missing {
                path: path.to_path_buf(),
            });
        }
        Err(e) => return Err(io(e)),
    };
    let token =
        <[u8; TOKEN_LEN]>::try_from(bytes.as_slice()).map_err(|_| TokenFileError::WrongLength {
            path: path.to_path_buf(),
            found: bytes.len() as u64,
        })?;
    Ok(Token(token))
}

/// Stores `token` at `path`, atomically and (on Unix) with mode 0600.
///
/// Writing the token already stored is a no-op success. A different stored token
/// ([`TokenFileError::Different`]) or a file of the wrong length
/// ([`TokenFileError::WrongLength`]) is replaced only when `overwrite` is true.
pub fn write(path: &Path, token: &Token, overwrite: bool) -> Result<(), TokenFileError> {
    let io = |source: std::io::Error| TokenFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    match read(path) {
        Ok(existing) if existing == *token => return Ok(()),
        Ok(_) if !overwrite => {
            return Err(TokenFileError::Different {
                path: path.to_path_buf(),
            });
        }
        // A damaged file is reported as such; it is replaced only when asked, like a token.
        Err(e @ TokenFileError::WrongLength { .. }) if !overwrite => return Err(e),
        Ok(_) | Err(TokenFileError::Missing { .. } | TokenFileError::WrongLength { .. }) => {}
        Err(e) => return Err(e),
    }
    let file_name = path.file_name().ok_or_else(|| {
        io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the path names no file",
        ))
    })?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(file_name);
    temp_name.push(format!(".tmp{}", std::process::id()));
    let temp = path.with_file_name(temp_name);

    let result = write_new(&temp, token.as_bytes()).and_then(|()| std::fs::rename(&temp, path));
    if result.is_err() {
        // Best effort: never leave a stray copy of the secret behind.
        let _ = std::fs::remove_file(&temp);
    }
    result.map_err(io)
}

fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    // The rename must not publish a file whose bytes are still only in the page cache.
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir() -> tempfile::TempDir {
        tempfile::tempdir().expect("temp dir")
    }

    #[test]
    fn round_trip_and_identical_rewrite() {
        let dir = temp_dir();
        let path = dir.path().join(DEFAULT_FILE_NAME);
        let token = Token(*b"0123456789ab");
        write(&path, &token, false).expect("first write");
        assert_eq!(read(&path).expect("read back"), token);
        write(&path, &token, false).expect("same token again");
        assert_eq!(std::fs::read(&path).expect("raw").len(), TOKEN_LEN);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let leftovers = std::fs::read_dir(dir.path()).expect("list").count();
        assert_eq!(leftovers, 1, "no temporary file may remain");
    }

    #[test]
    fn different_token_needs_overwrite() {
        let dir = temp_dir();
        let path = dir.path().join(DEFAULT_FILE_NAME);
        write(&path, &Token([1; 12]), false).expect("first write");
        let err = write(&path, &Token([2; 12]), false).expect_err("must refuse");
        assert!(matches!(err, TokenFileError::Different { .. }), "{err}");
        assert_eq!(read(&path).expect("kept").0, [1; 12]);
        write(&path, &Token([2; 12]), true).expect("overwrite asked");
        assert_eq!(read(&path).expect("replaced").0, [2; 12]);
        std::fs::write(&path, [7u8; 5]).expect("damage the file");
        let err = write(&path, &Token([3; 12]), false).expect_err("damaged file");
        assert!(
            matches!(err, TokenFileError::WrongLength { found: 5, .. }),
            "{err}"
        );
        write(&path, &Token([3; 12]), true).expect("overwrite asked");
        assert_eq!(read(&path).expect("repaired").0, [3; 12]);
    }

    #[test]
    fn wrong_length_and_missing_are_typed() {
        let dir = temp_dir();
        let path = dir.path().join(DEFAULT_FILE_NAME);
        let err = read(&path).expect_err("missing");
        assert!(matches!(err, TokenFileError::Missing { .. }), "{err}");
        std::fs::write(&path, [0u8; 13]).expect("write raw");
        let err = read(&path).expect_err("13 bytes");
        assert!(matches!(err, TokenFileError::WrongLength { found: 13, .. }));
        assert!(err.to_string().contains("found 13"), "{err}");
        assert!(err.to_string().contains(DEFAULT_FILE_NAME), "{err}");
    }

    #[test]
    fn a_path_naming_no_file_is_an_io_error_not_a_panic() {
        let err = write(Path::new("/"), &Token([4; 12]), true).expect_err("no file name");
        assert!(matches!(err, TokenFileError::Io { .. }), "{err}");
    }
}
