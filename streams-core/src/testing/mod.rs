//! Test a topology with no broker: [`TopologyTestDriver`] runs it
//! synchronously on the same task code the Kafka runtime drives.
//!
//! Pipe records in through a [`TestInputTopic`], read results from a
//! [`TestOutputTopic`], look into stores, and move wall-clock time by hand.
//! Every topic has one partition; records written to a topic the topology
//! reads (repartition topics, or any of its sources) are fed back in, after
//! the record that caused them, as Kafka would deliver them.
//!
//! ```
//! use streams_core::{StreamsBuilder, StreamsConfig};
//! use streams_core::dsl::{Consumed, Produced};
//! use streams_core::serde::StringSerde;
//! use streams_core::testing::TopologyTestDriver;
//!
//! let builder = StreamsBuilder::new();
//! builder
//!     .stream_with(&["in"], Consumed::with(StringSerde, StringSerde))
//!     .map_values(|v| v.to_uppercase())
//!     .to_with("out", Produced::with(StringSerde, StringSerde));
//! let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("test"))?;
//!
//! let mut input = driver.create_input_topic("in", StringSerde, StringSerde);
//! let output = driver.create_output_topic("out", StringSerde, StringSerde);
//! input.pipe_input("k".to_string(), "hello".to_string());
//! assert_eq!(output.read_key_value(), ("k".to_string(), "HELLO".to_string()));
//! assert!(output.is_empty());
//! # Ok::<(), streams_core::StreamsError>(())
//! ```

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustc_hash::FxHashMap;

use crate::config::StreamsConfig;
use crate::engine::{GlobalStores, TaskCore, TaskSetup};
use crate::error::{Result, StreamsError, TopologyError};
use crate::record::{Headers, RawRecord, Record};
use crate::record::{ProducerRecord, RecordCollector};
use crate::serde::{Serde, SerdeRef};
use crate::state::{KeyValueStoreHandle, SessionStoreHandle, StoreHandle, WindowStoreHandle};
use crate::{TaskId, Topology};

/// Keeps what tasks produce until the driver picks it up.
#[derive(Default)]
struct CapturingCollector {
    records: Mutex<Vec<RawRecord>>,
}

