//! An emulated device's `/dev/pts/N` never names another terminal while the emulator runs.
//!
//! A client configured with the pty path an emulator printed (as `m365-sim serve` prints
//! `M365_SIM_GPS=/dev/pts/N`) keeps reopening that path after an unplug. Pty numbers are handed
//! out lowest first, so the next terminal anyone opens (a shell window, an ssh session) would get
//! the unplugged device's number, and a SIM7600 client would write `AT+CGPS?` on it. Alone in
//! its own test binary, so no other test of this crate opens ptys meanwhile.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use m365_gps::emulate::pty::Pty;
use m365_gps::emulate::{self, ModemModel, Sim7600ModemConfig};
use m365_gps::sim7600::InfoCommand;
use m365_gps::source::{Backoff, GpsHandle, SourceConfig, SourceState};
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

/// Guards against a hung test; the conditions below are normally met in milliseconds.
const GUARD: Duration = Duration::from_secs(60);

async fn wait_for(
    rx: &mut watch::Receiver<SourceState>,
    what: &str,
    cond: impl FnMut(&SourceState) -> bool,
) -> SourceState {
    let got = match tokio::time::timeout(GUARD, rx.wait_for(cond)).await {
        Ok(Ok(s)) => Some(s.clone()),
        _ => None,
    };
    got.unwrap_or_else(|| panic!("timed out waiting for {what}: {:?}", *rx.borrow()))
}

fn pts_number(path: &Path) -> u32 {
    path.strip_prefix("/dev/pts")
        .ok()
        .and_then(|n| n.to_str()?.parse().ok())
        .unwrap_or_else(|| panic!("not a /dev/pts path: {}", path.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unplugged_modem_path_never_reaches_another_terminal() {
    let model = ModemModel::new(Box::new(|| None));
    let mut emu = emulate::sim7600_modem::spawn(Sim7600ModemConfig {
        model,
        symlink: None,
    })
    .unwrap();
    let old = emu.pty_path().unwrap();
    let source = GpsHandle::spawn_with_backoff(
        SourceConfig::Sim7600 {
            path: old.clone(),
            baud: 115_200,
            command: InfoCommand::Cgpsinfo,
            interval: Duration::from_millis(20),
        },
        Backoff::new(Duration::from_millis(20), Duration::from_millis(100)),
    );
    let mut rx = source.subscribe();
    wait_for(&mut rx, "the client connected", |s| s.connected).await;

    emu.unplug().await;
    assert!(!old.exists(), "{} still there after unplug", old.display());
    wait_for(&mut rx, "the client saw the unplug", |s| !s.connected).await;

    // Terminals opened now get the lowest free numbers: open them until one is numbered above
    // the unplugged device, so that its number, had it been free, was given to one of them.
    let mut terminals = Vec::new();
    loop {
        let terminal = Pty::open(None).unwrap();
        let number = pts_number(terminal.path());
        terminals.push(terminal);
        if number > pts_number(&old) {
            break;
        }
        assert!(
            terminals.len() < 256,
            "no pty numbered above {}",
            old.display()
        );
    }

    // The client keeps retrying the old path; a few attempts later none of the terminals has
    // received a byte (had one got the old number, the client's `AT+CGPS?` would be on it).
    let attempts = rx.borrow().connect_attempts;
    let state = wait_for(&mut rx, "more attempts on the old path", |s| {
        s.connect_attempts >= attempts + 3
    })
    .await;
    assert!(!state.connected);
    let error = state.last_error.unwrap_or_default();
    assert!(
        error.contains(&old.display().to_string()),
        "the failure names the old path: {error}"
    );
    for terminal in &mut terminals {
        let mut buf = [0u8; 64];
        if let Ok(read) =
            tokio::time::timeout(Duration::from_millis(20), terminal.master.read(&mut buf)).await
        {
            let n = read.unwrap_or(0);
            panic!(
                "{} received {:?}",
                terminal.path().display(),
                String::from_utf8_lossy(&buf[..n])
            );
        }
    }

    assert!(
        terminals.iter().all(|t| t.path() != old),
        "a new terminal got the unplugged modem's path"
    );

    // A replug is a new device with a new number; the old one still names nothing.
    emu.replug().await;
    let new = emu.pty_path().unwrap();
    assert_ne!(new, old);
    assert!(!old.exists());
    emu.stop();
}
