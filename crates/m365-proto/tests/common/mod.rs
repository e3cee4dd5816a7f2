//! Shared by the vector tests: loads `testdata/vectors.json` from the shared folder at test time,
//! so a vector added there is tested without code changes.
#![allow(dead_code)]

use serde_json::Value;

/// The whole vectors file, or `None` (after a skip notice) when the shared folder is absent.
pub(crate) fn vectors(test: &str) -> Option<Value> {
    let path = m365_testdata::require(test, "testdata/vectors.json")?;
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    Some(serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// The entries of one category (an array in the file). Panics if the category is missing,
/// because a renamed category must not silently stop being tested.
pub(crate) fn category<'a>(v: &'a Value, name: &str) -> &'a [Value] {
    v.get(name)
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("vectors.json has no array {name:?}"))
}

/// A hex field of an entry, decoded.
pub(crate) fn hex_field(entry: &Value, key: &str) -> Vec<u8> {
    let s = str_field(entry, key);
    hex::decode(s).unwrap_or_else(|e| panic!("{}: field {key} is not hex: {e}", name(entry)))
}

/// A string field of an entry.
pub(crate) fn str_field<'a>(entry: &'a Value, key: &str) -> &'a str {
    entry
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{}: missing string field {key}", name(entry)))
}

/// The entry's `name`.
pub(crate) fn name(entry: &Value) -> &str {
    entry
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("<unnamed>")
}

/// Whether the entry is marked `verified: false` or NONSTANDARD, i.e. tested for what its note
/// declares rather than as a normal vector.
pub(crate) fn is_exceptional(entry: &Value) -> bool {
    entry.get("verified").and_then(Value::as_bool) == Some(false)
        || name(entry).contains("NONSTANDARD")
}

/// Every category name in the file, so a test can assert that each one is covered somewhere.
pub(crate) fn categories(v: &Value) -> Vec<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}
