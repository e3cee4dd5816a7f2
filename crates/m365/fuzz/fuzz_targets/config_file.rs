//! Arbitrary text as `martinete.toml`: `config::parse` never panics, every error and warning
//! formats (they name file:line:column, computed from byte offsets into the text), and whatever
//! parses renders (`m365 config check`) to TOML that reads back as the same configuration.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use m365::config::{self, ConfigError};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match config::parse("f.toml", &text, &|_| None) {
        Ok((config, warnings)) => {
            for warning in &warnings {
                let _ = warning.to_string();
            }
            let rendered = config::render(&config);
            match config::parse("f.toml", &rendered, &|_| None) {
                Ok((again, _)) => assert_eq!(
                    config::render(&again),
                    rendered,
                    "the rendered configuration reads back differently"
                ),
                Err(e) => panic!("the rendered configuration does not read back: {e}\n{rendered}"),
            }
        }
        Err(e) => {
            let _ = e.to_string();
            if let ConfigError::Invalid { problems, warnings } = &e {
                assert!(!problems.is_empty());
                for p in problems {
                    let _ = p.to_string();
                }
                for w in warnings {
                    let _ = w.to_string();
                }
            }
        }
    }
});
