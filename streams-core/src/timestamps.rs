//! Event time: how a source gives each record its timestamp, as Kafka
//! Streams' `TimestampExtractor`s do.
//!
//! A source reads a record, deserializes it, then asks its extractor for
//! the record's timestamp, given the record (with the timestamp it was
//! written with) and its partition's time so far (the largest timestamp
//! extracted from that partition, or -1). The result is what processors,
//! windows, punctuation by stream time and sinks see. A negative result
//! drops the record: it is logged and counted in the task's
//! [`DropCounts::invalid_timestamp`](crate::engine::DropCounts); an error
//! stops the task ([`StreamsError::TimestampExtraction`](crate::StreamsError)).
//!
//! | extractor | a record with a negative timestamp |
//! |---|---|
//! | [`FailOnInvalidTimestamp`] (the default) | stops the task |
//! | [`LogAndSkipOnInvalidTimestamp`] | is dropped (logged and counted) |
//! | [`UsePartitionTimeOnInvalidTimestamp`] | gets its partition's time; stops the task when there is none yet |
//! | [`WallclockTimestampExtractor`] | (every record gets the wall-clock time) |
//! | your own, [`extractor_fn`] or a type implementing [`TimestampExtractor`] | what it says |
//!
//! Choose one per source with
//! [`Consumed::with_timestamp_extractor`](crate::dsl::Consumed::with_timestamp_extractor),
//! or for every source without one with `default.timestamp.extractor`
//! ([`StreamsConfig::with_default_timestamp_extractor`](crate::StreamsConfig::with_default_timestamp_extractor)).
//!
//! ```
//! use streams_core::dsl::Consumed;
//! use streams_core::serde::{I64Serde, StringSerde};
//! use streams_core::testing::TopologyTestDriver;
//! use streams_core::timestamps::LogAndSkipOnInvalidTimestamp;
//! use streams_core::{StreamsBuilder, StreamsConfig};
//!
//! let builder = StreamsBuilder::new();
//! let consumed =
//!     Consumed::with(StringSerde, I64Serde).with_timestamp_extractor(LogAndSkipOnInvalidTimestamp);
//! builder.stream_with("in", consumed).to("out");
//! let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
//! let mut input = driver.create_input_topic("in", StringSerde, I64Serde);
//! let output = driver.create_output_topic("out", StringSerde, I64Serde);
//! input.pipe_input_at("a".into(), 1, -5); // dropped
//! input.pipe_input_at("b".into(), 2, 10);
//! assert_eq!(output.read_key_value(), ("b".to_string(), 2));
//! assert!(output.is_empty());
//! assert_eq!(driver.dropped_records(), 1);
//! # Ok::<(), streams_core::StreamsError>(())
//! ```

use std::any::Any;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::BoxError;
use crate::record::Headers;

/// A record as an extractor sees it: where it was read, the timestamp it
/// was written with, and its deserialized key, value and headers (Kafka's
/// `ConsumerRecord`). An extractor for every source, such as the
/// application's default, sees keys and values as `dyn Any`
/// ([`AnyConsumerRecord`]); a table's source sees `Option<V>` values (`None`
/// for a tombstone).
#[derive(Debug)]
pub struct ConsumerRecord<'a, K: ?Sized, V: ?Sized> {
    /// The topic read.
    pub topic: &'a str,
    /// The partition read.
    pub partition: i32,
    /// The record's offset.
    pub offset: i64,
    /// The timestamp it was written with, in ms (negative: none or invalid).
    pub timestamp: i64,
    /// The key.
    pub key: &'a K,
    /// The value.
    pub value: &'a V,
    /// The headers.
    pub headers: &'a Headers,
}

/// A record with its key and value types erased, as the application's
/// default extractor sees it (Kafka's `ConsumerRecord<Object, Object>`).
pub type AnyConsumerRecord<'a> = ConsumerRecord<'a, dyn Any, dyn Any>;

/// An extractor for records of any type: the application's default.
pub type AnyTimestampExtractor = Arc<dyn TimestampExtractor<dyn Any, dyn Any>>;

