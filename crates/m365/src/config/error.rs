//! What can be wrong with a configuration, each problem tied to the file position and the key it
//! concerns (`martinete.toml:7:14: [mqtt] keep_alive: expected a duration, found "abc"`).

use super::location::Location;
use std::fmt;
use std::path::PathBuf;

/// A key inside a section, printed as `[mqtt] keep_alive` (or `[mqtt]` for the section itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPath {
    /// Dotted section name (`mqtt`, `mqtt.tls`); empty for the top level of the file.
    pub section: String,
    /// The key, or `None` when the problem is the section as a whole.
    pub key: Option<String>,
}

impl KeyPath {
    pub(crate) fn new(section: &str, key: Option<&str>) -> Self {
        Self {
            section: section.to_owned(),
            key: key.map(str::to_owned),
        }
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.section.is_empty(), &self.key) {
            (true, Some(key)) => write!(f, "{key}"),
            (true, None) => write!(f, "(top level)"),
            (false, Some(key)) => write!(f, "[{}] {key}", self.section),
            (false, None) => write!(f, "[{}]", self.section),
        }
    }
}

/// One invalid value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where the value was written.
    pub location: Location,
    /// The key it was written under.
    pub key: KeyPath,
    /// What is wrong, in words a user can act on.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.location, self.key, self.message)
    }
}

/// A key that `m365` does not know. It is ignored, and reported so typos do not go unnoticed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Where the key was written.
    pub location: Location,
    /// The unknown key (or section).
    pub key: KeyPath,
    /// A known key with a close spelling, if there is one.
    pub suggestion: Option<String>,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.key.key.is_some() {
            "key"
        } else {
            "section"
        };
        write!(
            f,
            "{}: {}: unknown {what}, ignored",
            self.location, self.key
        )?;
        if let Some(suggestion) = &self.suggestion {
            write!(f, " (did you mean `{suggestion}`?)")?;
        }
        Ok(())
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists (or was named) but could not be read. The message names the cause once
    /// (the I/O error is not chained as a source, which would repeat it).
    #[error("{}: cannot read the configuration: {}", path.display(), read_reason(error))]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },
    /// No `--config` was given and none of the default places holds a file.
    #[error(
        "no configuration file found (looked for {}); pass --config PATH",
        list(searched)
    )]
    NotFound {
        /// The places looked at, in order.
        searched: Vec<PathBuf>,
    },
    /// The file is not valid TOML.
    #[error("{location}: invalid TOML: {message}")]
    Syntax {
        /// Where the parser stopped.
        location: Location,
        /// The parser's explanation.
        message: String,
    },
    /// The file is valid TOML, but one or more values are not acceptable.
    #[error("{}", lines(problems))]
    Invalid {
        /// Every problem found, in file order.
        problems: Vec<Problem>,
        /// Unknown keys seen on the way (they are not errors by themselves).
        warnings: Vec<Warning>,
    },
}

fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn lines(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(Problem::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// What went wrong reading a file, in a few words: the common cases say what to do.
fn read_reason(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::NotFound => {
            "no such file (pass --config PATH, or start one with `m365 config example`)".to_owned()
        }
        std::io::ErrorKind::PermissionDenied => {
            "permission denied (the m365 user must be able to read it)".to_owned()
        }
        std::io::ErrorKind::IsADirectory => "it is a folder, not a file".to_owned(),
        _ => error.to_string(),
    }
}
