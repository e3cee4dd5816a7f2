//! The control interface of a running simulator: D-Bus methods on the simulator's own name
//! (`org.m365.Simulator` at `/org/m365/Simulator`) on the same private bus as the fake BlueZ,
//! so people and scripts (`m365-sim ctl`) can inject faults, steer the ride and read counters
//! while clients talk to the scooters.
//!
//! D-Bus was chosen over a socket of our own because the bus is already there, its address is
//! already printed (`DBUS_SYSTEM_BUS_ADDRESS=...`), and standard tools (`busctl`, `dbus-send`)
//! can call the methods too. Every method names its scooter by MAC address; an unknown
//! address, or an argument out of range, is answered with `org.freedesktop.DBus.Error.InvalidArgs`
//! and a message meant for a person.

use std::sync::Arc;
use std::time::Duration;

use m365_fakebluez::{BluezError, DeviceControl};
use m365_gps::emulate::EmulatorHandle;
use tokio::sync::Mutex;
use zbus::fdo;
use zbus::{interface, proxy};

use crate::bluez::{Harshness, ServedScooter};
use crate::faults::{Counters, Fault};
use crate::profile::{generation_slug, model_slug};
use crate::ride::{LoopPlan, Script};

/// The simulator's well-known name on its private bus.
pub const SERVICE_NAME: &str = "org.m365.Simulator";
/// The object carrying [`INTERFACE_NAME`].
pub const OBJECT_PATH: &str = "/org/m365/Simulator";
/// The control interface.
pub const INTERFACE_NAME: &str = "org.m365.Simulator1";

/// Why the control interface could not be put on the bus.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Connecting, exporting the object or taking the name failed.
    #[error("cannot publish the simulator control interface: {0}")]
    Bus(#[from] zbus::Error),
}

/// How `fail-connect` fails the next connection attempts, as BlueZ reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectFailure {
    /// `org.bluez.Error.InProgress`.
    InProgress,
    /// `org.bluez.Error.Failed: le-connection-abort-by-local` (the usual radio failure).
    AbortByLocal,
    /// `org.bluez.Error.Failed: Software caused connection abort`.
    Failed,
}

impl ConnectFailure {
    /// Parses the names `m365-sim ctl` uses: `in-progress`, `abort-by-local`, `failed`.
    pub fn parse(name: &str) -> Option<ConnectFailure> {
        match name {
            "in-progress" => Some(ConnectFailure::InProgress),
            "abort-by-local" => Some(ConnectFailure::AbortByLocal),
            "failed" => Some(ConnectFailure::Failed),
            _ => None,
        }
    }

    /// The BlueZ error the fake answers with.
    pub fn bluez_error(self) -> BluezError {
        match self {
            ConnectFailure::InProgress => BluezError::in_progress(),
            ConnectFailure::AbortByLocal => BluezError::le_connection_abort_by_local(),
            ConnectFailure::Failed => BluezError::Failed("Software caused connection abort".into()),
        }
    }
}

/// One scooter as `List` reports it.
pub type ScooterRow = (String, String, String, String, bool, bool);

/// The served scooters and the emulated GPS device, as the control interface sees them.
#[derive(Debug)]
pub struct Simulator {
    scooters: Vec<ServedScooter>,
    gps: Option<Arc<Mutex<EmulatorHandle>>>,
}

impl Simulator {
    /// Controls `scooters` and, if given, the emulated GPS device.
    pub fn new(scooters: Vec<ServedScooter>, gps: Option<EmulatorHandle>) -> Simulator {
        Simulator {
            scooters,
            gps: gps.map(|g| Arc::new(Mutex::new(g))),
        }
    }

    /// Connects to the bus at `bus_address`, exports the interface and takes
    /// [`SERVICE_NAME`]. The interface lives as long as the returned connection.
    pub async fn serve(self, bus_address: &str) -> Result<zbus::Connection, ControlError> {
        let connection = zbus::connection::Builder::address(bus_address)?
            .serve_at(OBJECT_PATH, self)?
            .name(SERVICE_NAME)?
            .build()
            .await?;
        Ok(connection)
    }

