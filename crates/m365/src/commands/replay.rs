//! The replay guard's memory: the ids of the commands accepted, so the same command delivered
//! twice (a QoS 1 redelivery, a retained message, a sender retrying) is refused as `replayed`
//! instead of carried out twice, across restarts too.
//!
//! An id is remembered until its command expires, and at least [`RETENTION`] after it arrived:
//! a `ttl` command's expiry counts from its arrival, so without the retention the same message
//! sent again after its expiry would look new. [`ReplayMemory`] is the pure part;
//! [`ReplayFile`] keeps it in a small JSON file in the state directory, written atomically
//! (temporary file, then rename). A damaged file is reported once and replaced, never trusted
//! and never a reason to stop.

use std::collections::{BTreeSet, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::message::CommandId;

/// The file's name in the state directory.
pub const REPLAY_FILE: &str = "commands-seen.json";
/// How long an id is remembered at least, counted from its command's arrival.
pub const RETENTION: Duration = Duration::from_secs(24 * 3600);
/// The most ids remembered. Ids whose command has expired make room first; when every one
/// belongs to a command still valid, new commands are refused (`busy`).
pub const MAX_REMEMBERED: usize = 10_000;

/// The file format's version.
const VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    /// The command's expiry.
    expires: SystemTime,
    /// When the id may be forgotten: the expiry, or [`RETENTION`] after arrival if later.
    keep_until: SystemTime,
}

/// The ids seen, each with how long it is remembered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayMemory {
    seen: HashMap<CommandId, Entry>,
    /// The same ids in the order they may be forgotten.
    by_keep: BTreeSet<(SystemTime, CommandId)>,
}

impl ReplayMemory {
    /// Nothing remembered.
    pub fn new() -> ReplayMemory {
        ReplayMemory::default()
    }

    /// Whether `id` was seen and is still remembered at `now`.
    pub fn contains(&self, id: &CommandId, now: SystemTime) -> bool {
        self.seen.get(id).is_some_and(|e| e.keep_until > now)
    }

    /// Remembers `id` of a command expiring at `expires`, arrived at `now`. `false` when the
    /// memory is full of ids whose command is still valid (nothing is remembered then).
    pub fn remember(&mut self, id: CommandId, expires: SystemTime, now: SystemTime) -> bool {
        self.prune(now);
        if self.seen.len() >= MAX_REMEMBERED && !self.seen.contains_key(&id) {
            // Forget an id whose command can no longer run, the one due to be forgotten first.
            let spent = self
                .by_keep
                .iter()
                .find(|(_, id)| self.seen.get(id).is_some_and(|e| e.expires <= now))
                .map(|(_, id)| id.clone());
            match spent {
                Some(spent) => self.forget(&spent),
                None => return false,
            }
        }
        let keep_until = expires.max(now.checked_add(RETENTION).unwrap_or(expires));
        self.insert(
            id,
            Entry {
                expires,
                keep_until,
            },
        );
        true
    }

    /// Forgets what need not be remembered any more at `now`.
    pub fn prune(&mut self, now: SystemTime) {
        while let Some((keep_until, id)) = self.by_keep.first().cloned() {
            if keep_until > now {
                break;
            }
            self.forget(&id);
        }
    }

    fn insert(&mut self, id: CommandId, entry: Entry) {
        self.forget(&id);
        self.by_keep.insert((entry.keep_until, id.clone()));
        self.seen.insert(id, entry);
    }

    fn forget(&mut self, id: &CommandId) {
        if let Some(old) = self.seen.remove(id) {
            self.by_keep.remove(&(old.keep_until, id.clone()));
        }
    }

    /// How many ids are remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// The file's contents.
    pub fn encode(&self) -> Vec<u8> {
        let mut ids: Vec<FileEntry> = self
            .seen
            .iter()
            .map(|(id, e)| FileEntry {
                id: id.as_str().to_owned(),
                expires_ms: millis(e.expires),
                keep_until_ms: millis(e.keep_until),
            })
            .collect();
        ids.sort_by(|a, b| a.id.cmp(&b.id));
        let file = File {
            version: VERSION,
            ids,
        };
        // Strings and integers always serialise.
        serde_json::to_vec(&file).unwrap_or_default()
    }

