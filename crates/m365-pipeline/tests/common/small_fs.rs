//! A small file system of its own for one test, to fill a disk or make it read-only for real
//! without touching the machine's file systems.
//!
//! A process needs privileges to mount, and a test harness runs many tests in one process, so
//! the test re-runs itself (the pattern of `m365_fakebluez::isolation`): the first call, in the
//! harness, starts the same test binary, running only this test (`--exact`), under
//! `unshare -rm` (a new user and mount namespace, where it may mount) after mounting a tmpfs of
//! the given size on a fresh folder, with an environment variable naming that folder; it checks
//! that the child passed and returns `None`. In the child the call returns the folder. Helpers
//! that change the mount (`remount`) work only there.
//!
//! Where namespaces cannot be created (`unshare` missing, or forbidden by the kernel or a
//! container) the test is skipped with a notice, unless the environment variable `CI` is set:
//! then it fails, as a missing tool does everywhere in CI.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Set in the child process: the mount point of its tmpfs.
const CHILD_ENV: &str = "M365_TEST_SMALL_FS";
/// Set in the child process: the test it must run.
const CHILD_TEST_ENV: &str = "M365_TEST_SMALL_FS_TEST";
/// Size of the tmpfs, as `mount -o size=` takes it.
const SIZE_ENV: &str = "M365_TEST_SMALL_FS_SIZE";

/// A child test that runs longer than this is killed and fails.
const CHILD_TIMEOUT: Duration = Duration::from_secs(300);

/// Mounts a tmpfs of `size` (e.g. `"2m"`) and then runs the rest of the command in it.
const MOUNT_THEN_EXEC: &str =
    r#"mount -t tmpfs -o "size=$M365_TEST_SMALL_FS_SIZE" none "$M365_TEST_SMALL_FS" && exec "$@""#;

/// In the child process: the mount point of an empty tmpfs of `size`. In the parent: `None`,
/// after the test `test_name` ran in the child and passed (or was skipped, see the module).
pub(crate) fn small_fs(test_name: &str, size: &str) -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        assert_eq!(
            std::env::var(CHILD_TEST_ENV).ok().as_deref(),
            Some(test_name),
            "small_fs called with a different test name"
        );
        let dir = PathBuf::from(dir);
        // The test is about to fill this folder: make sure it really is the small tmpfs.
        assert!(
            is_tmpfs_mount(&dir),
            "{} is not a tmpfs mount point",
            dir.display()
        );
        return Some(dir);
    }
    let base = tempfile::Builder::new()
        .prefix("m365-small-fs-")
        .tempdir()
        .expect("temporary directory");
    let mount = base.path().join("mnt");
    std::fs::create_dir(&mount).expect("mount point");
    if let Err(why) = can_mount(&mount, size) {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test_name}: cannot mount a size-limited filesystem (unshare): {why}"
        );
        eprintln!("{test_name} skipped: cannot mount a size-limited filesystem (unshare): {why}");
        return None;
    }
    run_child(test_name, &mount, size, &base.path().join("output"));
    None
}

/// Writes zeros into a new file `filler` in `dir` until the file system is full. Returns its
/// path (remove it to free the space).
pub(crate) fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("create the filler file");
    let chunk = vec![0u8; 64 * 1024];
    loop {
        if let Err(e) = f.write_all(&chunk) {
            assert_eq!(
                e.kind(),
                std::io::ErrorKind::StorageFull,
                "filling {} stopped for another reason: {e}",
                dir.display()
            );
            return path;
        }
    }
}

/// Remounts the child's tmpfs read-only (`ro`) or read-write (`rw`).
pub(crate) fn remount(dir: &Path, mode: &str) {
    let out = Command::new("mount")
        .arg("-o")
        .arg(format!("remount,{mode}"))
        .arg(dir)
        .output()
        .expect("run mount");
    assert!(
        out.status.success(),
        "remount {mode} {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether `dir` is the mount point of a tmpfs, per `/proc/self/mounts`.
fn is_tmpfs_mount(dir: &Path) -> bool {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return false;
    };
    let Some(dir) = dir.to_str() else {
        return false;
    };
    mounts.lines().any(|l| {
        let mut fields = l.split(' ');
        fields.nth(1) == Some(dir) && fields.next() == Some("tmpfs")
    })
}

/// One quick mount in a throw-away namespace: whether this machine allows it at all.
fn can_mount(mount: &Path, size: &str) -> Result<(), String> {
    let out = Command::new("unshare")
        .args(["-rm", "sh", "-c", MOUNT_THEN_EXEC, "sh", "true"])
        .env(CHILD_ENV, mount)
        .env(SIZE_ENV, size)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run unshare: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "unshare -rm ... mount -t tmpfs: {} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn run_child(test_name: &str, mount: &Path, size: &str, out_path: &Path) {
    let out = std::fs::File::create(out_path).expect("child output file");
    let err = out.try_clone().expect("child output file");
    let exe = std::env::current_exe().expect("test binary path");
    let mut child = Command::new("unshare")
        .args(["-rm", "sh", "-c", MOUNT_THEN_EXEC, "sh"])
        .arg(exe)
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, mount)
        .env(CHILD_TEST_ENV, test_name)
        .env(SIZE_ENV, size)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("re-run the test binary under unshare");
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > CHILD_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{test_name} did not finish within {CHILD_TIMEOUT:?}");
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("cannot wait for the child test: {e}"),
        }
    };
    let output = std::fs::read_to_string(out_path).unwrap_or_default();
    // Shown by the harness when the test fails or runs with --nocapture.
    println!("---- {test_name} (child on a {size} tmpfs) ----\n{output}");
    assert!(
        status.success(),
        "{test_name} failed in its child process: {status}"
    );
    assert!(
        output.contains("test result: ok. 1 passed"),
        "the child did not run {test_name}: is the name right?"
    );
}
