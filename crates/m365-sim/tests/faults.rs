//! Faults change the scooter's behaviour as specified, on demand and on a schedule, and the
//! counters record what happened. Also the session lifetime across reconnects.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Bench, UartClient, instant_config};
use m365_proto::login::LoginError;
use m365_proto::registers::esc;
use m365_sim::faults::FaultAction;
use m365_sim::{ConnectError, Fault, FaultSchedule, Generation, Model, ScooterEvent};

fn session(seed: u64) -> (Bench, UartClient) {
    let mut bench = Bench::new(instant_config(Model::Pro2, Generation::MiAuth, seed));
    let (_, client) = bench.paired_session();
    (bench, client)
}

/// A session on a scooter that keeps its session keys for 5 s after a disconnect (not what
/// real scooters do, protocol.md §3.7, but what a client's resume path is tested against).
fn session_with_grace(seed: u64) -> (Bench, UartClient) {
    let mut config = instant_config(Model::Pro2, Generation::MiAuth, seed);
    config.session_grace = Duration::from_secs(5);
    let mut bench = Bench::new(config);
    let (_, client) = bench.paired_session();
    (bench, client)
}

#[test]
fn dropping_every_notification_silences_the_scooter_and_is_counted() {
    let (mut bench, mut client) = session(51);
    let sent_before = bench.scooter.counters().notifications_sent;
    bench.fault(Fault::DropNotifications { percent: 100 });
    assert!(bench.request(&mut client, &esc::read_serial()).is_none());
    let c = bench.scooter.counters();
    assert_eq!(c.reads, 1, "the request arrived");
    // 14-byte serial: LEN 16 → 32-byte encrypted frame → 2 notifications, both dropped.
    assert_eq!(c.notifications_dropped, 2);
    assert_eq!(c.notifications_sent, sent_before);
    bench.fault(Fault::ClearAll);
    assert!(bench.request(&mut client, &esc::read_serial()).is_some());
}

#[test]
fn partial_drops_lose_some_answers_but_not_all() {
    let (mut bench, mut client) = session(52);
    bench.fault(Fault::DropNotifications { percent: 50 });
    let answered = (0..40)
        .filter(|_| {
            let got = bench.request(&mut client, &esc::read_range()).is_some();
            // A lost answer leaves no partial frame behind: range answers are one notification.
            client.reassembler.reset();
            got
        })
        .count();
    assert!((8..=32).contains(&answered), "{answered} of 40 answered");
    // Each answer is one 20-byte notification plus the empty one that ends it (§2.3); both
    // take their chances.
    let c = bench.scooter.counters();
    let dropped = c.notifications_dropped as usize;
    assert!(
        (40 - answered..=80 - answered).contains(&dropped),
        "{dropped} dropped, {answered} answered"
    );
}

#[test]
fn corrupted_notifications_fail_the_client_check() {
    let (mut bench, mut client) = session(53);
    bench.fault(Fault::CorruptBytes { percent: 100 });
    assert!(bench.request(&mut client, &esc::read_range()).is_none());
    assert!(bench.scooter.counters().notifications_corrupted >= 1);
    let rejected = client.reassembler.rejects().frames() + client.rejected;
    assert!(rejected >= 1 || client.reassembler.rejects().garbage_bytes > 0);
}

#[test]
fn delayed_notifications_arrive_late() {
    let (mut bench, mut client) = session(54);
    bench.fault(Fault::DelayNotifications {
        percent: 100,
        delay: Duration::from_millis(700),
    });
    let t0 = bench.now;
    assert!(bench.request(&mut client, &esc::read_range()).is_some());
    assert_eq!(bench.now - t0, Duration::from_millis(700));
    // The answer and the empty notification that ends it.
    assert_eq!(bench.scooter.counters().notifications_delayed, 2);
}

#[test]
fn muted_uart_answers_nothing_but_login_still_works() {
    let (mut bench, mut client) = session(55);
    bench.fault(Fault::MuteUart);
    assert!(bench.request(&mut client, &esc::read_serial()).is_none());
    assert_eq!(bench.scooter.counters().reads, 0);
    bench.fault(Fault::ClearAll);
    assert!(bench.request(&mut client, &esc::read_serial()).is_some());
}

#[test]
fn fail_next_connect_uses_bluez_error_names_once() {
    let mut bench = Bench::new(instant_config(Model::Pro2, Generation::MiAuth, 56));
    bench.fault(Fault::FailNextConnect(ConnectError::Failed));
    let now = bench.now;
    let err = bench.scooter.connect(now).expect_err("fails once");
    assert_eq!(err.dbus_name(), "org.bluez.Error.Failed");
    assert_eq!(err.message(), "le-connection-abort-by-local");
    assert!(bench.scooter.connect(now).is_ok());
    assert_eq!(
        bench.scooter.connect(now),
        Err(ConnectError::AlreadyConnected)
    );
    let c = bench.scooter.counters();
    assert_eq!((c.connects, c.connect_failures), (1, 2));
}

