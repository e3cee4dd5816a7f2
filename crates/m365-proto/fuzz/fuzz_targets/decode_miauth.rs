//! Opens arbitrary bytes as a Mi-auth 55 AB frame, in both roles and with the explicit-counter
//! functions (4- and 2-byte IV): no panic, and a refused frame never moves the replay window.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use m365_proto::encrypted::{self, UartCipher};
use m365_proto::keys::{Role, SessionKeys};

fn keys() -> SessionKeys {
    SessionKeys {
        dev_key: [0x3C; 16],
        app_key: [0x12; 16],
        dev_iv: [0xCD, 0x01, 0x60, 0x50],
        app_iv: [0xC8, 0x7D, 0xE6, 0xF1],
    }
}

fuzz_target!(|data: &[u8]| {
    for role in [Role::Client, Role::Device] {
        let mut cipher = UartCipher::new(keys(), role);
        let before = cipher.rx_window();
        if cipher.open(data).is_err() {
            assert_eq!(cipher.rx_window(), before);
        }
    }
    let k = keys();
    let _ = encrypted::open_with_counter(&k.app_key, &k.app_iv, 0, data);
    let _ = encrypted::open_with_counter(&k.app_key, &k.app_iv[..2], 7, data);
});
