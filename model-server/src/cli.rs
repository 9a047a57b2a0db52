//! What the `model-server` and `model-client` binaries share: a logger to
//! standard error and the topics they create.

use streams_core::StreamsConfig;

use crate::serving::{DATA_TOPIC, MODELS_TOPIC, SCORES_TOPIC};

struct StderrLog {
    program: &'static str,
}

impl log::Log for StderrLog {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        // librdkafka's own chatter stays at warnings.
        metadata.level() <= log::Level::Warn
            || (metadata.level() <= log::Level::Info && !metadata.target().starts_with("rdkafka"))
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            eprintln!("[{}] {} {}", self.program, record.level(), record.args());
        }
    }

    fn flush(&self) {}
}

/// Sends log lines (info and above) to standard error, prefixed with
/// `program`.
pub fn init_logging(program: &'static str) {
    let logger = Box::leak(Box::new(StderrLog { program }));
    if log::set_logger(logger).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
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
