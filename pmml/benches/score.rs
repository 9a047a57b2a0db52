//! Scoring latency of each of the tutorial's PMML models on one wine
//! record (the original scored a record in 1 to 76 ms on the JVM).
//!
//! Run with `RUST_BACKTRACE` unset: `cargo bench --workspace --profile dev --bench score`.

#![allow(missing_docs)] // criterion's macros generate undocumented items

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use pmml::Pmml;

/// The wine record's fields, as the models name them.
const FEATURES: [&str; 11] = proto::FEATURE_NAMES;

const MODELS: [&str; 7] = [
    "winequalityLinearRegression",
    "winequalityGeneralizedLinearRegressionGaussian",
    "winequalityGeneralizedLinearRegressionGamma",
    "winequalityDesisionTreeRegression",
    "winequalityDecisionTreeClassification",
    "winequalityMultilayerPerceptron",
    "winequalityRandonForrestClassification",
];

fn score(c: &mut Criterion) {
    let row = [
        7.4, 0.7, 0.0, 1.9, 0.076, 11.0, 34.0, 0.9978, 3.51, 0.56, 9.4,
    ];
    let mut group = c.benchmark_group("pmml_score_one_record");
    for stem in MODELS {
        let path = format!(
            "{}/../data/models/pmml/{stem}.pmml",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).expect("model file");
        let scorer = Pmml::parse(&text)
            .expect("parse")
            .bind(&FEATURES)
            .expect("bind");
        group.bench_function(stem, |b| b.iter(|| scorer.score(black_box(&row))));
    }
    group.finish();
}

criterion_group!(benches, score);
criterion_main!(benches);
