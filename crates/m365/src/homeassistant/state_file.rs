//! The small file that remembers what discovery announced last time (prefix, gateway id,
//! scooter ids), so a scooter that has left the configuration can have its retained configs
//! removed at the next start. Written atomically (a temporary file renamed over it); a missing
//! file is a first start, a damaged one is said once and treated as empty.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Version of the file's format.
const VERSION: u32 = 1;

/// What was announced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Announced {
    /// Format version.
    pub(super) v: u32,
    /// The discovery prefix the configs went under.
    pub(super) prefix: String,
    /// The gateway's id.
    pub(super) gateway: String,
    /// The scooters' ids.
    pub(super) scooters: BTreeSet<String>,
}

impl Announced {
    pub(super) fn new(prefix: &str, gateway: &str, scooters: BTreeSet<String>) -> Self {
        Announced {
            v: VERSION,
            prefix: prefix.to_owned(),
            gateway: gateway.to_owned(),
            scooters,
        }
    }
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
    match serde_json::from_slice::<Announced>(&text) {
        Ok(a) if a.v == VERSION => Some(a),
        Ok(a) => {
            tracing::warn!(
                path = %path.display(),
                version = a.v,
                "unknown version of the Home Assistant discovery state file; treated as empty"
            );
            None
        }
        Err(error) => {
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
    let text = serde_json::to_vec(announced).map_err(std::io::Error::other)?;
    {
        let mut file = std::fs::File::create(tmp)?;
        file.write_all(&text)?;
        file.write_all(b"\n")?;
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
}
