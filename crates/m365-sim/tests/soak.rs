//! Ten minutes of fake time as a telemetry client lives them: a full sample every second, link
//! drops and an out-of-range spell from a fault schedule, reconnecting and logging in again
//! whenever the session is gone. The scooter must keep answering and stay consistent.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Bench, UartClient, instant_config};
use m365_proto::registers::battery::BatteryInfo;
use m365_proto::registers::motor_info::MotorInfo;
use m365_proto::registers::{bms, esc};
use m365_sim::{Fault, FaultSchedule, Generation, LoopPlan, Model, ScooterEvent, Script};

#[test]
fn ten_minutes_with_link_faults() {
    let mut config = instant_config(Model::Pro2, Generation::MiAuth, 99);
    config.script = Script::Loop(LoopPlan::default());
    let mut bench = Bench::new(config);
    let (token, mut client) = bench.paired_session();
    let start = bench.now;
    bench.scooter.set_fault_schedule(
        start,
        FaultSchedule::new(vec![
            (
                Duration::from_secs(120),
                Fault::DropLink {
                    down_for: Duration::from_secs(5),
                },
            ),
            (
                Duration::from_secs(300),
                Fault::OutOfRange {
                    for_: Duration::from_secs(20),
                },
            ),
            (Duration::from_secs(420), Fault::MuteUart),
            (Duration::from_secs(450), Fault::ClearAll),
        ]),
    );

    let mut answered = 0u32;
    let mut reconnects = 0u32;
    let mut last_odometer = 0u32;
    let mut first_mah = None;
    let mut last_mah = 0u16;
    for _ in 0..600 {
        bench.advance(Duration::from_secs(1));
        bench.scooter.step_physics(Duration::from_secs(1));
        if !bench.scooter.is_connected() {
            let now = bench.now;
            if bench.scooter.connect(now).is_err() {
                continue;
            }
            reconnects += 1;
            let keys = bench.login(&token).expect("login after reconnect");
            client = UartClient::miauth(keys);
        }
        let Some(info) = bench.request(&mut client, &esc::read_motor_info()) else {
            continue;
        };
        let info = MotorInfo::decode(&info).expect("motor info");
        let battery = bench
            .request(&mut client, &bms::read_battery_info())
            .map(|f| BatteryInfo::decode(&f).expect("battery"));
        let Some(battery) = battery else { continue };
        assert!(
            info.total_distance_m >= last_odometer,
            "the odometer never runs back"
        );
        first_mah.get_or_insert(battery.remaining_mah);
        last_odometer = info.total_distance_m;
        last_mah = battery.remaining_mah;
        answered += 1;
    }
    // Down: ~5 s link drop, ~20 s out of range, 30 s muted (plus a second or two around each).
    assert!((520..=575).contains(&answered), "{answered} of 600 samples");
    assert_eq!(reconnects, 2);
    assert!(
        bench
            .events
            .iter()
            .filter(|e| **e == ScooterEvent::DropLink)
            .count()
            == 2
    );
    let c = bench.scooter.counters();
    assert_eq!(
        c.logins, 3,
        "one login per connection: both absences outlast the session grace"
    );
    assert!(
        c.connect_failures >= 1,
        "connects failed while out of range"
    );
    // Braking recovers a little (KERS), but riding drains the pack overall.
    assert!(first_mah.is_some_and(|first| last_mah < first));
    assert!(
        bench.scooter.ride().trip_m() > 1000.0,
        "the loop plan rides on"
    );
}
