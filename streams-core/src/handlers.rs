//! What happens to records that cannot be read, processed or delivered,
//! and to threads that die: Kafka Streams' `DeserializationExceptionHandler`,
//! `ProcessingExceptionHandler` (KIP-1033), `ProductionExceptionHandler` and
//! uncaught-exception handler, with their built-in answers and a dead-letter
//! topic.

use crate::TaskId;
use crate::error::StreamsError;
use crate::record::{Headers, RawRecord};
use crate::serde::SerdeError;

/// What to do with a record that failed to deserialize or to process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandlerResponse {
    /// Skip it and go on (it is counted as dropped).
    Continue,
    /// Stop the task with an error.
    Fail,
    /// Send its original bytes to this topic, with the error in headers, and go on.
    DeadLetter(String),
}

/// What to do with a record that failed to deserialize.
pub type DeserializationHandlerResponse = HandlerResponse;

/// What to do with a record whose processing failed.
pub type ProcessingHandlerResponse = HandlerResponse;

/// Decides the fate of records that fail to deserialize.
pub trait DeserializationExceptionHandler: Send + Sync {
    /// Called with the raw record and what went wrong.
    fn handle(&self, record: &RawRecord, error: &SerdeError) -> DeserializationHandlerResponse;
}

/// Logs the record's location and the error, and skips it (the default).
#[derive(Debug, Clone, Copy, Default)]
pub struct LogAndContinue;

impl DeserializationExceptionHandler for LogAndContinue {
    fn handle(&self, record: &RawRecord, error: &SerdeError) -> DeserializationHandlerResponse {
        log::warn!(
            "skipping record {}[{}]@{} that cannot be deserialized: {error}",
            record.topic,
            record.partition,
            record.offset
        );
        DeserializationHandlerResponse::Continue
    }
}

/// Logs the error and fails.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogAndFail;

impl DeserializationExceptionHandler for LogAndFail {
    fn handle(&self, record: &RawRecord, error: &SerdeError) -> DeserializationHandlerResponse {
        log::error!(
            "record {}[{}]@{} cannot be deserialized: {error}",
            record.topic,
            record.partition,
            record.offset
        );
        DeserializationHandlerResponse::Fail
    }
}

/// Sends records that cannot be read to a dead-letter topic, unchanged,
/// with headers naming the error and where the record came from.
#[derive(Debug, Clone)]
pub struct DeadLetterQueue {
    topic: String,
}

impl DeadLetterQueue {
    /// Dead letters go to `topic`.
    pub fn new(topic: impl Into<String>) -> Self {
        DeadLetterQueue {
            topic: topic.into(),
        }
    }
}

impl DeserializationExceptionHandler for DeadLetterQueue {
    fn handle(&self, record: &RawRecord, error: &SerdeError) -> DeserializationHandlerResponse {
        log::warn!(
            "record {}[{}]@{} cannot be deserialized, sending it to {}: {error}",
            record.topic,
            record.partition,
            record.offset,
            self.topic
        );
        DeserializationHandlerResponse::DeadLetter(self.topic.clone())
    }
}

/// Where a processing error happened (Kafka Streams' `ErrorHandlerContext`).
#[derive(Debug)]
pub struct ErrorHandlerContext<'a> {
    /// The processor node that failed.
    pub node: &'a str,
    /// The task it runs in.
    pub task: TaskId,
    /// The source record being processed, as read; `None` when a
    /// punctuation failed.
    pub record: Option<&'a RawRecord>,
}

