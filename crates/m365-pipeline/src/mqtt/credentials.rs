//! The broker credentials, read in one place: the password is a value given directly, or read
//! from a file or an environment variable at each connection attempt, so a rotated secret is
//! picked up without a restart. It is never logged.

use std::path::{Path, PathBuf};

use crate::error::ConfigError;
use crate::secret::Secret;

/// Where the password comes from. It is never logged: a value is a [`Secret`], a file or an
/// environment variable is read at each connection attempt (so a rotated secret is picked up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// The content of this file, without its final newline.
    File(PathBuf),
    /// This environment variable.
    Env(String),
    /// This value, given directly (for example from a configuration file that holds it).
    Value(Secret),
}

/// Reads the password from its source.
pub fn read_password(source: &PasswordSource) -> Result<String, ConfigError> {
    match source {
        PasswordSource::File(path) => read_password_file(path),
        PasswordSource::Env(var) => {
            std::env::var(var).map_err(|_| ConfigError::PasswordEnv(var.clone()))
        }
        PasswordSource::Value(secret) => Ok(secret.expose().to_owned()),
    }
}

/// The password in the file at `path`: its content without the final newline (editors and
/// `echo` add one; it is never part of the password). An empty password is refused.
pub fn read_password_file(path: &Path) -> Result<String, ConfigError> {
    let failed = |reason: String| ConfigError::File {
        what: "the MQTT password",
        path: path.to_path_buf(),
        reason,
    };
    let mut text = std::fs::read_to_string(path).map_err(|e| failed(e.to_string()))?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    if text.is_empty() {
        return Err(failed("the file is empty".into()));
    }
    Ok(text)
}

/// The user name and password to connect with: none without a user name, an empty password
/// with a user name but no password source, else the password read now from its source.
pub fn credentials(
    username: Option<&str>,
    password: Option<&PasswordSource>,
) -> Result<Option<(String, String)>, ConfigError> {
    let Some(user) = username else {
        return Ok(None);
    };
    let password = match password {
        Some(source) => read_password(source)?,
        None => String::new(),
    };
    Ok(Some((user.to_owned(), password)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_password_is_its_content_without_the_final_newline() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pw");
        for (content, password) in [
            ("s3cret\n", "s3cret"),
            ("s3cret\r\n", "s3cret"),
            ("s3cret", "s3cret"),
            ("pa ss\n\n", "pa ss\n"),
        ] {
            std::fs::write(&p, content).unwrap();
            assert_eq!(
                read_password(&PasswordSource::File(p.clone())).unwrap(),
                password
            );
        }
        std::fs::write(&p, "\n").unwrap();
        let e = read_password_file(&p).unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");
    }

    #[test]
    fn credentials_need_a_user_name() {
        let secret = PasswordSource::Value(crate::Secret::new("pw"));
        assert_eq!(credentials(None, Some(&secret)).unwrap(), None);
        assert_eq!(
            credentials(Some("u"), Some(&secret)).unwrap(),
            Some(("u".to_owned(), "pw".to_owned()))
        );
        assert_eq!(
            credentials(Some("u"), None).unwrap(),
            Some(("u".to_owned(), String::new()))
        );
        let missing = PasswordSource::Env("M365_TEST_NO_SUCH_VAR".into());
        assert!(credentials(Some("u"), Some(&missing)).is_err());
    }

    #[test]
    fn a_value_is_used_as_given_and_never_printed() {
        let src = PasswordSource::Value(crate::Secret::new("s3cret"));
        assert_eq!(read_password(&src).unwrap(), "s3cret");
        assert!(!format!("{src:?}").contains("s3cret"));
    }

    #[test]
    fn missing_sources_give_clear_errors() {
        let e = read_password(&PasswordSource::File("/nonexistent/pw".into())).unwrap_err();
        assert!(e.to_string().contains("MQTT password"), "{e}");
        let e = read_password(&PasswordSource::Env("M365_TEST_NO_SUCH_VAR".into())).unwrap_err();
        assert!(e.to_string().contains("M365_TEST_NO_SUCH_VAR"), "{e}");
    }
}