impl RecordCollector for CapturingCollector {
    fn send(&self, record: ProducerRecord<'_>) -> Result<()> {
        // One partition per topic: a partitioner is asked, and must say 0.
        let partition = match (record.partition, record.partitioner) {
            (Some(p), _) => p,
            (None, Some(choose)) => choose(1).unwrap_or(0),
            (None, None) => 0,
        };
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(RawRecord {
                topic: record.topic.to_owned(),
                partition,
                offset: -1,
                timestamp: record.timestamp,
                key: record.key.map(<[u8]>::to_vec),
                value: record.value.map(<[u8]>::to_vec),
                headers: record.headers.clone(),
            });
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
enum Route {
    Task(usize),
    Global,
}

struct DriverState {
    tasks: Vec<TaskCore>,
    global: Option<TaskCore>,
    // Looked up for every record piped and produced: a fast hash.
    routes: FxHashMap<String, Route>,
    collector: Arc<CapturingCollector>,
    outputs: FxHashMap<String, VecDeque<RawRecord>>,
    offsets: FxHashMap<String, i64>,
    wall_clock: i64,
    closed: bool,
    _state_dir: Option<tempfile::TempDir>,
}

impl DriverState {
    fn next_offset(&mut self, topic: &str) -> i64 {
        // The topic's name is copied only the first time.
        match self.offsets.get_mut(topic) {
            Some(next) => {
                *next += 1;
                *next - 1
            }
            None => {
                self.offsets.insert(topic.to_owned(), 1);
                0
            }
        }
    }

    /// Processes `record` and everything it causes to be fed back.
    fn pipe(&mut self, mut record: RawRecord) -> Result<()> {
        if self.closed {
            return Err(StreamsError::InvalidState("the driver is closed".into()));
        }
        let Some(&route) = self.routes.get(&record.topic) else {
            return Err(TopologyError::at_topic(
                &record.topic,
                format!(
                    "topic `{}` is not read by the topology (it reads: {})",
                    record.topic,
                    self.source_topic_list()
                ),
            )
            .into());
        };
        record.offset = self.next_offset(&record.topic);
        self.run(VecDeque::from([(route, record)]))
    }

    /// Processes queued records, and what they cause to be fed back, in order.
    fn run(&mut self, mut queue: VecDeque<(Route, RawRecord)>) -> Result<()> {
        while let Some((route, record)) = queue.pop_front() {
            // Like Kafka Streams' driver, commit after every record: record
            // caches flush, so stores and changelogs show each update.
            let task = match route {
                Route::Task(i) => &mut self.tasks[i],
                Route::Global => self.global.as_mut().expect("routed to the global task"),
            };
            task.process(record.view())?;
            task.flush()?;
            self.capture(&mut queue);
        }
        Ok(())
    }

    fn source_topic_list(&self) -> String {
        let mut topics: Vec<&str> = self.routes.keys().map(String::as_str).collect();
        topics.sort_unstable();
        topics.join(", ")
    }

    /// Moves produced records to the output topics, queueing the ones the
    /// topology reads.
    fn capture(&mut self, queue: &mut VecDeque<(Route, RawRecord)>) {
        let produced = std::mem::take(
            &mut *self
                .collector
                .records
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        for mut record in produced {
            record.offset = self.next_offset(&record.topic);
            if let Some(&route) = self.routes.get(&record.topic) {
                queue.push_back((route, record.clone()));
            }
            match self.outputs.get_mut(&record.topic) {
                Some(output) => output.push_back(record),
                None => {
                    self.outputs
                        .insert(record.topic.clone(), VecDeque::from([record]));
                }
            }
        }
    }

    fn advance_wall_clock(&mut self, by: Duration) -> Result<()> {
        self.wall_clock = self
            .wall_clock
            .saturating_add(i64::try_from(by.as_millis()).unwrap_or(i64::MAX));
        let now = self.wall_clock;
        let mut queue = VecDeque::new();
        if let Some(global) = &mut self.global {
            global.advance_wall_clock(now)?;
        }
        for i in 0..self.tasks.len() {
            self.tasks[i].advance_wall_clock(now)?;
            self.capture(&mut queue);
        }
        self.run(queue)
    }

    fn find_store(&self, name: &str) -> Option<&crate::state::TaskStore> {
        self.tasks
            .iter()
            .chain(&self.global)
            .find_map(|t| t.stores().get(name))
    }

    fn close(&mut self) -> Result<()> {
        if std::mem::replace(&mut self.closed, true) {
            return Ok(());
        }
        let mut first = Ok(());
        for task in self.tasks.iter_mut().chain(&mut self.global) {
            first = first.and(task.flush()).and(task.close());
        }
        let mut queue = VecDeque::new();
        self.capture(&mut queue);
        first
    }
}

/// Runs a topology synchronously with no broker. See the [module docs](self).
pub struct TopologyTestDriver {
    state: Rc<RefCell<DriverState>>,
}

impl std::fmt::Debug for TopologyTestDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopologyTestDriver").finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl TopologyTestDriver {
    /// A driver for `topology`, with the wall clock at the current time.
    /// Persistent stores live in a temporary directory unless `state.dir`
    /// is set.
    pub fn new(topology: Topology, config: StreamsConfig) -> Result<Self> {
        Self::with_wall_clock(topology, config, now_ms())
    }

    /// A driver whose mocked wall clock starts at `wall_clock_ms`.
    pub fn with_wall_clock(
        topology: Topology,
        config: StreamsConfig,
        wall_clock_ms: i64,
    ) -> Result<Self> {
        let application_id = config.application_id()?.to_owned();
        let (state_dir, temp): (PathBuf, _) = match config.get(crate::config::STATE_DIR) {
            Some(_) => (config.state_dir().join(&application_id), None),
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("streams-test-driver-")
                    .tempdir()
                    .map_err(|source| StreamsError::Io {
                        action: "creating the test driver's state directory".into(),
                        source,
                    })?;
                (temp.path().to_path_buf(), Some(temp))
            }
        };
        let collector = Arc::new(CapturingCollector::default());
        let handler = config.deserialization_handler();
        let processing_handler = config.processing_handler();
        let timestamp_extractor = config.default_timestamp_extractor()?;
        let build = |nodes: &[usize], id: TaskId, globals: GlobalStores| {
            let dir = state_dir.join(id.to_string());
            let setup = TaskSetup {
                application_id: &application_id,
                id,
                task_dir: &dir,
                collector: collector.clone() as Arc<dyn RecordCollector>,
                globals,
                deserialization_handler: handler.clone(),
                processing_handler: processing_handler.clone(),
                timestamp_extractor: timestamp_extractor.clone(),
                wall_clock: wall_clock_ms,
            };
            TaskCore::new(&topology, nodes, setup)
        };
        let mut routes = FxHashMap::default();
        let global_nodes = topology.global_nodes();
        let global = if global_nodes.is_empty() {
            None
        } else {
            let task = build(&global_nodes, TaskId::GLOBAL, Arc::default())?;
            for topic in task.source_topics() {
                routes.insert(topic.to_owned(), Route::Global);
            }
            Some(task)
        };
        let globals: GlobalStores = Arc::new(
            global
                .as_ref()
                .map(|g| g.stores().clone())
                .unwrap_or_default(),
        );
        let mut tasks = Vec::new();
        for sub in topology.subtopologies() {
            let id = TaskId {
                subtopology: sub.id,
                partition: 0,
            };
            let task = build(&sub.nodes, id, globals.clone())?;
            for topic in task.source_topics() {
                routes.insert(topic.to_owned(), Route::Task(tasks.len()));
            }
            tasks.push(task);
        }
        let mut state = DriverState {
            tasks,
            global,
            routes,
            collector,
            outputs: FxHashMap::default(),
            offsets: FxHashMap::default(),
            wall_clock: wall_clock_ms,
            closed: false,
            _state_dir: temp,
        };
        for task in state.global.iter_mut().chain(&mut state.tasks) {
            task.init()?;
        }
        // The global topics start empty, so the global stores are caught up:
        // flushed, as the runtime flushes them once bootstrapped.
        if let Some(global) = state.global.as_mut() {
            global.flush()?;
        }
        let mut queue = VecDeque::new();
        state.capture(&mut queue);
        Ok(TopologyTestDriver {
            state: Rc::new(RefCell::new(state)),
        })
    }

    /// An input topic whose records get the current wall-clock time as
    /// timestamp (change it with [`TestInputTopic::advance_time`]).
    pub fn create_input_topic<K, V>(
        &self,
        topic: &str,
        keys: impl Serde<K> + 'static,
        values: impl Serde<V> + 'static,
    ) -> TestInputTopic<K, V> {
        let start = self.state.borrow().wall_clock;
        self.create_input_topic_at(topic, keys, values, start, Duration::ZERO)
    }

    /// An input topic whose first record has timestamp `start_ms`, each
    /// later one `auto_advance` more.
    pub fn create_input_topic_at<K, V>(
        &self,
        topic: &str,
        keys: impl Serde<K> + 'static,
        values: impl Serde<V> + 'static,
        start_ms: i64,
        auto_advance: Duration,
    ) -> TestInputTopic<K, V> {
        TestInputTopic {
            state: self.state.clone(),
            topic: topic.to_owned(),
            keys: Arc::new(keys),
            values: Arc::new(values),
            time: start_ms,
            advance: i64::try_from(auto_advance.as_millis()).unwrap_or(i64::MAX),
        }
    }

    /// An output topic to read with these serdes.
    pub fn create_output_topic<K, V>(
        &self,
        topic: &str,
        keys: impl Serde<K> + 'static,
        values: impl Serde<V> + 'static,
    ) -> TestOutputTopic<K, V> {
        TestOutputTopic {
            state: self.state.clone(),
            topic: topic.to_owned(),
            keys: Arc::new(keys),
            values: Arc::new(values),
        }
    }

    /// Moves the mocked wall clock forward, firing due wall-clock punctuations.
    pub fn advance_wall_clock_time(&self, by: Duration) {
        if let Err(e) = self.state.borrow_mut().advance_wall_clock(by) {
            panic!("advancing the wall clock failed: {e}");
        }
    }

    /// As [`advance_wall_clock_time`](Self::advance_wall_clock_time), returning errors.
    pub fn try_advance_wall_clock_time(&self, by: Duration) -> Result<()> {
        self.state.borrow_mut().advance_wall_clock(by)
    }

    /// The mocked wall clock, in ms.
    pub fn wall_clock_ms(&self) -> i64 {
        self.state.borrow().wall_clock
    }

    /// A typed handle on a key-value store of the topology (or a global one).
    pub fn key_value_store<K: 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<KeyValueStoreHandle<K, V>> {
        let state = self.state.borrow();
        let store = state
            .find_store(name)
            .ok_or_else(|| StreamsError::StoreAccess {
                name: name.to_owned(),
                message: "no such store in the topology".into(),
            })?;
        let serdes = store
            .serdes
            .as_ref()
            .ok_or_else(|| StreamsError::StoreAccess {
                name: name.to_owned(),
                message: "is not a key-value store".into(),
            })?;
        KeyValueStoreHandle::new(store.handle.clone(), &**serdes)
    }

    /// A typed handle on a window store of the topology.
    pub fn window_store<K: 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<WindowStoreHandle<K, V>> {
        self.task_store(name)?.window()
    }

    /// A typed handle on a session store of the topology.
    pub fn session_store<K: 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<SessionStoreHandle<K, V>> {
        self.task_store(name)?.session()
    }

    fn task_store(&self, name: &str) -> Result<crate::state::TaskStore> {
        self.state
            .borrow()
            .find_store(name)
            .cloned()
            .ok_or_else(|| StreamsError::StoreAccess {
                name: name.to_owned(),
                message: "no such store in the topology".into(),
            })
    }

    /// A handle on any store of the topology, such as a custom one.
    pub fn state_store(&self, name: &str) -> Result<StoreHandle> {
        let state = self.state.borrow();
        state
            .find_store(name)
            .map(|s| s.handle.clone())
            .ok_or_else(|| StreamsError::StoreAccess {
                name: name.to_owned(),
                message: "no such store in the topology".into(),
            })
    }

    /// Flushes every store: cached writes reach the stores and changelogs.
    pub fn flush(&self) -> Result<()> {
        let state = &mut *self.state.borrow_mut();
        for task in state.tasks.iter_mut().chain(&mut state.global) {
            task.flush()?;
        }
        let mut queue = VecDeque::new();
        state.capture(&mut queue);
        Ok(())
    }

    /// Takes every record written to `topic` so far (including changelog
    /// and repartition topics), as bytes.
    pub fn read_raw(&self, topic: &str) -> Vec<RawRecord> {
        self.state
            .borrow_mut()
            .outputs
            .remove(topic)
            .map(Vec::from)
            .unwrap_or_default()
    }

    /// Names of the topics written to so far.
    pub fn produced_topic_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.state.borrow().outputs.keys().cloned().collect();
        names.sort();
        names
    }

