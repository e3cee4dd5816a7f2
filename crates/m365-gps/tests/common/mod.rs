//! Shared by the integration tests: reading the shared captures' expected CSV files.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;

/// One CSV row as column name → text.
pub(crate) type Row = HashMap<String, String>;

/// Reads a simple CSV (no quoting: the shared files never quote).
pub(crate) fn read_csv(path: &Path) -> Vec<Row> {
    let text = std::fs::read_to_string(path).expect("read csv");
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .expect("csv header")
        .split(',')
        .map(str::to_owned)
        .collect();
    lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            assert_eq!(cells.len(), header.len(), "row {l:?}");
            header
                .iter()
                .cloned()
                .zip(cells.into_iter().map(str::to_owned))
                .collect()
        })
        .collect()
}

/// Parses an optional float cell.
pub(crate) fn cell_f64(row: &Row, col: &str) -> Option<f64> {
    let v = row.get(col).unwrap_or_else(|| panic!("column {col}"));
    if v.is_empty() {
        None
    } else {
        Some(v.parse().unwrap_or_else(|_| panic!("{col}={v}")))
    }
}

/// Asserts two optional floats agree within `tol`.
pub(crate) fn assert_close(what: &str, got: Option<f64>, want: Option<f64>, tol: f64) {
    match (got, want) {
        (Some(g), Some(w)) => assert!((g - w).abs() <= tol, "{what}: got {g}, want {w}"),
        (None, None) => {}
        _ => panic!("{what}: got {got:?}, want {want:?}"),
    }
}
