//! The client's view of the register layer: which received frame answers which request
//! (protocol.md §4.6.5, §5.3).
//!
//! An answer comes from the unit the request went to (DIR 0x20 → 0x23, 0x21 → 0x24,
//! 0x22 → 0x25) and names the same register. Beyond that, real scooters are not uniform: one
//! source client accepts answers with RW 0x01 or 0x02 to either kind of request, and a scooter
//! may answer a read with more or fewer bytes than asked. So there are two tests:
//! [`is_exact_answer`] (same RW, the length asked for: what miauth waits for) and
//! [`is_answer`] (any RW 0x01/0x02, any non-empty payload). A client with several requests in
//! flight should give exact answers to their requests first and use the lenient match for what
//! is left, rather than drop an answer it could use and time out.

use crate::frame::{
    DIR_BLE, DIR_BLE_REPLY, DIR_BMS, DIR_BMS_REPLY, DIR_ESC, DIR_ESC_REPLY, Frame, RW_READ,
    RW_WRITE_ACK,
};

/// DIR of the answers to a request sent with `dir`; `None` for a DIR that gets no answer.
pub const fn reply_dir(dir: u8) -> Option<u8> {
    match dir {
        DIR_ESC => Some(DIR_ESC_REPLY),
        DIR_BLE => Some(DIR_BLE_REPLY),
        DIR_BMS => Some(DIR_BMS_REPLY),
        _ => None,
    }
}

/// Payload length of the answer `request` asks for: the byte count of a read, 1 for an
/// acknowledged write; `None` when no answer comes (RW 0x03 writes, unknown RW).
pub fn expected_len(request: &Frame) -> Option<usize> {
    match request.rw {
        RW_READ => request.payload.first().map(|&n| usize::from(n)),
        RW_WRITE_ACK => Some(1),
        _ => None,
    }
}

/// Whether `frame` answers `request`: same unit and register, RW 0x01 or 0x02, and a payload.
pub fn is_answer(request: &Frame, frame: &Frame) -> bool {
    expected_len(request).is_some()
        && reply_dir(request.dir) == Some(frame.dir)
        && frame.attr == request.attr
        && matches!(frame.rw, RW_READ | RW_WRITE_ACK)
        && !frame.payload.is_empty()
}

/// Whether `frame` is exactly the answer `request` asks for: [`is_answer`], with the request's
/// RW and the payload length asked for.
pub fn is_exact_answer(request: &Frame, frame: &Frame) -> bool {
    is_answer(request, frame)
        && frame.rw == request.rw
        && expected_len(request) == Some(frame.payload.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_directions() {
        assert_eq!(reply_dir(0x20), Some(0x23));
        assert_eq!(reply_dir(0x21), Some(0x24));
        assert_eq!(reply_dir(0x22), Some(0x25));
        assert_eq!(reply_dir(0x23), None);
    }

    #[test]
    fn expected_lengths() {
        let read = Frame::new(0x22, 0x01, 0x40, vec![0x1E]).unwrap();
        assert_eq!(expected_len(&read), Some(30));
        let ack = Frame::new(0x20, 0x02, 0x7B, vec![2, 0]).unwrap();
        assert_eq!(expected_len(&ack), Some(1));
        let no_ack = Frame::new(0x20, 0x03, 0x7B, vec![2, 0]).unwrap();
        assert_eq!(expected_len(&no_ack), None);
        let no_len = Frame::new(0x20, 0x01, 0x10, vec![]).unwrap();
        assert_eq!(expected_len(&no_len), None);
    }
}
