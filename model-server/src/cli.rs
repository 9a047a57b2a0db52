//! What the `model-server` and `model-client` binaries share: a logger to
//! standard error and the topics they create.

use std::io::Write as _;

use streams_core::StreamsConfig;

use crate::serving::{DATA_TOPIC, MODELS_TOPIC, SCORES_TOPIC};

/// Turns transparent huge pages off for this process (Linux only; elsewhere,
/// or where the kernel refuses, nothing changes). mimalloc asks for huge
/// pages for its arenas where the kernel grants them: each is 2 MiB resident
/// and zeroed from its first touch, so the server held about twice the
/// memory it used (under `scripts/bench-memory.sh`'s load, with the
/// framework's bounded client queues: 103-109 MiB peak with them, 52-59
/// without) and spent CPU zeroing pages. Called first thing in `main`: the flag covers every
/// mapping faulted in afterwards, and child processes.
/// An error says why they stay on.
pub fn without_huge_pages() -> Result<(), String> {
    #[cfg(target_os = "linux")]
    nix::sys::prctl::set_thp_disable(true).map_err(|e| e.to_string())?;
    Ok(())
}

/// Sends log lines (info and above; the `rdkafka` crate's own from
/// warnings) to standard error, prefixed with `program`. `RUST_LOG`
/// overrides the levels (e.g. `RUST_LOG=debug`, `RUST_LOG=rdkafka=info`).
pub fn init_logging(program: &'static str) {
    let _ = env_logger::Builder::new()
        .filter_level(log::LevelFilter::Info)
        .filter_module("rdkafka", log::LevelFilter::Warn)
        .filter_module("librdkafka", log::LevelFilter::Warn)
        .parse_default_env()
        .format(move |out, record| {
            writeln!(out, "[{program}] {} {}", record.level(), record.args())
        })
        .try_init();
}

/// Creates `mdata` and `mscores` with `partitions` partitions and `models`
/// with one, when they do not exist yet, and each of `more` with
/// `partitions` too. `models` is a normal topic, not a compacted one: on
/// Apache Kafka a compacted topic refuses records without a key, and the
/// original client writes none. Every topic keeps its records forever
/// (`retention.ms=-1`), so the models are never lost.
pub fn create_topics(
    config: &StreamsConfig,
    partitions: i32,
    more: &[&str],
) -> streams_core::Result<()> {
    let mut topics = vec![
        (DATA_TOPIC, partitions),
        (MODELS_TOPIC, 1),
        (SCORES_TOPIC, partitions),
    ];
    topics.extend(more.iter().map(|topic| (*topic, partitions)));
    streams_kafka::create_topics_if_missing(config, &topics)
}
