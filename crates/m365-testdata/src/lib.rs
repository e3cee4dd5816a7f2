//! Finds the reference data that tests read at run time (protocol test vectors, GPS captures).
//!
//! The data is carried in the repository, in `testdata/` at the workspace root, so a fresh clone
//! runs every real-data test. Newer reference data may arrive first in a `shared` folder next to
//! the repository (`../shared/testdata`); when that folder exists it is preferred, file by file,
//! and the repository's copy is the fallback. A test names its data by a path that starts with
//! `testdata/`, which reads the same under either root.
//!
//! Which copy is used:
//!
//! - [`SHARED_DIR_ENV`] (`M365_SHARED_DIR`) names the shared folder instead of `../shared`;
//! - [`SOURCE_ENV`] (`M365_TESTDATA`) forces one copy: `repo` (the repository's only, as in a
//!   fresh clone) or `shared` (the shared folder's only); unset, empty or `auto`: shared first.
//!
//! When no copy has the file, the test prints a skip notice and passes; under `CI` (see
//! [`in_ci`]) it fails instead, so CI can never go green by silently skipping real-data tests.
#![forbid(unsafe_code)]
// Test support: a failing `unwrap`/`expect` panics with its message, which fails the calling test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

/// Environment variable naming the shared folder (the one holding `testdata/`), instead of
/// `<workspace>/../shared`.
pub const SHARED_DIR_ENV: &str = "M365_SHARED_DIR";

/// Environment variable choosing the copy: `repo`, `shared`, or `auto` (the default).
pub const SOURCE_ENV: &str = "M365_TESTDATA";

/// The folder, under either root, that holds the data; every path a test asks for starts with it.
pub const DATA_DIR: &str = "testdata";

/// Which copies of the data may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The shared folder's copy when it has the file, else the repository's.
    Auto,
    /// Only the repository's copy (what a fresh clone has).
    Repository,
    /// Only the shared folder's copy.
    Shared,
}

/// Why no data file was found, or the settings were not understood.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TestdataError {
    /// [`SOURCE_ENV`] holds something else than `repo`, `shared` or `auto`.
    #[error("{SOURCE_ENV}={0:?}: expected `repo`, `shared` or `auto`")]
    UnknownSource(String),
    /// No allowed copy has the file; `looked` lists where it was looked for.
    #[error("test data {relative} not found (looked in {})", display_paths(.looked))]
    Missing {
        /// The path the test asked for, starting with `testdata/`.
        relative: String,
        /// Every place the file was looked for, in order.
        looked: Vec<PathBuf>,
    },
}

fn display_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The workspace root (this crate lives at `<workspace>/crates/m365-testdata`).
pub fn workspace_root() -> PathBuf {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    crate_dir
        .ancestors()
        .nth(2)
        .unwrap_or(crate_dir)
        .to_path_buf()
}

/// The repository's copy: `<workspace>/testdata`.
pub fn repo_testdata_dir() -> PathBuf {
    workspace_root().join(DATA_DIR)
}

/// The default shared folder: `shared` next to the workspace root.
pub fn default_shared_dir() -> PathBuf {
    let root = workspace_root();
    root.parent().unwrap_or(&root).join("shared")
}

