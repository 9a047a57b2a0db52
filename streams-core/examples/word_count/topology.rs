//! The word-count topology, written as Kafka Streams' `WordCountDemo` is.
//! The one copy: the examples of `streams-core` (on the test driver) and
//! `streams-kafka` (on a broker) and the end-to-end tests include this file.

use streams_core::dsl::{KStream, Materialized};
use streams_core::{StreamsBuilder, Topology};

/// Lines from `input` (keys ignored), a count per lower-case word to
/// `output`, kept in the queryable store `store`.
pub(crate) fn word_count(input: &str, output: &str, store: &str) -> streams_core::Result<Topology> {
    let builder = StreamsBuilder::new();
    let lines: KStream<(), String> = builder.stream(input);
    lines
        .flat_map_values(|line| {
            line.split_whitespace()
                .map(str::to_lowercase)
                .collect::<Vec<_>>()
        })
        .group_by(|_, word| word)
        .count_with(Materialized::named(store))
        .to_stream()
        .to(output);
    builder.build()
}
