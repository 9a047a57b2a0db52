//! What streams-core's integration tests share: drivers, the small
//! topologies they run, and readers of what comes out.

#![allow(dead_code)] // each test file uses what it needs

use streams_core::dsl::Consumed;
use streams_core::processor::ProcessorSupplier;
use streams_core::serde::{I64Serde, StringSerde};
use streams_core::testing::TopologyTestDriver;
use streams_core::{RawRecord, StreamsBuilder, StreamsConfig, Topology};

pub(crate) fn s(v: &str) -> String {
    v.to_owned()
}

/// String keys and values.
pub(crate) fn strings() -> Consumed<String, String> {
    Consumed::with(StringSerde, StringSerde)
}

/// String keys, i64 values.
pub(crate) fn numbers() -> Consumed<String, i64> {
    Consumed::with(StringSerde, I64Serde)
}

/// A driver for `builder`'s topology: application `app`, wall clock at 0.
pub(crate) fn driver(builder: StreamsBuilder) -> TopologyTestDriver {
    TopologyTestDriver::with_wall_clock(builder.build().unwrap(), StreamsConfig::new("app"), 0)
        .unwrap()
}

/// in -> src -> `name` (made by `make`) -> sink -> out, with String keys
/// and i64 values.
pub(crate) fn through(
    name: &str,
    make: impl ProcessorSupplier<String, i64, String, i64>,
    config: StreamsConfig,
) -> TopologyTestDriver {
    let mut topology = Topology::new();
    topology
        .add_source("src", StringSerde, I64Serde, &["in"])
        .unwrap()
        .add_processor(name, make, &["src"])
        .unwrap()
        .add_sink("sink", "out", StringSerde, I64Serde, &[name])
        .unwrap();
    TopologyTestDriver::new(topology, config).unwrap()
}

/// in -> src -> sink -> out, with String keys and i64 values.
pub(crate) fn passthrough(config: StreamsConfig) -> TopologyTestDriver {
    let mut topology = Topology::new();
    topology
        .add_source("src", StringSerde, I64Serde, &["in"])
        .unwrap()
        .add_sink("sink", "out", StringSerde, I64Serde, &["src"])
        .unwrap();
    TopologyTestDriver::new(topology, config).unwrap()
}

/// The values written to `out` (String keys, i64 values) so far.
pub(crate) fn out_values(d: &TopologyTestDriver) -> Vec<i64> {
    d.create_output_topic("out", StringSerde, I64Serde)
        .read_values_to_list()
}

/// The last header `name` of `record`, as text.
pub(crate) fn header(record: &RawRecord, name: &str) -> Option<String> {
    record
        .headers
        .last(name)
        .flatten()
        .map(|v| String::from_utf8_lossy(v).into_owned())
}
