//! The small file that remembers what discovery announced last time (prefix, gateway id,
//! scooter ids), so a scooter that has left the configuration can have its retained configs
//! removed at the next start. Written atomically (a temporary file renamed over it); a missing
//! file is a first start, a damaged one is said once and treated as empty.
//!
//! [`parse`] and [`render`] are the pure part (the file's contents to and from [`Announced`]);
//! `read` and `write` are thin wrappers that add the file system.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Version of the file's format.
const VERSION: u32 = 1;

/// What was announced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announced {
    /// Format version.
    pub v: u32,
    /// The discovery prefix the configs went under.
    pub prefix: String,
    /// The gateway's id.
    pub gateway: String,
    /// The scooters' ids.
    pub scooters: BTreeSet<String>,
}

impl Announced {
    /// What is announced under `prefix` for the gateway `gateway` and the scooters `scooters`,
    /// in this build's format version.
    pub fn new(prefix: &str, gateway: &str, scooters: BTreeSet<String>) -> Self {
        Announced {
            v: VERSION,
            prefix: prefix.to_owned(),
            gateway: gateway.to_owned(),
            scooters,
        }
    }
}

/// Why the file's contents cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    /// Not the file's JSON.
    #[error("damaged: {0}")]
    Damaged(serde_json::Error),
    /// Well-formed, in a format version this build does not know.
    #[error("unknown version {0}")]
    UnknownVersion(u32),
}

/// Reads the file's contents.
pub fn parse(bytes: &[u8]) -> Result<Announced, StateFileError> {
    let announced: Announced = serde_json::from_slice(bytes).map_err(StateFileError::Damaged)?;
    if announced.v != VERSION {
        return Err(StateFileError::UnknownVersion(announced.v));
    }
    Ok(announced)
}

/// The file's contents for `announced`: one line of JSON.
pub fn render(announced: &Announced) -> Vec<u8> {
    // Strings, a set of strings and an integer always serialise.
    let mut text = serde_json::to_vec(announced).unwrap_or_default();
    text.push(b'\n');
    text
}

/// Reads the file: `None` when there is none yet, or when it cannot be read or understood
/// (logged as a warning: nothing is removed then, which is the safe side).
pub(super) fn read(path: &Path) -> Option<Announced> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(error) => {
            tracing::warn!(
                path = %path.display(),
                %error,
                "cannot read what Home Assistant discovery announced last time; \
                 configs of departed scooters stay"
            );
            return None;
        }
    };
    match parse(&text) {
        Ok(a) => Some(a),
        Err(StateFileError::UnknownVersion(version)) => {
            tracing::warn!(
                path = %path.display(),
                version,
                "unknown version of the Home Assistant discovery state file; treated as empty"
            );
            None
        }
        Err(StateFileError::Damaged(error)) => {
            tracing::warn!(
                path = %path.display(),
                %error,
                "damaged Home Assistant discovery state file; treated as empty"
            );
            None
        }
    }
}

/// Replaces the file with `announced`: written to `<path>.tmp`, flushed to disk, renamed.
pub(super) fn write(path: &Path, announced: &Announced) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = Path::new(&tmp_name);
    {
        let mut file = std::fs::File::create(tmp)?;
        file.write_all(&render(announced))?;
        file.sync_all()?;
    }
    std::fs::rename(tmp, path)?;
    // The rename itself reaches the disk with the directory.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn what_is_written_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state").join("ha-announced.json");
        assert_eq!(read(&path), None, "first start");
        let a = Announced::new("homeassistant", "pi", ids(&["a", "b"]));
        write(&path, &a).unwrap();
        assert_eq!(read(&path), Some(a));
        let b = Announced::new("ha", "pi", ids(&["b"]));
        write(&path, &b).unwrap();
        assert_eq!(read(&path), Some(b), "replaced");
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left: {leftovers:?}");
    }

    #[test]
    fn a_damaged_file_counts_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ha-announced.json");
        std::fs::write(&path, b"{\"v\":1,\"prefix\":").unwrap();
        assert_eq!(read(&path), None);
        std::fs::write(
            &path,
            b"{\"v\":9,\"prefix\":\"x\",\"gateway\":\"g\",\"scooters\":[]}",
        )
        .unwrap();
        assert_eq!(read(&path), None, "a version this build does not know");
        std::fs::create_dir_all(dir.path().join("dir")).unwrap();
        assert_eq!(read(&dir.path().join("dir")), None, "not a file");
    }

    #[test]
    fn parse_reads_what_render_writes() {
        let a = Announced::new("homeassistant", "pi", ids(&["a", "b\u{e9}\"q"]));
        let text = render(&a);
        assert_eq!(text.last(), Some(&b'\n'), "one line");
        assert_eq!(parse(&text).unwrap(), a);
        assert_eq!(
            parse(br#"{"v":1,"prefix":"ha","gateway":"g","scooters":["x","x"]}"#).unwrap(),
            Announced::new("ha", "g", ids(&["x"])),
        );
        assert!(matches!(
            parse(br#"{"v":2,"prefix":"ha","gateway":"g","scooters":[]}"#),
            Err(StateFileError::UnknownVersion(2))
        ));
        for damaged in [&b""[..], b"{", b"\xff", br#"{"v":1,"prefix":"ha"}"#, b"[1]"] {
            let e = parse(damaged).unwrap_err();
            assert!(matches!(e, StateFileError::Damaged(_)), "{damaged:?}");
            assert!(e.to_string().starts_with("damaged: "), "{e}");
        }
    }
}