    /// Records dropped so far: unreadable ones and failed ones that the
    /// handlers skipped or sent to a dead-letter topic, and ones with
    /// invalid timestamps.
    pub fn dropped_records(&self) -> u64 {
        let state = self.state.borrow();
        state
            .tasks
            .iter()
            .chain(&state.global)
            .map(|t| t.drops.total())
            .sum()
    }

    /// Records processed so far, including fed-back ones.
    pub fn processed_records(&self) -> u64 {
        let state = self.state.borrow();
        state
            .tasks
            .iter()
            .chain(&state.global)
            .map(|t| t.processed())
            .sum()
    }

    /// Closes processors and stores. Dropping the driver does this too.
    pub fn close(self) -> Result<()> {
        self.state.borrow_mut().close()
    }
}

impl Drop for TopologyTestDriver {
    fn drop(&mut self) {
        if let Ok(mut state) = self.state.try_borrow_mut()
            && let Err(e) = state.close()
        {
            log::warn!("closing the test driver: {e}");
        }
    }
}

/// Pipes typed records into one topic of a [`TopologyTestDriver`].
pub struct TestInputTopic<K, V> {
    state: Rc<RefCell<DriverState>>,
    topic: String,
    keys: SerdeRef<K>,
    values: SerdeRef<V>,
    time: i64,
    advance: i64,
}

