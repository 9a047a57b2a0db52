//! The task engine: one sub-topology's processors and stores for one
//! partition, built from a [`Topology`].
//!
//! [`TaskCore`] is synchronous and knows nothing of Kafka. The
//! [`TopologyTestDriver`](crate::testing::TopologyTestDriver) and a runtime
//! (the `streams-kafka` crate) both drive it: hand it a [`RawView`], it
//! deserializes, runs the processors depth first, and sends output through
//! a [`RecordCollector`]. Applications do not call it; runtimes do, as
//! Kafka Streams' `processor.internals` serve its `KafkaStreams`.

use std::any::Any;
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use rustc_hash::FxHashMap;

use crate::error::{BoxError, Result, StreamsError, TopologyError};
use crate::handlers::{
    DeserializationExceptionHandler, ErrorHandlerContext, HandlerResponse,
    ProcessingExceptionHandler, dead_letter_headers, panic_message,
};
use crate::processor::{
    Cancellable, ErasedProcessor, ErasedPunctuator, PunctuationType, TaskContext,
};
use crate::record::{Headers, ProducerRecord, RawRecord, RawView, RecordCollector, RecordMetadata};
use crate::serde::SerdeError;
use crate::state::{StoreContext, StoreHandle, TaskStore, lock};
use crate::topology::{ErasedSource, NodeKind, SourceError, Topology};
use crate::{ChangelogSink, TaskId};

/// "No stream time yet", as Kafka Streams' `UNKNOWN`.
pub const UNKNOWN_TIME: i64 = -1;

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

/// A task's stores by name, looked up whenever a processor asks for one.
pub type StoreMap = FxHashMap<String, TaskStore>;

/// Global stores, shared by every task of an instance.
pub type GlobalStores = Arc<StoreMap>;

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
pub struct TaskCore {
    application_id: Arc<str>,
    id: TaskId,
    nodes: Vec<TaskNode>,
    /// Source topic -> node. Looked up for every record: a fast hash.
    sources: FxHashMap<String, usize>,
    stores: StoreMap,
    globals: GlobalStores,
    collector: Arc<dyn RecordCollector>,
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
    /// Records dropped so far, by reason.
    pub drops: DropCounts,
    processed: u64,
}

/// Why a task's records were dropped, and which were sent to a
/// dead-letter topic, per handler.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropCounts {
    /// Unreadable: the deserialization handler skipped them.
    pub unreadable: u64,
    /// Failed in user code: the processing handler skipped them.
    pub failed: u64,
    /// With a negative timestamp.
    pub invalid_timestamp: u64,
    /// Late: for a window already closed (stream time had passed its end
    /// plus its grace period).
    pub expired_window: u64,
    /// Unreadable ones sent to a dead-letter topic (not counted above).
    pub dead_lettered_unreadable: u64,
    /// Failed ones sent to a dead-letter topic (not counted above).
    pub dead_lettered_failed: u64,
}

impl DropCounts {
    /// Every dropped record, dead-lettered ones included.
    pub fn total(&self) -> u64 {
        self.unreadable
            + self.failed
            + self.invalid_timestamp
            + self.expired_window
            + self.dead_lettered()
    }

    /// Records sent to a dead-letter topic.
    pub fn dead_lettered(&self) -> u64 {
        self.dead_lettered_unreadable + self.dead_lettered_failed
    }
}

/// What a task needs from its runner to start.
pub struct TaskSetup<'a> {
    /// The application's id.
    pub application_id: &'a str,
    /// The task's id.
    pub id: TaskId,
    /// Where its persistent stores keep their files.
    pub task_dir: &'a Path,
    /// Where its sinks, changelogs and dead letters go.
    pub collector: Arc<dyn RecordCollector>,
    /// The instance's global stores.
    pub globals: GlobalStores,
    /// What to do with a record that cannot be read.
    pub deserialization_handler: Arc<dyn DeserializationExceptionHandler>,
    /// What to do when user code fails.
    pub processing_handler: Arc<dyn ProcessingExceptionHandler>,
    /// Timestamps for sources without an extractor of their own
    /// (`default.timestamp.extractor`).
    pub timestamp_extractor: crate::timestamps::AnyTimestampExtractor,
    /// The wall clock at start, in ms.
    pub wall_clock: i64,
}

/// The changelog topic of a store.
pub fn changelog_topic(application_id: &str, store: &str) -> String {
    format!("{application_id}-{store}-changelog")
}