/// Gives a record its timestamp (Kafka Streams' `TimestampExtractor`).
///
/// `partition_time` is the largest timestamp extracted so far from the
/// record's partition in this task, or -1 when none was. A negative result
/// drops the record (logged and counted); an error stops the task.
///
/// ```
/// use std::any::Any;
/// use streams_core::error::BoxError;
/// use streams_core::timestamps::{ConsumerRecord, TimestampExtractor};
///
/// /// Event time from a header, else the record's own timestamp.
/// struct FromHeader;
///
/// impl<K: ?Sized, V: ?Sized> TimestampExtractor<K, V> for FromHeader {
///     fn extract(&self, record: &ConsumerRecord<'_, K, V>, _: i64) -> Result<i64, BoxError> {
///         match record.headers.last("event-time") {
///             Some(Some(bytes)) => Ok(std::str::from_utf8(bytes)?.parse()?),
///             _ => Ok(record.timestamp),
///         }
///     }
/// }
///
/// let headers = streams_core::Headers::new().with("event-time", "42");
/// let record = ConsumerRecord {
///     topic: "in",
///     partition: 0,
///     offset: 7,
///     timestamp: 1_000,
///     key: &(),
///     value: &"v",
///     headers: &headers,
/// };
/// assert_eq!(FromHeader.extract(&record, -1)?, 42);
/// # Ok::<(), BoxError>(())
/// ```
pub trait TimestampExtractor<K: ?Sized, V: ?Sized>: Send + Sync + 'static {
    /// The record's timestamp in ms.
    fn extract(
        &self,
        record: &ConsumerRecord<'_, K, V>,
        partition_time: i64,
    ) -> Result<i64, BoxError>;

    /// Whether a record's valid (non-negative) timestamp is always the
    /// answer: the source then skips the call for such records (the
    /// built-ins that only judge invalid timestamps say yes).
    fn keeps_valid_record_timestamps(&self) -> bool {
        false
    }
}

impl<K: ?Sized, V: ?Sized, E: TimestampExtractor<K, V> + ?Sized> TimestampExtractor<K, V>
    for Arc<E>
{
    fn extract(
        &self,
        record: &ConsumerRecord<'_, K, V>,
        partition_time: i64,
    ) -> Result<i64, BoxError> {
        (**self).extract(record, partition_time)
    }

    fn keeps_valid_record_timestamps(&self) -> bool {
        (**self).keeps_valid_record_timestamps()
    }
}

/// Why a built-in extractor refused a record's timestamp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidTimestamp {
    /// [`FailOnInvalidTimestamp`] met a negative timestamp.
    #[error(
        "invalid (negative) timestamp {0}: the record was written without one, or with a bad one; \
         use another timestamp extractor (LogAndSkipOnInvalidTimestamp, \
         UsePartitionTimeOnInvalidTimestamp or your own) to process such records"
    )]
    Negative(i64),
    /// [`UsePartitionTimeOnInvalidTimestamp`] met a negative timestamp
    /// before its partition had a time.
    #[error(
        "invalid (negative) timestamp {0}, and no partition time yet to use instead \
         (no earlier record of the partition had a valid one)"
    )]
    NoPartitionTime(i64),
}

/// The record's own timestamp; a negative one stops the task with
/// [`InvalidTimestamp::Negative`]. The default, as in Kafka Streams.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FailOnInvalidTimestamp;

impl<K: ?Sized, V: ?Sized> TimestampExtractor<K, V> for FailOnInvalidTimestamp {
    fn keeps_valid_record_timestamps(&self) -> bool {
        true
    }

    fn extract(&self, record: &ConsumerRecord<'_, K, V>, _: i64) -> Result<i64, BoxError> {
        if record.timestamp < 0 {
            return Err(InvalidTimestamp::Negative(record.timestamp).into());
        }
        Ok(record.timestamp)
    }
}

/// The record's own timestamp; a record with a negative one is dropped
/// (logged with its topic, partition and offset, and counted in the
/// task's dropped records).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogAndSkipOnInvalidTimestamp;

