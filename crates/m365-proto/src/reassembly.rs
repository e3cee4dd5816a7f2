//! Turns a stream of BLE notifications back into whole UART frames (protocol.md §4.6.5, §5.1).
//!
//! Frames are cut into 20-byte notifications with no header of their own, so the receiver
//! reads LEN after the 2-byte header and accumulates until the framing's length is reached:
//! LEN + 6 for plain `55 AA`, LEN + 10 for XOR `55 AB`, LEN + 16 for Mi-auth `55 AB`. It then
//! checks the checksum and hands the frame on; decryption is the caller's job (a Mi-auth tag
//! failure is counted through [`Reassembler::count_rejected_tag`]).
//!
//! Everything that is not a good frame is dropped and counted by reason in [`RejectCounts`]:
//! - bytes before a header are garbage (the receiver resynchronises by scanning for `55 AA` or
//!   `55 AB`, as py9b does);
//! - a LEN below 2 or above the configured maximum is refused at once, and scanning resumes one
//!   byte later;
//! - a frame is **truncated** when a complete frame with a good checksum starts inside its
//!   still incomplete bytes (the rest of it never came: its bytes cannot belong to it), when its
//!   checksum fails and another header starts inside it, or when [`Reassembler::reset`] drops
//!   it;
//! - a complete frame whose checksum fails with no header inside is a bad checksum.
//!
//! Each reassembler scans only for its own generation's header. A `55` followed by that header
//! byte inside a cut frame's bytes looks like one more frame start and is counted on its own,
//! so a cut frame counts at least once.
//!
//! The buffer never holds more than one maximal frame plus one 64-byte input step, and at most
//! [`MAX_QUEUED`] frames wait to be taken; older ones are dropped (and counted) when the caller
//! does not keep up.

use std::collections::VecDeque;

use crate::checksum;
use crate::frame::{HEADER_0, HEADER_ENCRYPTED, HEADER_PLAIN};
use crate::model::Generation;

/// Default largest LEN accepted. The longest read any client issues is 0x38 bytes (LEN 0x3A,
/// §2.3); 0x80 leaves room for larger simulator answers while keeping a garbage LEN from
/// holding the stream long.
pub const DEFAULT_MAX_LEN: u8 = 0x80;
/// Complete frames kept until the caller takes them.
pub const MAX_QUEUED: usize = 32;

/// Why bytes were dropped, by reason. All counts only grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RejectCounts {
    /// Bytes dropped while searching for a header.
    pub garbage_bytes: u64,
    /// Complete frames whose checksum failed.
    pub bad_checksum: u64,
    /// Frames cut short by a following frame or by [`Reassembler::reset`].
    pub truncated: u64,
    /// Headers with a LEN below 2 or above the maximum.
    pub bad_len: u64,
    /// Mi-auth frames whose CCM tag failed (counted by the caller).
    pub bad_tag: u64,
    /// Good frames dropped because [`MAX_QUEUED`] were already waiting.
    pub overflow: u64,
}

impl RejectCounts {
    /// Frames rejected for any reason (garbage bytes are not frames and are not included).
    pub fn frames(&self) -> u64 {
        self.bad_checksum + self.truncated + self.bad_len + self.bad_tag + self.overflow
    }
}

/// Reassembles the frames of one generation from notification bytes.
#[derive(Debug, Clone)]
pub struct Reassembler {
    generation: Generation,
    second: u8,
    overhead: usize,
    max_len: u8,
    buf: Vec<u8>,
    ready: VecDeque<Vec<u8>>,
    rejects: RejectCounts,
}

/// Bytes read from the input per processing step: bounds the buffer to one maximal frame plus
/// this.
const STEP: usize = 64;

impl Reassembler {
    /// A reassembler for `generation` with [`DEFAULT_MAX_LEN`].
    pub fn new(generation: Generation) -> Reassembler {
        Reassembler::with_max_len(generation, DEFAULT_MAX_LEN)
    }

