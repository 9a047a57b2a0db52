//! Failures of user code through the TopologyTestDriver: errors and panics
//! in processors, punctuators and deserializers are processing errors that
//! name the node, and the processing-exception handler decides: fail (the
//! default), continue, or send the record to a dead-letter topic.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use streams_core::handlers::{DeadLetterQueue, LogAndContinue, dead_letter};
use streams_core::processor::{ProcessResult, Processor, ProcessorContext, PunctuationType};
use streams_core::serde::{I64Serde, Serde, SerdeError, StringSerde};
use streams_core::testing::TopologyTestDriver;
use streams_core::{Record, StreamsConfig, StreamsError, Topology};

use common::{out_values, through};

/// Forwards positive values; fails on negative ones, panics on 0.
struct Poisoned;

impl Processor<String, i64, String, i64> for Poisoned {
    fn process(
        &mut self,
        record: Record<String, i64>,
        ctx: &mut ProcessorContext<'_, String, i64>,
    ) -> ProcessResult {
        match record.value {
            0 => panic!("zero is poison"),
            v if v < 0 => Err(format!("{v} is negative").into()),
            _ => Ok(ctx.forward(record)?),
        }
    }
}

/// in -> src -> poisoned -> sink -> out.
fn driver(config: StreamsConfig) -> TopologyTestDriver {
    through("poisoned", || Poisoned, config)
}

#[test]
fn by_default_a_panic_fails_naming_the_node_and_the_next_record_is_processed() {
    let d = driver(StreamsConfig::new("h"));
    let mut input = d.create_input_topic("in", StringSerde, I64Serde);
    let error = input.try_pipe(&"k".into(), Some(&0), 0, Default::default());
    match error {
        Err(StreamsError::Processing { node, source }) => {
            assert_eq!(node, "poisoned");
            assert!(source.to_string().contains("zero is poison"), "{source}");
        }
        other => panic!("expected a processing error, got {other:?}"),
    }
    let error = input
        .try_pipe(&"k".into(), Some(&-1), 0, Default::default())
        .unwrap_err();
    assert!(error.to_string().contains("-1 is negative"), "{error}");
    // The node kept its processor: the panic did not leave it empty.
    input.pipe_input("k".into(), 5);
    assert_eq!(out_values(&d), [5]);
}

#[test]
fn log_and_continue_skips_failed_records() {
    let d = driver(StreamsConfig::new("h").with_processing_handler(LogAndContinue));
    let mut input = d.create_input_topic("in", StringSerde, I64Serde);
    for v in [1, 0, 2, -3, 4] {
        input.pipe_input("k".into(), v);
    }
    assert_eq!(out_values(&d), [1, 2, 4]);
    assert_eq!(d.dropped_records(), 2);
}

#[test]
fn dead_letters_of_processing_name_the_node_and_the_source() {
    let d = driver(StreamsConfig::new("h").with_processing_handler(DeadLetterQueue::new("dlq")));
    let mut input = d.create_input_topic("in", StringSerde, I64Serde);
    for v in [1, 0, 2] {
        input.pipe_input("k".into(), v);
    }
    assert_eq!(out_values(&d), [1, 2]);
    let letters = d.read_raw("dlq");
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].key.as_deref(), Some(&b"k"[..]));
    assert_eq!(
        letters[0].value.as_deref(),
        Some(&0i64.to_be_bytes()[..]),
        "the original bytes"
    );
    let header = |name| common::header(&letters[0], name);
    assert_eq!(header(dead_letter::NODE).as_deref(), Some("poisoned"));
    assert_eq!(header(dead_letter::TOPIC).as_deref(), Some("in"));
    assert_eq!(header(dead_letter::PARTITION).as_deref(), Some("0"));
    assert_eq!(header(dead_letter::OFFSET).as_deref(), Some("1"));
    let message = header(dead_letter::EXCEPTION_MESSAGE).unwrap();
    assert!(message.contains("zero is poison"), "{message}");
}

/// An i64 serde whose deserializer panics on a value of 8 zero bytes.
struct PanickyI64;

impl Serde<i64> for PanickyI64 {
    fn serialize_into(&self, value: &i64, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        I64Serde.serialize_into(value, out)
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<i64, SerdeError> {
        let value = I64Serde.deserialize(bytes)?;
        assert_ne!(value, 0, "the deserializer cannot read 0");
        Ok(value)
    }
}

#[test]
fn a_panicking_deserializer_is_a_processing_error_of_its_source() {
    let mut topology = Topology::new();
    topology
        .add_source("src", StringSerde, PanickyI64, &["in"])
        .unwrap()
        .add_sink("sink", "out", StringSerde, I64Serde, &["src"])
        .unwrap();
    let d = TopologyTestDriver::new(
        topology,
        StreamsConfig::new("h").with_processing_handler(DeadLetterQueue::new("dlq")),
    )
    .unwrap();
    let mut input = d.create_input_topic("in", StringSerde, I64Serde);
    for v in [3, 0, 4] {
        input.pipe_input("k".into(), v);
    }
    assert_eq!(out_values(&d), [3, 4]);
    let letters = d.read_raw("dlq");
    assert_eq!(letters.len(), 1);
    let node = letters[0].headers.last(dead_letter::NODE).flatten();
    assert_eq!(node, Some(&b"src"[..]));
}

/// Forwards every record, and panics in its first two punctuations.
struct BadPunctuator {
    calls: Arc<AtomicUsize>,
}

impl Processor<String, i64, String, i64> for BadPunctuator {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, String, i64>) -> ProcessResult {
        let calls = self.calls.clone();
        ctx.schedule(
            Duration::from_millis(10),
            PunctuationType::WallClockTime,
            move |_, _| {
                if calls.fetch_add(1, Ordering::Relaxed) < 2 {
                    panic!("the punctuator is broken");
                }
                Ok(())
            },
        )?;
        Ok(())
    }

    fn process(
        &mut self,
        record: Record<String, i64>,
        ctx: &mut ProcessorContext<'_, String, i64>,
    ) -> ProcessResult {
        Ok(ctx.forward(record)?)
    }
}

#[test]
fn a_panicking_punctuator_is_offered_to_the_handler_and_keeps_its_schedule() {
    let calls = Arc::new(AtomicUsize::new(0));
    let build = |config: StreamsConfig| {
        let calls = calls.clone();
        let make = move || BadPunctuator {
            calls: calls.clone(),
        };
        through("punctuating", make, config)
    };

    // The default fails, naming the node.
    let d = build(StreamsConfig::new("h"));
    let error = d
        .try_advance_wall_clock_time(Duration::from_millis(10))
        .unwrap_err();
    assert!(
        matches!(&error, StreamsError::Processing { node, .. } if node == "punctuating"),
        "{error:?}"
    );

    // Continue: the schedule survives, and fires again.
    let d = build(StreamsConfig::new("h").with_processing_handler(LogAndContinue));
    d.advance_wall_clock_time(Duration::from_millis(10));
    d.advance_wall_clock_time(Duration::from_millis(10));
    assert_eq!(calls.load(Ordering::Relaxed), 3);
    let mut input = d.create_input_topic("in", StringSerde, I64Serde);
    input.pipe_input("k".into(), 1);
    assert_eq!(out_values(&d), [1]);
}
