//! Word count: the hello world of stream processing.
//!
//! Builds the topology, prints its description, then counts the words of
//! the lines given on standard input (or of a sample text) by running the
//! topology in the `TopologyTestDriver`, and prints each word's count.
//!
//! ```sh
//! echo "the quick fox jumps over the lazy dog" | cargo run -p streams-core --example word_count
//! ```

use std::io::{BufRead, IsTerminal};

use streams_core::dsl::{Consumed, Grouped, Materialized, Produced};
use streams_core::serde::{I64Serde, Nullable, StringSerde, UnitSerde};
use streams_core::testing::TopologyTestDriver;
use streams_core::{StreamsBuilder, StreamsConfig, Topology};

/// The word-count topology: lines in, a count per word out.
fn word_count(input: &str, output: &str) -> streams_core::Result<Topology> {
    let builder = StreamsBuilder::new();
    builder
        .stream(&[input], Consumed::with(UnitSerde, StringSerde))
        .flat_map_values(|line: String| {
            line.split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .map(str::to_lowercase)
                .collect::<Vec<_>>()
        })
        .group_by(
            |_, word| word.clone(),
            Grouped::with(StringSerde, StringSerde),
        )
        .count(Materialized::named("word-counts"))
        .to_stream()
        .to(output, Produced::with(StringSerde, Nullable(I64Serde)));
    builder.build()
}

fn main() -> streams_core::Result<()> {
    let topology = word_count("lines", "counts")?;
    eprintln!("{}", topology.describe());

    let driver = TopologyTestDriver::new(topology, StreamsConfig::new("word-count"))?;
    let mut lines = driver.create_input_topic("lines", UnitSerde, StringSerde);
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        lines.pipe_value("all streams flow to the sea and the sea is not full".to_owned());
    } else {
        for line in stdin.lock().lines() {
            let line = line.map_err(|source| streams_core::StreamsError::Io {
                action: "reading stdin".into(),
                source,
            })?;
            lines.pipe_value(line);
        }
    }
    let mut counts: Vec<(String, i64)> = driver
        .key_value_store::<String, i64>("word-counts")?
        .all()?;
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    for (word, count) in counts {
        println!("{word}\t{count}");
    }
    Ok(())
}