impl<K: ?Sized, V: ?Sized> TimestampExtractor<K, V> for LogAndSkipOnInvalidTimestamp {
    fn keeps_valid_record_timestamps(&self) -> bool {
        true
    }

    fn extract(&self, record: &ConsumerRecord<'_, K, V>, _: i64) -> Result<i64, BoxError> {
        // Negative: the source drops it, with a warning naming the record.
        Ok(record.timestamp)
    }
}

/// The record's own timestamp; a negative one is replaced by the
/// partition's time so far, and stops the task with
/// [`InvalidTimestamp::NoPartitionTime`] when the partition has none yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsePartitionTimeOnInvalidTimestamp;

impl<K: ?Sized, V: ?Sized> TimestampExtractor<K, V> for UsePartitionTimeOnInvalidTimestamp {
    fn keeps_valid_record_timestamps(&self) -> bool {
        true
    }

    fn extract(
        &self,
        record: &ConsumerRecord<'_, K, V>,
        partition_time: i64,
    ) -> Result<i64, BoxError> {
        if record.timestamp >= 0 {
            Ok(record.timestamp)
        } else if partition_time >= 0 {
            Ok(partition_time)
        } else {
            Err(InvalidTimestamp::NoPartitionTime(record.timestamp).into())
        }
    }
}

/// The wall-clock time when the record is processed (processing time
/// instead of event time), whatever the record's own timestamp.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WallclockTimestampExtractor;