    /// A reassembler refusing LEN above `max_len` (at least 2).
    pub fn with_max_len(generation: Generation, max_len: u8) -> Reassembler {
        let (second, overhead) = match generation {
            Generation::Plain => (HEADER_PLAIN, 6),
            Generation::Xor => (HEADER_ENCRYPTED, crate::xor::OVERHEAD),
            Generation::MiAuth => (HEADER_ENCRYPTED, crate::encrypted::OVERHEAD),
        };
        let max_len = max_len.max(2);
        Reassembler {
            generation,
            second,
            overhead,
            max_len,
            buf: Vec::with_capacity(usize::from(max_len) + overhead + STEP),
            ready: VecDeque::new(),
            rejects: RejectCounts::default(),
        }
    }

    /// The generation this reassembler frames.
    pub fn generation(&self) -> Generation {
        self.generation
    }

    /// Wire length of a frame with this LEN.
    pub fn frame_len(&self, len: u8) -> usize {
        usize::from(len) + self.overhead
    }

    /// Feeds received bytes (one notification, or any chunk).
    pub fn push(&mut self, bytes: &[u8]) {
        for step in bytes.chunks(STEP) {
            self.buf.extend_from_slice(step);
            self.process();
        }
    }

    /// The next complete frame (wire bytes, checksum verified), oldest first.
    pub fn next_frame(&mut self) -> Option<Vec<u8>> {
        self.ready.pop_front()
    }

    /// Drops any partial frame (e.g. after a reconnect or a response timeout). A partial frame
    /// counts as truncated, other buffered bytes as garbage.
    pub fn reset(&mut self) {
        if self.header_at(0) {
            self.rejects.truncated += 1;
        } else {
            self.rejects.garbage_bytes += self.buf.len() as u64;
        }
        self.buf.clear();
    }

    /// Bytes held while waiting for the rest of a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Counts a Mi-auth frame whose CCM tag failed after it left the reassembler.
    pub fn count_rejected_tag(&mut self) {
        self.rejects.bad_tag += 1;
    }

    /// What was rejected so far.
    pub fn rejects(&self) -> RejectCounts {
        self.rejects
    }

    fn header_at(&self, i: usize) -> bool {
        self.buf.get(i) == Some(&HEADER_0) && self.buf.get(i + 1) == Some(&self.second)
    }

    /// Whether `i` may start a header: a full header, or a lone `55` at the very end.
    fn maybe_header_at(&self, i: usize) -> bool {
        self.header_at(i) || (i + 1 == self.buf.len() && self.buf.get(i) == Some(&HEADER_0))
    }

    /// Length of a checksum-valid frame with an acceptable LEN starting at `i`, if one is
    /// complete in the buffer.
    fn complete_frame_at(&self, i: usize) -> Option<usize> {
        if !self.header_at(i) {
            return None;
        }
        let len = *self.buf.get(i + 2)?;
        if len < 2 || len > self.max_len {
            return None;
        }
        let total = self.frame_len(len);
        let frame = self.buf.get(i..i + total)?;
        checksum::verify_framed(frame).ok().map(|()| total)
    }

    fn drop_front(&mut self, n: usize) {
        self.buf.drain(..n.min(self.buf.len()));
    }

    fn emit(&mut self, total: usize) {
        let frame: Vec<u8> = self.buf.drain(..total).collect();
        if self.ready.len() >= MAX_QUEUED {
            self.ready.pop_front();
            self.rejects.overflow += 1;
        }
        self.ready.push_back(frame);
    }

