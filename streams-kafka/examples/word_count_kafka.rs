//! Word count on Kafka: reads lines from `lines`, writes a count per word
//! to `counts`, until Ctrl-C, which closes the application cleanly (commit,
//! checkpoint, leave the group).
//!
//! ```sh
//! scripts/dev-broker.sh start            # a local broker on 127.0.0.1:9092
//! cargo run -p streams-kafka --example word_count_kafka -- 127.0.0.1:9092
//! ```

#[path = "../../streams-core/examples/word_count/topology.rs"]
mod topology;

use std::sync::mpsc;
use std::time::Duration;

use streams_core::StreamsConfig;
use streams_kafka::{KafkaStreams, create_topics_if_missing};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bootstrap = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9092".to_owned());
    let topology = topology::word_count("lines", "counts", "word-counts")?;
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
