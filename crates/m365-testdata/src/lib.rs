//! Finds the shared reference data that tests read at run time (protocol test vectors, GPS
//! captures), which lives beside the repository in `../shared` and is never copied into it.
//!
//! A user's fresh clone has no `../shared`: tests then print a skip notice and pass. When the `CI`
//! environment variable is set, a missing folder is a failure instead, so CI can never go green
//! by silently skipping the real-data tests.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

/// Environment variable that points at the shared folder explicitly (overrides the default
/// `<workspace>/../shared`).
pub const SHARED_DIR_ENV: &str = "M365_SHARED_DIR";

/// The default location: the folder `shared` next to the workspace root.
pub fn default_shared_dir() -> PathBuf {
    // This crate lives at <workspace>/crates/m365-testdata.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared")
        .components()
        .collect()
}

/// Whether the `CI` environment variable asks for strictness (set and not `false`/`0`/empty).
pub fn in_ci() -> bool {
    match std::env::var("CI") {
        Ok(v) => !(v.is_empty() || v == "0" || v.eq_ignore_ascii_case("false")),
        Err(_) => false,
    }
}

/// Returns the path of `relative` inside the shared folder, if it exists.
///
/// When it does not exist: under CI this panics (the test fails); otherwise it prints a skip
/// notice naming `test` and returns `None`, and the caller returns early.
pub fn require(test: &str, relative: &str) -> Option<PathBuf> {
    let root = std::env::var_os(SHARED_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(default_shared_dir);
    let path = root.join(relative);
    if path.exists() {
        return Some(path);
    }
    if in_ci() {
        panic!(
            "{test}: shared test data {} is missing, and CI is set: refusing to skip",
            path.display()
        );
    }
    eprintln!(
        "SKIPPED {test}: shared test data {} not found (set {SHARED_DIR_ENV} to its folder)",
        path.display()
    );
    None
}
