//! The task: one sub-topology's processors and stores for one partition.
//!
//! [`TaskCore`] is synchronous and knows nothing of Kafka. The test driver
//! and the Kafka runtime both drive it: hand it a [`RawRecord`], it
//! deserializes, runs the processors depth first, and sends output through
//! a [`RecordCollector`].

use std::any::Any;
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use rustc_hash::FxHashMap;

use crate::error::{BoxError, Result, StreamsError};
use crate::handlers::{
    DeserializationExceptionHandler, ErrorHandlerContext, HandlerResponse,
    ProcessingExceptionHandler, dead_letter_headers, panic_message,
};
use crate::processor::{Cancellable, ErasedProcessor, ErasedPunctuator, PunctuationType};
use crate::record::{Headers, RawRecord, RawView, Record, RecordMetadata};
use crate::serde::{SerdeError, SerdeRef};
use crate::state::{KeyValueStoreHandle, StoreContext, StoreHandle, lock};
use crate::topology::{
    NodeKind, StreamPartitioner, TimestampExtractor, TopicName, TopicNameExtractor, Topology,
};
use crate::{ChangelogSink, TaskId};

/// "No stream time yet", as Kafka Streams' `UNKNOWN`.
pub(crate) const UNKNOWN_TIME: i64 = -1;

/// A record on its way to a topic.
pub struct ProducerRecord<'a> {
    /// Target topic.
    pub topic: &'a str,
    /// Target partition; `None` lets the collector choose.
    pub partition: Option<i32>,
    /// Key bytes or null.
    pub key: Option<&'a [u8]>,
    /// Value bytes or null.
    pub value: Option<&'a [u8]>,
    /// Timestamp in ms.
    pub timestamp: i64,
    /// Headers.
    pub headers: &'a Headers,
    /// A sink's own partitioner, given the topic's partition count.
    pub partitioner: Option<&'a dyn Fn(i32) -> Option<i32>>,
}

/// Where tasks send what they produce: sink output, changelog records and
/// dead letters. The runtime's collector writes to Kafka; the test
/// driver's keeps them in memory.
pub trait RecordCollector: Send + Sync {
    /// Sends one record. Errors are for records that cannot be accepted at
    /// all; delivery failures surface when the collector is flushed.
    fn send(&self, record: ProducerRecord<'_>) -> Result<()>;
}

/// The changelog sink of one store in one task: writes to the changelog
/// topic's partition of the task, with the current record's timestamp.
struct CollectorChangelog {
    collector: Arc<dyn RecordCollector>,
    topic: String,
    partition: i32,
    timestamp: Arc<AtomicI64>,
}

impl ChangelogSink for CollectorChangelog {
    fn log_change(
        &mut self,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> std::result::Result<(), BoxError> {
        self.collector.send(ProducerRecord {
            topic: &self.topic,
            partition: Some(self.partition),
            key: Some(key),
            value,
            timestamp: self.timestamp.load(Ordering::Relaxed).max(0),
            headers: &Headers::new(),
            partitioner: None,
        })?;
        Ok(())
    }
}

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
        task: &mut TaskCore,
        node: usize,
    ) -> std::result::Result<(), SourceError>;
}

pub(crate) struct SourceNode<K, V> {
    pub(crate) keys: SerdeRef<K>,
    pub(crate) values: SerdeRef<V>,
    pub(crate) extractor: Option<TimestampExtractor<K, V>>,
}

impl<K: Clone + Send + 'static, V: Clone + Send + 'static> ErasedSource for SourceNode<K, V> {
    fn process_raw(
        &mut self,
        raw: &mut RawView<'_>,
        task: &mut TaskCore,
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
        if let Some(extractor) = &self.extractor {
            record.timestamp = extractor(&record, task.stream_time);
        }
        if record.timestamp < 0 {
            log::warn!(
                "dropping record {}[{}]@{} with invalid timestamp {}",
                raw.topic,
                raw.partition,
                raw.offset,
                record.timestamp
            );
            task.drops.invalid_timestamp += 1;
            return Ok(());
        }
        task.observe_timestamp(record.timestamp);
        task.forward(node, record).map_err(SourceError::Downstream)
    }
}

/// Where a sink writes.
pub(crate) enum SinkTopic<K, V> {
    Fixed(TopicName),
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
    fn init(&mut self, task: &mut TaskCore, _node: usize) -> Result<()> {
        if let SinkTopic::Fixed(topic) = &self.topic {
            self.resolved = Some(topic.resolve(task.application_id()));
        }
        Ok(())
    }