impl TaskCore {
    /// Instantiates the nodes of `nodes` (all of one sub-topology, or one
    /// global store's path) and the stores they use.
    pub fn new(topology: &Topology, nodes: &[usize], setup: TaskSetup<'_>) -> Result<TaskCore> {
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
                    (None, Some(factory(&def.name, &setup.timestamp_extractor)))
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
    pub fn init(&mut self) -> Result<()> {
        for index in 0..self.nodes.len() {
            if let Some(mut processor) = self.nodes[index].processor.take() {
                let result = processor.init(self, index);
                self.nodes[index].processor = Some(processor);
                result?;
            }
        }
        Ok(())
    }

    /// The largest timestamp seen so far, or [`UNKNOWN_TIME`].
    pub fn stream_time(&self) -> i64 {
        self.stream_time
    }

    /// The task's id.
    pub fn task_id(&self) -> TaskId {
        self.id
    }

    /// Whether a processor asked for a commit since the last call.
    pub fn take_commit_request(&mut self) -> bool {
        std::mem::take(&mut self.commit_requested)
    }

    /// Applies a batch of changelog records to `store` (restoration).
    pub fn restore_batch(&self, store: &str, records: &[crate::Write<'_>]) -> Result<()> {
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
    pub fn processed(&self) -> u64 {
        self.processed
    }

    /// The topics this task reads.
    pub fn source_topics(&self) -> impl Iterator<Item = &str> {
        self.sources.keys().map(String::as_str)
    }

    /// The task's own stores.
    pub fn stores(&self) -> &StoreMap {
        &self.stores
    }

    fn connected_store(&self, node: usize, name: &str) -> Result<&TaskStore> {
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

    fn panicked(&self, node: usize, panic: &(dyn Any + Send)) -> StreamsError {
        StreamsError::processing(
            self.node_name(node),
            format!("panicked: {}", panic_message(panic)),
        )
    }

    /// Processes one record read from `raw.topic`, then fires due
    /// stream-time punctuations.
    pub fn process(&mut self, mut raw: RawView<'_>) -> Result<()> {
        let Some(&node) = self.sources.get(raw.topic) else {
            return Err(TopologyError::at_topic(
                raw.topic,
                format!("task {} does not read topic `{}`", self.id, raw.topic),
            )
            .into());
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

    /// Moves the wall clock to `now` and fires due wall-clock punctuations.
    pub fn advance_wall_clock(&mut self, now: i64) -> Result<bool> {
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
    pub fn flush(&mut self) -> Result<()> {
        for store in self.stores.values() {
            lock(&store.handle.cell).state_store().flush()?;
        }
        Ok(())
    }

    /// Sends every store's cached writes to its changelog without making
    /// the stores durable: a commit that writes no checkpoint.
    pub fn flush_cache(&mut self) -> Result<()> {
        for store in self.stores.values() {
            lock(&store.handle.cell).state_store().flush_cache()?;
        }
        Ok(())
    }

    /// Closes processors, then flushes and closes stores. The first error
    /// is returned; everything is closed regardless.
    pub fn close(&mut self) -> Result<()> {
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

impl TaskContext for TaskCore {
    fn application_id(&self) -> &str {
        &self.application_id
    }

    fn task_id(&self) -> TaskId {
        self.id
    }

    fn node_name(&self, node: usize) -> &str {
        &self.nodes[node].name
    }

    fn record_metadata(&self) -> Option<&RecordMetadata> {
        self.in_record.then_some(&self.metadata)
    }

    fn wall_clock(&self) -> i64 {
        self.wall_clock
    }

    fn request_commit(&mut self) {
        self.commit_requested = true;
    }

    fn observe_timestamp(&mut self, timestamp: i64) {
        self.current_timestamp.store(timestamp, Ordering::Relaxed);
        if timestamp > self.stream_time {
            self.stream_time = timestamp;
        }
    }

    fn process_at(&mut self, node: usize, record: &mut dyn Any) -> Result<()> {
        let Some(mut processor) = self.nodes[node].processor.take() else {
            let name = &*self.nodes[node].name;
            return Err(
                TopologyError::at_node(name, format!("node `{name}` is re-entered")).into(),
            );
        };
        // A panic in user code is caught where it happens, so that the
        // node gets its processor back and the panic becomes an error
        // naming the node, as an error returned by the processor would.
        let result = catch_unwind(AssertUnwindSafe(|| processor.process(record, self, node)))
            .unwrap_or_else(|panic| Err(self.panicked(node, &*panic)));
        self.nodes[node].processor = Some(processor);
        result
    }

    fn schedule(
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

    fn stream_time(&self) -> i64 {
        self.stream_time
    }

    fn find_store(&self, node: usize, name: &str) -> Result<&TaskStore> {
        self.connected_store(node, name)
    }

    fn children(&self, node: usize) -> &[usize] {
        &self.nodes[node].children
    }

    fn count_invalid_timestamp(&mut self) {
        self.drops.invalid_timestamp += 1;
    }

    fn count_expired_window(&mut self) {
        self.drops.expired_window += 1;
    }

    fn send(&mut self, record: ProducerRecord<'_>) -> Result<()> {
        self.collector.send(record)
    }
}
