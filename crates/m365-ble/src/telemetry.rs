//! One telemetry sample: the reads it takes and their decoded values, for the pipeline to map
//! into records. The reads are independent, so they go out pipelined in one batch (§6.11: the
//! Mi Home app polls the same blocks).

use m365_proto::frame::Frame;
use m365_proto::registers::battery::{BatteryInfo, CellVoltages};
use m365_proto::registers::esc::{self, SessionTimes};
use m365_proto::registers::motor_info::MotorInfo;
use m365_proto::registers::{RegisterError, bms};

/// Decoded values of one sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Telemetry {
    /// The 0xB0 block: errors, status, battery %, speed, distances, uptime, frame temperature.
    pub motor: MotorInfo,
    /// ESC 0x25: remaining range, km.
    pub range_km: f64,
    /// ESC 0x3A–0x3B: time powered on and time ridden in this power cycle.
    pub session: SessionTimes,
    /// BMS 0x31–0x35: capacity, %, current, voltage, temperatures.
    pub battery: BatteryInfo,
    /// BMS 0x40…: cell voltages (when asked for).
    pub cells: Option<CellVoltages>,
}

/// The reads of a sample, in the order [`decode`] expects their answers: motor info, range,
/// session times, battery block, and the cell block when `cells`.
pub fn requests(cells: bool) -> Vec<Frame> {
    let mut reads = vec![
        esc::read_motor_info(),
        esc::read_range(),
        esc::read_session_times(),
        bms::read_battery_info(),
    ];
    if cells {
        reads.push(bms::read_cells());
    }
    reads
}

/// Decodes the answers to [`requests`] (same order).
pub fn decode(answers: &[Frame]) -> Result<Telemetry, RegisterError> {
    let missing = |reg| RegisterError::NotCovered {
        reg,
        words: 1,
        attr: 0,
        bytes: 0,
    };
    let get = |i: usize, reg: u8| answers.get(i).ok_or_else(|| missing(reg));
    Ok(Telemetry {
        motor: MotorInfo::decode(get(0, esc::REG_MOTOR_INFO)?)?,
        range_km: esc::decode_range_km(get(1, esc::REG_RANGE)?)?,
        session: SessionTimes::decode(get(2, esc::REG_SESSION_POWER_ON)?)?,
        battery: BatteryInfo::decode(get(3, bms::REG_BATTERY_INFO)?)?,
        cells: match answers.get(4) {
            Some(frame) => Some(CellVoltages::decode(frame)?),
            None => None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use m365_proto::frame::Frame;

    #[test]
    fn missing_or_foreign_answers_are_errors_not_panics() {
        assert!(decode(&[]).is_err());
        let range = Frame::new(0x23, 0x01, 0x25, vec![0x26, 0x07]).unwrap();
        assert!(decode(&[range.clone(), range]).is_err());
    }

    #[test]
    fn cells_are_read_only_when_asked() {
        assert_eq!(requests(false).len(), 4);
        let with = requests(true);
        assert_eq!(with.len(), 5);
        assert_eq!((with[4].dir, with[4].attr), (0x22, 0x40));
    }
}
