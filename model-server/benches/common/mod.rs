//! What the model server's benches share: the project's data.

use std::path::PathBuf;

use proto::WineRecord;

/// The project's `data/` folder.
pub(crate) fn data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data")
}

/// The first `n` rows of the wine data set, as records of data type
/// `wine` (what the publisher sends).
pub(crate) fn wine_records(n: usize) -> Vec<WineRecord> {
    std::fs::read_to_string(data().join("winequality_red.csv"))
        .expect("wine data")
        .lines()
        .take(n)
        .map(|l| WineRecord::from_features(WineRecord::parse_csv(l).expect("row"), "wine", 0))
        .collect()
}
