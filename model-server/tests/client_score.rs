//! `model-client score`: the server's model code, offline, on a wine file.
//! Every PMML file and two ONNX models score all 1,599 rows as their
//! reference evaluators do; bad input is a clear error.

mod common;

use std::process::Command;

use common::{PMML_STEMS, data, reference_columns};

const CLIENT: &str = env!("CARGO_BIN_EXE_model-client");

fn score(model: &str, kind: Option<&str>, input: &str) -> (bool, Vec<f64>, String) {
    let mut command = Command::new(CLIENT);
    command.args(["score", "--model", &data(model).to_string_lossy()]);
    if let Some(kind) = kind {
        command.args(["--type", kind]);
    }
    let out = command
        .args(["--input", input])
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap();
    let values = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    (
        out.status.success(),
        values,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn pmml_files_score_offline_as_the_reference_evaluator() {
    let wine = data("winequality_red.csv");
    let wine = wine.to_string_lossy();
    let (_, columns) = reference_columns("models/pmml/reference_predictions.csv");
    for stem in PMML_STEMS {
        let (ok, values, err) = score(&format!("models/pmml/{stem}.pmml"), Some("pmml"), &wine);
        assert!(ok, "{stem}: {err}");
        // The forest's reference is its segments averaged (see
        // data/models/pmml/reference_notes.md: pypmml's own label is not).
        let column = match stem {
            "winequalityRandonForrestClassification" => format!("{stem}.segment_average"),
            _ => stem.to_owned(),
        };
        let expected = &columns[&column];
        assert_eq!(values.len(), expected.len(), "{stem}");
        for (i, (got, want)) in values.iter().zip(expected).enumerate() {
            let want: f64 = want.parse().unwrap();
            let tolerance = 1e-9 * want.abs().max(1.0);
            assert!(
                (got - want).abs() <= tolerance,
                "{stem} row {i}: {got} vs {want}"
            );
        }
    }
}

#[test]
fn onnx_and_tensorflow_files_score_offline() {
    let wine = data("winequality_red.csv");
    let wine = wine.to_string_lossy();
    let (_, columns) = reference_columns("models/onnx/reference_predictions.csv");
    for stem in ["wine_gradient_boosting_classifier", "wine_mlp_regression"] {
        // The type comes from the extension.
        let (ok, values, err) = score(&format!("models/onnx/{stem}.onnx"), None, &wine);
        assert!(ok, "{stem}: {err}");
        for (i, (got, want)) in values.iter().zip(&columns[stem]).enumerate() {
            let want: f64 = want.parse().unwrap();
            assert!((got - want).abs() < 1e-4, "{stem} row {i}: {got} vs {want}");
        }
    }
    let (ok, values, err) = score(
        "models/tensorflow/optimized_WineQuality.pb",
        Some("tensorflow"),
        &wine,
    );
    assert!(ok, "{err}");
    assert_eq!(values.len(), 1599);
    assert!(
        values
            .iter()
            .all(|v| v.fract() == 0.0 && (0.0..9.0).contains(v))
    );
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "7.4;0.7;0;1.9;0.076;11;34;0.9978;3.51;0.56;9.4;5\n7.4;oops\n",
    )
    .unwrap();
    let (ok, _, err) = score(
        "models/pmml/winequalityLinearRegression.pmml",
        None,
        &bad.to_string_lossy(),
    );
    assert!(!ok);
    assert!(err.contains("bad.csv:2"), "{err}");

    let corrupt = dir.path().join("corrupt.onnx");
    std::fs::write(&corrupt, b"not a model").unwrap();
    let out = Command::new(CLIENT)
        .args(["score", "--model", &corrupt.to_string_lossy(), "--input"])
        .arg(data("winequality_red.csv"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a valid ONNX model"), "{err}");

    let out = Command::new(CLIENT)
        .args(["score", "--bogus"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
