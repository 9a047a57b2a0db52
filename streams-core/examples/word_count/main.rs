//! Word count: the hello world of stream processing.
//!
//! Builds the topology, prints its description, then counts the words of
//! the lines given on standard input (or of a sample text) by running the
//! topology in the `TopologyTestDriver`, and prints each word's count.
//!
//! ```sh
//! echo "the quick fox jumps over the lazy dog" | cargo run -p streams-core --example word_count
//! ```

mod topology;

use std::io::{BufRead, IsTerminal};

use streams_core::StreamsConfig;
use streams_core::serde::{StringSerde, UnitSerde};
use streams_core::testing::TopologyTestDriver;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let topology = topology::word_count("lines", "counts", "word-counts")?;
    eprintln!("{}", topology.describe());

    let driver = TopologyTestDriver::new(topology, StreamsConfig::new("word-count"))?;
    let mut lines = driver.create_input_topic("lines", UnitSerde, StringSerde);
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        lines.pipe_value("all streams flow to the sea and the sea is not full".to_owned());
    } else {
        for line in stdin.lock().lines() {
            lines.pipe_value(line?);
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
