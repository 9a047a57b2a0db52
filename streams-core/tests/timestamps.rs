//! Event time through the TopologyTestDriver: each built-in timestamp
//! extractor, a user's function given the partition time, the default
//! (`FailOnInvalidTimestamp`) and the application default set in config.

use std::any::Any;
use std::time::{SystemTime, UNIX_EPOCH};

use streams_core::config::DEFAULT_TIMESTAMP_EXTRACTOR;
use streams_core::dsl::{Consumed, KStream, Materialized, Produced};
use streams_core::error::BoxError;
use streams_core::handlers::LogAndContinue;
use streams_core::serde::{I64Serde, Nullable, StringSerde};
use streams_core::testing::{TestInputTopic, TestOutputTopic, TopologyTestDriver};
use streams_core::timestamps::{
    AnyConsumerRecord, ConsumerRecord, LogAndSkipOnInvalidTimestamp, TimestampExtractor,
    UsePartitionTimeOnInvalidTimestamp, WallclockTimestampExtractor, extractor_fn,
};
use streams_core::{Headers, StreamsBuilder, StreamsConfig, StreamsError};

type Input = TestInputTopic<String, i64>;
type Output = TestOutputTopic<String, i64>;

fn consumed() -> Consumed<String, i64> {
    Consumed::with(StringSerde, I64Serde)
}

/// `in` (read as `consumed` says) copied to `out`.
fn copy(
    consumed: Consumed<String, i64>,
    config: StreamsConfig,
) -> (TopologyTestDriver, Input, Output) {
    let builder = StreamsBuilder::new();
    builder
        .stream_with("in", consumed)
        .to_with("out", Produced::with(StringSerde, I64Serde));
    let driver = TopologyTestDriver::new(builder.build().unwrap(), config).unwrap();
    let input = driver.create_input_topic("in", StringSerde, I64Serde);
    let output = driver.create_output_topic("out", StringSerde, I64Serde);
    (driver, input, output)
}

fn pipe(input: &mut Input, key: &str, value: i64, timestamp: i64) -> Result<(), StreamsError> {
    input.try_pipe(&key.to_owned(), Some(&value), timestamp, Headers::new())
}

/// (key, timestamp) of every record written so far.
fn stamps(output: &Output) -> Vec<(String, i64)> {
    output
        .read_records_to_list()
        .into_iter()
        .map(|r| (r.key, r.timestamp))
        .collect()
}

fn s(text: &str) -> String {
    text.to_owned()
}

#[test]
fn by_default_a_negative_timestamp_stops_the_task_naming_the_record() {
    let (driver, mut input, output) = copy(consumed(), StreamsConfig::new("ts"));
    pipe(&mut input, "a", 1, 10).unwrap();
    let error = pipe(&mut input, "b", 2, -1).unwrap_err();
    let StreamsError::TimestampExtraction {
        topic,
        partition,
        offset,
        ..
    } = &error
    else {
        panic!("expected a timestamp extraction error, got {error:?}");
    };
    assert_eq!((topic.as_str(), *partition, *offset), ("in", 0, 1));
    assert!(
        error.to_string().starts_with(
            "cannot extract a timestamp from record in[0]@1: invalid (negative) timestamp -1"
        ),
        "{error}"
    );
    assert_eq!(stamps(&output), [(s("a"), 10)]);
    // Not a record for the processing handler to skip: it fails the same
    // with one that would.
    let (_driver, mut input, _) = copy(
        consumed(),
        StreamsConfig::new("ts").with_processing_handler(LogAndContinue),
    );
    assert!(matches!(
        pipe(&mut input, "b", 2, -7),
        Err(StreamsError::TimestampExtraction { .. })
    ));
    assert_eq!(driver.dropped_records(), 0);
}

#[test]
fn log_and_skip_drops_and_counts_records_with_negative_timestamps() {
    let (driver, mut input, output) = copy(
        consumed().with_timestamp_extractor(LogAndSkipOnInvalidTimestamp),
        StreamsConfig::new("ts"),
    );
    pipe(&mut input, "a", 1, 10).unwrap();
    pipe(&mut input, "b", 2, -1).unwrap();
    pipe(&mut input, "c", 3, -20).unwrap();
    pipe(&mut input, "d", 4, 0).unwrap();
    assert_eq!(stamps(&output), [(s("a"), 10), (s("d"), 0)]);
    assert_eq!(driver.dropped_records(), 2);
}