impl<K, V> TestInputTopic<K, V> {
    fn next_time(&mut self) -> i64 {
        let time = self.time;
        self.time = self.time.saturating_add(self.advance);
        time
    }

    fn serialize_err(&self, e: crate::serde::SerdeError) -> StreamsError {
        StreamsError::Serialization {
            target: self.topic.clone(),
            source: e,
        }
    }

    /// Pipes a record with key, value (`None`: null), timestamp and headers.
    pub fn try_pipe(
        &mut self,
        key: &K,
        value: Option<&V>,
        timestamp: i64,
        headers: Headers,
    ) -> Result<()> {
        let mut key_bytes = Vec::new();
        let has_key = self
            .keys
            .serialize_nullable_into(key, &mut key_bytes)
            .map_err(|e| self.serialize_err(e))?;
        let value_bytes = match value {
            Some(value) => {
                let mut bytes = Vec::new();
                let has = self
                    .values
                    .serialize_nullable_into(value, &mut bytes)
                    .map_err(|e| self.serialize_err(e))?;
                has.then_some(bytes)
            }
            None => None,
        };
        let record = RawRecord {
            topic: self.topic.clone(),
            partition: 0,
            offset: -1,
            timestamp,
            key: has_key.then_some(key_bytes),
            value: value_bytes,
            headers,
        };
        self.state.borrow_mut().pipe(record)
    }

