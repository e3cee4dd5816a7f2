//! Arbitrary bytes as the Home Assistant discovery state file `homeassistant.json`
//! (`homeassistant::state_file::parse`, what the announcer reads at start-up): no panic, every
//! refusal formats; what parses renders (`state_file::render`, what the announcer writes) to one
//! line of JSON that parses back as the same record and renders to the same bytes.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use m365::homeassistant::state_file;

fuzz_target!(|data: &[u8]| {
    match state_file::parse(data) {
        Ok(announced) => {
            let rendered = state_file::render(&announced);
            assert_eq!(
                rendered.iter().position(|&b| b == b'\n'),
                Some(rendered.len() - 1),
                "the rendered file is not one line"
            );
            match state_file::parse(&rendered) {
                Ok(again) => {
                    assert_eq!(again, announced, "the rendered file reads back differently");
                    assert_eq!(
                        state_file::render(&again),
                        rendered,
                        "the rendered file renders differently"
                    );
                }
                Err(e) => panic!(
                    "the rendered file does not read back: {e}\n{}",
                    String::from_utf8_lossy(&rendered)
                ),
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