    /// Reads a file's contents, forgetting what has run out at `now`.
    pub fn decode(bytes: &[u8], now: SystemTime) -> Result<ReplayMemory, String> {
        let file: File = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if file.version != VERSION {
            return Err(format!("unknown version {}", file.version));
        }
        let mut memory = ReplayMemory::new();
        for entry in file.ids {
            let id = CommandId::new(&entry.id).map_err(|e| e.to_string())?;
            memory.insert(
                id,
                Entry {
                    expires: from_millis(entry.expires_ms),
                    keep_until: from_millis(entry.keep_until_ms),
                },
            );
        }
        memory.prune(now);
        Ok(memory)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: u32,
    ids: Vec<FileEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    id: String,
    expires_ms: u64,
    keep_until_ms: u64,
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn from_millis(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH
        .checked_add(Duration::from_millis(ms))
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// Why the replay file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ReplayFileError {
    /// Reading or writing failed.
    #[error("cannot {action} the command replay file {path}: {source}")]
    Io {
        /// "read" or "write".
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The contents are not a replay file.
    #[error("the command replay file {path} is damaged ({reason})")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The replay memory's file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayFile {
    path: PathBuf,
}

impl ReplayFile {
    /// The file at `path` (usually [`REPLAY_FILE`] in the state directory).
    pub fn new(path: impl Into<PathBuf>) -> ReplayFile {
        ReplayFile { path: path.into() }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the memory; a missing file is an empty memory.
    pub fn read(&self, now: SystemTime) -> Result<ReplayMemory, ReplayFileError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ReplayMemory::new()),
            Err(source) => {
                return Err(ReplayFileError::Io {
                    action: "read",
                    path: self.path.clone(),
                    source,
                });
            }
        };
        ReplayMemory::decode(&bytes, now).map_err(|reason| ReplayFileError::Damaged {
            path: self.path.clone(),
            reason,
        })
    }

    /// Reads the memory at start-up. A file that cannot be read or is damaged is reported (a
    /// warning, this once) and starts an empty memory; a damaged one is replaced at once, so it
    /// is not reported again at the next start.
    pub fn load(&self, now: SystemTime) -> ReplayMemory {
        match self.read(now) {
            Ok(memory) => memory,
            Err(error @ ReplayFileError::Damaged { .. }) => {
                tracing::warn!(
                    %error,
                    "starting with an empty replay memory: commands accepted before this start \
                     could be accepted again until they expire"
                );
                let memory = ReplayMemory::new();
                if let Err(e) = self.save(&memory) {
                    tracing::warn!(error = %e, "cannot replace the damaged replay file");
                }
                memory
            }
            Err(error) => {
                tracing::warn!(%error, "starting with an empty replay memory");
                ReplayMemory::new()
            }
        }
    }

    /// Writes `memory` atomically: into a temporary file beside it, flushed to the disk, then
    /// renamed over the file, so a crash leaves either the old contents or the new.
    pub fn save(&self, memory: &ReplayMemory) -> Result<(), ReplayFileError> {
        let io = |source| ReplayFileError::Io {
            action: "write",
            path: self.path.clone(),
            source,
        };
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(".tmp");
        let temp = self.path.with_file_name(name);
        let mut file = std::fs::File::create(&temp).map_err(io)?;
        file.write_all(&memory.encode()).map_err(io)?;
        file.sync_all().map_err(io)?;
        drop(file);
        std::fs::rename(&temp, &self.path).map_err(io)?;
        // The rename itself reaches the disk with the directory (best effort: not every system
        // can open a directory for this).
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty())
            && let Ok(dir) = std::fs::File::open(dir)
        {
            let _ = dir.sync_all();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn id(s: &str) -> CommandId {
        CommandId::new(s).unwrap()
    }

    const T0: u64 = 1_748_779_200;

    #[test]
    fn ids_are_remembered_until_expiry_and_at_least_the_retention() {
        let mut m = ReplayMemory::new();
        assert!(m.remember(id("short"), at(T0 + 30), at(T0)));
        assert!(m.remember(id("long"), at(T0 + 2 * 86_400), at(T0)));
        assert!(
            m.contains(&id("short"), at(T0 + 31)),
            "kept past its expiry"
        );
        assert!(m.contains(&id("short"), at(T0 + 86_399)));
        assert!(!m.contains(&id("short"), at(T0 + 86_400)));
        assert!(m.contains(&id("long"), at(T0 + 86_400 + 1)));
        assert!(!m.contains(&id("other"), at(T0)));
        m.prune(at(T0 + 86_400));
        assert_eq!(m.len(), 1);
        m.prune(at(T0 + 2 * 86_400));
        assert!(m.is_empty());
    }

    #[test]
    fn a_full_memory_makes_room_from_expired_commands_only() {
        let mut m = ReplayMemory::new();
        for i in 0..MAX_REMEMBERED {
            // Half expire at once, half in an hour.
            let expires = if i % 2 == 0 { T0 + 1 } else { T0 + 3600 };
            assert!(m.remember(id(&format!("c{i}")), at(expires), at(T0)));
        }
        assert!(m.remember(id("new"), at(T0 + 3600), at(T0 + 2)));
        assert_eq!(m.len(), MAX_REMEMBERED);
        assert!(
            m.contains(&id("c1"), at(T0 + 2)),
            "a valid command's id is kept"
        );
        assert!(
            !m.contains(&id("c0"), at(T0 + 2)),
            "the oldest spent one made room"
        );

        let mut full = ReplayMemory::new();
        for i in 0..MAX_REMEMBERED {
            assert!(full.remember(id(&format!("c{i}")), at(T0 + 3600), at(T0)));
        }
        assert!(!full.remember(id("new"), at(T0 + 3600), at(T0 + 2)));
        assert!(!full.contains(&id("new"), at(T0 + 2)));
    }

    #[test]
    fn the_memory_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(REPLAY_FILE);
        let file = ReplayFile::new(&path);
        let mut m = file.load(at(T0));
        assert!(m.is_empty(), "no file yet");
        m.remember(id("a"), at(T0 + 60), at(T0));
        m.remember(id("b"), at(T0 + 7 * 86_400), at(T0));
        file.save(&m).unwrap();
        assert!(!path.with_file_name("commands-seen.json.tmp").exists());

        // Another process start, an hour later.
        let again = ReplayFile::new(&path).load(at(T0 + 3600));
        assert_eq!(again, m);
        assert!(again.contains(&id("a"), at(T0 + 3600)));
        // Two days later only the week-long command's id is left.
        let later = ReplayFile::new(&path).load(at(T0 + 2 * 86_400));
        assert!(!later.contains(&id("a"), at(T0 + 2 * 86_400)));
        assert!(later.contains(&id("b"), at(T0 + 2 * 86_400)));
        assert_eq!(later.len(), 1);
    }

    #[test]
    fn a_damaged_file_is_replaced_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(REPLAY_FILE);
        let file = ReplayFile::new(&path);
        for damage in [
            &b"\x00\xff garbage"[..],
            br#"{"version":1,"ids":[{"id":"","expires_ms":1,"keep_until_ms":2}]}"#,
            br#"{"version":9,"ids":[]}"#,
            br#"{"version":1,"ids":[{"id":"a","expires_ms":-1,"keep_until_ms":2}]}"#,
            b"",
        ] {
            std::fs::write(&path, damage).unwrap();
            assert!(matches!(
                file.read(at(T0)),
                Err(ReplayFileError::Damaged { .. })
            ));
            let m = file.load(at(T0));
            assert!(m.is_empty());
            // Replaced: the next start reads it without complaint.
            assert_eq!(file.read(at(T0)).unwrap(), ReplayMemory::new());
        }
    }

    #[test]
    fn an_unwritable_place_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let file = ReplayFile::new(dir.path().join("missing-dir").join(REPLAY_FILE));
        let error = file.save(&ReplayMemory::new()).unwrap_err();
        assert!(matches!(
            error,
            ReplayFileError::Io {
                action: "write",
                ..
            }
        ));
        assert!(error.to_string().contains("missing-dir"), "{error}");
    }
}
