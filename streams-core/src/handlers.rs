//! What happens to records that cannot be read: Kafka Streams'
//! `DeserializationExceptionHandler`, with its two built-in answers and a
//! dead-letter topic.

use crate::record::{Headers, RawRecord};
use crate::serde::SerdeError;

/// What to do with a record that failed to deserialize.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeserializationHandlerResponse {
    /// Skip it and go on (it is counted as dropped).
    Continue,
    /// Stop the task with an error.
    Fail,
    /// Send its original bytes to this topic, with the error in headers, and go on.
    DeadLetter(String),
}

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

/// Header names on dead letters (as Kafka Streams 4 names them).
pub mod dead_letter {
    /// The error's message.
    pub const EXCEPTION_MESSAGE: &str = "__streams.errors.message";
    /// Source topic.
    pub const TOPIC: &str = "__streams.errors.topic";
    /// Source partition (decimal text).
    pub const PARTITION: &str = "__streams.errors.partition";
    /// Source offset (decimal text).
    pub const OFFSET: &str = "__streams.errors.offset";
}

pub(crate) fn dead_letter_headers(record: &RawRecord, error: &SerdeError) -> Headers {
    let mut headers = record.headers.clone();
    headers.add(
        dead_letter::EXCEPTION_MESSAGE,
        Some(error.to_string().into_bytes()),
    );
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