    fn process(&mut self, record: &mut dyn Any, task: &mut TaskCore, node: usize) -> Result<()> {
        let Some(record) = record
            .downcast_mut::<Option<Record<K, V>>>()
            .and_then(Option::take)
        else {
            return Err(StreamsError::Topology(format!(
                "sink `{}` received a record of the wrong type",
                task.node_name(node)
            )));
        };
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
        task.collector.send(ProducerRecord {
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

struct TaskNode {
    name: Arc<str>,
    processor: Option<Box<dyn ErasedProcessor>>,
    source: Option<Box<dyn ErasedSource>>,
    children: Vec<usize>,
    stores: Vec<String>,
}

struct Schedule {
    node: usize,
    kind: PunctuationType,
    interval: i64,
    next: i64,
    callback: Option<Box<dyn ErasedPunctuator>>,
    cancelled: Arc<AtomicBool>,
}

/// A store of a task, as the task and its queries see it.
#[derive(Clone)]
pub(crate) struct TaskStore {
    pub(crate) handle: StoreHandle,
    pub(crate) serdes: Option<Arc<dyn Any + Send + Sync>>,
    /// The changelog topic, when the store is logged.
    pub(crate) changelog: Option<String>,
    /// Whether the store keeps its data on disk.
    pub(crate) persistent: bool,
}

/// Global stores, shared by every task of an instance.
/// A task's stores by name, looked up whenever a processor asks for one.
pub(crate) type StoreMap = FxHashMap<String, TaskStore>;

pub(crate) type GlobalStores = Arc<StoreMap>;

/// A processing error with the record it happened on.
#[derive(Debug)]
struct AtRecord {
    topic: String,
    partition: i32,
    offset: i64,
    source: BoxError,
}

impl std::fmt::Display for AtRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "record {}[{}]@{}: {}",
            self.topic, self.partition, self.offset, self.source
        )
    }
}

impl std::error::Error for AtRecord {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

/// One sub-topology for one partition: its processors, its stores, stream
/// time and punctuation schedules.
pub(crate) struct TaskCore {
    application_id: Arc<str>,
    id: TaskId,
    nodes: Vec<TaskNode>,
    /// Source topic -> node. Looked up for every record: a fast hash.
    sources: FxHashMap<String, usize>,
    stores: StoreMap,
    globals: GlobalStores,
    pub(crate) collector: Arc<dyn RecordCollector>,
    deserialization_handler: Arc<dyn DeserializationExceptionHandler>,
    processing_handler: Arc<dyn ProcessingExceptionHandler>,
    /// The current record's metadata, valid while `in_record`; the topic's
    /// string is kept between records rather than allocated for each.
    metadata: RecordMetadata,
    in_record: bool,
    current_timestamp: Arc<AtomicI64>,
    stream_time: i64,
    wall_clock: i64,
    schedules: Vec<Schedule>,
    commit_requested: bool,
    pub(crate) drops: DropCounts,
    processed: u64,
}

/// Why a task's records were dropped, and which were sent to a
/// dead-letter topic, per handler.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct DropCounts {
    /// Unreadable: the deserialization handler skipped them.
    pub(crate) unreadable: u64,
    /// Failed in user code: the processing handler skipped them.
    pub(crate) failed: u64,
    /// With a negative timestamp.
    pub(crate) invalid_timestamp: u64,
    /// Unreadable ones sent to a dead-letter topic (not counted above).
    pub(crate) dead_lettered_unreadable: u64,
    /// Failed ones sent to a dead-letter topic (not counted above).
    pub(crate) dead_lettered_failed: u64,
}

impl DropCounts {
    /// Every dropped record, dead-lettered ones included.
    pub(crate) fn total(&self) -> u64 {
        self.unreadable + self.failed + self.invalid_timestamp + self.dead_lettered()
    }

    /// Records sent to a dead-letter topic.
    pub(crate) fn dead_lettered(&self) -> u64 {
        self.dead_lettered_unreadable + self.dead_lettered_failed
    }
}

/// What a task needs from its runner to start.
pub(crate) struct TaskSetup<'a> {
    pub(crate) application_id: &'a str,
    pub(crate) id: TaskId,
    pub(crate) task_dir: &'a Path,
    pub(crate) collector: Arc<dyn RecordCollector>,
    pub(crate) globals: GlobalStores,
    pub(crate) deserialization_handler: Arc<dyn DeserializationExceptionHandler>,
    pub(crate) processing_handler: Arc<dyn ProcessingExceptionHandler>,
    pub(crate) wall_clock: i64,
}