    /// Pipes `key` and `value` at the topic's current time. Panics with the
    /// error if processing fails (use [`try_pipe`](Self::try_pipe) to get it).
    pub fn pipe_input(&mut self, key: K, value: V) {
        let time = self.next_time();
        self.pipe_input_at(key, value, time);
    }

    /// Pipes `key` and `value` with timestamp `timestamp`.
    pub fn pipe_input_at(&mut self, key: K, value: V, timestamp: i64) {
        if let Err(e) = self.try_pipe(&key, Some(&value), timestamp, Headers::new()) {
            panic!("piping into `{}` failed: {e}", self.topic);
        }
    }

    /// Pipes a record.
    pub fn pipe_record(&mut self, record: Record<K, V>) {
        if let Err(e) = self.try_pipe(
            &record.key,
            Some(&record.value),
            record.timestamp,
            record.headers,
        ) {
            panic!("piping into `{}` failed: {e}", self.topic);
        }
    }

    /// Pipes a record with a null value (a tombstone for tables).
    pub fn pipe_tombstone(&mut self, key: K) {
        let time = self.next_time();
        if let Err(e) = self.try_pipe(&key, None, time, Headers::new()) {
            panic!("piping into `{}` failed: {e}", self.topic);
        }
    }

    /// Pipes each pair in order, at the topic's advancing time.
    pub fn pipe_key_value_list(&mut self, records: impl IntoIterator<Item = (K, V)>) {
        for (key, value) in records {
            self.pipe_input(key, value);
        }
    }

    /// Moves this topic's time forward.
    pub fn advance_time(&mut self, by: Duration) {
        self.time = self
            .time
            .saturating_add(i64::try_from(by.as_millis()).unwrap_or(i64::MAX));
    }

