//! The repository's `testdata/` against the shared folder's copy, when there is one: every file
//! both have must be byte-identical, and files only the shared folder has are listed with the
//! command that copies them into the repository (they are new reference data, not an error).
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[test]
fn files_in_both_copies_are_identical_and_new_shared_files_are_listed() {
    let repo = m365_testdata::repo_testdata_dir();
    let shared = m365_testdata::shared_testdata_dir();
    assert!(
        repo.join("vectors.json").is_file(),
        "the repository carries its test data"
    );
    if !shared.is_dir() {
        println!(
            "no shared copy at {}: the repository's test data is used as it is",
            shared.display()
        );
        return;
    }
    let c = m365_testdata::compare(&repo, &shared).expect("both copies readable");
    assert!(
        c.differing.is_empty(),
        "the repository's testdata/ differs from {} in {:?}",
        shared.display(),
        c.differing
    );
    println!(
        "{} files identical in the repository and {}",
        c.identical.len(),
        shared.display()
    );
    if !c.only_shared.is_empty() {
        println!(
            "new reference data in {} (not yet in the repository):",
            shared.display()
        );
        for file in &c.only_shared {
            println!("  {}", file.display());
        }
        println!("copy it with: scripts/sync-testdata.sh");
    }
}
