//! The nodes a topology is made of, as the task engine instantiates them:
//! a source deserializes a topic's records, a sink serializes and sends
//! them. Processors are the user's, behind the Processor API.

use std::any::Any;
use std::sync::Arc;

use super::{StreamPartitioner, TopicName, TopicNameExtractor};
use crate::error::{Result, StreamsError};
use crate::processor::{ErasedProcessor, ProcessorContext, TaskContext, take_record};
use crate::record::{ProducerRecord, RawView, Record};
use crate::serde::{SerdeError, SerdeRef};
use crate::timestamps::{AnyTimestampExtractor, ConsumerRecord, TimestampExtractor};

/// Why a source could not hand a record on.
pub(crate) enum SourceError {
    Deserialization(SerdeError),
    Downstream(StreamsError),
}

/// A source node with its types erased.
pub(crate) trait ErasedSource: Send {
    fn process_raw(
        &mut self,
        raw: &mut RawView<'_>,
        task: &mut dyn TaskContext,
        node: usize,
    ) -> std::result::Result<(), SourceError>;
}

/// Where a source's timestamps come from: its own extractor, or the
/// application's default, which sees keys and values as `dyn Any`.
pub(crate) enum SourceTimestamps<K, V> {
    Own(Arc<dyn TimestampExtractor<K, V>>),
    Default(AnyTimestampExtractor),
}

pub(crate) struct SourceNode<K, V> {
    pub(crate) keys: SerdeRef<K>,
    pub(crate) values: SerdeRef<V>,
    pub(crate) timestamps: SourceTimestamps<K, V>,
    /// Partition time per topic read (a task reads one partition of
    /// each): the largest timestamp extracted so far, or -1. Sources
    /// mostly read one topic, so a short list beats a map.
    pub(crate) partition_times: Vec<(String, i64)>,
}

impl<K, V> SourceNode<K, V> {
    pub(crate) fn new(
        keys: SerdeRef<K>,
        values: SerdeRef<V>,
        own: Option<Arc<dyn TimestampExtractor<K, V>>>,
        default: &AnyTimestampExtractor,
    ) -> Self {
        SourceNode {
            keys,
            values,
            timestamps: match own {
                Some(extractor) => SourceTimestamps::Own(extractor),
                None => SourceTimestamps::Default(default.clone()),
            },
            partition_times: Vec::new(),
        }
    }

    /// Where `topic`'s partition time is kept.
    fn partition_index(&mut self, topic: &str) -> usize {
        match self.partition_times.iter().position(|(t, _)| t == topic) {
            Some(index) => index,
            None => {
                self.partition_times
                    .push((topic.to_owned(), crate::engine::UNKNOWN_TIME));
                self.partition_times.len() - 1
            }
        }
    }
}

impl<K: Clone + Send + 'static, V: Clone + Send + 'static> ErasedSource for SourceNode<K, V> {
    fn process_raw(
        &mut self,
        raw: &mut RawView<'_>,
        task: &mut dyn TaskContext,
        node: usize,
    ) -> std::result::Result<(), SourceError> {
        let key = self
            .keys
            .deserialize_nullable(raw.key)
            .map_err(SourceError::Deserialization)?;
        let value = self
            .values
            .deserialize_nullable(raw.value)
            .map_err(SourceError::Deserialization)?;
        // Past the last point where the handler may need the raw record.
        let mut record = Record {
            key,
            value,
            timestamp: raw.timestamp,
            headers: std::mem::take(&mut raw.headers),
        };
        let partition = self.partition_index(raw.topic);
        let partition_time = self.partition_times[partition].1;
        // The usual case, a valid timestamp kept as it is, without a call
        // through two trait objects per record.
        let keeps = match &self.timestamps {
            SourceTimestamps::Own(extractor) => extractor.keeps_valid_record_timestamps(),
            SourceTimestamps::Default(extractor) => extractor.keeps_valid_record_timestamps(),
        };
        let extracted = match &self.timestamps {
            _ if keeps && raw.timestamp >= 0 => Ok(raw.timestamp),
            SourceTimestamps::Own(extractor) => extractor.extract(
                &ConsumerRecord {
                    topic: raw.topic,
                    partition: raw.partition,
                    offset: raw.offset,
                    timestamp: raw.timestamp,
                    key: &record.key,
                    value: &record.value,
                    headers: &record.headers,
                },
                partition_time,
            ),
            SourceTimestamps::Default(extractor) => extractor.extract(
                &ConsumerRecord {
                    topic: raw.topic,
                    partition: raw.partition,
                    offset: raw.offset,
                    timestamp: raw.timestamp,
                    key: &record.key as &dyn Any,
                    value: &record.value as &dyn Any,
                    headers: &record.headers,
                },
                partition_time,
            ),
        };
        // An extractor's error is not user code failing on a record for
        // the processing handler to judge: it stops the task, as in Kafka
        // Streams.
        record.timestamp = extracted.map_err(|source| {
            SourceError::Downstream(StreamsError::TimestampExtraction {
                topic: raw.topic.to_owned(),
                partition: raw.partition,
                offset: raw.offset,
                source,
            })
        })?;
        if record.timestamp < 0 {
            log::warn!(
                "dropping record {}[{}]@{} with invalid timestamp {} (its timestamp extractor \
                 skips such records)",
                raw.topic,
                raw.partition,
                raw.offset,
                record.timestamp
            );
            task.count_invalid_timestamp();
            return Ok(());
        }
        let partition_time = &mut self.partition_times[partition].1;
        *partition_time = (*partition_time).max(record.timestamp);
        task.observe_timestamp(record.timestamp);
        ProcessorContext::<K, V>::new(task, node)
            .forward(record)
            .map_err(SourceError::Downstream)
    }
}