#[test]
fn the_application_default_is_set_by_name_and_a_source_s_own_extractor_wins() {
    let config =
        StreamsConfig::new("ts").set(DEFAULT_TIMESTAMP_EXTRACTOR, "LogAndSkipOnInvalidTimestamp");
    let (driver, mut input, output) = copy(consumed(), config.clone());
    pipe(&mut input, "a", 1, -1).unwrap();
    pipe(&mut input, "b", 2, 5).unwrap();
    assert_eq!(stamps(&output), [(s("b"), 5)]);
    assert_eq!(driver.dropped_records(), 1);

    // Kafka Streams' class name works too.
    let kafka = StreamsConfig::new("ts").set(
        DEFAULT_TIMESTAMP_EXTRACTOR,
        "org.apache.kafka.streams.processor.UsePartitionTimeOnInvalidTimestamp",
    );
    let (_driver, mut input, output) = copy(consumed(), kafka);
    pipe(&mut input, "a", 1, 30).unwrap();
    pipe(&mut input, "b", 2, -1).unwrap();
    assert_eq!(stamps(&output), [(s("a"), 30), (s("b"), 30)]);

    // A source's own extractor is not replaced by the default.
    let own = consumed().with_timestamp_extractor(extractor_fn(|r, _| *r.value));
    let (_driver, mut input, output) = copy(own, config);
    pipe(&mut input, "a", 77, -1).unwrap();
    assert_eq!(stamps(&output), [(s("a"), 77)]);

    let unknown = StreamsConfig::new("ts").set(DEFAULT_TIMESTAMP_EXTRACTOR, "Sundial");
    let builder = StreamsBuilder::new();
    builder
        .stream_with("in", consumed())
        .to_with("out", Produced::with(StringSerde, I64Serde));
    let error = TopologyTestDriver::new(builder.build().unwrap(), unknown).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("default.timestamp.extractor is `Sundial`"),
        "{error}"
    );
}

#[test]
fn use_partition_time_replaces_a_negative_timestamp_with_the_partition_s_time() {
    let (_driver, mut input, output) = copy(
        consumed().with_timestamp_extractor(UsePartitionTimeOnInvalidTimestamp),
        StreamsConfig::new("ts"),
    );
    // No partition time yet: nothing to use instead.
    let error = pipe(&mut input, "a", 1, -1).unwrap_err();
    assert!(
        matches!(&error, StreamsError::TimestampExtraction { offset: 0, .. })
            && error.to_string().contains("no partition time yet"),
        "{error}"
    );
    pipe(&mut input, "b", 2, 100).unwrap();
    pipe(&mut input, "c", 3, 40).unwrap(); // late, but valid: kept
    pipe(&mut input, "d", 4, -5).unwrap(); // the largest so far
    assert_eq!(
        stamps(&output),
        [(s("b"), 100), (s("c"), 40), (s("d"), 100)]
    );
}