impl<K: ?Sized, V: ?Sized> TimestampExtractor<K, V> for WallclockTimestampExtractor {
    fn extract(&self, _: &ConsumerRecord<'_, K, V>, _: i64) -> Result<i64, BoxError> {
        Ok(SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
    }
}

/// A function of the record and its partition's time, as an extractor.
/// Made by [`extractor_fn`].
pub struct ExtractorFn<F, K: ?Sized, V: ?Sized> {
    f: F,
    _types: PhantomData<fn(&K, &V)>,
}

/// An extractor from `f`, given the record and its partition's time so
/// far: the way to pass a closure to
/// [`Consumed::with_timestamp_extractor`](crate::dsl::Consumed::with_timestamp_extractor).
///
/// ```
/// use streams_core::dsl::Consumed;
/// use streams_core::serde::{I64Serde, StringSerde};
/// use streams_core::testing::TopologyTestDriver;
/// use streams_core::timestamps::extractor_fn;
/// use streams_core::{StreamsBuilder, StreamsConfig};
///
/// // Each value is the time of its event, in ms.
/// let builder = StreamsBuilder::new();
/// let consumed = Consumed::with(StringSerde, I64Serde)
///     .with_timestamp_extractor(extractor_fn(|event, _partition_time| *event.value));
/// builder.stream_with("events", consumed).to("events-by-time");
/// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
/// let mut input = driver.create_input_topic("events", StringSerde, I64Serde);
/// let output = driver.create_output_topic("events-by-time", StringSerde, I64Serde);
/// input.pipe_input_at("login".into(), 1_000, 5_000);
/// assert_eq!(output.read_record().timestamp, 1_000);
/// # Ok::<(), streams_core::StreamsError>(())
/// ```
pub fn extractor_fn<K, V, F>(f: F) -> ExtractorFn<F, K, V>
where
    K: ?Sized,
    V: ?Sized,
    F: Fn(&ConsumerRecord<'_, K, V>, i64) -> i64 + Send + Sync + 'static,
{
    ExtractorFn {
        f,
        _types: PhantomData,
    }
}

impl<K, V, F> TimestampExtractor<K, V> for ExtractorFn<F, K, V>
where
    K: ?Sized + 'static,
    V: ?Sized + 'static,
    F: Fn(&ConsumerRecord<'_, K, V>, i64) -> i64 + Send + Sync + 'static,
{
    fn extract(
        &self,
        record: &ConsumerRecord<'_, K, V>,
        partition_time: i64,
    ) -> Result<i64, BoxError> {
        Ok((self.f)(record, partition_time))
    }
}

/// The extractor `name` stands for in `default.timestamp.extractor`: a
/// built-in's name, alone or as Kafka Streams' class
/// (`org.apache.kafka.streams.processor.<name>`).
pub fn built_in(name: &str) -> Option<AnyTimestampExtractor> {
    let name = name
        .trim()
        .strip_prefix("org.apache.kafka.streams.processor.")
        .unwrap_or(name.trim());
    Some(match name {
        "FailOnInvalidTimestamp" => Arc::new(FailOnInvalidTimestamp),
        "LogAndSkipOnInvalidTimestamp" => Arc::new(LogAndSkipOnInvalidTimestamp),
        "UsePartitionTimeOnInvalidTimestamp" => Arc::new(UsePartitionTimeOnInvalidTimestamp),
        "WallclockTimestampExtractor" => Arc::new(WallclockTimestampExtractor),
        _ => return None,
    })
}

/// A stream's extractor serving its table: a tombstone (a `None` value)
/// has no value to give it, so it keeps the timestamp it was written with.
pub(crate) struct TableTimestamps<K, V>(pub(crate) Arc<dyn TimestampExtractor<K, V>>);

impl<K: 'static, V: 'static> TimestampExtractor<K, Option<V>> for TableTimestamps<K, V> {
    fn extract(
        &self,
        record: &ConsumerRecord<'_, K, Option<V>>,
        partition_time: i64,
    ) -> Result<i64, BoxError> {
        match record.value {
            Some(value) => self.0.extract(
                &ConsumerRecord {
                    topic: record.topic,
                    partition: record.partition,
                    offset: record.offset,
                    timestamp: record.timestamp,
                    key: record.key,
                    value,
                    headers: record.headers,
                },
                partition_time,
            ),
            None => Ok(record.timestamp),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(timestamp: i64) -> (i64, Headers) {
        (timestamp, Headers::new())
    }

    fn extract(e: &dyn TimestampExtractor<(), str>, timestamp: i64, partition: i64) -> String {
        let (timestamp, headers) = at(timestamp);
        let record = ConsumerRecord {
            topic: "t",
            partition: 0,
            offset: 0,
            timestamp,
            key: &(),
            value: "v",
            headers: &headers,
        };
        match e.extract(&record, partition) {
            Ok(t) => t.to_string(),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn built_ins_treat_negative_timestamps_as_kafka_streams_does() {
        assert_eq!(extract(&FailOnInvalidTimestamp, 5, -1), "5");
        assert!(
            extract(&FailOnInvalidTimestamp, -1, 9).starts_with("invalid (negative) timestamp -1")
        );
        assert_eq!(extract(&LogAndSkipOnInvalidTimestamp, -3, 9), "-3");
        assert_eq!(extract(&UsePartitionTimeOnInvalidTimestamp, 5, 9), "5");
        assert_eq!(extract(&UsePartitionTimeOnInvalidTimestamp, -3, 9), "9");
        assert!(
            extract(&UsePartitionTimeOnInvalidTimestamp, -3, -1).contains("no partition time yet")
        );
    }

    #[test]
    fn built_ins_are_found_by_name_or_by_kafka_class() {
        for name in [
            "FailOnInvalidTimestamp",
            "LogAndSkipOnInvalidTimestamp",
            "UsePartitionTimeOnInvalidTimestamp",
            "WallclockTimestampExtractor",
            "org.apache.kafka.streams.processor.LogAndSkipOnInvalidTimestamp",
        ] {
            assert!(built_in(name).is_some(), "{name}");
        }
        assert!(built_in("NoSuchExtractor").is_none());
        let skip = built_in(" LogAndSkipOnInvalidTimestamp ").unwrap();
        let headers = Headers::new();
        let record: AnyConsumerRecord<'_> = ConsumerRecord {
            topic: "t",
            partition: 0,
            offset: 0,
            timestamp: -2,
            key: &(),
            value: &1u8,
            headers: &headers,
        };
        assert_eq!(skip.extract(&record, 0).unwrap(), -2);
    }
}
