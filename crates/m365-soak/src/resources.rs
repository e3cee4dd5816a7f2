//! Resident memory, open file descriptors and CPU time of the `m365 run` processes (and of the
//! broker and the simulators), read from `/proc`, and the "flat over time" check.
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

/// Clock ticks per second of `utime` and `stime` in `/proc/<pid>/stat`: `USER_HZ`, which the
/// kernel fixes at 100 for user space on every architecture this project runs on.
const USER_HZ: u64 = 100;

/// What `/proc/<pid>/stat` says of a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stat {
    /// The command name (`comm`, at most 15 bytes).
    pub(crate) comm: String,
    /// The parent's pid.
    pub(crate) ppid: u32,
    /// User plus system CPU time of all its threads, in clock ticks.
    pub(crate) cpu_ticks: u64,
}

impl Stat {
    /// The CPU time.
    pub(crate) fn cpu(&self) -> Duration {
        Duration::from_millis(self.cpu_ticks * 1000 / USER_HZ)
    }
}

/// Parses a `/proc/<pid>/stat` line: the name is between the first `(` and the last `)` (it may
/// hold spaces and parentheses); the fields after it are state (3), ppid (4), …, utime (14) and
/// stime (15).
pub(crate) fn parse_stat(line: &str) -> Option<Stat> {
    let open = line.find('(')?;
    let close = line.rfind(')')?;
    let comm = line.get(open + 1..close)?.to_owned();
    let fields: Vec<&str> = line.get(close + 1..)?.split_whitespace().collect();
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Stat {
        comm,
        ppid,
        cpu_ticks: utime + stime,
    })
}

/// Process `pid`'s `/proc/<pid>/stat`; `None` when it is gone.
pub(crate) fn stat(pid: u32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Memory and threads of a process, from `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Memory {
    /// Resident set size now, KiB.
    pub(crate) rss_kib: u64,
    /// Peak resident set size (`VmHWM`), KiB.
    pub(crate) peak_kib: u64,
    /// Threads.
    pub(crate) threads: u64,
}

/// Reads process `pid`'s memory; `None` when it is gone.
pub(crate) fn memory(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
    };
    Some(Memory {
        rss_kib: field("VmRSS:")?,
        peak_kib: field("VmHWM:")?,
        threads: field("Threads:").unwrap_or(0),
    })
}

/// Every process below `root` (children, their children, …), with its command name.
pub(crate) fn descendants(root: u32) -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut all: Vec<(u32, Stat)> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, stat(pid)?)))
        .collect();
    all.sort_by_key(|(pid, _)| *pid);
    let mut found = Vec::new();
    let mut parents = vec![root];
    while let Some(parent) = parents.pop() {
        for (pid, s) in &all {
            if s.ppid == parent {
                found.push((*pid, s.comm.clone()));
                parents.push(*pid);
            }
        }
    }
    found
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
    fn stat_lines_are_read_past_odd_names() {
        let line = "4242 (m365 (run) x) S 17 4242 4242 0 -1 4194560 1 0 0 0 150 27 0 0 20 0 \
                    3 0 100 1000 200 0 0";
        let s = parse_stat(line).unwrap();
        assert_eq!(s.comm, "m365 (run) x");
        assert_eq!((s.ppid, s.cpu_ticks), (17, 177));
        assert_eq!(s.cpu(), Duration::from_millis(1770));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_has_a_stat_memory_and_no_children_yet() {
        let me = std::process::id();
        let s = stat(me).expect("our own stat");
        assert!(!s.comm.is_empty());
        let m = memory(me).expect("our own status");
        assert!(
            m.peak_kib >= m.rss_kib && m.rss_kib > 0 && m.threads >= 1,
            "{m:?}"
        );
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let below = descendants(me);
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            below
                .iter()
                .any(|(pid, comm)| *pid == child.id() && comm == "sleep"),
            "{below:?}"
        );
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
