//! Relinks `m365` when something the Pi linker (`scripts/pi-linker.sh`) reads besides the
//! objects changes: the list of functions it places together, or whether it keeps symbols.
fn main() {
    println!("cargo:rerun-if-changed=../../packaging/hot-functions.txt");
    println!("cargo:rerun-if-env-changed=PI_LINKER_KEEP_SYMBOLS");
}
