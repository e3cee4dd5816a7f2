//! Registration and login against the simulated scooter, with the `m365-proto` client machines:
//! the power button gates registration, the token survives a simulator restart through the
//! state directory, and refusals (E0, E2, wrong token) are the documented ones.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{Bench, Button, instant_config};
use m365_proto::control::Refusal;
use m365_proto::keys::Token;
use m365_proto::login::LoginError;
use m365_proto::pairing::PairingError;
use m365_sim::{Generation, Model, Scooter, ScooterConfig, ScooterEvent};

fn config(seed: u64) -> ScooterConfig {
    instant_config(Model::Pro2, Generation::MiAuth, seed)
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("m365-sim-reg-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn button_pressed_in_time_registers_and_the_token_logs_in_later() {
    let mut bench = Bench::new(config(1));
    bench.button = Button::After(Duration::from_secs(2));
    bench.connect();
    let registration = bench.register().expect("registration");
    assert!(bench.events.contains(&ScooterEvent::Beep));
    assert!(bench.events.contains(&ScooterEvent::Registered));
    assert_eq!(bench.scooter.stored_token(), Some(&registration.token));
    assert_eq!(bench.scooter.did(), Some(registration.did));
    assert!(
        !registration.did_invented,
        "an activated scooter sends its DID"
    );

    bench.disconnect();
    bench.advance(Duration::from_secs(10));
    bench.connect();
    assert!(bench.login(&registration.token).is_ok());
    assert!(bench.events.contains(&ScooterEvent::LoggedIn));
    let c = bench.scooter.counters();
    assert_eq!((c.registrations, c.logins, c.beeps), (1, 1, 1));
    assert_eq!(c.registration_attempts, 1);
}

#[test]
fn button_not_pressed_refuses_registration() {
    let mut bench = Bench::new(config(2));
    bench.connect();
    let err = bench.register().expect_err("no button, no registration");
    assert!(
        matches!(err, PairingError::ButtonNotPressed { .. }),
        "{err:?}"
    );
    assert!(!bench.scooter.is_paired());
    assert_eq!(bench.scooter.counters().registrations, 0);
    assert_eq!(bench.scooter.counters().beeps, 1);
}

#[test]
fn press_too_late_after_the_beep_does_not_count() {
    let mut bench = Bench::new(config(3));
    // The client gives up after 3 s; a press 6 s after the beep is outside the 5 s window.
    bench.connect();
    assert!(bench.register().is_err());
    bench.advance(Duration::from_secs(3));
    bench.press();
    bench.disconnect();
    bench.connect();
    assert!(bench.register().is_err(), "a late press opened no window");
}

#[test]
fn retry_after_pressing_succeeds_like_the_documented_client_flow() {
    // First attempt stalls, the user presses within 5 s, the client reconnects and retries.
    let mut bench = Bench::new(config(4));
    bench.connect();
    assert!(bench.register().is_err());
    bench.press();
    assert!(
        bench
            .events
            .iter()
            .any(|e| matches!(e, ScooterEvent::WindowOpened { .. }))
    );
    bench.disconnect();
    bench.advance(Duration::from_secs(5));
    bench.connect();
    assert!(bench.register().is_ok());
}

#[test]
fn auto_press_option_confirms_without_a_user() {
    let mut c = config(5);
    c.auto_press = Some(Duration::from_millis(800));
    let mut bench = Bench::new(c);
    bench.connect();
    assert!(bench.register().is_ok());
}

#[test]
fn login_without_registration_gets_e0() {
    let mut bench = Bench::new(config(6));
    bench.connect();
    let err = bench.login(&Token([1; 12])).expect_err("no token stored");
    assert_eq!(err, LoginError::Refused(Refusal::NotRegistered));
    assert_eq!(
        bench.events.last(),
        Some(&ScooterEvent::LoginRefused(Refusal::NotRegistered))
    );
}

#[test]
fn second_login_on_the_same_connection_gets_e2() {
    let mut bench = Bench::new(config(7));
    let (token, _) = bench.paired_session();
    let err = bench.login(&token).expect_err("already logged in");
    assert_eq!(err, LoginError::Refused(Refusal::RepeatLogin));
    assert_eq!(bench.scooter.counters().login_failures, 1);
}

#[test]
fn a_stale_token_is_rejected() {
    let mut bench = Bench::new(config(8));
    let (token, _) = bench.paired_session();
    bench.disconnect();
    bench.advance(Duration::from_secs(10));
    bench.connect();
    let mut other = token.0;
    other[0] ^= 0xFF;
    let err = bench.login(&Token(other)).expect_err("wrong token");
    assert_eq!(err, LoginError::TokenRejected);
}

#[test]
fn a_new_registration_replaces_the_old_token() {
    let mut bench = Bench::new(config(9));
    let (first, _) = bench.paired_session();
    bench.disconnect();
    bench.advance(Duration::from_secs(10));
    bench.connect();
    let second = bench.register().expect("second registration").token.clone();
    assert_ne!(first, second);
    bench.disconnect();
    bench.advance(Duration::from_secs(10));
    bench.connect();
    assert_eq!(bench.login(&first), Err(LoginError::TokenRejected));
    bench.disconnect();
    bench.advance(Duration::from_secs(10));
    bench.connect();
    assert!(bench.login(&second).is_ok());
}

#[test]
fn restarted_simulator_accepts_the_earlier_token_from_the_state_dir() {
    let dir = temp_dir("restart");
    let mut c = config(10);
    c.state_dir = Some(dir.clone());
    let token = {
        let mut bench = Bench::new(c.clone());
        bench.paired_session().0
    };
    // A new process: same seed, same state dir.
    let restarted = Scooter::new(c.clone()).expect("state file readable");
    assert!(restarted.is_paired());
    let mut bench = Bench::with_scooter(restarted);
    bench.connect();
    assert!(bench.login(&token).is_ok());

    // Without the state dir the restarted scooter knows nothing.
    let mut amnesiac = c;
    amnesiac.state_dir = None;
    let mut bench = Bench::new(amnesiac);
    bench.connect();
    assert_eq!(
        bench.login(&token),
        Err(LoginError::Refused(Refusal::NotRegistered))
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_corrupt_state_file_is_an_error_not_a_silent_unpair() {
    let dir = temp_dir("corrupt");
    let mut c = config(11);
    c.state_dir = Some(dir.clone());
    let path = {
        let s = Scooter::new(c.clone()).expect("empty dir");
        m365_sim::state_file::path_for(&dir, &s.profile().address)
    };
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(&path, "token=xyz\n").expect("write");
    let err = Scooter::new(c).expect_err("corrupt file");
    assert!(err.to_string().contains("not hex"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn never_activated_module_adopts_the_client_did() {
    let mut c = config(12);
    c.activated = false;
    let mut bench = Bench::new(c);
    assert_eq!(bench.scooter.did(), None);
    bench.button = Button::After(Duration::from_millis(500));
    bench.connect();
    let registration = bench.register().expect("registration");
    assert!(registration.did_invented);
    assert_eq!(bench.scooter.did(), Some(registration.did));
}
