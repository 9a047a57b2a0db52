//! What the serving topology costs per record in process, without Kafka:
//! wine records (as the bytes a broker delivers) through the
//! TopologyTestDriver, which drives the same task code as the runtime,
//! once with the original PMML linear regression and once with the ONNX
//! one. `driver_floor` is a topology that passes the same bytes through
//! untouched: the driver's own cost per record, to subtract.
//!
//! The `memory` variant only: the driver commits after every record, as
//! Kafka Streams' does, and for the `standard` variant that flushes
//! RocksDB every time (a millisecond), for `custom` it logs a snapshot.
//! The end-to-end figures on a broker, with the `standard` store, are
//! `scripts/bench.sh --scenarios raw,passthrough,serving`.
//!
//! Run with `RUST_BACKTRACE` unset:
//! `cargo bench --workspace --profile dev --bench serving`.

#![allow(missing_docs)] // criterion's macros generate undocumented items

mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use model_server::serving::{DATA_TOPIC, MODELS_TOPIC, SCORES_TOPIC, StoreVariant, topology};
use proto::{Message, MessageContent, ModelDescriptor, ModelType};
use streams_core::dsl::{Consumed, Produced};
use streams_core::serde::{BytesSerde, ProtobufSerde, StringSerde, UnitSerde};
use streams_core::testing::TopologyTestDriver;
use streams_core::{StreamsBuilder, StreamsConfig, Topology};

/// The server's allocator (see `model-server`'s main).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The first 256 rows of the data set, encoded as the publisher writes them.
fn records() -> Vec<Vec<u8>> {
    common::wine_records(256)
        .iter()
        .map(Message::encode_to_vec)
        .collect()
}

fn passthrough() -> Topology {
    let builder = StreamsBuilder::new();
    builder
        .stream_with([DATA_TOPIC], Consumed::with(UnitSerde, BytesSerde))
        .to_with(SCORES_TOPIC, Produced::with(UnitSerde, BytesSerde));
    builder.build().expect("topology")
}

fn bench(c: &mut Criterion) {
    let records = records();
    let models = [
        (
            "pmml_linear",
            "pmml/winequalityLinearRegression.pmml",
            ModelType::Pmml,
        ),
        (
            "onnx_linear",
            "onnx/wine_linear_regression.onnx",
            ModelType::Onnx,
        ),
    ];
    let mut cases: Vec<(String, Topology, Option<ModelDescriptor>)> =
        vec![("driver_floor".into(), passthrough(), None)];
    for (model_name, file, kind) in &models {
        let descriptor = ModelDescriptor {
            name: (*file).into(),
            description: String::new(),
            data_type: "wine".into(),
            modeltype: *kind as i32,
            message_content: Some(MessageContent::Data(
                std::fs::read(common::data().join("models").join(file)).expect("model file"),
            )),
        };
        cases.push((
            format!("memory/{model_name}"),
            topology(StoreVariant::Memory).expect("topology"),
            Some(descriptor),
        ));
    }
    let mut group = c.benchmark_group("serving_topology");
    group.throughput(Throughput::Elements(1));
    for (name, topology, model) in cases {
        let driver =
            TopologyTestDriver::new(topology, StreamsConfig::new("bench-serving")).expect("driver");
        if let Some(model) = model {
            driver
                .create_input_topic(
                    MODELS_TOPIC,
                    StringSerde,
                    ProtobufSerde::<ModelDescriptor>::new(),
                )
                .pipe_input("wine".into(), model);
        }
        let mut input = driver.create_input_topic(DATA_TOPIC, UnitSerde, BytesSerde);
        let mut i = 0usize;
        group.bench_function(name.as_str(), |b| {
            b.iter(|| {
                i += 1;
                input
                    .pipe_raw(None, Some(&records[i % records.len()]))
                    .expect("scored");
                if i.is_multiple_of(4096) {
                    // Keep captured output from piling up.
                    drop(driver.read_raw(SCORES_TOPIC));
                }
            })
        });
        let scored = driver.read_raw(SCORES_TOPIC);
        assert_eq!(scored.len(), i % 4096, "{name}: every record has a result");
        if name != "driver_floor" {
            let last = scored
                .last()
                .and_then(|r| r.value.as_deref())
                .expect("a result");
            let result = proto::ServingResult::decode(last).expect("a serving result");
            assert!(result.served, "{name}: {result:?}");
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
