//! Windowed counts on Kafka: counts the records of each key of `--input`
//! per event-time window and writes each window's final count to
//! `--output`, once the window has closed.
//!
//! - Tumbling windows of `--window-ms` (default 60000) with `--grace-ms`
//!   (default 10000): output keys `<key>@<window start ms>`.
//! - With `--session-gap-ms G`: session windows with that inactivity gap
//!   and `--grace-ms`: output keys `<key>@<session start ms>-<session end ms>`.
//!
//! Input keys are UTF-8 strings (records without one are skipped), values
//! are ignored, and each record's timestamp is its event time (records
//! with a negative one are skipped). Output
//! values are decimal counts. `--output` is created if missing. Runs until
//! SIGINT or SIGTERM, then closes cleanly (commit, checkpoint, leave the
//! group).
//!
//! ```sh
//! scripts/dev-broker.sh start
//! cargo run -p streams-kafka --example windowed_counts -- \
//!     --bootstrap-servers 127.0.0.1:9092 --input clicks --output clicks-per-minute \
//!     --application-id clicks --state-dir /tmp/clicks
//! ```

use std::sync::mpsc;
use std::time::Duration;

use clap::Parser;
use streams_core::dsl::{BufferConfig, Consumed, KTable, Materialized, Produced, Suppressed};
use streams_core::serde::{StringSerde, UnitSerde};
use streams_core::timestamps::LogAndSkipOnInvalidTimestamp;
use streams_core::window::{SessionWindows, TimeWindows, Windowed};
use streams_core::{StreamsBuilder, StreamsConfig, Topology};
use streams_kafka::{KafkaStreams, create_topics_if_missing, partition_count};

/// Counts records per key and event-time window; writes final counts.
#[derive(Parser, Debug)]
#[command(name = "windowed_counts")]
struct Args {
    /// Kafka bootstrap servers.
    #[arg(long)]
    bootstrap_servers: String,
    /// The topic to read.
    #[arg(long)]
    input: String,
    /// The topic to write final counts to (created if missing).
    #[arg(long)]
    output: String,
    /// The application id (consumer group, internal topic prefix).
    #[arg(long)]
    application_id: String,
    /// Where the state stores keep their files.
    #[arg(long)]
    state_dir: String,
    /// The size of the tumbling windows, in ms.
    #[arg(long, default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(1..))]
    window_ms: u64,
    /// How long after a window's end its late records are still counted, in ms.
    #[arg(long, default_value_t = 10_000)]
    grace_ms: u64,
    /// Count in session windows with this inactivity gap, in ms, instead.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    session_gap_ms: Option<u64>,
    /// A setting of the application or its clients, as `KEY=VALUE`
    /// (repeatable), e.g. `-c processing.guarantee=exactly_once_v2`.
    #[arg(short = 'c', long = "config", value_name = "KEY=VALUE", value_parser = key_value)]
    config: Vec<(String, String)>,
}

fn key_value(setting: &str) -> Result<(String, String), String> {
    match setting.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected KEY=VALUE, not `{setting}`")),
    }
}

/// The counting topology: final counts per window, keyed as the output
/// contract says.
fn topology(args: &Args) -> streams_core::Result<Topology> {
    let builder = StreamsBuilder::new();
    let grouped = builder
        .stream_with(
            args.input.as_str(),
            // A record with a negative timestamp has no event time: skip
            // it (counted in the metrics) rather than stop counting.
            Consumed::with(StringSerde, UnitSerde)
                .with_timestamp_extractor(LogAndSkipOnInvalidTimestamp),
        )
        .group_by_key();
    let store = Materialized::named("windowed-counts");
    let grace = Duration::from_millis(args.grace_ms);
    let (counts, name): (
        KTable<Windowed<String>, i64>,
        fn(&Windowed<String>) -> String,
    ) = match args.session_gap_ms {
        Some(gap) => (
            grouped
                .windowed_by(SessionWindows::of_inactivity_gap_and_grace(
                    Duration::from_millis(gap),
                    grace,
                )?)
                .count_with(store),
            |k| format!("{}@{}-{}", k.key, k.window.start, k.window.end),
        ),
        None => (
            grouped
                .windowed_by(TimeWindows::of_size_and_grace(
                    Duration::from_millis(args.window_ms),
                    grace,
                )?)
                .count_with(store),
            |k| format!("{}@{}", k.key, k.window.start),
        ),
    };
    counts
        .suppress(Suppressed::until_window_closes(BufferConfig::unbounded()))
        .to_stream()
        // Final results carry no tombstones: the suppression drops them.
        .flat_map(move |key, count| count.map(|count| (name(&key), count.to_string())))
        .to_with(&args.output, Produced::with(StringSerde, StringSerde));
    builder.build()
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
    // The error's own words, not its `Debug` form that returning it from
    // `main` would print.
    if let Err(error) = run(&args) {
        eprintln!("windowed_counts: {error}");
        std::process::exit(1);
    }
}

/// Counts until SIGINT or SIGTERM, then closes.
fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let topology = topology(args)?;
    let config = StreamsConfig::new(args.application_id.as_str())
        .set("bootstrap.servers", args.bootstrap_servers.as_str())
        .set("state.dir", args.state_dir.as_str())
        // The development broker answers a group join after half the
        // session timeout: 6 s instead of 45 s makes a (re)start quick.
        .set("consumer.session.timeout.ms", "6000")
        .set("consumer.heartbeat.interval.ms", "1000");
    let config = args.config.iter().fold(config, |config, (key, value)| {
        config.set(key.as_str(), value.as_str())
    });
    config.validate()?;
    // The output gets as many partitions as the input, as a Kafka Streams
    // sink does not decide it either.
    let partitions = partition_count(&config, &args.input)?.unwrap_or(1);
    create_topics_if_missing(&config, &[(args.output.as_str(), partitions)])?;
    let streams = KafkaStreams::new(topology, config)?;
    let (stop, stopped) = mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = stop.send(());
    })?;
    streams.start()?;
    log::info!("counting {} into {}", args.input, args.output);
    let _ = stopped.recv();
    log::info!("closing");
    let closed = streams.close(Duration::from_secs(30));
    if let Some(error) = streams.error() {
        return Err(format!("stopped after an error: {error}").into());
    }
    if !closed {
        return Err("the stream threads did not stop within 30 s".into());
    }
    Ok(())
}