#[test]
fn partition_time_is_each_partition_s_own() {
    // Two topics in one task: the time of `left` is no time for `right`.
    let builder = StreamsBuilder::new();
    let extractor = || consumed().with_timestamp_extractor(UsePartitionTimeOnInvalidTimestamp);
    let left: KStream<String, i64> = builder.stream_with("left", extractor());
    let right: KStream<String, i64> = builder.stream_with("right", extractor());
    left.merge(&right)
        .to_with("out", Produced::with(StringSerde, I64Serde));
    let driver =
        TopologyTestDriver::new(builder.build().unwrap(), StreamsConfig::new("ts")).unwrap();
    let mut left = driver.create_input_topic("left", StringSerde, I64Serde);
    let mut right = driver.create_input_topic("right", StringSerde, I64Serde);
    let output = driver.create_output_topic("out", StringSerde, I64Serde);
    pipe(&mut left, "l", 1, 500).unwrap();
    let error = pipe(&mut right, "r", 2, -1).unwrap_err();
    assert!(error.to_string().contains("record right[0]@0"), "{error}");
    pipe(&mut right, "r", 3, 20).unwrap();
    pipe(&mut right, "r", 4, -1).unwrap();
    pipe(&mut left, "l", 5, -1).unwrap();
    assert_eq!(
        stamps(&output),
        [(s("l"), 500), (s("r"), 20), (s("r"), 20), (s("l"), 500)]
    );
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn the_wall_clock_extractor_stamps_records_with_the_time_they_are_processed() {
    let (_driver, mut input, output) = copy(
        consumed().with_timestamp_extractor(WallclockTimestampExtractor),
        StreamsConfig::new("ts"),
    );
    let before = now_ms();
    pipe(&mut input, "a", 1, 5).unwrap();
    pipe(&mut input, "b", 2, -1).unwrap(); // no timestamp of its own: no matter
    let after = now_ms();
    for (key, timestamp) in stamps(&output) {
        assert!(
            (before..=after).contains(&timestamp),
            "{key}: {timestamp} not in {before}..={after}"
        );
    }
}

#[test]
fn a_user_function_gets_the_record_and_its_partition_s_time() {
    // The value is the event time; when it is 0, a millisecond past the
    // partition's time.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let extractor = extractor_fn(move |r: &ConsumerRecord<'_, String, i64>, partition_time| {
        log.lock()
            .unwrap()
            .push((r.topic.to_owned(), r.offset, r.timestamp, partition_time));
        if *r.value == 0 {
            partition_time + 1
        } else {
            *r.value
        }
    });
    let (_driver, mut input, output) = copy(
        consumed().with_timestamp_extractor(extractor),
        StreamsConfig::new("ts"),
    );
    pipe(&mut input, "a", 1_000, 7).unwrap();
    pipe(&mut input, "b", 400, 8).unwrap();
    pipe(&mut input, "c", 0, 9).unwrap();
    assert_eq!(
        stamps(&output),
        [(s("a"), 1_000), (s("b"), 400), (s("c"), 1_001)]
    );
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (s("in"), 0, 7, -1),
            (s("in"), 1, 8, 1_000),
            (s("in"), 2, 9, 1_000)
        ]
    );
}

/// Fails on records whose key says so: an extractor's own error.
struct Strict;

impl TimestampExtractor<dyn Any, dyn Any> for Strict {
    fn extract(&self, record: &AnyConsumerRecord<'_>, _: i64) -> Result<i64, BoxError> {
        match record.key.downcast_ref::<String>() {
            Some(key) if key == "bad" => Err("a bad key has no time".into()),
            _ => Ok(record.timestamp * 2),
        }
    }
}

#[test]
fn an_application_default_of_the_user_s_own_sees_any_source_s_records() {
    let config = StreamsConfig::new("ts")
        .set(DEFAULT_TIMESTAMP_EXTRACTOR, "LogAndSkipOnInvalidTimestamp")
        .with_default_timestamp_extractor(Strict);
    let (_driver, mut input, output) = copy(consumed(), config);
    pipe(&mut input, "a", 1, 21).unwrap();
    let error = pipe(&mut input, "bad", 2, 5).unwrap_err();
    assert_eq!(
        error.to_string(),
        "cannot extract a timestamp from record in[0]@1: a bad key has no time"
    );
    assert_eq!(stamps(&output), [(s("a"), 42)]);
}

#[test]
fn a_table_s_extractor_sees_values_and_tombstones_keep_their_timestamp() {
    let builder = StreamsBuilder::new();
    builder
        .table(
            "prices",
            consumed().with_timestamp_extractor(extractor_fn(|r, _| *r.value)),
            Materialized::named("prices"),
        )
        .to_stream()
        .to_with("out", Produced::with(StringSerde, Nullable(I64Serde)));
    let driver =
        TopologyTestDriver::new(builder.build().unwrap(), StreamsConfig::new("ts")).unwrap();
    let mut input = driver.create_input_topic("prices", StringSerde, I64Serde);
    let output = driver.create_output_topic("out", StringSerde, Nullable(I64Serde));
    pipe(&mut input, "x", 300, 1).unwrap();
    input.try_pipe(&s("x"), None, 9, Headers::new()).unwrap();
    let records: Vec<(Option<i64>, i64)> = output
        .read_records_to_list()
        .into_iter()
        .map(|r| (r.value, r.timestamp))
        .collect();
    assert_eq!(records, [(Some(300), 300), (None, 9)]);
}