/// The shared folder: [`SHARED_DIR_ENV`] when set, else [`default_shared_dir`].
pub fn shared_dir() -> PathBuf {
    std::env::var_os(SHARED_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(default_shared_dir)
}

/// The shared folder's copy (`<shared>/testdata`), whether or not it exists.
pub fn shared_testdata_dir() -> PathBuf {
    shared_dir().join(DATA_DIR)
}

/// Reads [`SOURCE_ENV`].
pub fn source() -> Result<Source, TestdataError> {
    parse_source(std::env::var(SOURCE_ENV).ok().as_deref())
}

/// The rule behind [`source`].
pub fn parse_source(value: Option<&str>) -> Result<Source, TestdataError> {
    match value.map(str::trim) {
        None | Some("" | "auto") => Ok(Source::Auto),
        Some("repo" | "repository") => Ok(Source::Repository),
        Some("shared") => Ok(Source::Shared),
        Some(other) => Err(TestdataError::UnknownSource(other.to_owned())),
    }
}

/// Whether the `CI` environment variable asks for strictness (set and not `false`/`0`/empty).
pub fn in_ci() -> bool {
    ci_value_is_strict(std::env::var("CI").ok().as_deref())
}

/// The rule behind [`in_ci`].
pub fn ci_value_is_strict(value: Option<&str>) -> bool {
    match value {
        Some(v) => !(v.is_empty() || v == "0" || v.eq_ignore_ascii_case("false")),
        None => false,
    }
}

/// Where `relative` (a path starting with `testdata/`) is, given the allowed `source`, the shared
/// folder and the workspace root: the first copy that has it, the shared one first.
pub fn resolve(
    relative: &str,
    source: Source,
    shared_root: &Path,
    repo_root: &Path,
) -> Result<PathBuf, TestdataError> {
    let roots: &[&Path] = match source {
        // The shared folder counts only when its data folder exists at all.
        Source::Auto if shared_root.join(DATA_DIR).is_dir() => &[shared_root, repo_root],
        Source::Auto | Source::Repository => &[repo_root],
        Source::Shared => &[shared_root],
    };
    let looked: Vec<PathBuf> = roots.iter().map(|root| root.join(relative)).collect();
    looked
        .iter()
        .find(|path| path.exists())
        .cloned()
        .ok_or_else(|| TestdataError::Missing {
            relative: relative.to_owned(),
            looked,
        })
}

/// Where `relative` (a path starting with `testdata/`, such as `testdata/vectors.json`) is,
/// following the environment's settings.
pub fn locate(relative: &str) -> Result<PathBuf, TestdataError> {
    resolve(relative, source()?, &shared_dir(), &workspace_root())
}

/// The path of `relative` (a path starting with `testdata/`), if some allowed copy has it.
///
/// Otherwise: under CI this panics (the test fails); else it prints a skip notice naming `test`
/// and returns `None`, and the caller returns early. A misread [`SOURCE_ENV`] always panics.
pub fn require(test: &str, relative: &str) -> Option<PathBuf> {
    match locate(relative) {
        Ok(path) => Some(path),
        Err(e @ TestdataError::UnknownSource(_)) => panic!("{test}: {e}"),
        Err(e) if in_ci() => panic!("{test}: {e}, and CI is set: refusing to skip"),
        Err(e) => {
            eprintln!("SKIPPED {test}: {e}");
            None
        }
    }
}

/// How the repository's copy of the data compares with the shared folder's, file by file (paths
/// relative to each copy's data folder, sorted).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Comparison {
    /// Files both copies have, byte-identical.
    pub identical: Vec<PathBuf>,
    /// Files both copies have, with different contents.
    pub differing: Vec<PathBuf>,
    /// Files only the shared copy has: new reference data.
    pub only_shared: Vec<PathBuf>,
    /// Files only the repository has (such as its provenance notes).
    pub only_repo: Vec<PathBuf>,
}

/// Compares the data folder `repo` with the data folder `shared`.
pub fn compare(repo: &Path, shared: &Path) -> std::io::Result<Comparison> {
    let repo_files = files_under(repo)?;
    let shared_files = files_under(shared)?;
    let mut out = Comparison::default();
    for file in &shared_files {
        if !repo_files.contains(file) {
            out.only_shared.push(file.clone());
        } else if std::fs::read(repo.join(file))? == std::fs::read(shared.join(file))? {
            out.identical.push(file.clone());
        } else {
            out.differing.push(file.clone());
        }
    }
    out.only_repo = repo_files.difference(&shared_files).cloned().collect();
    Ok(out)
}

