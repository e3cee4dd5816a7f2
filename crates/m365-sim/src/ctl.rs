//! `m365-sim ctl`: the command-line client of a running simulator's control interface
//! (`m365_sim::control`), for people at a shell and for scripts (non-zero exit on any error).

use std::time::Duration;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use m365_fakebluez::SYSTEM_BUS_ENV;
use m365_sim::control::{ConnectFailure, ControlProxy};

/// Arguments of `m365-sim ctl`.
#[derive(Debug, clap::Args)]
pub(crate) struct CtlArgs {
    /// Address of the simulator's bus (printed by `serve` as `DBUS_SYSTEM_BUS_ADDRESS=...`).
    #[arg(long, env = SYSTEM_BUS_ENV, hide_env_values = true)]
    bus: String,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OnOff {
    On,
    Off,
}

impl OnOff {
    fn on(self) -> bool {
        self == OnOff::On
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RideMode {
    /// The built-in loop ride.
    Auto,
    /// Standing still.
    Park,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FailKind {
    /// `org.bluez.Error.InProgress`.
    InProgress,
    /// `org.bluez.Error.Failed: le-connection-abort-by-local`.
    AbortByLocal,
    /// `org.bluez.Error.Failed: Software caused connection abort`.
    Failed,
}

impl FailKind {
    fn name(self) -> &'static str {
        match self {
            FailKind::InProgress => "in-progress",
            FailKind::AbortByLocal => "abort-by-local",
            FailKind::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum GpsAction {
    /// Close the device, as if pulled out.
    Unplug,
    /// Open a new device; prints its path.
    Replug,
}

/// Variants of a link fault harsher than what BlueZ does.
#[derive(Debug, Clone, Copy, clap::Args)]
struct HarshArgs {
    /// Connects fail at once with le-connection-abort-by-local instead of waiting.
    #[arg(long)]
    fail_at_once: bool,
    /// The GATT objects are removed with the link (BlueZ keeps them by default).
    #[arg(long)]
    remove_gatt: bool,
}

/// A duration such as `3s`, `500ms` or `1m 30s`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("bad duration {text:?} ({e}); examples: 3s, 500ms, 1m"))
}

#[derive(Debug, Subcommand)]
enum CtlCommand {
    /// The scooters: MAC name model protocol connected paired.
    List,
    /// Press the power button (answers a beep: opens the registration window).
    PressButton { mac: String },
    /// Drop the link; for DURATION no connection can be made: connects wait for the scooter,
    /// as BlueZ's do, and succeed when DURATION ends.
    DropLink {
        mac: String,
        #[arg(value_parser = parse_duration)]
        duration: Duration,
        #[command(flatten)]
        harsh: HarshArgs,
    },
    /// Out of radio range for DURATION: link dropped, no advertising, connects wait; BlueZ
    /// forgets the scooter once nobody heard it for the temporary timeout (`serve
    /// --temporary-timeout`, 30 s).
    OutOfRange {
        mac: String,
        #[arg(value_parser = parse_duration)]
        duration: Duration,
        #[command(flatten)]
        harsh: HarshArgs,
    },
    /// Switch the scooter off for DURATION (default 3s) and on again: the link drops, the
    /// session is lost, nothing advertises meanwhile.
    PowerCycle {
        mac: String,
        #[arg(value_parser = parse_duration, default_value = "3s")]
        duration: Duration,
    },
    /// Precede PERCENT % of notifications, on any characteristic, with an extra empty one
    /// (0 ends it).
    ExtraEmpty {
        mac: String,
        #[arg(value_parser = clap::value_parser!(u8).range(0..=100))]
        percent: u8,
    },
    /// Follow PERCENT % of answers with a valid frame nobody asked for (0 ends it).
    RogueFrames {
        mac: String,
        #[arg(value_parser = clap::value_parser!(u8).range(0..=100))]
        percent: u8,
    },
    /// Fail the next connection attempts.
    FailConnect {
        mac: String,
        #[arg(value_enum, default_value_t = FailKind::AbortByLocal)]
        kind: FailKind,
        /// How many attempts fail.
        #[arg(long, default_value_t = 1)]
        count: u32,
    },
    /// Connects answer InProgress until the client removes the device.
    StaleInProgress { mac: String },
    /// Ride at KMH until `ride MAC auto`.
    SetSpeed { mac: String, kmh: f64 },
    /// The ride: the built-in loop (auto) or parked.
    Ride {
        mac: String,
        #[arg(value_enum)]
        mode: RideMode,
    },
    /// Lock the scooter.
    Lock { mac: String },
    /// Unlock the scooter.
    Unlock { mac: String },
    /// Plug the charger in or out.
    Charge {
        mac: String,
        #[arg(value_enum)]
        state: OnOff,
    },
    /// Drop PERCENT % of notifications (0 ends it).
    DropNotifications {
        mac: String,
        #[arg(value_parser = clap::value_parser!(u8).range(0..=100))]
        percent: u8,
    },
    /// Corrupt one byte in PERCENT % of notifications (0 ends it).
    Corrupt {
        mac: String,
        #[arg(value_parser = clap::value_parser!(u8).range(0..=100))]
        percent: u8,
    },
    /// Stop (on) or resume (off) answering UART frames.
    MuteUart {
        mac: String,
        #[arg(value_enum)]
        state: OnOff,
    },
    /// Refuse logins (on) or accept them again (off).
    RefuseLogin {
        mac: String,
        #[arg(value_enum)]
        state: OnOff,
    },
    /// End the session now: the client must log in again.
    ExpireSession { mac: String },
    /// Heal every standing fault, link faults included (counters stay).
    ClearFaults { mac: String },
    /// What the scooter saw.
    Counters {
        mac: String,
        /// One JSON object instead of `name value` lines.
        #[arg(long)]
        json: bool,
    },
    /// The emulated GPS device.
    Gps {
        #[arg(value_enum)]
        action: GpsAction,
    },
}

/// Runs one `ctl` command and prints its outcome on stdout.
pub(crate) async fn run(args: CtlArgs) -> anyhow::Result<()> {
    let connection = zbus::connection::Builder::address(args.bus.as_str())
        .map(|b| b.build())
        .with_context(|| format!("bad bus address {:?}", args.bus))?
        .await
        .with_context(|| format!("cannot reach the simulator's bus at {}", args.bus))?;
    let sim = ControlProxy::new(&connection)
        .await
        .context("cannot reach the simulator")?;
    let out = execute(&sim, args.command).await.map_err(|e| match e {
        zbus::Error::MethodError(_, Some(message), _) => anyhow::anyhow!(message),
        zbus::Error::FDO(fdo) => anyhow::anyhow!(fdo_message(&fdo)),
        other => anyhow::Error::new(other).context("the simulator did not answer"),
    })?;
    if !out.is_empty() {
        println!("{out}");
    }
    Ok(())
}

/// The human part of a standard D-Bus error.
fn fdo_message(error: &zbus::fdo::Error) -> String {
    match error {
        zbus::fdo::Error::InvalidArgs(m) | zbus::fdo::Error::Failed(m) => m.clone(),
        zbus::fdo::Error::ServiceUnknown(_) | zbus::fdo::Error::NameHasNoOwner(_) => {
            "no simulator on this bus (is `m365-sim serve` running?)".to_owned()
        }
        other => other.to_string(),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

async fn execute(sim: &ControlProxy<'_>, command: CtlCommand) -> zbus::Result<String> {
    Ok(match command {
        CtlCommand::List => sim
            .list()
            .await?
            .into_iter()
            .map(|(mac, name, model, protocol, connected, paired)| {
                let connected = if connected { "connected" } else { "idle" };
                let paired = if paired { "paired" } else { "unpaired" };
                format!("{mac} {name} {model} {protocol} {connected} {paired}")
            })
            .collect::<Vec<_>>()
            .join("\n"),
        CtlCommand::PressButton { mac } => sim.press_button(&mac).await?,
        CtlCommand::DropLink {
            mac,
            duration,
            harsh,
        } => {
            let was_up = sim
                .drop_link(
                    &mac,
                    millis(duration),
                    harsh.fail_at_once,
                    harsh.remove_gatt,
                )
                .await?;
            if was_up {
                "link dropped".to_owned()
            } else {
                "no link was up; no connection can be made for the duration".to_owned()
            }
        }
        CtlCommand::OutOfRange {
            mac,
            duration,
            harsh,
        } => {
            sim.out_of_range(
                &mac,
                millis(duration),
                harsh.fail_at_once,
                harsh.remove_gatt,
            )
            .await?;
            String::new()
        }
        CtlCommand::PowerCycle { mac, duration } => {
            sim.power_cycle(&mac, millis(duration)).await?;
            String::new()
        }
        CtlCommand::ExtraEmpty { mac, percent } => {
            sim.extra_empty_notifications(&mac, percent).await?;
            String::new()
        }
        CtlCommand::RogueFrames { mac, percent } => {
            sim.rogue_frames(&mac, percent).await?;
            String::new()
        }
        CtlCommand::FailConnect { mac, kind, count } => {
            // The names are the interface's; checked here so a typo never reaches the bus.
            debug_assert!(ConnectFailure::parse(kind.name()).is_some());
            sim.fail_connect(&mac, kind.name(), count).await?;
            String::new()
        }
        CtlCommand::StaleInProgress { mac } => {
            sim.stale_in_progress(&mac).await?;
            String::new()
        }
        CtlCommand::SetSpeed { mac, kmh } => {
            sim.set_speed(&mac, kmh).await?;
            String::new()
        }
        CtlCommand::Ride { mac, mode } => {
            let mode = match mode {
                RideMode::Auto => "auto",
                RideMode::Park => "park",
            };
            sim.ride(&mac, mode).await?;
            String::new()
        }
        CtlCommand::Lock { mac } => {
            sim.lock(&mac, true).await?;
            String::new()
        }
        CtlCommand::Unlock { mac } => {
            sim.lock(&mac, false).await?;
            String::new()
        }
        CtlCommand::Charge { mac, state } => {
            sim.charge(&mac, state.on()).await?;
            String::new()
        }
        CtlCommand::DropNotifications { mac, percent } => {
            sim.drop_notifications(&mac, percent).await?;
            String::new()
        }
        CtlCommand::Corrupt { mac, percent } => {
            sim.corrupt(&mac, percent).await?;
            String::new()
        }
        CtlCommand::MuteUart { mac, state } => {
            sim.mute_uart(&mac, state.on()).await?;
            String::new()
        }
        CtlCommand::RefuseLogin { mac, state } => {
            sim.refuse_login(&mac, state.on()).await?;
            String::new()
        }
        CtlCommand::ExpireSession { mac } => {
            sim.expire_session(&mac).await?;
            String::new()
        }
        CtlCommand::ClearFaults { mac } => {
            sim.clear_faults(&mac).await?;
            String::new()
        }
        CtlCommand::Counters { mac, json } => {
            let rows = sim.counters(&mac).await?;
            if json {
                let map: serde_json::Map<String, serde_json::Value> = rows
                    .into_iter()
                    .map(|(k, v)| (k, serde_json::Value::from(v)))
                    .collect();
                serde_json::Value::Object(map).to_string()
            } else {
                rows.into_iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            }
        }
        CtlCommand::Gps { action } => match action {
            GpsAction::Unplug => {
                sim.gps_unplug().await?;
                String::new()
            }
            GpsAction::Replug => sim.gps_replug().await?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_bad_ones_say_how() {
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        let err = parse_duration("3 parsecs").unwrap_err();
        assert!(err.contains("bad duration \"3 parsecs\""), "{err}");
    }

    #[test]
    fn failure_names_are_the_interface_names() {
        for kind in [
            FailKind::InProgress,
            FailKind::AbortByLocal,
            FailKind::Failed,
        ] {
            assert!(ConnectFailure::parse(kind.name()).is_some());
        }
    }
}
