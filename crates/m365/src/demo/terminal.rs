//! The terminal the demo draws on: its size, redrawing the live view in place (through
//! `crossterm`'s commands rather than hand-written escape sequences), and keeping serial clients
//! from opening it.
//!
//! Pseudo-terminal numbers are reused: a GPS client left running with the `/dev/pts/N` of an
//! emulated modem that has since gone away (a simulator stopped or its device unplugged) opens
//! whatever pseudo-terminal gets that number next, quite possibly the terminal window the demo
//! was then started in. It would switch that terminal to raw mode (so lines no longer return to
//! the left margin and the table walks down the screen) and write its `AT+CGPS?` on it. Serial
//! clients lock their port exclusively (`flock`; m365's own GPS sources do, through
//! `tokio-serial`), so while the demo holds a shared lock on its terminal they fail to open it
//! and write nothing.

use std::fs::File;
use std::io::{self, IsTerminal as _, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt as _;

use crossterm::cursor::MoveToPreviousLine;
use crossterm::style::Print;
use crossterm::terminal::{Clear, ClearType};
use crossterm::{QueueableCommand as _, terminal};
use tokio::signal::unix::{Signal, SignalKind, signal};

use super::render;

/// Columns and lines assumed when the terminal does not say (a pseudo-terminal whose size was
/// never set reports 0 × 0).
const FALLBACK_SIZE: (usize, usize) = (80, 24);

/// The terminal's width and height; [`FALLBACK_SIZE`] where unknown.
pub(crate) fn size() -> (usize, usize) {
    match terminal::size() {
        Ok((columns, lines)) => (
            nonzero_or(columns, FALLBACK_SIZE.0),
            nonzero_or(lines, FALLBACK_SIZE.1),
        ),
        Err(_) => FALLBACK_SIZE,
    }
}

fn nonzero_or(value: u16, fallback: usize) -> usize {
    if value == 0 {
        fallback
    } else {
        usize::from(value)
    }
}

/// What the live view may use of a terminal `columns` × `lines`: the last column stays free,
/// because terminals differ on whether writing it wraps at once (and on how wide `°` is), and
/// the last line stays free for the cursor, so the table never scrolls its own top away.
pub(crate) fn usable((columns, lines): (usize, usize)) -> (usize, usize) {
    (columns.saturating_sub(1), lines.saturating_sub(1))
}

/// Window size changes (`SIGWINCH`), to re-lay the view out at once rather than at the next tick.
pub(crate) fn resizes() -> Option<Signal> {
    match signal(SignalKind::window_change()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::debug!(error = %e, "no window size notifications; the view follows at each tick");
            None
        }
    }
}

/// The next resize, or never without notifications.
pub(crate) async fn next_resize(resizes: &mut Option<Signal>) {
    match resizes {
        Some(s) => {
            if s.recv().await.is_none() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending::<()>().await,
    }
}

/// The lines the view last drew, at the bottom of the output, so they can be redrawn in place.
#[derive(Debug, Default)]
pub(crate) struct Screen {
    /// Width of each line drawn, in columns.
    drawn: Vec<usize>,
}

impl Screen {
    /// Goes back to the first line drawn and clears from there down. On a terminal narrowed
    /// since, `columns` wide, lines may have been re-wrapped over several rows: going up as many
    /// rows as they now take may, on terminals that cut lines instead, clear a few lines above
    /// the table too, which is better than leaving pieces of the old table on screen.
    pub(crate) fn erase(&mut self, out: &mut impl Write, columns: usize) -> io::Result<()> {
        self.up(out, columns)?;
        out.queue(Clear(ClearType::FromCursorDown))?;
        Ok(())
    }

    /// Draws `lines` over the previous ones. Each line ends with an explicit carriage return
    /// and line feed: the view does not depend on the terminal turning `\n` into both.
    pub(crate) fn draw(
        &mut self,
        out: &mut impl Write,
        lines: &[String],
        columns: usize,
    ) -> io::Result<()> {
        self.up(out, columns)?;
        for line in lines {
            out.queue(Clear(ClearType::CurrentLine))?
                .queue(Print(line))?
                .queue(Print("\r\n"))?;
        }
        out.queue(Clear(ClearType::FromCursorDown))?;
        self.drawn = lines.iter().map(|l| render::text_width(l)).collect();
        Ok(())
    }

    /// Leaves what was drawn on screen; the next drawing starts below it.
    pub(crate) fn forget(&mut self) {
        self.drawn.clear();
    }

    /// Whether anything is on screen.
    pub(crate) fn is_drawn(&self) -> bool {
        !self.drawn.is_empty()
    }

    fn up(&mut self, out: &mut impl Write, columns: usize) -> io::Result<()> {
        let rows = render::screen_rows(&self.drawn, columns);
        self.drawn.clear();
        // `CSI 0 F` moves one line, like `CSI 1 F`: nothing drawn means no move at all.
        if rows > 0 {
            out.queue(MoveToPreviousLine(u16::try_from(rows).unwrap_or(u16::MAX)))?;
        }
        Ok(())
    }
}

/// Takes a shared lock on each terminal among stdin, stdout and stderr, held as long as the
/// returned files are, so that serial clients cannot open it (see the module documentation).
///
/// Each terminal is opened anew through `/proc/self/fd`: a lock belongs to an open file
/// description, and the inherited ones are shared with the shell, which would keep the lock
/// after the demo ends; a description of our own is closed, and its lock released, when the
/// process ends, however it ends.
pub(crate) fn lock_terminals() -> Vec<File> {
    let mut held: Vec<File> = Vec::new();
    let mut devices = Vec::new();
    let stdin = io::stdin();
    let stdout = io::stdout();
    let stderr = io::stderr();
    let fds = [
        (0, stdin.as_fd().is_terminal()),
        (1, stdout.as_fd().is_terminal()),
        (2, stderr.as_fd().is_terminal()),
    ];
    for (fd, is_terminal) in fds {
        if !is_terminal {
            continue;
        }
        let file = match File::open(format!("/proc/self/fd/{fd}")) {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(fd, error = %e, "cannot reopen the terminal to lock it");
                continue;
            }
        };
        let device = file.metadata().map(|m| m.rdev()).ok();
        if device.is_some() && devices.contains(&device) {
            continue;
        }
        match file.try_lock_shared() {
            Ok(()) => {
                devices.push(device);
                held.push(file);
            }
            Err(e) => tracing::debug!(fd, error = %e, "cannot lock the terminal"),
        }
    }
    held
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drawn(screen: &mut Screen, lines: &[&str], columns: usize) -> String {
        let lines: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
        let mut out = Vec::new();
        screen.draw(&mut out, &lines, columns).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_redraw_goes_back_over_what_was_drawn_and_no_further() {
        let mut screen = Screen::default();
        let first = drawn(&mut screen, &["abc", "", "de"], 80);
        assert!(
            first.starts_with("\x1b[2K"),
            "nothing to go back over yet: {first:?}"
        );
        assert_eq!(first.matches("\r\n").count(), 3);
        let second = drawn(&mut screen, &["abc"], 80);
        assert!(second.starts_with("\x1b[3F"), "{second:?}");
        // A 100-column line drawn before the terminal was narrowed to 40 now takes 3 rows.
        drawn(&mut screen, &[&"x".repeat(100)], 120);
        let narrowed = drawn(&mut screen, &["x"], 40);
        assert!(narrowed.starts_with("\x1b[3F"), "{narrowed:?}");
        screen.forget();
        assert!(!screen.is_drawn());
        assert!(drawn(&mut screen, &["x"], 40).starts_with("\x1b[2K"));
    }
}