#[test]
fn out_of_range_drops_the_link_hides_and_comes_back() {
    let (mut bench, _) = session(57);
    bench.fault(Fault::OutOfRange {
        for_: Duration::from_secs(20),
    });
    assert!(bench.events.contains(&ScooterEvent::DropLink));
    assert!(!bench.scooter.is_connected());
    let now = bench.now;
    assert!(bench.scooter.advertisement(now).is_none());
    assert_eq!(bench.scooter.connect(now), Err(ConnectError::Failed));
    bench.advance(Duration::from_secs(20));
    let now = bench.now;
    assert!(bench.scooter.advertisement(now).is_some());
    assert!(bench.scooter.connect(now).is_ok());
}

#[test]
fn dropped_link_keeps_the_session_for_the_grace_like_a_disconnect() {
    let (mut bench, mut client) = session_with_grace(58);
    assert!(bench.request(&mut client, &esc::read_range()).is_some());
    bench.fault(Fault::DropLink {
        down_for: Duration::from_secs(2),
    });
    assert!(bench.events.contains(&ScooterEvent::DropLink));
    let now = bench.now;
    assert!(
        bench.scooter.advertisement(now).is_some(),
        "still advertising"
    );
    assert!(bench.scooter.connect(now).is_err());
    bench.advance(Duration::from_secs(2));
    bench.connect();
    assert!(bench.events.contains(&ScooterEvent::SessionResumed));
    assert!(bench.scooter.has_session());
    // The client's cipher carries on where it stopped.
    assert!(bench.request(&mut client, &esc::read_range()).is_some());
}

#[test]
fn dropped_link_past_the_grace_needs_a_new_login() {
    let (mut bench, mut client) = session_with_grace(65);
    bench.fault(Fault::DropLink {
        down_for: Duration::from_secs(6),
    });
    bench.advance(Duration::from_secs(6));
    bench.connect();
    assert!(!bench.events.contains(&ScooterEvent::SessionResumed));
    assert!(!bench.scooter.has_session());
    assert!(bench.request(&mut client, &esc::read_range()).is_none());
}

#[test]
fn dropped_link_with_an_expired_session_needs_a_new_login() {
    let (mut bench, mut client) = session(66);
    bench.fault(Fault::DropLink {
        down_for: Duration::from_secs(1),
    });
    bench.fault(Fault::ExpireSession);
    bench.advance(Duration::from_secs(1));
    bench.connect();
    assert!(!bench.scooter.has_session());
    assert!(bench.request(&mut client, &esc::read_range()).is_none());
}

#[test]
fn refused_login_answers_23() {
    let mut bench = Bench::new(instant_config(Model::Pro2, Generation::MiAuth, 59));
    let (token, _) = bench.paired_session();
    bench.disconnect();
    bench.advance(Duration::from_secs(10));
    bench.fault(Fault::RefuseLogin);
    bench.connect();
    assert_eq!(bench.login(&token), Err(LoginError::Rejected));
    assert_eq!(bench.scooter.counters().login_failures, 1);
}

#[test]
fn expired_session_ignores_frames_until_a_new_login() {
    let mut bench = Bench::new(instant_config(Model::Pro2, Generation::MiAuth, 60));
    let (token, mut client) = bench.paired_session();
    bench.fault(Fault::ExpireSession);
    assert!(bench.events.contains(&ScooterEvent::SessionExpired));
    assert!(bench.request(&mut client, &esc::read_serial()).is_none());
    assert_eq!(bench.scooter.counters().rejected_frames, 1);
    let keys = bench.login(&token).expect("a fresh login, not E2");
    let mut fresh = UartClient::miauth(keys);
    assert!(bench.request(&mut fresh, &esc::read_serial()).is_some());
}

#[test]
fn scheduled_faults_apply_at_their_offsets() {
    let (mut bench, mut client) = session(61);
    let start = bench.now;
    bench.scooter.set_fault_schedule(
        start,
        FaultSchedule::new(vec![
            (Duration::from_secs(10), Fault::MuteUart),
            (Duration::from_secs(20), Fault::ClearAll),
        ]),
    );
    assert!(bench.request(&mut client, &esc::read_range()).is_some());
    bench.advance(Duration::from_secs(10));
    assert!(bench.scooter.faults().mute_uart);
    assert!(bench.request(&mut client, &esc::read_range()).is_none());
    bench.advance(Duration::from_secs(10));
    assert!(bench.request(&mut client, &esc::read_range()).is_some());
}

#[test]
fn quick_reconnect_resumes_the_session_and_counters_continue() {
    let (mut bench, mut client) = session_with_grace(62);
    assert!(bench.request(&mut client, &esc::read_range()).is_some());
    bench.disconnect();
    bench.advance(Duration::from_secs(3));
    bench.connect();
    assert!(bench.events.contains(&ScooterEvent::SessionResumed));
    // The same client cipher: its counter continues, and so does the scooter's.
    assert!(bench.request(&mut client, &esc::read_range()).is_some());
    assert_eq!(
        client.cipher.as_ref().map(|c| c.next_tx_counter()),
        Some(2),
        "two frames sent in this session"
    );
}