    fn process(&mut self) {
        loop {
            // 1. Resynchronise: drop everything before the first possible header.
            let start = (0..self.buf.len())
                .find(|&i| self.maybe_header_at(i))
                .unwrap_or(self.buf.len());
            if start > 0 {
                self.rejects.garbage_bytes += start as u64;
                self.drop_front(start);
            }
            // 2. Need the header and LEN.
            let Some(&len) = self.buf.get(2) else { return };
            if !self.header_at(0) {
                return;
            }
            if len < 2 || len > self.max_len {
                self.rejects.bad_len += 1;
                self.drop_front(1);
                continue;
            }
            let total = self.frame_len(len);
            if self.buf.len() < total {
                // 3. Incomplete: a complete good frame inside means this one was cut short.
                if let Some(next) =
                    (1..self.buf.len()).find(|&i| self.complete_frame_at(i).is_some())
                {
                    // Drop only up to the first header inside: it may be another cut frame,
                    // which then counts on its own.
                    let first = (1..next).find(|&i| self.header_at(i)).unwrap_or(next);
                    self.rejects.truncated += 1;
                    self.drop_front(first);
                    continue;
                }
                return;
            }
            // 4. Complete: check it.
            if self
                .buf
                .get(..total)
                .is_some_and(|f| checksum::verify_framed(f).is_ok())
            {
                self.emit(total);
                continue;
            }
            match (1..total).find(|&i| self.maybe_header_at(i)) {
                Some(next) => {
                    self.rejects.truncated += 1;
                    self.drop_front(next);
                }
                None => {
                    self.rejects.bad_checksum += 1;
                    self.drop_front(total);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Frame;

    fn plain(attr: u8, n: usize) -> Vec<u8> {
        Frame::new(0x23, 0x01, attr, (0..n as u8).collect())
            .unwrap()
            .encode()
    }

    fn feed_in_20s(r: &mut Reassembler, bytes: &[u8]) {
        for c in bytes.chunks(20) {
            r.push(c);
        }
    }

    fn drain(r: &mut Reassembler) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| r.next_frame()).collect()
    }

    #[test]
    fn joins_notifications() {
        let mut r = Reassembler::new(Generation::Plain);
        let a = plain(0xB0, 32);
        let b = plain(0x25, 2);
        feed_in_20s(&mut r, &[a.clone(), b.clone()].concat());
        assert_eq!(drain(&mut r), vec![a, b]);
        assert_eq!(r.rejects(), RejectCounts::default());
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn skips_garbage_and_other_headers() {
        let mut r = Reassembler::new(Generation::Plain);
        let a = plain(0x10, 14);
        r.push(&[0x01, 0x02, 0x55, 0xAB, 0x03]);
        r.push(&a);
        assert_eq!(drain(&mut r), vec![a]);
        assert_eq!(r.rejects().garbage_bytes, 5);
    }

    #[test]
    fn truncated_frame_is_detected_by_the_next_one() {
        let mut r = Reassembler::new(Generation::Plain);
        let cut = plain(0xB0, 32);
        let next = plain(0x25, 2);
        r.push(&cut[..20]);
        r.push(&next);
        assert_eq!(drain(&mut r), vec![next]);
        assert_eq!(r.rejects().truncated, 1);
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn bad_checksum_and_bad_len() {
        let mut r = Reassembler::new(Generation::Plain);
        let mut bad = plain(0x25, 2);
        bad[6] ^= 0x01;
        r.push(&bad);
        assert_eq!(r.rejects().bad_checksum, 1);
        r.push(&[0x55, 0xAA, 0x01]);
        r.push(&[0x55, 0xAA, 0xF0]);
        assert_eq!(r.rejects().bad_len, 2);
        let good = plain(0x25, 2);
        r.push(&good);
        assert_eq!(drain(&mut r), vec![good]);
    }

    #[test]
    fn reset_counts_a_partial_frame() {
        let mut r = Reassembler::new(Generation::MiAuth);
        r.push(&[0x55, 0xAB, 0x10, 0x01, 0x00]);
        r.reset();
        assert_eq!(r.rejects().truncated, 1);
        assert_eq!(r.buffered(), 0);
        r.push(&[0x55]);
        assert_eq!(r.buffered(), 1, "a lone 55 may start a header");
        r.count_rejected_tag();
        assert_eq!(r.rejects().bad_tag, 1);
        assert_eq!(r.rejects().frames(), 2);
    }

    #[test]
    fn queue_is_bounded() {
        let mut r = Reassembler::new(Generation::Plain);
        let f = plain(0x25, 2);
        for _ in 0..MAX_QUEUED + 3 {
            r.push(&f);
        }
        assert_eq!(drain(&mut r).len(), MAX_QUEUED);
        assert_eq!(r.rejects().overflow, 3);
    }
}