/// The changelog topic of a store.
pub(crate) fn changelog_topic(application_id: &str, store: &str) -> String {
    format!("{application_id}-{store}-changelog")
}

impl TaskCore {
    /// Instantiates the nodes of `nodes` (all of one sub-topology, or one
    /// global store's path) and the stores they use.
    pub(crate) fn new(
        topology: &Topology,
        nodes: &[usize],
        setup: TaskSetup<'_>,
    ) -> Result<TaskCore> {
        let current_timestamp = Arc::new(AtomicI64::new(0));
        let mut local = HashMap::with_capacity(nodes.len());
        for (i, &global) in nodes.iter().enumerate() {
            local.insert(global, i);
        }
        let mut task_nodes = Vec::with_capacity(nodes.len());
        let mut sources = FxHashMap::default();
        let mut store_names: Vec<String> = Vec::new();
        for &index in nodes {
            let def = &topology.nodes[index];
            let children = def
                .children
                .iter()
                .filter_map(|c| local.get(c).copied())
                .collect();
            let (processor, source) = match &def.kind {
                NodeKind::Source { topics, factory } => {
                    for topic in topics {
                        sources.insert(topic.resolve(setup.application_id), local[&index]);
                    }
                    (None, Some(factory(&def.name)))
                }
                NodeKind::Processor { factory } | NodeKind::Sink { factory, .. } => {
                    (Some(factory(&def.name)), None)
                }
            };
            for store in &def.stores {
                if !store_names.contains(store) {
                    store_names.push(store.clone());
                }
            }
            task_nodes.push(TaskNode {
                name: def.name.as_str().into(),
                processor,
                source,
                children,
                stores: def.stores.clone(),
            });
        }
        let context = StoreContext {
            application_id: setup.application_id,
            task: setup.id,
            task_dir: setup.task_dir,
        };
        let mut stores = StoreMap::default();
        for name in store_names {
            let def = topology.store_def(&name).expect("connected stores exist");
            let builder = &def.builder;
            let changelog = builder
                .logging_enabled()
                .then(|| changelog_topic(setup.application_id, &name));
            let sink: Option<Box<dyn ChangelogSink>> = changelog.as_ref().map(|topic| {
                Box::new(CollectorChangelog {
                    collector: setup.collector.clone(),
                    topic: topic.clone(),
                    partition: setup.id.partition,
                    timestamp: current_timestamp.clone(),
                }) as Box<dyn ChangelogSink>
            });
            let instance = builder.build(&context, sink)?;
            let handle = StoreHandle {
                name: name.as_str().into(),
                cell: Arc::new(std::sync::Mutex::new(instance)),
            };
            stores.insert(
                name,
                TaskStore {
                    handle,
                    serdes: builder.serdes(),
                    changelog,
                    persistent: builder.persistent(),
                },
            );
        }
        Ok(TaskCore {
            application_id: setup.application_id.into(),
            id: setup.id,
            nodes: task_nodes,
            sources,
            stores,
            globals: setup.globals,
            collector: setup.collector,
            deserialization_handler: setup.deserialization_handler,
            processing_handler: setup.processing_handler,
            metadata: RecordMetadata {
                topic: String::new(),
                partition: -1,
                offset: -1,
            },
            in_record: false,
            current_timestamp,
            stream_time: UNKNOWN_TIME,
            wall_clock: setup.wall_clock,
            schedules: Vec::new(),
            commit_requested: false,
            drops: DropCounts::default(),
            processed: 0,
        })
    }

    /// Calls every processor's `init`, parents before children.
    pub(crate) fn init(&mut self) -> Result<()> {
        for index in 0..self.nodes.len() {
            if let Some(mut processor) = self.nodes[index].processor.take() {
                let result = processor.init(self, index);
                self.nodes[index].processor = Some(processor);
                result?;
            }
        }
        Ok(())
    }

    pub(crate) fn application_id(&self) -> &str {
        &self.application_id
    }

    pub(crate) fn task_id(&self) -> TaskId {
        self.id
    }

