//! What the model server's test files (and the `pmml` crate's reference
//! test) share: the data folder, the wine rows and the reference
//! prediction files.

#![allow(dead_code)] // each test file uses what it needs

use std::collections::HashMap;
use std::path::PathBuf;

/// A path under `data/`.
pub(crate) fn data(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../data")
        .join(path)
}

/// The 1,599 rows of `data/winequality_red.csv`, features only.
pub(crate) fn wine_rows() -> Vec<[f64; 11]> {
    std::fs::read_to_string(data("winequality_red.csv"))
        .unwrap()
        .lines()
        .map(|l| proto::WineRecord::parse_csv(l).unwrap())
        .collect()
}

/// The columns of a reference prediction file under `data/` by header
/// name, one string per row; the first column is the row number.
pub(crate) fn reference_columns(path: &str) -> (Vec<String>, HashMap<String, Vec<String>>) {
    let text = std::fs::read_to_string(data(path)).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap()
        .split(',')
        .map(str::to_owned)
        .collect();
    let mut columns: HashMap<String, Vec<String>> = HashMap::new();
    for line in lines {
        for (name, value) in header.iter().zip(line.split(',')) {
            columns.entry(name.clone()).or_default().push(value.into());
        }
    }
    (header, columns)
}