    fn scooter(&self, mac: &str) -> fdo::Result<&ServedScooter> {
        let wanted = mac.trim();
        self.scooters
            .iter()
            .find(|s| {
                s.control()
                    .address()
                    .to_string()
                    .eq_ignore_ascii_case(wanted)
            })
            .ok_or_else(|| {
                let known: Vec<String> = self
                    .scooters
                    .iter()
                    .map(|s| s.control().address().to_string())
                    .collect();
                fdo::Error::InvalidArgs(format!(
                    "no scooter {wanted} (known: {})",
                    known.join(", ")
                ))
            })
    }

    fn device(&self, mac: &str) -> fdo::Result<&DeviceControl> {
        self.scooter(mac).map(ServedScooter::control)
    }

    fn gps(&self) -> fdo::Result<Arc<Mutex<EmulatorHandle>>> {
        self.gps.clone().ok_or_else(|| {
            fdo::Error::Failed("no emulated GPS device (start serve with --gps)".into())
        })
    }
}

/// Named counters, in a fixed order: what the scooter saw, then what the fake BlueZ saw.
pub fn counter_rows(scooter: &Counters, bluez: &m365_fakebluez::Counters) -> Vec<(String, u64)> {
    let rows = [
        ("connects", scooter.connects),
        ("connect_failures", scooter.connect_failures),
        ("disconnects", scooter.disconnects),
        ("registration_attempts", scooter.registration_attempts),
        ("registrations", scooter.registrations),
        ("registration_failures", scooter.registration_failures),
        ("beeps", scooter.beeps),
        ("button_presses", scooter.button_presses),
        ("windows_opened", scooter.windows_opened),
        ("logins", scooter.logins),
        ("login_failures", scooter.login_failures),
        ("reads", scooter.reads),
        ("writes", scooter.writes),
        ("rejected_frames", scooter.rejected_frames),
        ("notifications_sent", scooter.notifications_sent),
        ("notifications_dropped", scooter.notifications_dropped),
        ("notifications_delayed", scooter.notifications_delayed),
        ("notifications_corrupted", scooter.notifications_corrupted),
        ("empty_notifications", scooter.empty_notifications),
        ("rogue_frames", scooter.rogue_frames),
        ("bluez_connect_calls", bluez.connects),
        ("bluez_successful_connects", bluez.successful_connects),
        ("bluez_connect_timeouts", bluez.connect_timeouts),
        ("bluez_connects_cancelled", bluez.connects_cancelled),
        ("bluez_disconnect_calls", bluez.disconnects),
        ("bluez_link_drops", bluez.link_drops),
        ("bluez_remove_device_calls", bluez.remove_device),
    ];
    rows.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

fn percent(value: u8) -> fdo::Result<u8> {
    if value > 100 {
        return Err(fdo::Error::InvalidArgs(format!(
            "{value} is not a percentage (0–100)"
        )));
    }
    Ok(value)
}

#[interface(name = "org.m365.Simulator1")]
impl Simulator {
    /// Every scooter: MAC, name, model, protocol, connected, paired.
    async fn list(&self) -> Vec<ScooterRow> {
        self.scooters
            .iter()
            .map(|s| {
                s.with_scooter(|sc| {
                    let p = sc.profile();
                    (
                        p.address_string(),
                        p.name(),
                        model_slug(p.model).to_owned(),
                        generation_slug(p.generation).to_owned(),
                        sc.is_connected(),
                        sc.is_paired(),
                    )
                })
            })
            .collect()
    }

    /// Presses the power button; says what it did.
    async fn press_button(&self, mac: &str) -> fdo::Result<String> {
        let scooter = self.scooter(mac)?;
        let before = scooter.counters().windows_opened;
        let was_on = scooter.with_scooter(|s| s.ride().powered());
        scooter.press_button();
        let opened = scooter.counters().windows_opened > before;
        Ok(match (was_on, opened) {
            (false, _) => "powered on".to_owned(),
            (true, true) => "registration window opened".to_owned(),
            (true, false) => "pressed (no beep to answer: no registration window)".to_owned(),
        })
    }

    /// Drops the link; for `down_ms` a connection cannot be established (connects wait, as
    /// with BlueZ, or fail at once with `fail_at_once`); `remove_gatt` also takes the GATT
    /// objects off the bus. Returns whether a link was up.
    async fn drop_link(
        &self,
        mac: &str,
        down_ms: u64,
        fail_at_once: bool,
        remove_gatt: bool,
    ) -> fdo::Result<bool> {
        let scooter = self.scooter(mac)?;
        let was_up = scooter.control().is_connected();
        let harshness = Harshness {
            fail_at_once,
            remove_gatt,
        };
        scooter
            .drop_link_with(Duration::from_millis(down_ms), harshness)
            .await;
        Ok(was_up)
    }

    /// Takes the scooter out of range for `for_ms`, with the same harsher variants on demand.
    async fn out_of_range(
        &self,
        mac: &str,
        for_ms: u64,
        fail_at_once: bool,
        remove_gatt: bool,
    ) -> fdo::Result<()> {
        let harshness = Harshness {
            fail_at_once,
            remove_gatt,
        };
        self.scooter(mac)?
            .out_of_range_with(Duration::from_millis(for_ms), harshness)
            .await;
        Ok(())
    }

    /// Switches the scooter off for `off_ms`, then on again: the link drops and the session
    /// is lost.
    async fn power_cycle(&self, mac: &str, off_ms: u64) -> fdo::Result<()> {
        self.scooter(mac)?
            .apply_fault(Fault::PowerCycle {
                off_for: Duration::from_millis(off_ms),
            })
            .await;
        Ok(())
    }

    /// Precedes `percent` % of notifications with an extra empty one (0 ends it).
    async fn extra_empty_notifications(&self, mac: &str, percent: u8) -> fdo::Result<()> {
        let percent = self::percent(percent)?;
        self.scooter(mac)?
            .apply_fault(Fault::ExtraEmptyNotifications { percent })
            .await;
        Ok(())
    }

    /// Follows `percent` % of answers with a frame nobody asked for (0 ends it).
    async fn rogue_frames(&self, mac: &str, percent: u8) -> fdo::Result<()> {
        let percent = self::percent(percent)?;
        self.scooter(mac)?
            .apply_fault(Fault::RogueFrames { percent })
            .await;
        Ok(())
    }

    /// Fails the next `count` connects with `kind` (`in-progress`, `abort-by-local`, `failed`).
    async fn fail_connect(&self, mac: &str, kind: &str, count: u32) -> fdo::Result<()> {
        let failure = ConnectFailure::parse(kind).ok_or_else(|| {
            fdo::Error::InvalidArgs(format!(
                "unknown connect failure {kind:?} (in-progress, abort-by-local, failed)"
            ))
        })?;
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        self.device(mac)?
            .fail_next_connects(count, failure.bluez_error());
        Ok(())
    }

    /// Connects answer `InProgress` until a client removes the device.
    async fn stale_in_progress(&self, mac: &str) -> fdo::Result<()> {
        self.device(mac)?.stale_in_progress();
        Ok(())
    }

    /// Rides at `kmh` (within the scooter's speed limit) until `Ride(mac, "auto")`.
    async fn set_speed(&self, mac: &str, kmh: f64) -> fdo::Result<()> {
        if !kmh.is_finite() || kmh < 0.0 {
            return Err(fdo::Error::InvalidArgs(format!(
                "{kmh} is not a speed in km/h"
            )));
        }
        self.scooter(mac)?
            .with_scooter(|s| s.ride_mut().set_script(Script::Trace(vec![(0.0, kmh)])));
        Ok(())
    }

    /// `auto`: the built-in loop ride; `park`: standing still.
    async fn ride(&self, mac: &str, mode: &str) -> fdo::Result<()> {
        let script = match mode {
            "auto" => Script::Loop(LoopPlan::default()),
            "park" => Script::Parked,
            other => {
                return Err(fdo::Error::InvalidArgs(format!(
                    "unknown ride mode {other:?} (auto, park)"
                )));
            }
        };
        self.scooter(mac)?
            .with_scooter(|s| s.ride_mut().set_script(script));
        Ok(())
    }

    /// Locks or unlocks the scooter.
    async fn lock(&self, mac: &str, locked: bool) -> fdo::Result<()> {
        self.scooter(mac)?.with_scooter(|s| {
            if locked {
                s.ride_mut().lock();
            } else {
                s.ride_mut().unlock();
            }
        });
        Ok(())
    }

    /// Plugs the charger in or out.
    async fn charge(&self, mac: &str, on: bool) -> fdo::Result<()> {
        self.scooter(mac)?
            .with_scooter(|s| s.ride_mut().set_charging(on));
        Ok(())
    }

    /// Drops `percent` % of notifications (0 ends it).
    async fn drop_notifications(&self, mac: &str, percent: u8) -> fdo::Result<()> {
        let percent = self::percent(percent)?;
        self.scooter(mac)?
            .apply_fault(Fault::DropNotifications { percent })
            .await;
        Ok(())
    }

    /// Corrupts one byte of `percent` % of notifications (0 ends it).
    async fn corrupt(&self, mac: &str, percent: u8) -> fdo::Result<()> {
        let percent = self::percent(percent)?;
        self.scooter(mac)?
            .apply_fault(Fault::CorruptBytes { percent })
            .await;
        Ok(())
    }

    /// Stops (or resumes) answering UART frames.
    async fn mute_uart(&self, mac: &str, on: bool) -> fdo::Result<()> {
        let scooter = self.scooter(mac)?;
        if on {
            scooter.apply_fault(Fault::MuteUart).await;
        } else {
            scooter.with_scooter(|s| s.faults_mut().mute_uart = false);
        }
        Ok(())
    }

    /// Refuses (or accepts again) logins.
    async fn refuse_login(&self, mac: &str, on: bool) -> fdo::Result<()> {
        let scooter = self.scooter(mac)?;
        if on {
            scooter.apply_fault(Fault::RefuseLogin).await;
        } else {
            scooter.with_scooter(|s| s.faults_mut().refuse_login = false);
        }
        Ok(())
    }

    /// Ends the session now: the client must log in again.
    async fn expire_session(&self, mac: &str) -> fdo::Result<()> {
        self.scooter(mac)?.apply_fault(Fault::ExpireSession).await;
        Ok(())
    }

    /// Heals every standing fault of the scooter and of its radio link (a link-drop hold-off,
    /// an out-of-range period, failing or stuck connects); counters stay.
    async fn clear_faults(&self, mac: &str) -> fdo::Result<()> {
        self.scooter(mac)?.apply_fault(Fault::ClearAll).await;
        Ok(())
    }

    /// What the scooter (and the fake BlueZ on its behalf) saw, as named counters.
    async fn counters(&self, mac: &str) -> fdo::Result<Vec<(String, u64)>> {
        let scooter = self.scooter(mac)?;
        Ok(counter_rows(
            &scooter.counters(),
            &scooter.control().counters(),
        ))
    }

    /// Unplugs the emulated GPS device (its pty disappears).
    async fn gps_unplug(&self) -> fdo::Result<()> {
        self.gps()?.lock().await.unplug().await;
        Ok(())
    }

    /// Plugs the emulated GPS device back in; returns its (new) path.
    async fn gps_replug(&self) -> fdo::Result<String> {
        let gps = self.gps()?;
        let mut handle = gps.lock().await;
        handle.replug().await;
        Ok(handle
            .path()
            .map(|p| p.display().to_string())
            .unwrap_or_default())
    }
}

/// Client side of [`Simulator`]'s interface, for `m365-sim ctl` and tests.
#[proxy(
    interface = "org.m365.Simulator1",
    default_service = "org.m365.Simulator",
    default_path = "/org/m365/Simulator"
)]
pub trait Control {
    /// See [`Simulator`]'s `List`.
    fn list(&self) -> zbus::Result<Vec<ScooterRow>>;
    /// Presses the power button.
    fn press_button(&self, mac: &str) -> zbus::Result<String>;
    /// Drops the link.
    fn drop_link(
        &self,
        mac: &str,
        down_ms: u64,
        fail_at_once: bool,
        remove_gatt: bool,
    ) -> zbus::Result<bool>;
    /// Out of range.
    fn out_of_range(
        &self,
        mac: &str,
        for_ms: u64,
        fail_at_once: bool,
        remove_gatt: bool,
    ) -> zbus::Result<()>;
    /// Power cycle.
    fn power_cycle(&self, mac: &str, off_ms: u64) -> zbus::Result<()>;
    /// Rogue frames.
    fn rogue_frames(&self, mac: &str, percent: u8) -> zbus::Result<()>;
    /// Extra empty notifications.
    fn extra_empty_notifications(&self, mac: &str, percent: u8) -> zbus::Result<()>;
    /// Failing connects.
    fn fail_connect(&self, mac: &str, kind: &str, count: u32) -> zbus::Result<()>;
    /// Stuck `InProgress` connects.
    fn stale_in_progress(&self, mac: &str) -> zbus::Result<()>;
    /// Scripted speed.
    fn set_speed(&self, mac: &str, kmh: f64) -> zbus::Result<()>;
    /// Ride mode.
    fn ride(&self, mac: &str, mode: &str) -> zbus::Result<()>;
    /// Lock.
    fn lock(&self, mac: &str, locked: bool) -> zbus::Result<()>;
    /// Charger.
    fn charge(&self, mac: &str, on: bool) -> zbus::Result<()>;
    /// Dropped notifications.
    fn drop_notifications(&self, mac: &str, percent: u8) -> zbus::Result<()>;
    /// Corrupted notifications.
    fn corrupt(&self, mac: &str, percent: u8) -> zbus::Result<()>;
    /// Muted UART.
    fn mute_uart(&self, mac: &str, on: bool) -> zbus::Result<()>;
    /// Refused logins.
    fn refuse_login(&self, mac: &str, on: bool) -> zbus::Result<()>;
    /// Expire the session.
    fn expire_session(&self, mac: &str) -> zbus::Result<()>;
    /// Heal faults.
    fn clear_faults(&self, mac: &str) -> zbus::Result<()>;
    /// Named counters.
    fn counters(&self, mac: &str) -> zbus::Result<Vec<(String, u64)>>;
    /// Unplug the GPS device.
    fn gps_unplug(&self) -> zbus::Result<()>;
    /// Replug the GPS device.
    fn gps_replug(&self) -> zbus::Result<String>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_failures_parse_to_bluez_errors() {
        assert_eq!(
            ConnectFailure::parse("in-progress").map(ConnectFailure::bluez_error),
            Some(BluezError::in_progress())
        );
        assert_eq!(
            ConnectFailure::parse("abort-by-local").map(ConnectFailure::bluez_error),
            Some(BluezError::le_connection_abort_by_local())
        );
        assert!(matches!(
            ConnectFailure::parse("failed").map(ConnectFailure::bluez_error),
            Some(BluezError::Failed(m)) if m == "Software caused connection abort"
        ));
        assert_eq!(ConnectFailure::parse("refused"), None);
    }

    #[test]
    fn percentages_above_100_are_refused() {
        assert_eq!(percent(100).ok(), Some(100));
        assert!(percent(101).is_err());
    }
}
