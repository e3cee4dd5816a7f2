//! The broker password: a value given directly, or read from a file (first line) or an
//! environment variable at each connection attempt, so a rotated secret is picked up without a
//! restart. It is never logged.

use crate::config::PasswordSource;
use crate::error::ConfigError;

/// Reads the password from its source.
pub fn read_password(source: &PasswordSource) -> Result<String, ConfigError> {
    match source {
        PasswordSource::File(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
                what: "MQTT password",
                path: path.clone(),
                reason: e.to_string(),
            })?;
            Ok(text.lines().next().unwrap_or("").to_owned())
        }
        PasswordSource::Env(var) => {
            std::env::var(var).map_err(|_| ConfigError::PasswordEnv(var.clone()))
        }
        PasswordSource::Value(secret) => Ok(secret.expose().to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_password_is_its_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pw");
        std::fs::write(&p, "s3cret\nignored\n").unwrap();
        assert_eq!(read_password(&PasswordSource::File(p)).unwrap(), "s3cret");
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