#[test]
fn reconnect_after_the_grace_period_needs_a_new_login() {
    let (mut bench, mut client) = session_with_grace(63);
    bench.disconnect();
    bench.advance(Duration::from_secs(6));
    bench.connect();
    assert!(!bench.events.contains(&ScooterEvent::SessionResumed));
    assert!(bench.request(&mut client, &esc::read_range()).is_none());
    assert_eq!(bench.scooter.counters().rejected_frames, 1);
}

#[test]
fn by_default_the_session_dies_with_the_link() {
    // Xiaomi's library drops the session keys on disconnect (protocol.md §3.7).
    let mut bench = Bench::new(instant_config(Model::Pro2, Generation::MiAuth, 64));
    let (token, mut client) = bench.paired_session();
    assert!(bench.request(&mut client, &esc::read_range()).is_some());
    bench.disconnect();
    bench.connect();
    assert!(!bench.scooter.has_session());
    assert!(!bench.events.contains(&ScooterEvent::SessionResumed));
    assert!(bench.request(&mut client, &esc::read_range()).is_none());
    let keys = bench.login(&token).expect("a new login");
    let mut fresh = UartClient::miauth(keys);
    assert!(bench.request(&mut fresh, &esc::read_range()).is_some());
}

#[test]
fn a_power_cycle_takes_the_scooter_away_and_loses_the_session_whatever_the_grace() {
    let (mut bench, mut client) = session_with_grace(67);
    assert!(bench.request(&mut client, &esc::read_range()).is_some());
    bench.fault(Fault::PowerCycle {
        off_for: Duration::from_secs(3),
    });
    assert!(bench.events.contains(&ScooterEvent::PoweredOff));
    assert!(bench.events.contains(&ScooterEvent::DropLink));
    assert!(!bench.scooter.is_connected());
    let now = bench.now;
    assert!(bench.scooter.advertisement(now).is_none(), "off: silent");
    assert!(!bench.scooter.reachable(now));
    assert_eq!(
        bench.scooter.reachable_again(now),
        Some(now + Duration::from_secs(3))
    );
    bench.advance(Duration::from_secs(3));
    assert!(bench.events.contains(&ScooterEvent::PoweredOn));
    let now = bench.now;
    assert!(bench.scooter.reachable(now));
    assert!(bench.scooter.advertisement(now).is_some());
    bench.connect();
    assert!(
        !bench.scooter.has_session(),
        "the BLE module restarted: no session to resume"
    );
    assert_eq!(
        bench.scooter.ride().power_on_s(),
        0.0,
        "a new power-on session"
    );
}

#[test]
fn rogue_frames_follow_answers_on_demand() {
    let (mut bench, mut client) = session(68);
    bench.fault(Fault::RogueFrames { percent: 100 });
    let answer = bench
        .request(&mut client, &esc::read_range())
        .expect("answer");
    assert_eq!(answer.attr, 0x25, "the answer comes first");
    let rogue = bench
        .await_answer(&mut client, Duration::from_secs(1))
        .expect("a frame nobody asked for");
    assert_eq!((rogue.dir, rogue.rw, rogue.attr), (0x23, 0x01, 0x3E));
    assert_eq!(bench.scooter.counters().rogue_frames, 1);
    bench.fault(Fault::RogueFrames { percent: 0 });
    assert!(bench.request(&mut client, &esc::read_range()).is_some());
    assert!(
        bench
            .await_answer(&mut client, Duration::from_secs(1))
            .is_none()
    );
}

#[test]
fn fault_actions_are_reported_by_the_state() {
    let mut state = m365_sim::faults::FaultState::default();
    let now = std::time::Instant::now();
    assert_eq!(
        state.apply(now, Fault::ExpireSession),
        FaultAction::ExpireSession
    );
    assert_eq!(state.apply(now, Fault::MuteUart), FaultAction::None);
    assert!(state.mute_uart);
}

#[test]
fn counters_match_what_happened() {
    let (mut bench, mut client) = session(65);
    // paired_session: connect, register, disconnect, connect, login.
    for _ in 0..3 {
        assert!(bench.request(&mut client, &esc::read_range()).is_some());
    }
    let ack =
        m365_proto::registers::write::cruise(true, m365_proto::registers::write::WriteMode::Ack);
    assert!(bench.request(&mut client, &ack).is_some());
    let no_ack =
        m365_proto::registers::write::cruise(false, m365_proto::registers::write::WriteMode::NoAck);
    assert!(bench.request(&mut client, &no_ack).is_none());
    let mut plain = UartClient::new(Generation::Plain);
    assert!(bench.request(&mut plain, &esc::read_range()).is_none());
    bench.disconnect();
    let c = bench.scooter.counters();
    assert_eq!((c.connects, c.disconnects), (2, 2));
    assert_eq!(
        (c.registration_attempts, c.registrations, c.beeps),
        (1, 1, 1)
    );
    assert_eq!((c.logins, c.login_failures), (1, 0));
    assert_eq!((c.reads, c.writes, c.rejected_frames), (3, 2, 1));
    assert_eq!(c.notifications_sent, bench.received);
    assert_eq!(c.notifications_dropped + c.notifications_corrupted, 0);
}
