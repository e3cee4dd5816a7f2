//! The test kit is a development dependency only: no crate of the workspace may build it into a
//! library or binary (a `[dependencies]` or `[build-dependencies]` entry).
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

/// The manifest sections of `text` that name `m365-testkit`.
fn sections_naming_testkit(text: &str) -> Vec<String> {
    let mut section = String::new();
    let mut found = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line.to_owned();
        } else if line.starts_with("m365-testkit") {
            found.push(section.clone());
        }
    }
    found
}

fn is_dev_section(section: &str) -> bool {
    section.ends_with("dev-dependencies]")
}

#[test]
fn only_dev_dependencies_name_the_test_kit() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut checked = 0;
    for entry in std::fs::read_dir(&crates).expect("the crates folder") {
        let manifest = entry.expect("an entry").path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        checked += 1;
        for section in sections_naming_testkit(&text) {
            assert!(
                is_dev_section(&section),
                "{} names m365-testkit in {section}",
                manifest.display()
            );
        }
    }
    assert!(checked >= 2, "found the workspace's crates");
}

#[test]
fn the_check_tells_sections_apart() {
    let manifest = "[dependencies]\nm365-testkit.workspace = true\n\n[dev-dependencies]\nm365-testkit.workspace = true\n[target.'cfg(unix)'.dev-dependencies]\nm365-testkit = { workspace = true }\n";
    let sections = sections_naming_testkit(manifest);
    assert_eq!(
        sections,
        [
            "[dependencies]",
            "[dev-dependencies]",
            "[target.'cfg(unix)'.dev-dependencies]"
        ]
    );
    let dev: Vec<bool> = sections.iter().map(|s| is_dev_section(s)).collect();
    assert_eq!(dev, [false, true, true]);
}
