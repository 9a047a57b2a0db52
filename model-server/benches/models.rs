//! Scoring latency of every model file the server serves, through the
//! server's own `Model` (what the scoring processor calls): one record,
//! and 256 records one after another (the server scores each record as it
//! arrives). The original tutorial scored a record in 1 to 76 ms on the
//! JVM.
//!
//! Run with `RUST_BACKTRACE` unset:
//! `cargo bench --workspace --profile dev --bench models`.

#![allow(missing_docs)] // criterion's macros generate undocumented items

mod common;

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use model_server::model::{ModelLimits, build};
use proto::{MessageContent, ModelDescriptor, ModelType};

/// The server's allocator (see `model-server`'s main), so that these
/// figures are what it pays: tract allocates a tensor per operator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn files() -> Vec<(PathBuf, ModelType)> {
    let root = common::data().join("models");
    let mut files = Vec::new();
    for (dir, ext, kind) in [
        ("onnx", "onnx", ModelType::Onnx),
        ("pmml", "pmml", ModelType::Pmml),
        ("tensorflow", "pb", ModelType::Tensorflow),
    ] {
        let mut found: Vec<PathBuf> = std::fs::read_dir(root.join(dir))
            .expect("model folder")
            .filter_map(|e| Some(e.ok()?.path()))
            .filter(|p| p.extension().is_some_and(|e| e == ext))
            .collect();
        found.sort();
        files.extend(found.into_iter().map(|p| (p, kind)));
    }
    files
}

fn score(c: &mut Criterion) {
    let rows = common::wine_records(256);
    let models: Vec<_> = files()
        .into_iter()
        .map(|(path, kind)| {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let limits = ModelLimits::default().with_model_dir(path.parent().unwrap());
            let served = build(
                &ModelDescriptor {
                    name: name.clone(),
                    description: String::new(),
                    data_type: "wine".into(),
                    modeltype: kind as i32,
                    message_content: Some(MessageContent::Location(
                        path.to_string_lossy().into_owned(),
                    )),
                },
                &limits,
            )
            .expect("model builds");
            (name, served)
        })
        .collect();
    let mut one = c.benchmark_group("score_one_record");
    for (name, served) in &models {
        one.bench_function(name.as_str(), |b| {
            b.iter(|| served.model.score(black_box(&rows[0])))
        });
    }
    one.finish();
    let mut batch = c.benchmark_group("score_256_records");
    batch.throughput(Throughput::Elements(rows.len() as u64));
    for (name, served) in &models {
        batch.bench_function(name.as_str(), |b| {
            b.iter(|| {
                rows.iter()
                    .map(|r| served.model.score(black_box(r)).unwrap_or(0.0))
                    .sum::<f64>()
            })
        });
    }
    batch.finish();
}

criterion_group!(benches, score);
criterion_main!(benches);
