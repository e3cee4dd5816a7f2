//! `m365-sim`: runs simulated scooters behind a fake BlueZ for people and scripts.
fn main() {
    eprintln!("m365-sim: the serve command is not built yet");
    std::process::exit(2);
}
