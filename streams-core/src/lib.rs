//! Stateful stream processing on Kafka, with the programming model of
//! Kafka Streams.
//!
//! - A [`Topology`] is a graph of sources, processors and sinks with their
//!   state stores. Build it with the Processor API ([`Topology`],
//!   [`processor::Processor`]) or the DSL ([`StreamsBuilder`],
//!   [`dsl::KStream`], [`dsl::KTable`]). It is plain data: no Kafka client
//!   inside.
//! - A task runs one sub-topology for one partition, synchronously. The
//!   [`testing::TopologyTestDriver`] drives tasks with no broker; the Kafka
//!   runtime drives the same tasks from a consumer.
//! - State lives in stores from the `state-stores` crate (in memory or
//!   RocksDB), logged to changelog topics so a task can be restored anywhere.
//!
//! # Word count
//!
//! As Kafka Streams' `WordCountDemo`: strings, integers, `()` and bytes
//! (and `Option`s of them) have default serdes, a table's changes are
//! written with deletes as tombstones, and every operation has a `_with`
//! form that takes explicit serdes and names.
//!
//! ```
//! use streams_core::dsl::KStream;
//! use streams_core::serde::{Nullable, I64Serde, StringSerde, UnitSerde};
//! use streams_core::testing::TopologyTestDriver;
//! use streams_core::{StreamsBuilder, StreamsConfig};
//!
//! let builder = StreamsBuilder::new();
//! let lines: KStream<(), String> = builder.stream("lines");
//! lines
//!     .flat_map_values(|line| line.split_whitespace().map(str::to_lowercase).collect::<Vec<_>>())
//!     .group_by(|_, w| w)
//!     .count()
//!     .to_stream()
//!     .to("counts");
//! let topology = builder.build()?;
//!
//! let driver = TopologyTestDriver::new(topology, StreamsConfig::new("word-count"))?;
//! let mut input = driver.create_input_topic("lines", UnitSerde, StringSerde);
//! let counts = driver.create_output_topic("counts", StringSerde, Nullable(I64Serde));
//! input.pipe_value("Hello Kafka Streams".to_string());
//! input.pipe_value("hello again".to_string());
//!
//! let latest = counts.read_key_values_to_map();
//! assert_eq!(latest["hello"], Some(2));
//! assert_eq!(latest["kafka"], Some(1));
//! # Ok::<(), streams_core::StreamsError>(())
//! ```

pub mod config;
pub mod dsl;
pub mod engine;
pub mod error;
pub mod handlers;
pub mod processor;
pub mod record;
pub mod serde;
pub mod state;
pub mod testing;
pub mod timestamps;
pub mod topology;
pub mod window;

pub use config::StreamsConfig;
pub use dsl::StreamsBuilder;
pub use error::{Result, StreamsError, TopologyError};
pub use record::{Headers, RawRecord, Record, RecordMetadata};
pub use record::{ProducerRecord, RecordCollector};
pub use state_stores::{ChangelogSink, Write};
pub use topology::{Topology, TopologyDescription};

/// A task's id: its sub-topology and partition, shown as `<sub>_<partition>`
/// as in Kafka Streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId {
    /// The sub-topology.
    pub subtopology: u32,
    /// The input partition.
    pub partition: i32,
}

impl TaskId {
    /// The task that keeps global stores.
    pub const GLOBAL: TaskId = TaskId {
        subtopology: u32::MAX,
        partition: -1,
    };
}

impl std::fmt::Display for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if *self == TaskId::GLOBAL {
            write!(f, "global")
        } else {
            write!(f, "{}_{}", self.subtopology, self.partition)
        }
    }
}
