//! Why the spool could not do what it was asked, each message saying what to fix and what
//! happened to the records in the file.

use std::path::PathBuf;

/// A spool failure.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The folder that should hold the spool file does not exist and cannot be created.
    #[error(
        "cannot create the spool folder {dir}: {source} (set [spool] path to a writable place)"
    )]
    Directory {
        /// The folder.
        dir: PathBuf,
        /// Why it could not be created.
        #[source]
        source: std::io::Error,
    },
    /// SQLite reported an error.
    #[error("spool {path}: {source}")]
    Sqlite {
        /// Spool file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The disk holding the spool is full. The spool file was left as it is.
    #[error("the disk holding {path} is full: free some space; {}", kept(.records))]
    DiskFull {
        /// Spool file.
        path: PathBuf,
        /// Records in the file, when they could be counted without risk.
        records: Option<u64>,
    },
    /// The spool file, its folder or its file system cannot be written. The file was left as
    /// it is.
    #[error(
        "{path} cannot be written: the file, its folder or its file system is read-only (make \
         them writable for the user m365 runs as, or remount the file system read-write); {}",
        kept(.records)
    )]
    ReadOnly {
        /// Spool file.
        path: PathBuf,
        /// Records in the file, when they could be counted without risk.
        records: Option<u64>,
    },
    /// The operating system reported an I/O error other than a full disk. The spool file was
    /// left as it is.
    #[error(
        "disk I/O error on {path} ({detail}): check the storage device (kernel log) and its free \
         space; {}",
        kept(.records)
    )]
    Io {
        /// Spool file.
        path: PathBuf,
        /// What was reported.
        detail: String,
        /// Records in the file, when they could be counted without risk.
        records: Option<u64>,
    },
    /// Another process holds the spool file locked. It was left as it is.
    #[error(
        "{path} is locked by another process ({source}): make sure only one m365 uses this spool; \
         the file was left as it is"
    )]
    Locked {
        /// Spool file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// SQLite cannot open the file at all. It was left as it is.
    #[error(
        "cannot open {path} ({source}): check that its folder exists and that the user m365 runs \
         as can read and write the file and its folder; the file was left as it is"
    )]
    CannotOpen {
        /// Spool file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The file is damaged and could not be replaced (moving it aside, or putting the rebuilt
    /// spool in its place, failed).
    #[error("spool {path} is damaged and could not be replaced: {reason}")]
    Unrecoverable {
        /// Spool file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The spool file turned out corrupt while running: its readable records were copied into
    /// a fresh spool, which took its place, and the damaged file was moved aside (kept for
    /// inspection). Unreadable records stay in the moved file only.
    #[error(
        "spool {path} was corrupt ({reason}): {salvaged} records were saved into a fresh spool, \
         {unreadable} could not be read; the damaged file is kept as {moved_to}"
    )]
    Recovered {
        /// Spool file (now fresh).
        path: PathBuf,
        /// Where the damaged file went.
        moved_to: PathBuf,
        /// What SQLite reported.
        reason: String,
        /// Records copied into the fresh spool, pending on every output.
        salvaged: u64,
        /// Rows of the damaged file that could not be read (see
        /// [`crate::spool::CorruptionReport::unreadable`]).
        unreadable: u64,
    },
    /// A stored record could not be decoded.
    #[error("spool {path}: stored record {row} is not valid: {reason}")]
    BadRow {
        /// Spool file.
        path: PathBuf,
        /// Row id.
        row: i64,
        /// Decoder message.
        reason: String,
    },
    /// The spool was configured with more outputs than it can track.
    #[error("spool supports at most {max} outputs, {got} configured", max = super::MAX_OUTPUTS)]
    TooManyOutputs {
        /// Outputs configured.
        got: usize,
    },
}

/// The end of the messages of the errors that leave the spool file alone: what happens to the
/// records in it.
fn kept(records: &Option<u64>) -> String {
    match records {
        Some(0) => "the file was left as it is (it holds no records)".to_owned(),
        Some(1) => {
            "the file was left as it is: the 1 record in it is kept and will be sent".to_owned()
        }
        Some(n) => {
            format!("the file was left as it is: the {n} records in it are kept and will be sent")
        }
        None => {
            "the file was left as it is: the records in it are kept and will be sent".to_owned()
        }
    }
}
