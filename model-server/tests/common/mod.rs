//! What the model server's tests (its unit tests and the `pmml` crate's
//! tests among them) share: the data folder, the tutorial's PMML files,
//! the wine rows and the reference prediction files.

#![allow(dead_code)] // each test file uses what it needs

use std::collections::HashMap;
use std::path::PathBuf;

/// A path under `data/`.
pub(crate) fn data(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../data")
        .join(path)
}

/// The stems of the tutorial's seven PMML files.
pub(crate) const PMML_STEMS: [&str; 7] = [
    "winequalityLinearRegression",
    "winequalityGeneralizedLinearRegressionGaussian",
    "winequalityGeneralizedLinearRegressionGamma",
    "winequalityDesisionTreeRegression",
    "winequalityDecisionTreeClassification",
    "winequalityMultilayerPerceptron",
    "winequalityRandonForrestClassification",
];

/// The tutorial's PMML file `stem` (one of [`PMML_STEMS`]).
pub(crate) fn pmml_file(stem: &str) -> PathBuf {
    data(&format!("models/pmml/{stem}.pmml"))
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

/// `check` until it gives a value, every 200 ms, for up to `timeout`;
/// then panics naming `what` and the last thing `check` saw (its error).
pub(crate) fn wait_until<T>(
    what: &str,
    timeout: std::time::Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let last = match check() {
            Ok(value) => return value,
            Err(last) => last,
        };
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}; last seen: {last}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// A protobuf encoder written out by hand, so that tests send the bytes
/// any proto3 encoder (the original tutorial's ScalaPB client among them)
/// writes, independently of `prost`: fields in number order, fields that
/// hold their type's zero value left out, members of a `oneof` always
/// written.
pub(crate) mod pb {
    /// Appends `value` as a base-128 varint.
    pub(crate) fn varint(out: &mut Vec<u8>, mut value: u64) {
        while value >= 0x80 {
            out.push((value as u8 & 0x7f) | 0x80);
            value >>= 7;
        }
        out.push(value as u8);
    }

    /// Appends a field's key: its number and wire type.
    pub(crate) fn key(out: &mut Vec<u8>, field: u32, wire_type: u8) {
        varint(out, (u64::from(field) << 3) | u64::from(wire_type));
    }

    /// A `double` field (wire type 1), left out when zero.
    pub(crate) fn double(out: &mut Vec<u8>, field: u32, value: f64) {
        if value != 0.0 {
            key(out, field, 1);
            out.extend_from_slice(&value.to_le_bytes());
        }
    }

    /// A varint field (`int32`, `int64`, `bool`, enum; wire type 0), left
    /// out when zero. Negative numbers take ten bytes, as proto3 says.
    pub(crate) fn int(out: &mut Vec<u8>, field: u32, value: i64) {
        if value != 0 {
            key(out, field, 0);
            varint(out, value as u64);
        }
    }

    /// A length-delimited field (`string`, `bytes`; wire type 2), always
    /// written: for `oneof` members.
    pub(crate) fn always_bytes(out: &mut Vec<u8>, field: u32, value: &[u8]) {
        key(out, field, 2);
        varint(out, value.len() as u64);
        out.extend_from_slice(value);
    }

    /// A length-delimited field, left out when empty.
    pub(crate) fn bytes(out: &mut Vec<u8>, field: u32, value: &[u8]) {
        if !value.is_empty() {
            always_bytes(out, field, value);
        }
    }

    /// A `WineRecord` (`winerecord.proto`): the 11 features as fields 1 to
    /// 11, `dataType` 12, `ts` 13.
    pub(crate) fn wine_record(features: &[f64; 11], data_type: &str, ts: i64) -> Vec<u8> {
        let mut out = Vec::new();
        for (field, value) in (1..).zip(features) {
            double(&mut out, field, *value);
        }
        bytes(&mut out, 12, data_type.as_bytes());
        int(&mut out, 13, ts);
        out
    }

    /// What a `ModelDescriptor` carries: its `oneof MessageContent`.
    #[derive(Debug, Clone, Copy)]
    pub(crate) enum Content<'a> {
        /// `bytes data = 5`: the model inline.
        Data(&'a [u8]),
        /// `string location = 6`: a path the server reads.
        Location(&'a str),
    }

    /// The original's model types (`ModelDescriptor.ModelType`).
    pub(crate) const TENSORFLOW: i64 = 0;
    pub(crate) const PMML: i64 = 1;
    pub(crate) const ONNX: i64 = 3;

    /// A `ModelDescriptor` (`modeldescriptor.proto`): `name` 1,
    /// `description` 2, `dataType` 3, `modeltype` 4 (absent for
    /// TENSORFLOW, 0), then `data` 5 or `location` 6.
    pub(crate) fn descriptor(
        name: &str,
        description: &str,
        data_type: &str,
        model_type: i64,
        content: Content<'_>,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        bytes(&mut out, 1, name.as_bytes());
        bytes(&mut out, 2, description.as_bytes());
        bytes(&mut out, 3, data_type.as_bytes());
        int(&mut out, 4, model_type);
        match content {
            Content::Data(data) => always_bytes(&mut out, 5, data),
            Content::Location(path) => always_bytes(&mut out, 6, path.as_bytes()),
        }
        out
    }
}