/// Where a sink writes: one topic, or one chosen per record.
pub enum SinkTopic<K, V> {
    /// Always this topic.
    Fixed(TopicName),
    /// A topic chosen per record from its key and value.
    Dynamic(TopicNameExtractor<K, V>),
}

impl<K, V> Clone for SinkTopic<K, V> {
    fn clone(&self) -> Self {
        match self {
            SinkTopic::Fixed(t) => SinkTopic::Fixed(t.clone()),
            SinkTopic::Dynamic(f) => SinkTopic::Dynamic(f.clone()),
        }
    }
}

pub(crate) struct SinkNode<K, V> {
    topic: SinkTopic<K, V>,
    resolved: Option<String>,
    keys: SerdeRef<K>,
    values: SerdeRef<V>,
    partitioner: Option<StreamPartitioner<K, V>>,
    key_buf: Vec<u8>,
    value_buf: Vec<u8>,
}

impl<K, V> SinkNode<K, V> {
    pub(crate) fn new(
        topic: SinkTopic<K, V>,
        keys: SerdeRef<K>,
        values: SerdeRef<V>,
        partitioner: Option<StreamPartitioner<K, V>>,
    ) -> Self {
        SinkNode {
            topic,
            resolved: None,
            keys,
            values,
            partitioner,
            key_buf: Vec::new(),
            value_buf: Vec::new(),
        }
    }
}

impl<K: 'static, V: 'static> ErasedProcessor for SinkNode<K, V> {
    fn init(&mut self, task: &mut dyn TaskContext, _node: usize) -> Result<()> {
        if let SinkTopic::Fixed(topic) = &self.topic {
            self.resolved = Some(topic.resolve(task.application_id()));
        }
        Ok(())
    }

    fn process(
        &mut self,
        record: &mut dyn Any,
        task: &mut dyn TaskContext,
        node: usize,
    ) -> Result<()> {
        let record = take_record::<K, V>(record, task, node)?;
        let dynamic;
        let topic = match (&self.topic, &self.resolved) {
            (_, Some(resolved)) => resolved.as_str(),
            (SinkTopic::Dynamic(extractor), _) => {
                dynamic = extractor(&record.key, &record.value);
                dynamic.as_str()
            }
            (SinkTopic::Fixed(topic), None) => {
                dynamic = topic.resolve(task.application_id());
                dynamic.as_str()
            }
        };
        self.key_buf.clear();
        self.value_buf.clear();
        let serialization = |source| StreamsError::Serialization {
            target: topic.to_owned(),
            source,
        };
        let has_key = self
            .keys
            .serialize_nullable_into(&record.key, &mut self.key_buf)
            .map_err(serialization)?;
        let has_value = self
            .values
            .serialize_nullable_into(&record.value, &mut self.value_buf)
            .map_err(serialization)?;
        let choose;
        let partitioner: Option<&dyn Fn(i32) -> Option<i32>> = match &self.partitioner {
            Some(partitioner) => {
                choose = |count: i32| partitioner(topic, &record.key, &record.value, count);
                Some(&choose)
            }
            None => None,
        };
        task.send(ProducerRecord {
            topic,
            partition: None,
            key: has_key.then_some(self.key_buf.as_slice()),
            value: has_value.then_some(self.value_buf.as_slice()),
            timestamp: record.timestamp,
            headers: &record.headers,
            partitioner,
        })
    }

    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}
