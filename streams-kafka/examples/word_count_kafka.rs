//! Word count on Kafka: reads lines from `lines`, writes a count per word
//! to `counts`, until Ctrl-C, which closes the application cleanly (commit,
//! checkpoint, leave the group).
//!
//! ```sh
//! scripts/dev-broker.sh start            # a local broker on 127.0.0.1:9092
//! cargo run -p streams-kafka --example word_count_kafka -- 127.0.0.1:9092
//! ```

use std::sync::mpsc;
use std::time::Duration;

use streams_core::dsl::{Consumed, Grouped, Materialized, Produced};
use streams_core::serde::{I64Serde, Nullable, StringSerde, UnitSerde};
use streams_core::{StreamsBuilder, StreamsConfig};
use streams_kafka::{KafkaStreams, create_topics_if_missing};

fn main() -> streams_core::Result<()> {
    let bootstrap = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9092".to_owned());
    let builder = StreamsBuilder::new();
    builder
        .stream(&["lines"], Consumed::with(UnitSerde, StringSerde))
        .flat_map_values(|line: String| {
            line.split_whitespace()
                .map(str::to_lowercase)
                .collect::<Vec<_>>()
        })
        .group_by(
            |_, word| word.clone(),
            Grouped::with(StringSerde, StringSerde),
        )
        .count(Materialized::named("word-counts"))
        .to_stream()
        .to("counts", Produced::with(StringSerde, Nullable(I64Serde)));
    let topology = builder.build()?;
    println!("{}", topology.describe());

    let config = StreamsConfig::new("word-count-example")
        .set("bootstrap.servers", bootstrap)
        .set("replication.factor", "1");
    create_topics_if_missing(&config, &[("lines", 3), ("counts", 3)])?;
    let streams = KafkaStreams::new(topology, config)?;
    streams.set_state_listener(|old, new| eprintln!("state {old:?} -> {new:?}"));

    let (stop, stopped) = mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = stop.send(());
    })
    .map_err(|e| {
        streams_core::StreamsError::Config(format!("cannot install the Ctrl-C handler: {e}"))
    })?;
    streams.start()?;
    eprintln!("running; press Ctrl-C to stop");
    let _ = stopped.recv();
    eprintln!("closing");
    if !streams.close(Duration::from_secs(30)) {
        eprintln!("threads did not stop within 30 s");
    }
    if let Some(error) = streams.error() {
        eprintln!("stopped after an error: {error}");
    }
    Ok(())
}