/// Decides the fate of a record whose processing failed: an error returned
/// by user code (a processor, a punctuator, a DSL function) or a panic in
/// it (Kafka Streams' `ProcessingExceptionHandler`, KIP-1033). Errors of
/// the runtime itself (a store's disk, the producer) are not offered: they
/// stop the thread, and the uncaught-exception handler decides.
pub trait ProcessingExceptionHandler: Send + Sync {
    /// Called with where it failed and the error (a
    /// [`StreamsError::Processing`]).
    fn handle(&self, context: &ErrorHandlerContext<'_>, error: &StreamsError) -> HandlerResponse;
}

impl ProcessingExceptionHandler for LogAndContinue {
    fn handle(&self, context: &ErrorHandlerContext<'_>, error: &StreamsError) -> HandlerResponse {
        log::warn!("skipping {}: {error}", describe(context));
        HandlerResponse::Continue
    }
}

/// The default, as in Kafka Streams.
impl ProcessingExceptionHandler for LogAndFail {
    fn handle(&self, context: &ErrorHandlerContext<'_>, error: &StreamsError) -> HandlerResponse {
        log::error!("{} failed: {error}", describe(context));
        HandlerResponse::Fail
    }
}

impl ProcessingExceptionHandler for DeadLetterQueue {
    fn handle(&self, context: &ErrorHandlerContext<'_>, error: &StreamsError) -> HandlerResponse {
        log::warn!(
            "{} failed, sending it to {}: {error}",
            describe(context),
            self.topic
        );
        HandlerResponse::DeadLetter(self.topic.clone())
    }
}

fn describe(context: &ErrorHandlerContext<'_>) -> String {
    match context.record {
        Some(record) => format!(
            "record {}[{}]@{} at node `{}` of task {}",
            record.topic, record.partition, record.offset, context.node, context.task
        ),
        None => format!(
            "a punctuation at node `{}` of task {}",
            context.node, context.task
        ),
    }
}

/// Header names on dead letters (as Kafka Streams 4 names them, and the
/// failing node, which is ours).
pub mod dead_letter {
    /// The error's message.
    pub const EXCEPTION_MESSAGE: &str = "__streams.errors.message";
    /// The processor node that failed (processing errors only).
    pub const NODE: &str = "__streams.errors.node";
    /// Source topic.
    pub const TOPIC: &str = "__streams.errors.topic";
    /// Source partition (decimal text).
    pub const PARTITION: &str = "__streams.errors.partition";
    /// Source offset (decimal text).
    pub const OFFSET: &str = "__streams.errors.offset";
}

/// The record's own headers plus the error's and its source's.
pub(crate) fn dead_letter_headers(record: &RawRecord, error: &str, node: Option<&str>) -> Headers {
    let mut headers = record.headers.clone();
    headers.add(
        dead_letter::EXCEPTION_MESSAGE,
        Some(error.as_bytes().to_vec()),
    );
    if let Some(node) = node {
        headers.add(dead_letter::NODE, Some(node.as_bytes().to_vec()));
    }
    headers.add(dead_letter::TOPIC, Some(record.topic.clone().into_bytes()));
    headers.add(
        dead_letter::PARTITION,
        Some(record.partition.to_string().into_bytes()),
    );
    headers.add(
        dead_letter::OFFSET,
        Some(record.offset.to_string().into_bytes()),
    );
    headers
}

/// What to do when a produced record cannot be delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProductionHandlerResponse {
    /// Log it and go on: the record is lost.
    Continue,
    /// Stop the thread with an error (the default).
    Fail,
}

/// Decides what a delivery failure means (Kafka Streams'
/// `ProductionExceptionHandler`).
pub trait ProductionExceptionHandler: Send + Sync {
    /// Called with the target topic and what the producer reported.
    fn handle(&self, topic: &str, error: &str) -> ProductionHandlerResponse;
}

/// Fails on every delivery error (the default, as in Kafka Streams).
#[derive(Debug, Clone, Copy, Default)]
pub struct FailOnProductionError;

impl ProductionExceptionHandler for FailOnProductionError {
    fn handle(&self, topic: &str, error: &str) -> ProductionHandlerResponse {
        log::error!("cannot deliver a record to {topic}: {error}");
        ProductionHandlerResponse::Fail
    }
}

/// Logs delivery errors and goes on, losing those records.
#[derive(Debug, Clone, Copy, Default)]
pub struct ContinueOnProductionError;

impl ProductionExceptionHandler for ContinueOnProductionError {
    fn handle(&self, topic: &str, error: &str) -> ProductionHandlerResponse {
        log::warn!("dropping a record that cannot be delivered to {topic}: {error}");
        ProductionHandlerResponse::Continue
    }
}

/// What happens to a stream thread that died of an error (Kafka Streams'
/// `StreamsUncaughtExceptionHandler` responses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamThreadExceptionResponse {
    /// A new thread takes its place; its tasks resume from their
    /// committed state.
    ReplaceThread,
    /// This instance stops, in state `Error` (the default).
    ShutdownClient,
    /// Every instance of the application stops: this one tells the others
    /// through Kafka, then stops in state `Error`.
    ShutdownApplication,
}

/// Decides what a stream thread's death means; see
/// `KafkaStreams::set_uncaught_exception_handler` in the `streams-kafka` crate.
pub type UncaughtExceptionHandler =
    dyn Fn(&StreamsError) -> StreamThreadExceptionResponse + Send + Sync;

/// A panic's payload as text.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic with a payload that is not text".to_owned()
    }
}