/// Every file below `dir`, relative to it.
fn files_under(dir: &Path) -> std::io::Result<std::collections::BTreeSet<PathBuf>> {
    let mut out = std::collections::BTreeSet::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next)? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if let Ok(relative) = path.strip_prefix(dir) {
                out.insert(relative.to_path_buf());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder with `testdata/` holding the given files (relative to it).
    fn root_with(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(DATA_DIR)).unwrap();
        for f in files {
            let path = dir.path().join(DATA_DIR).join(f);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, f).unwrap();
        }
        dir
    }

    #[test]
    fn the_shared_copy_wins_and_the_repository_fills_in() {
        let shared = root_with(&["vectors.json"]);
        let repo = root_with(&["vectors.json", "gps/nmea/a.nmea"]);
        let got = resolve(
            "testdata/vectors.json",
            Source::Auto,
            shared.path(),
            repo.path(),
        );
        assert_eq!(got, Ok(shared.path().join("testdata/vectors.json")));
        let got = resolve(
            "testdata/gps/nmea/a.nmea",
            Source::Auto,
            shared.path(),
            repo.path(),
        );
        assert_eq!(got, Ok(repo.path().join("testdata/gps/nmea/a.nmea")));
    }

    #[test]
    fn without_a_shared_folder_the_repository_copy_is_used() {
        let nowhere = tempfile::tempdir().unwrap();
        let repo = root_with(&["vectors.json"]);
        let got = resolve(
            "testdata/vectors.json",
            Source::Auto,
            &nowhere.path().join("shared"),
            repo.path(),
        );
        assert_eq!(got, Ok(repo.path().join("testdata/vectors.json")));
    }

    #[test]
    fn a_forced_copy_is_the_only_one_looked_at() {
        let shared = root_with(&["only-shared.bin"]);
        let repo = root_with(&["only-repo.bin"]);
        let forced_repo = resolve(
            "testdata/only-shared.bin",
            Source::Repository,
            shared.path(),
            repo.path(),
        );
        assert_eq!(
            forced_repo,
            Err(TestdataError::Missing {
                relative: "testdata/only-shared.bin".into(),
                looked: vec![repo.path().join("testdata/only-shared.bin")],
            })
        );
        assert!(
            resolve(
                "testdata/only-repo.bin",
                Source::Shared,
                shared.path(),
                repo.path()
            )
            .is_err()
        );
        assert_eq!(
            resolve(
                "testdata/only-repo.bin",
                Source::Repository,
                shared.path(),
                repo.path()
            ),
            Ok(repo.path().join("testdata/only-repo.bin"))
        );
    }

    #[test]
    fn a_missing_file_names_every_place_looked() {
        let shared = root_with(&[]);
        let repo = root_with(&[]);
        let err = resolve("testdata/x", Source::Auto, shared.path(), repo.path()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&shared.path().display().to_string()),
            "{text}"
        );
        assert!(text.contains(&repo.path().display().to_string()), "{text}");
    }

    #[test]
    fn settings_are_read_strictly() {
        assert_eq!(parse_source(None), Ok(Source::Auto));
        assert_eq!(parse_source(Some("")), Ok(Source::Auto));
        assert_eq!(parse_source(Some("repo")), Ok(Source::Repository));
        assert_eq!(parse_source(Some("shared")), Ok(Source::Shared));
        assert_eq!(
            parse_source(Some("both")),
            Err(TestdataError::UnknownSource("both".into()))
        );
        assert!(ci_value_is_strict(Some("1")));
        assert!(ci_value_is_strict(Some("true")));
        assert!(!ci_value_is_strict(Some("false")));
        assert!(!ci_value_is_strict(Some("0")));
        assert!(!ci_value_is_strict(Some("")));
        assert!(!ci_value_is_strict(None));
    }

    #[test]
    fn copies_compare_file_by_file() {
        let repo = root_with(&["same.bin", "gps/changed.nmea", "PROVENANCE.md"]);
        let shared = root_with(&["same.bin", "gps/changed.nmea", "gps/new.nmea"]);
        std::fs::write(shared.path().join("testdata/gps/changed.nmea"), "edited").unwrap();
        let c = compare(&repo.path().join(DATA_DIR), &shared.path().join(DATA_DIR)).unwrap();
        assert_eq!(c.identical, vec![PathBuf::from("same.bin")]);
        assert_eq!(c.differing, vec![PathBuf::from("gps/changed.nmea")]);
        assert_eq!(c.only_shared, vec![PathBuf::from("gps/new.nmea")]);
        assert_eq!(c.only_repo, vec![PathBuf::from("PROVENANCE.md")]);
    }

    #[test]
    fn the_repository_carries_the_data_a_fresh_clone_needs() {
        let repo = repo_testdata_dir();
        for needed in [
            "vectors.json",
            "PROVENANCE.md",
            "gps/README.md",
            "gps/LICENSE-gpsd-COPYING.txt",
            "gps/nmea/sirf2_haicom305n_moving_south_east.nmea",
            "gps/sim7600/expected.csv",
        ] {
            assert!(repo.join(needed).is_file(), "{needed} is in the repository");
        }
        let vectors = std::fs::read_to_string(repo.join("vectors.json")).unwrap();
        assert!(vectors.contains("\"login\""), "the protocol vectors");
    }
}
