//! Resident memory and open file descriptors of the `m365 run` processes, read from `/proc`,
//! and the "flat over time" check.
//!
//! Flat means: the median of the last quarter of the run is at most a fixed slack above the
//! median of the first quarter ([`RSS_SLACK_KIB`], [`FD_SLACK`]). Medians, not peaks: a client
//! holds a few more descriptors for a moment while it reconnects, which says nothing about a
//! leak, while a leak lifts every reading after it. Restarted processes count like the one
//! before them, so a leak that a kill hides is not seen; the long runs, with kills spread thin,
//! are the ones that show slow leaks.

use std::path::Path;
use std::time::Duration;

/// Slack for resident memory: 8 MiB (the client's RSS is about 25 MiB, so a leak of a few
/// hundred bytes per record shows within an hour).
pub(crate) const RSS_SLACK_KIB: u64 = 8 * 1024;
/// Slack for open file descriptors.
pub(crate) const FD_SLACK: u64 = 4;

/// One reading of one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Usage {
    /// When, from the start of the chaos phase.
    pub(crate) at: Duration,
    /// Resident set size, KiB.
    pub(crate) rss_kib: u64,
    /// Open file descriptors.
    pub(crate) fds: u64,
}

/// Reads process `pid`'s usage now; `None` when it is gone.
pub(crate) fn read(pid: u32, at: Duration) -> Option<Usage> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some(Usage { at, rss_kib, fds })
}

/// Size in bytes of a file and its SQLite companions (`-wal`, `-shm`), 0 for missing ones.
pub(crate) fn spool_footprint(path: &Path) -> u64 {
    ["", "-wal", "-shm"]
        .iter()
        .map(|suffix| {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0)
        })
        .sum()
}

/// The first and last quarter's medians of one quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Trend {
    /// Median in the first quarter of the run.
    pub(crate) first: u64,
    /// Median in the last quarter.
    pub(crate) last: u64,
}

impl Trend {
    /// Whether the last quarter stays within `slack` of the first.
    pub(crate) fn flat(&self, slack: u64) -> bool {
        self.last <= self.first + slack
    }
}

/// The RSS and descriptor trends over a run of length `run`, or `None` when either quarter has
/// no reading (a process that was down the whole quarter).
pub(crate) fn trends(samples: &[Usage], run: Duration) -> Option<(Trend, Trend)> {
    let quarter = run / 4;
    let first: Vec<&Usage> = samples.iter().filter(|u| u.at < quarter).collect();
    let last: Vec<&Usage> = samples.iter().filter(|u| u.at >= run - quarter).collect();
    if first.is_empty() || last.is_empty() {
        return None;
    }
    let median = |v: &[&Usage], f: fn(&Usage) -> u64| {
        let mut values: Vec<u64> = v.iter().map(|u| f(u)).collect();
        values.sort_unstable();
        values[values.len() / 2]
    };
    Some((
        Trend {
            first: median(&first, |u| u.rss_kib),
            last: median(&last, |u| u.rss_kib),
        },
        Trend {
            first: median(&first, |u| u.fds),
            last: median(&last, |u| u.fds),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(at: u64, rss_kib: u64, fds: u64) -> Usage {
        Usage {
            at: Duration::from_secs(at),
            rss_kib,
            fds,
        }
    }

    #[test]
    fn quarters_are_compared_by_their_medians() {
        let run = Duration::from_secs(100);
        // A spike in either quarter is no trend.
        let flat = [
            usage(1, 25_000, 20),
            usage(3, 25_100, 38),
            usage(5, 25_000, 21),
            usage(50, 40_000, 30),
            usage(80, 26_000, 21),
            usage(85, 60_000, 40),
            usage(90, 26_000, 21),
        ];
        let (rss, fds) = trends(&flat, run).unwrap();
        assert_eq!(
            (rss.first, rss.last, fds.first, fds.last),
            (25_000, 26_000, 21, 21)
        );
        assert!(rss.flat(RSS_SLACK_KIB) && fds.flat(FD_SLACK));

        // A leak lifts every reading.
        let leaking = [
            usage(1, 25_000, 20),
            usage(80, 25_000 + RSS_SLACK_KIB + 1, 40),
            usage(90, 25_000 + RSS_SLACK_KIB + 2, 41),
        ];
        let (rss, fds) = trends(&leaking, run).unwrap();
        assert!(!rss.flat(RSS_SLACK_KIB) && !fds.flat(FD_SLACK));

        assert_eq!(
            trends(&[usage(50, 1, 1)], run),
            None,
            "no reading in either quarter"
        );
    }

    #[test]
    fn this_process_can_be_read() {
        let me = read(std::process::id(), Duration::ZERO).expect("our own /proc entry");
        assert!(me.rss_kib > 0 && me.fds >= 3, "{me:?}");
        assert_eq!(read(u32::MAX, Duration::ZERO), None);
    }

    #[test]
    fn the_footprint_adds_the_companions() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("spool.sqlite");
        std::fs::write(&db, [0u8; 100]).unwrap();
        std::fs::write(dir.path().join("spool.sqlite-wal"), [0u8; 20]).unwrap();
        assert_eq!(spool_footprint(&db), 120);
        assert_eq!(spool_footprint(&dir.path().join("none")), 0);
    }
}
