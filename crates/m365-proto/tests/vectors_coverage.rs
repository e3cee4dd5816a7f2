//! Every category of `../shared/testdata/vectors.json` must be tested somewhere: a category
//! added to the file fails here until a test file runs it.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

/// Categories run by `vectors_uart.rs`.
const UART: &[&str] = &[
    "checksum",
    "legacy_55aa_frames",
    "derived_legacy_55aa_frames",
    "uart_encrypt",
    "uart_decrypt",
    "derived_uart_encrypt",
    "xor_55ab",
    "payload_parse",
    "integer_encoding",
];

/// Categories run by `vectors_auth.rs`.
const AUTH: &[&str] = &[
    "ecdh",
    "hkdf_sha256",
    "hmac_sha256",
    "did_encryption",
    "registration",
    "login",
    "derived_parcels",
];

#[test]
fn every_category_is_tested() {
    let Some(v) = common::vectors("every_category_is_tested") else {
        return;
    };
    let categories = common::categories(&v);
    assert!(!categories.is_empty());
    let missing: Vec<&String> = categories
        .iter()
        .filter(|c| !UART.contains(&c.as_str()) && !AUTH.contains(&c.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "vectors.json categories without a test: {missing:?}"
    );
}

#[test]
fn listed_categories_exist_and_are_read_by_their_test_file() {
    let Some(v) = common::vectors("listed_categories_exist_and_are_read_by_their_test_file") else {
        return;
    };
    // The lists cannot drift from the test files: each name must be read there by its
    // quoted category name.
    for (list, source, file) in [
        (UART, include_str!("vectors_uart.rs"), "vectors_uart.rs"),
        (AUTH, include_str!("vectors_auth.rs"), "vectors_auth.rs"),
    ] {
        for name in list {
            assert!(
                !common::category(&v, name).is_empty(),
                "category {name} is empty"
            );
            assert!(
                source.contains(&format!("\"{name}\"")),
                "{file} does not read category {name}"
            );
        }
    }
}