    pub(crate) fn node_name(&self, node: usize) -> &str {
        &self.nodes[node].name
    }

    pub(crate) fn record_metadata(&self) -> Option<&RecordMetadata> {
        self.in_record.then_some(&self.metadata)
    }

    pub(crate) fn stream_time(&self) -> i64 {
        self.stream_time
    }

    pub(crate) fn wall_clock(&self) -> i64 {
        self.wall_clock
    }

    pub(crate) fn request_commit(&mut self) {
        self.commit_requested = true;
    }

    /// Whether a processor asked for a commit since the last call.
    pub(crate) fn take_commit_request(&mut self) -> bool {
        std::mem::take(&mut self.commit_requested)
    }

    /// Applies a batch of changelog records to `store` (restoration).
    pub(crate) fn restore_batch(&self, store: &str, records: &[crate::Write<'_>]) -> Result<()> {
        let store = self
            .stores
            .get(store)
            .ok_or_else(|| StreamsError::StoreAccess {
                name: store.to_owned(),
                message: "not a store of this task".into(),
            })?;
        lock(&store.handle.cell).restore_batch(records)?;
        Ok(())
    }

    /// Records processed so far.
    pub(crate) fn processed(&self) -> u64 {
        self.processed
    }

    /// The topics this task reads.
    pub(crate) fn source_topics(&self) -> impl Iterator<Item = &str> {
        self.sources.keys().map(String::as_str)
    }

    pub(crate) fn stores(&self) -> &StoreMap {
        &self.stores
    }

    fn observe_timestamp(&mut self, timestamp: i64) {
        self.current_timestamp.store(timestamp, Ordering::Relaxed);
        if timestamp > self.stream_time {
            self.stream_time = timestamp;
        }
    }

    fn find_store(&self, node: usize, name: &str) -> Result<&TaskStore> {
        if let Some(store) = self.stores.get(name) {
            if self.nodes[node].stores.iter().any(|s| s == name) {
                return Ok(store);
            }
            return Err(StreamsError::StoreAccess {
                name: name.to_owned(),
                message: format!(
                    "processor `{}` is not connected to it",
                    self.nodes[node].name
                ),
            });
        }
        self.globals
            .get(name)
            .ok_or_else(|| StreamsError::StoreAccess {
                name: name.to_owned(),
                message: format!("no such store for processor `{}`", self.nodes[node].name),
            })
    }

    pub(crate) fn store_handle(&self, node: usize, name: &str) -> Result<StoreHandle> {
        Ok(self.find_store(node, name)?.handle.clone())
    }

    pub(crate) fn key_value_store<K: 'static, V: 'static>(
        &self,
        node: usize,
        name: &str,
    ) -> Result<KeyValueStoreHandle<K, V>> {
        let store = self.find_store(node, name)?;
        let Some(serdes) = &store.serdes else {
            return Err(StreamsError::StoreAccess {
                name: name.to_owned(),
                message: "is not a key-value store".into(),
            });
        };
        KeyValueStoreHandle::new(store.handle.clone(), &**serdes)
    }

    /// Hands `record` to every child of `from`, cloning for all but the last.
    pub(crate) fn forward<K: Clone + Send + 'static, V: Clone + Send + 'static>(
        &mut self,
        from: usize,
        record: Record<K, V>,
    ) -> Result<()> {
        let count = self.nodes[from].children.len();
        if count == 0 {
            return Ok(());
        }
        for i in 0..count - 1 {
            let child = self.nodes[from].children[i];
            self.process_at(child, &mut Some(record.clone()))?;
        }
        let last = self.nodes[from].children[count - 1];
        self.process_at(last, &mut Some(record))
    }

    pub(crate) fn forward_to<K: Clone + Send + 'static, V: Clone + Send + 'static>(
        &mut self,
        from: usize,
        child: &str,
        record: Record<K, V>,
    ) -> Result<()> {
        let Some(&index) = self.nodes[from]
            .children
            .iter()
            .find(|&&c| &*self.nodes[c].name == child)
        else {
            return Err(StreamsError::Topology(format!(
                "`{child}` is not a child of `{}`",
                self.nodes[from].name
            )));
        };
        self.process_at(index, &mut Some(record))
    }

    fn process_at(&mut self, node: usize, record: &mut dyn Any) -> Result<()> {
        let Some(mut processor) = self.nodes[node].processor.take() else {
            return Err(StreamsError::Topology(format!(
                "node `{}` is re-entered",
                self.nodes[node].name
            )));
        };
        // A panic in user code is caught where it happens, so that the
        // node gets its processor back and the panic becomes an error
        // naming the node, as an error returned by the processor would.
        let result = catch_unwind(AssertUnwindSafe(|| processor.process(record, self, node)))
            .unwrap_or_else(|panic| Err(self.panicked(node, &*panic)));
        self.nodes[node].processor = Some(processor);
        result
    }

    fn panicked(&self, node: usize, panic: &(dyn Any + Send)) -> StreamsError {
        StreamsError::processing(
            self.node_name(node),
            format!("panicked: {}", panic_message(panic)),
        )
    }

    /// Processes one record read from `raw.topic`, then fires due
    /// stream-time punctuations.
    pub(crate) fn process(&mut self, mut raw: RawView<'_>) -> Result<()> {
        let Some(&node) = self.sources.get(raw.topic) else {
            return Err(StreamsError::Topology(format!(
                "task {} does not read topic `{}`",
                self.id, raw.topic
            )));
        };
        if self.metadata.topic != raw.topic {
            self.metadata.topic.clear();
            self.metadata.topic.push_str(raw.topic);
        }
        self.metadata.partition = raw.partition;
        self.metadata.offset = raw.offset;
        self.in_record = true;
        let mut source = self.nodes[node]
            .source
            .take()
            .expect("source nodes keep their source");
        // Panics downstream are caught per node; this catches the source's
        // own (a deserializer's).
        let result = catch_unwind(AssertUnwindSafe(|| {
            source.process_raw(&mut raw, self, node)
        }))
        .unwrap_or_else(|panic| Err(SourceError::Downstream(self.panicked(node, &*panic))));
        self.nodes[node].source = Some(source);
        self.in_record = false;
        self.processed += 1;
        match result {
            Ok(()) => {}
            Err(SourceError::Downstream(error)) => {
                self.handle_processing_error(Some(&raw.to_record()), error)?
            }
            Err(SourceError::Deserialization(error)) => {
                self.handle_deserialization_error(&raw.to_record(), error)?
            }
        }
        self.punctuate(PunctuationType::StreamTime, self.stream_time)?;
        Ok(())
    }

    fn handle_deserialization_error(&mut self, raw: &RawRecord, error: SerdeError) -> Result<()> {
        match self.deserialization_handler.handle(raw, &error) {
            HandlerResponse::Continue => {
                self.drops.unreadable += 1;
                Ok(())
            }
            HandlerResponse::Fail => Err(StreamsError::Deserialization {
                topic: raw.topic.clone(),
                partition: raw.partition,
                offset: raw.offset,
                source: error,
            }),
            HandlerResponse::DeadLetter(topic) => {
                self.drops.dead_lettered_unreadable += 1;
                self.dead_letter(&topic, raw, &error.to_string(), None)
            }
        }
    }

    /// Offers a failure of user code (an error or a panic, while
    /// processing `record` or punctuating) to the processing-exception
    /// handler. Other errors, the runtime's own, pass through.
    fn handle_processing_error(
        &mut self,
        record: Option<&RawRecord>,
        error: StreamsError,
    ) -> Result<()> {
        let StreamsError::Processing { node, .. } = &error else {
            return Err(error);
        };
        let context = ErrorHandlerContext {
            node,
            task: self.id,
            record,
        };
        match (self.processing_handler.handle(&context, &error), record) {
            (HandlerResponse::Fail, None) => Err(error),
            // The error that stops the thread names the record too.
            (HandlerResponse::Fail, Some(record)) => Err(match error {
                StreamsError::Processing { node, source } => StreamsError::Processing {
                    node,
                    source: Box::new(AtRecord {
                        topic: record.topic.clone(),
                        partition: record.partition,
                        offset: record.offset,
                        source,
                    }),
                },
                other => other,
            }),
            (HandlerResponse::Continue, _) => {
                self.drops.failed += 1;
                Ok(())
            }
            (HandlerResponse::DeadLetter(topic), Some(record)) => {
                self.drops.dead_lettered_failed += 1;
                let node = node.clone();
                self.dead_letter(&topic, record, &error.to_string(), Some(&node))
            }
            // A punctuation has no record to send.
            (HandlerResponse::DeadLetter(_), None) => Ok(()),
        }
    }

    /// Sends `raw`, unchanged, to the dead-letter `topic`, with headers
    /// naming the error and where the record came from.
    fn dead_letter(
        &mut self,
        topic: &str,
        raw: &RawRecord,
        error: &str,
        node: Option<&str>,
    ) -> Result<()> {
        let headers = dead_letter_headers(raw, error, node);
        self.collector.send(ProducerRecord {
            topic,
            partition: None,
            key: raw.key.as_deref(),
            value: raw.value.as_deref(),
            timestamp: raw.timestamp,
            headers: &headers,
            partitioner: None,
        })
    }

    pub(crate) fn schedule(
        &mut self,
        node: usize,
        interval: i64,
        kind: PunctuationType,
        callback: Box<dyn ErasedPunctuator>,
    ) -> Cancellable {
        let (handle, cancelled) = Cancellable::new();
        // Stream time: as soon as there is data (aligned to 0), as Kafka
        // Streams does; wall-clock time: one interval from now.
        let next = match kind {
            PunctuationType::StreamTime => 0,
            PunctuationType::WallClockTime => self.wall_clock.saturating_add(interval),
        };
        self.schedules.push(Schedule {
            node,
            kind,
            interval,
            next,
            callback: Some(callback),
            cancelled,
        });
        handle
    }

    /// Moves the wall clock to `now` and fires due wall-clock punctuations.
    pub(crate) fn advance_wall_clock(&mut self, now: i64) -> Result<bool> {
        self.wall_clock = now;
        self.punctuate(PunctuationType::WallClockTime, now)
    }

    /// Fires each due punctuation of `kind` once, at time `now`. Missed
    /// intervals are skipped, not replayed.
    fn punctuate(&mut self, kind: PunctuationType, now: i64) -> Result<bool> {
        if now < 0 || self.schedules.is_empty() {
            return Ok(false);
        }
        let mut fired = false;
        let mut i = 0;
        while i < self.schedules.len() {
            if self.schedules[i].cancelled.load(Ordering::Relaxed) {
                self.schedules.remove(i);
                continue;
            }
            let schedule = &mut self.schedules[i];
            if schedule.kind != kind || now < schedule.next {
                i += 1;
                continue;
            }
            let node = schedule.node;
            let mut callback = schedule.callback.take().expect("punctuators are put back");
            let (start, interval) = (schedule.next, schedule.interval);
            schedule.next = start + ((now - start) / interval + 1) * interval;
            let result = catch_unwind(AssertUnwindSafe(|| callback.punctuate(now, self, node)));
            self.schedules[i].callback = Some(callback);
            let result = match result {
                Ok(result) => result.map_err(|e| crate::processor::node_error(self, node, e)),
                Err(panic) => Err(self.panicked(node, &*panic)),
            };
            if let Err(error) = result {
                self.handle_processing_error(None, error)?;
            }
            fired = true;
            i += 1;
        }
        Ok(fired)
    }

    /// Writes cached store data down and to the changelogs.
    pub(crate) fn flush(&mut self) -> Result<()> {
        for store in self.stores.values() {
            lock(&store.handle.cell).state_store().flush()?;
        }
        Ok(())
    }

    /// Forwards every store's cached writes (and so its changelog
    /// records) without making the stores durable: a commit that writes no
    /// checkpoint.
    pub(crate) fn flush_cache(&mut self) -> Result<()> {
        for store in self.stores.values() {
            lock(&store.handle.cell).state_store().flush_cache()?;
        }
        Ok(())
    }

    /// Closes processors, then flushes and closes stores. The first error
    /// is returned; everything is closed regardless.
    pub(crate) fn close(&mut self) -> Result<()> {
        let mut first = Ok(());
        for node in &mut self.nodes {
            if let Some(processor) = &mut node.processor
                && let Err(e) = processor.close()
            {
                first = first.and(Err(e));
            }
        }
        for store in self.stores.values() {
            if let Err(e) = lock(&store.handle.cell).state_store().close() {
                first = first.and(Err(e.into()));
            }
        }
        first
    }
}

/// Store access for value getters, built in a processor's context.
pub(crate) struct StoreLookup<'a> {
    pub(crate) task: &'a TaskCore,
    pub(crate) node: usize,
}

impl StoreLookup<'_> {
    pub(crate) fn key_value_store<K: 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<KeyValueStoreHandle<K, V>> {
        self.task.key_value_store(self.node, name)
    }
}
