//! Records per second through the TopologyTestDriver (which drives the same
//! task code as the Kafka runtime): a five-operator stateless chain, and a
//! count into an in-memory and a RocksDB store.
//!
//! Run with `RUST_BACKTRACE` unset: `cargo bench -p streams-core --bench driver`.

#![allow(missing_docs)] // criterion's macros generate undocumented items

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use streams_core::dsl::{Consumed, Grouped, Materialized, Produced};
use streams_core::serde::{I64Serde, StringSerde};
use streams_core::testing::TopologyTestDriver;
use streams_core::{StreamsBuilder, StreamsConfig, Topology};

fn stateless() -> Topology {
    let builder = StreamsBuilder::new();
    builder
        .stream_with(["in"], Consumed::with(StringSerde, I64Serde))
        .filter(|_, v| *v >= 0)
        .map_values(|v| v * 2)
        .map(|k, v| (k, v + 1))
        .filter_not(|_, v| *v == 7)
        .peek(|_, _| {})
        .to_with("out", Produced::with(StringSerde, I64Serde));
    builder.build().unwrap()
}

fn count(store: Materialized<String, i64>) -> Topology {
    let builder = StreamsBuilder::new();
    builder
        .stream_with(["in"], Consumed::with(StringSerde, I64Serde))
        .group_by_key_with(Grouped::default())
        .count_with(store);
    builder.build().unwrap()
}

fn bench(c: &mut Criterion) {
    let keys: Vec<String> = (0..1000).map(|i| format!("key-{i}")).collect();
    let mut group = c.benchmark_group("driver");
    group.throughput(Throughput::Elements(1));
    let cases = [
        ("stateless_5_ops", stateless()),
        (
            "count_in_memory",
            count(Materialized::named("c").in_memory()),
        ),
        (
            "count_rocksdb",
            count(Materialized::named("c").persistent()),
        ),
    ];
    for (name, topology) in cases {
        let driver =
            TopologyTestDriver::with_wall_clock(topology, StreamsConfig::new("bench"), 0).unwrap();
        let mut input = driver.create_input_topic("in", StringSerde, I64Serde);
        let output = driver.create_output_topic("out", StringSerde, I64Serde);
        let mut i = 0usize;
        group.bench_function(name, |b| {
            b.iter(|| {
                i += 1;
                input.pipe_input_at(keys[i % keys.len()].clone(), i as i64, i as i64);
                if i.is_multiple_of(4096) {
                    // Keep captured output from piling up.
                    drop(driver.read_raw("out"));
                    drop(driver.read_raw("bench-c-changelog"));
                }
            })
        });
        drop(output);
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