    /// Pipes raw bytes, as a broker would deliver them (for testing how bad
    /// input is handled).
    pub fn pipe_raw(&mut self, key: Option<&[u8]>, value: Option<&[u8]>) -> Result<()> {
        let timestamp = self.next_time();
        let record = RawRecord {
            topic: self.topic.clone(),
            partition: 0,
            offset: -1,
            timestamp,
            key: key.map(<[u8]>::to_vec),
            value: value.map(<[u8]>::to_vec),
            headers: Headers::new(),
        };
        self.state.borrow_mut().pipe(record)
    }
}

impl<V> TestInputTopic<(), V> {
    /// Pipes a value with no key.
    pub fn pipe_value(&mut self, value: V) {
        self.pipe_input((), value);
    }

    /// Pipes values with no key, in order.
    pub fn pipe_value_list(&mut self, values: impl IntoIterator<Item = V>) {
        for value in values {
            self.pipe_value(value);
        }
    }
}

/// Reads typed records from one topic of a [`TopologyTestDriver`], oldest first.
pub struct TestOutputTopic<K, V> {
    state: Rc<RefCell<DriverState>>,
    topic: String,
    keys: SerdeRef<K>,
    values: SerdeRef<V>,
}

impl<K, V> TestOutputTopic<K, V> {
    /// The next record, if any. Panics if it cannot be deserialized.
    pub fn try_read_record(&self) -> Option<Record<K, V>> {
        let raw = self
            .state
            .borrow_mut()
            .outputs
            .get_mut(&self.topic)?
            .pop_front()?;
        let key = self
            .keys
            .deserialize_nullable(raw.key.as_deref())
            .unwrap_or_else(|e| {
                panic!(
                    "key of {}@{} cannot be deserialized: {e}",
                    self.topic, raw.offset
                )
            });
        let value = self
            .values
            .deserialize_nullable(raw.value.as_deref())
            .unwrap_or_else(|e| {
                panic!(
                    "value of {}@{} cannot be deserialized: {e}",
                    self.topic, raw.offset
                )
            });
        Some(Record {
            key,
            value,
            timestamp: raw.timestamp,
            headers: raw.headers,
        })
    }

    /// The next record. Panics when the topic has none.
    pub fn read_record(&self) -> Record<K, V> {
        self.try_read_record()
            .unwrap_or_else(|| panic!("no record in output topic `{}`", self.topic))
    }

    /// The next record's key and value.
    pub fn read_key_value(&self) -> (K, V) {
        let record = self.read_record();
        (record.key, record.value)
    }

    /// The next record's value.
    pub fn read_value(&self) -> V {
        self.read_record().value
    }

    /// All remaining values.
    pub fn read_values_to_list(&self) -> Vec<V> {
        std::iter::from_fn(|| self.try_read_record())
            .map(|r| r.value)
            .collect()
    }

    /// All remaining key-value pairs.
    pub fn read_key_values_to_list(&self) -> Vec<(K, V)> {
        std::iter::from_fn(|| self.try_read_record())
            .map(|r| (r.key, r.value))
            .collect()
    }

    /// All remaining records.
    pub fn read_records_to_list(&self) -> Vec<Record<K, V>> {
        std::iter::from_fn(|| self.try_read_record()).collect()
    }

    /// The latest value per key of all remaining records.
    pub fn read_key_values_to_map(&self) -> HashMap<K, V>
    where
        K: std::hash::Hash + Eq,
    {
        std::iter::from_fn(|| self.try_read_record())
            .map(|r| (r.key, r.value))
            .collect()
    }

    /// Whether no record is left to read.
    pub fn is_empty(&self) -> bool {
        self.queue_size() == 0
    }

    /// How many records are left to read.
    pub fn queue_size(&self) -> usize {
        self.state
            .borrow()
            .outputs
            .get(&self.topic)
            .map_or(0, VecDeque::len)
    }
}
