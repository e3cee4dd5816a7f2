//! Carries one command out on the scooter and reads its control state back, so the
//! acknowledgement reports what the scooter says, not what was asked.
//!
//! Every write is confirmed by [`ScooterLink`] itself (the register read back, §11a Q7; the tail
//! light as a read-modify-write of ESC 0x7D that keeps the other flags, §11a Q13). The state
//! then comes from one pipelined read: the lock from the motor info block (0xB0, status bit
//! 0x0002), cruise, tail light and KERS from the settings block (0x7B..0x7D).

use m365_ble::ScooterLink;
use m365_ble::error::BleError;
use m365_ble::transport::Transport;
use m365_proto::registers::esc;
use m365_proto::registers::motor_info::MotorInfo;
use m365_proto::registers::settings::Settings;

use super::message::Action;
use super::result::ControlState;

/// Carries `action` out and returns the control state read back afterwards.
///
/// - `sample_now` changes nothing here (taking the sample is the sampler's job): the state is
///   read and returned.
/// - `power_off` reads the state first, then switches the scooter off
///   ([`ScooterLink::power_off`]: confirmed by the acknowledgement or by the link dropping)
///   and returns that state with `powered: false`: nothing can be read from a scooter that is
///   off, and it keeps these settings.
pub async fn execute<T: Transport>(
    link: &mut ScooterLink<T>,
    action: &Action,
) -> Result<ControlState, BleError> {
    match *action {
        Action::Lock => link.set_locked(true).await?,
        Action::Unlock => link.set_locked(false).await?,
        Action::TailLight(on) => link.set_tail_light(on).await?,
        Action::Cruise(on) => link.set_cruise(on).await?,
        Action::Kers(level) => link.set_kers(level).await?,
        Action::SampleNow => {}
        Action::PowerOff => {
            let before = read_state(link).await?;
            link.power_off().await?;
            return Ok(ControlState {
                powered: false,
                ..before
            });
        }
    }
    read_state(link).await
}

/// Reads the control state (motor info and settings, pipelined).
pub async fn read_state<T: Transport>(link: &mut ScooterLink<T>) -> Result<ControlState, BleError> {
    let answers = link
        .request_each(&[esc::read_motor_info(), esc::read_settings()])
        .await?;
    let mut answers = answers.into_iter();
    let motor = answers.next().flatten().ok_or(BleError::LinkLost)?;
    let settings = answers.next().flatten().ok_or(BleError::LinkLost)?;
    let motor = MotorInfo::decode(&motor)?;
    let settings = Settings::decode(&settings)?;
    Ok(ControlState {
        powered: true,
        locked: motor.status.locked(),
        cruise: settings.cruise,
        tail_light: settings.tail_light.always_on(),
        kers: settings.kers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use m365_ble::link::LinkConfig;
    use m365_ble::pairing::{self, PairingOptions};
    use m365_ble::scanner::ScanFilter;
    use m365_proto::registers::settings::KersLevel;
    use m365_sim::in_process::{InProcessTransport, SimScooter};
    use m365_sim::{Model, ScooterConfig};
    use std::time::Duration;

    /// A registered Pro 2 and a logged-in link to it, on the paused clock.
    async fn online(
        dir: &std::path::Path,
        seed: u64,
    ) -> (SimScooter, ScooterLink<InProcessTransport>) {
        let mut config = ScooterConfig::new(Model::Pro2, seed);
        config.auto_press = Some(Duration::from_secs(1));
        let sim = SimScooter::new(config).unwrap();
        let token = dir.join(".mi-token");
        let mut transport = InProcessTransport::new(vec![sim.clone()]);
        pairing::register(
            &mut transport,
            sim.address(),
            &PairingOptions::new(token.clone()),
            &mut |_| {},
        )
        .await
        .unwrap();
        let mut link_config = LinkConfig::new(token);
        link_config.filter = ScanFilter {
            address: Some(sim.address()),
            ..ScanFilter::default()
        };
        let link = ScooterLink::open(InProcessTransport::new(vec![sim.clone()]), link_config)
            .await
            .unwrap();
        (sim, link)
    }

    /// The simulator's own view of what the read-back reports.
    fn sim_state(sim: &SimScooter) -> ControlState {
        sim.with(|s| {
            let ride = s.ride();
            ControlState {
                powered: ride.powered(),
                locked: ride.locked(),
                cruise: ride.cruise(),
                tail_light: ride.light_flags() & 0x0002 != 0,
                kers: KersLevel::from_raw(ride.kers()),
            }
        })
    }

    #[tokio::test(start_paused = true)]
    async fn every_action_is_carried_out_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let (sim, mut link) = online(dir.path(), 41).await;
        // The mph flag is set: the tail light's read-modify-write must keep it.
        sim.with(|s| s.ride_mut().set_light_flags(0x0010));

        let steps = [
            Action::Lock,
            Action::Cruise(true),
            Action::TailLight(true),
            Action::Kers(KersLevel::Strong),
            Action::Kers(KersLevel::Weak),
            Action::Cruise(false),
            Action::TailLight(false),
            Action::Unlock,
            Action::SampleNow,
        ];
        for action in steps {
            let state = execute(&mut link, &action).await.unwrap();
            assert_eq!(state, sim_state(&sim), "after {action}");
            match action {
                Action::Lock => assert!(state.locked),
                Action::Unlock => assert!(!state.locked),
                Action::Cruise(on) => assert_eq!(state.cruise, on),
                Action::TailLight(on) => {
                    assert_eq!(state.tail_light, on);
                    assert_eq!(
                        sim.with(|s| s.ride().light_flags()) & 0x0010,
                        0x0010,
                        "the mph flag is kept"
                    );
                }
                Action::Kers(level) => assert_eq!(state.kers, level),
                _ => {}
            }
            assert!(state.powered);
        }
        let end = sim_state(&sim);
        assert_eq!(
            (end.locked, end.cruise, end.tail_light, end.kers),
            (false, false, false, KersLevel::Weak)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn power_off_is_confirmed_by_the_dropped_link() {
        let dir = tempfile::tempdir().unwrap();
        let (sim, mut link) = online(dir.path(), 42).await;
        execute(&mut link, &Action::Cruise(true)).await.unwrap();
        let state = execute(&mut link, &Action::PowerOff).await.unwrap();
        assert!(!state.powered);
        assert!(state.cruise, "the settings as read just before");
        assert!(!sim.with(|s| s.ride().powered()), "the scooter is off");
        assert!(!sim.with(|s| s.is_connected()));
        assert_eq!(link.counters().link_losses, 1);
        // The simulated rider switches it on again after its power-off hold; the link comes back
        // and the scooter kept its settings.
        let state = read_state(&mut link).await.unwrap();
        assert!(state.powered && state.cruise);
    }
}
