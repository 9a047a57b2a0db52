//! The runtime: runs a topology on Kafka (Kafka Streams' `KafkaStreams`).
//!
//! `start()` checks the settings and the source topics, creates the
//! internal topics (`<application.id>-<store>-changelog`, compacted, and
//! `<application.id>-<name>-repartition`), reads global stores to the end,
//! and starts `num.stream.threads` stream threads. Each thread has one
//! consumer in the group `application.id` (`range` assignment, so
//! partition p of co-partitioned topics lands on one thread) and one
//! producer; a task is (sub-topology, partition).
//!
//! ```no_run
//! use std::time::Duration;
//! use streams_core::dsl::{Consumed, Produced};
//! use streams_core::serde::StringSerde;
//! use streams_kafka::KafkaStreams;
//! use streams_core::{StreamsBuilder, StreamsConfig};
//!
//! let builder = StreamsBuilder::new();
//! builder
//!     .stream_with(&["in"], Consumed::with(StringSerde, StringSerde))
//!     .map_values(|v| v.to_uppercase())
//!     .to_with("out", Produced::with(StringSerde, StringSerde));
//! let config = StreamsConfig::new("shout").set("bootstrap.servers", "127.0.0.1:9092");
//! let streams = KafkaStreams::new(builder.build()?, config)?;
//! streams.start()?;
//! // ... until shutdown:
//! streams.close(Duration::from_secs(10));
//! # Ok::<(), streams_core::StreamsError>(())
//! ```
//!
//! # Performance
//!
//! librdkafka allocates every consumed message on its own threads, and
//! the stream thread frees it; a produced message is allocated when it is
//! sent and freed when its delivery is reported. With glibc's allocator,
//! `malloc` and `free` took about a third of a stream thread's CPU in
//! `scripts/bench.sh`. An application binary can swap the allocator for
//! Rust and C alike, as this workspace's binaries do (stateless topology:
//! about 395,000 records/s with glibc, 485,000 to 520,000 with mimalloc,
//! in alternating runs on one broker):
//!
//! ```toml
//! mimalloc = { version = "0.1", default-features = false, features = ["override"] }
//! ```
//!
//! ```text
//! #[global_allocator]
//! static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
//! ```

mod clients;
mod collector;
mod global;
mod metrics;
pub mod partitioner;
mod query;
mod registry;
mod restore;
mod state_dir;
mod supplier;
mod thread;

use std::collections::{BTreeMap, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use clients::drain_producer;
pub use metrics::{
    MetricLabels, MetricRows, MetricsSnapshot, RestoreMetrics, TaskMetrics, ThreadMetrics,
};
pub use query::{
    HostInfo, KeyQueryMetadata, ReadOnlyKeyValueView, ReadOnlySessionView, ReadOnlyWindowView,
    StreamsMetadata,
};
pub use registry::validate_endpoint;
pub use restore::{NoopRestoreListener, StateRestoreListener};
pub use state_dir::PROCESS_METADATA_FILE;

use clients::{InternalTopic, ensure_topics, partition_counts};
use query::{LocalStores, QueryPlan, StoreSources};
use registry::{LocalAssignment, Registry};
use state_dir::StateDirLock;
use streams_core::config::StreamsConfig;
use streams_core::engine::GlobalStores;
use streams_core::error::{Result, StreamsError, TopologyError};
use streams_core::handlers::{StreamThreadExceptionResponse, UncaughtExceptionHandler};
use streams_core::state::TaskStore;
use streams_core::topology::{TopicName, Topology};
use thread::ThreadPlan;

/// Wall-clock time in milliseconds since the epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The life cycle of a streams client, as Kafka Streams names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Built, not started.
    Created,
    /// Joining the group, (re)assigning tasks or restoring their stores.
    Rebalancing,
    /// Every thread is processing.
    Running,
    /// `close()` was called; threads are finishing.
    PendingShutdown,
    /// Stopped cleanly.
    NotRunning,
    /// A thread failed; see [`KafkaStreams::error`].
    Error,
}

impl State {
    fn can_move_to(self, next: State) -> bool {
        use State::*;
        matches!(
            (self, next),
            (Created, Rebalancing | PendingShutdown | Error)
                | (Rebalancing, Running | PendingShutdown | Error)
                | (Running, Rebalancing | PendingShutdown | Error)
                | (PendingShutdown, NotRunning)
        )
    }
}

type StateListener = Box<dyn Fn(State, State) + Send + Sync>;

/// What the client and its threads share.
pub(crate) struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    listener: Mutex<Option<StateListener>>,
    stopping: AtomicBool,
    error: Mutex<Option<Arc<StreamsError>>>,
    uncaught_handler: Mutex<Option<Arc<UncaughtExceptionHandler>>>,
    /// When `start` was called (ms since the epoch): shutdown requests
    /// older than that were for an earlier run.
    pub(crate) started_ms: AtomicI64,
    /// Per stream thread: whether it is processing (not rebalancing).
    threads: Mutex<Vec<bool>>,
    restore_listener: Mutex<Arc<dyn StateRestoreListener>>,
    /// Stores of running local tasks, for interactive queries.
    pub(crate) local_stores: LocalStores,
    /// Source partitions of running local tasks, for the registry.
    pub(crate) assignment: LocalAssignment,
    /// Live instances, as read from the registry topic.
    pub(crate) registry: Registry,
    /// This instance's `application.server`.
    pub(crate) endpoint: Option<HostInfo>,
    pub(crate) registry_timeout: Duration,
    query_plan: OnceLock<QueryPlan>,
    globals: OnceLock<GlobalStores>,
    pub(crate) metrics: metrics::Metrics,
}

impl Shared {
    /// The state of a client that has not started.
    pub(crate) fn new(endpoint: Option<HostInfo>, registry_timeout: Duration) -> Self {
        Shared {
            state: Mutex::new(State::Created),
            changed: Condvar::new(),
            listener: Mutex::new(None),
            stopping: AtomicBool::new(false),
            error: Mutex::new(None),
            uncaught_handler: Mutex::new(None),
            started_ms: AtomicI64::new(i64::MAX),
            threads: Mutex::new(Vec::new()),
            restore_listener: Mutex::new(Arc::new(NoopRestoreListener)),
            local_stores: LocalStores::default(),
            assignment: LocalAssignment::default(),
            registry: Registry::default(),
            endpoint,
            registry_timeout,
            query_plan: OnceLock::new(),
            globals: OnceLock::new(),
            metrics: metrics::Metrics::default(),
        }
    }

    pub(crate) fn state(&self) -> State {
        *self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Where each store's keys live; empty until `start`.
    pub(crate) fn query_plan(&self) -> &QueryPlan {
        static EMPTY: OnceLock<QueryPlan> = OnceLock::new();
        self.query_plan
            .get()
            .unwrap_or_else(|| EMPTY.get_or_init(QueryPlan::default))
    }

    pub(crate) fn global_store(&self, name: &str) -> Option<TaskStore> {
        self.globals.get()?.get(name).cloned()
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    pub(crate) fn restore_listener(&self) -> Arc<dyn StateRestoreListener> {
        self.restore_listener
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Moves to `next` if the life cycle allows it, telling the listener.
    pub(crate) fn transition(&self, next: State) -> bool {
        let previous = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if *state == next || !state.can_move_to(next) {
                return false;
            }
            std::mem::replace(&mut *state, next)
        };
        log::info!("streams state {previous:?} -> {next:?}");
        if let Some(listener) = &*self.listener.lock().unwrap_or_else(PoisonError::into_inner) {
            listener(previous, next);
        }
        self.changed.notify_all();
        true
    }

    /// A thread failed: remember the first cause, stop every thread.
    pub(crate) fn fail(&self, error: StreamsError) {
        log::error!("stream processing failed: {error}");
        {
            let mut slot = self.error.lock().unwrap_or_else(PoisonError::into_inner);
            if slot.is_none() {
                *slot = Some(Arc::new(error));
            }
        }
        self.stopping.store(true, Ordering::Relaxed);
        self.transition(State::Error);
    }

    pub(crate) fn thread_stopped(&self, index: usize) {
        log::info!("stream thread {index} stopped");
    }

    /// What the uncaught-exception handler makes of a thread's death.
    pub(crate) fn uncaught_exception_response(
        &self,
        error: &StreamsError,
    ) -> StreamThreadExceptionResponse {
        let handler = self
            .uncaught_handler
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match handler {
            // A panicking handler is as if there were none.
            Some(handler) => catch_unwind(AssertUnwindSafe(|| handler(error)))
                .unwrap_or(StreamThreadExceptionResponse::ShutdownClient),
            None => StreamThreadExceptionResponse::ShutdownClient,
        }
    }

    /// A stream thread died and its successor is starting: it holds no
    /// tasks until the group assigns them again.
    pub(crate) fn thread_replaced(&self, index: usize) {
        self.assignment.set(index, Default::default());
        self.thread_rebalancing(index, true);
    }
}

/// A streams client: runs a topology on Kafka.
pub struct KafkaStreams {
    topology: Arc<Topology>,
    config: StreamsConfig,
    shared: Arc<Shared>,
    handles: Mutex<Vec<JoinHandle<()>>>,
    /// The application's state directory, held from `start` until the
    /// threads have stopped.
    state_dir_lock: Mutex<Option<StateDirLock>>,
}

impl std::fmt::Debug for KafkaStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaStreams")
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl KafkaStreams {
    /// A client for `topology`; the settings are checked here, and wrong or
    /// missing ones are a [`StreamsError::Config`].
    pub fn new(topology: Topology, config: StreamsConfig) -> Result<Self> {
        config.validate()?;
        let endpoint = config
            .application_server()?
            .map(|(host, port)| HostInfo { host, port });
        let (_, registry_timeout) = config.registry_timing()?;
        Ok(KafkaStreams {
            topology: Arc::new(topology),
            config,
            shared: Arc::new(Shared::new(endpoint, registry_timeout)),
            handles: Mutex::new(Vec::new()),
            state_dir_lock: Mutex::new(None),
        })
    }

    /// Calls `listener(old, new)` on every state change.
    pub fn set_state_listener(&self, listener: impl Fn(State, State) + Send + Sync + 'static) {
        *self
            .shared
            .listener
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Box::new(listener));
    }

    /// Decides what happens when a stream thread dies of an error, as Kafka
    /// Streams' `setUncaughtExceptionHandler`: replace the thread, stop
    /// this instance (the default), or stop every instance of the
    /// application. A record whose processing fails is first offered to
    /// the processing-exception handler
    /// ([`StreamsConfig::with_processing_handler`]); only a failure it
    /// does not absorb kills the thread. Set before `start`.
    ///
    /// ```no_run
    /// use streams_core::StreamsConfig;
    /// use streams_core::handlers::StreamThreadExceptionResponse;
    /// use streams_kafka::KafkaStreams;
    ///
    /// # fn main() -> streams_core::Result<()> {
    /// # let topology = streams_core::StreamsBuilder::new().build()?;
    /// let streams = KafkaStreams::new(topology, StreamsConfig::new("app"))?;
    /// streams.set_uncaught_exception_handler(|error| {
    ///     eprintln!("a stream thread died: {error}");
    ///     StreamThreadExceptionResponse::ReplaceThread
    /// });
    /// # Ok(())
    /// # }
    /// ```
    pub fn set_uncaught_exception_handler(
        &self,
        handler: impl Fn(&StreamsError) -> StreamThreadExceptionResponse + Send + Sync + 'static,
    ) {
        *self
            .shared
            .uncaught_handler
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(handler));
    }

    /// Hears store restoration progress (set before `start`).
    pub fn set_global_state_restore_listener(&self, listener: impl StateRestoreListener + 'static) {
        *self
            .shared
            .restore_listener
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(listener);
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.shared.state()
    }

    /// A read-only view of the key-value store `name` over every local task
    /// (or of a global store), for interactive queries: safe to read while
    /// processing runs. Fails when the store does not exist or has other
    /// types; its calls fail with a retriable error during a rebalance.
    pub fn store<K: 'static, V: 'static>(&self, name: &str) -> Result<ReadOnlyKeyValueView<K, V>> {
        self.check_queryable(name)?;
        ReadOnlyKeyValueView::new(self.shared.clone(), name)
    }

    /// A read-only view of the window store `name` over every local task,
    /// as Kafka Streams' `store(StoreQueryParameters.fromNameAndType(name,
    /// QueryableStoreTypes.windowStore()))`: the stores of windowed
    /// aggregations (`windowed_by(TimeWindows | SlidingWindows)`) and the
    /// Processor API's window stores. Fails as [`KafkaStreams::store`]
    /// does, and when `name` is not a window store of `K` to `V`.
    pub fn window_store<K: 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<ReadOnlyWindowView<K, V>> {
        self.check_queryable(name)?;
        ReadOnlyWindowView::new(self.shared.clone(), name)
    }

    /// A read-only view of the session store `name` over every local task,
    /// as Kafka Streams' `QueryableStoreTypes.sessionStore()`: the stores
    /// of session aggregations (`windowed_by(SessionWindows)`). Fails as
    /// [`KafkaStreams::store`] does, and when `name` is not a session store
    /// of `K` to `V`.
    pub fn session_store<K: 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<ReadOnlySessionView<K, V>> {
        self.check_queryable(name)?;
        ReadOnlySessionView::new(self.shared.clone(), name)
    }

    /// Runs `f` on every local instance of store `name` as its own type `S`
    /// (each running task's, or the global one) and returns the answers:
    /// interactive queries for custom stores, which have no key-value view.
    /// Fails as [`KafkaStreams::store`] does, and when the store is not an
    /// `S`.
    pub fn query_custom_store<S: std::any::Any, R>(
        &self,
        name: &str,
        f: impl Fn(&mut S) -> R,
    ) -> Result<Vec<R>> {
        self.check_queryable(name)?;
        let global = query::is_global_store(&self.shared, name)?;
        query::queryable_stores(&self.shared, name, global)?
            .iter()
            .map(|store| store.handle.with(|s: &mut S| f(s)))
            .collect()
    }

    /// Stores are queried from `start()` on.
    fn check_queryable(&self, name: &str) -> Result<()> {
        if self.state() == State::Created {
            return Err(StreamsError::InvalidState(format!(
                "store `{name}` cannot be queried before start()"
            )));
        }
        Ok(())
    }

    /// A snapshot of the runtime metrics: per thread and task, consumer lag
    /// and restoration progress. [`MetricsSnapshot::to_prometheus`]
    /// renders it for a scrape.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.shared.metrics.snapshot()
    }

    /// The application id.
    pub fn application_id(&self) -> &str {
        self.config.application_id().unwrap_or_default()
    }

    /// This instance's `application.server`, if it has one.
    pub fn application_server(&self) -> Option<&HostInfo> {
        self.shared.endpoint.as_ref()
    }

    /// Every live instance of the application (with an
    /// `application.server`), from the instance registry: this one as it
    /// is now, the others as they last announced themselves.
    pub fn all_metadata(&self) -> Vec<StreamsMetadata> {
        self.shared.live_instances()
    }

    /// The live instances that have store `name`.
    pub fn metadata_for_store(&self, name: &str) -> Vec<StreamsMetadata> {
        self.all_metadata()
            .into_iter()
            .filter(|m| m.state_store_names.contains(name))
            .collect()
    }

    /// The instance that holds `key` of store `name`, with the key
    /// serialized by `serde` and partitioned by Java's murmur2 as the
    /// producer does. For a global store, this instance. `None` when the
    /// store is unknown or no live instance has the key's partition (for
    /// example during a rebalance).
    pub fn query_metadata_for_key<K>(
        &self,
        name: &str,
        key: &K,
        serde: &dyn state_stores::Serde<K>,
    ) -> Result<Option<KeyQueryMetadata>> {
        let mut bytes = Vec::new();
        serde
            .serialize_into(key, &mut bytes)
            .map_err(|source| StreamsError::Serialization {
                target: name.to_owned(),
                source,
            })?;
        Ok(self.query_metadata_for_raw_key(name, &bytes))
    }

    /// [`query_metadata_for_key`](Self::query_metadata_for_key) for a key
    /// already serialized.
    pub fn query_metadata_for_raw_key(&self, name: &str, key: &[u8]) -> Option<KeyQueryMetadata> {
        let plan = self.shared.query_plan();
        if plan.global_stores.contains(name) {
            return self
                .shared
                .endpoint
                .clone()
                .map(|active_host| KeyQueryMetadata {
                    active_host,
                    partition: -1,
                });
        }
        query::locate_key(plan.stores.get(name)?, key, &self.all_metadata())
    }

    /// The first error that stopped processing, if any: the error itself,
    /// so its variant, its cause chain and [`StreamsError::is_retriable`]
    /// can be read.
    pub fn error(&self) -> Option<Arc<StreamsError>> {
        self.shared
            .error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits until the state is `state` (true) or `timeout` passes (false).
    pub fn wait_for_state(&self, state: State, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut current = self
            .shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while *current != state {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            current = self
                .shared
                .changed
                .wait_timeout(current, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }

    /// Checks the topics, creates internal ones, restores global stores and
    /// starts the stream threads. Fails fast (and stays `Created`) when the
    /// broker cannot be reached, the topology does not fit the topics, or
    /// another instance of the application holds its state directory
    /// (`<state.dir>/<application.id>`, locked until `close` returns).
    pub fn start(&self) -> Result<()> {
        if self.state() != State::Created {
            return Err(StreamsError::InvalidState(format!(
                "start() needs state Created, not {:?}",
                self.state()
            )));
        }
        let application_id = self.config.application_id()?.to_owned();
        let mut plan = plan_topics(&self.topology, &self.config, &application_id)?;
        plan.internal.push(InternalTopic {
            name: registry::registry_topic(&application_id),
            partitions: 1,
            compacted: true,
        });
        ensure_topics(&self.config, &plan.internal)?;
        let state_dir = self.config.state_dir().join(&application_id);
        // Held until the threads have stopped (see `close`): they write
        // checkpoints to the end.
        let lock = StateDirLock::acquire(&state_dir)?;
        *self
            .state_dir_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(lock);
        self.shared.started_ms.store(now_ms(), Ordering::Relaxed);
        self.shared.transition(State::Rebalancing);
        let mut handles = self.handles.lock().unwrap_or_else(PoisonError::into_inner);
        let globals = match global::start(
            &self.topology,
            &self.config,
            &application_id,
            &state_dir,
            self.shared.clone(),
        ) {
            Ok(Some((stores, handle))) => {
                handles.push(handle);
                stores
            }
            Ok(None) => Arc::default(),
            Err(error) => {
                self.shared.fail(starting_failed(&error));
                return Err(error);
            }
        };
        let _ = self.shared.query_plan.set(QueryPlan {
            stores: plan.stores,
            global_stores: globals.keys().cloned().collect(),
        });
        let _ = self.shared.globals.set(globals.clone());
        match registry::start(&self.config, &application_id, self.shared.clone()) {
            Ok(handle) => handles.push(handle),
            Err(error) => {
                self.shared.fail(starting_failed(&error));
                return Err(error);
            }
        }
        let threads = self.config.num_stream_threads()?;
        let process_id = state_dir::process_id(&state_dir)?;
        *self
            .shared
            .threads
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = vec![false; threads];
        let thread_plan = Arc::new(ThreadPlan {
            topology: self.topology.clone(),
            subtopologies: self.topology.subtopologies(),
            topic_to_subtopology: plan.topic_to_subtopology,
            config: self.config.clone(),
            application_id,
            state_dir,
            guarantee: self.config.processing_guarantee()?,
            commit_interval: self.config.commit_interval()?,
            globals,
            process_id,
            supplier: Arc::new(supplier::RdKafkaSupplier),
        });
        for index in 0..threads {
            let (plan, shared) = (thread_plan.clone(), self.shared.clone());
            let handle = std::thread::Builder::new()
                .name(format!("stream-thread-{index}"))
                .spawn(move || thread::run(index, plan, shared))
                .map_err(|source| StreamsError::Io {
                    action: "spawning a stream thread".into(),
                    source,
                })?;
            handles.push(handle);
        }
        Ok(())
    }

    /// Stops processing: threads commit, close their tasks (with
    /// checkpoints) and leave the group. Returns false if they did not
    /// finish within `timeout`.
    pub fn close(&self, timeout: Duration) -> bool {
        self.shared.transition(State::PendingShutdown);
        self.shared.stopping.store(true, Ordering::Relaxed);
        let deadline = Instant::now() + timeout;
        let mut handles = self.handles.lock().unwrap_or_else(PoisonError::into_inner);
        while !handles.iter().all(JoinHandle::is_finished) {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        for handle in handles.drain(..) {
            let _ = handle.join();
        }
        // Nothing writes to the state directory any more.
        self.state_dir_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        self.shared.transition(State::NotRunning);
        true
    }
}

impl Drop for KafkaStreams {
    fn drop(&mut self) {
        if !matches!(self.state(), State::Created | State::NotRunning) {
            self.close(Duration::from_secs(30));
        }
    }
}

/// The partition count of `topic`, `None` if it does not exist.
pub fn partition_count(config: &StreamsConfig, topic: &str) -> Result<Option<i32>> {
    let counts = partition_counts(config, &[topic.to_owned()])?;
    Ok(counts.get(topic).copied().flatten())
}

/// Creates the topics that do not exist yet (`name`, partition count), with
/// `replication.factor` from `config`; existing topics are left alone. For
/// applications and examples that own their input and output topics.
pub fn create_topics_if_missing(config: &StreamsConfig, topics: &[(&str, i32)]) -> Result<()> {
    let wanted: Vec<String> = topics.iter().map(|(name, _)| (*name).to_owned()).collect();
    let existing = partition_counts(config, &wanted)?;
    let missing: Vec<InternalTopic> = topics
        .iter()
        .filter(|(name, _)| existing[*name].is_none())
        .map(|(name, partitions)| InternalTopic {
            name: (*name).to_owned(),
            partitions: *partitions,
            compacted: false,
        })
        .collect();
    ensure_topics(config, &missing)
}

/// A consumed message as the task takes it.
pub(crate) fn raw_record<'a>(
    message: &'a rdkafka::message::BorrowedMessage<'_>,
) -> streams_core::record::RawView<'a> {
    use rdkafka::Message;
    use rdkafka::message::Headers as _;
    let mut headers = streams_core::Headers::new();
    if let Some(h) = message.headers() {
        for header in h.iter() {
            headers.add(header.key, header.value.map(<[u8]>::to_vec));
        }
    }
    streams_core::record::RawView {
        topic: message.topic(),
        partition: message.partition(),
        offset: message.offset(),
        timestamp: message.timestamp().to_millis().unwrap_or(0),
        key: message.key(),
        value: message.payload(),
        headers,
    }
}

struct TopicPlan {
    internal: Vec<InternalTopic>,
    topic_to_subtopology: rustc_hash::FxHashMap<String, u32>,
    /// Where each store's keys come from.
    stores: HashMap<String, StoreSources>,
}

/// Works out partition counts: sources must exist; a repartition topic
/// gets as many partitions as the sub-topology that writes it reads (or
/// what the topology asked for); a changelog as many as its sub-topology.
/// Sub-topologies with stores need co-partitioned inputs.
fn plan_topics(
    topology: &Topology,
    config: &StreamsConfig,
    application_id: &str,
) -> Result<TopicPlan> {
    let subtopologies = topology.subtopologies();
    let repartition: BTreeMap<String, Option<i32>> =
        topology.repartition_topics().iter().cloned().collect();
    let external: Vec<String> = subtopologies
        .iter()
        .flat_map(|s| s.source_topics.iter())
        .filter_map(|t| match t {
            TopicName::External(name) => Some(name.clone()),
            TopicName::Internal(_) => None,
        })
        .collect();
    let counts = partition_counts(config, &external)?;
    let missing: Vec<&str> = external
        .iter()
        .filter(|t| counts[*t].is_none())
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(TopologyError::new(format!(
            "source topics do not exist: {} (create them before starting)",
            missing.join(", ")
        ))
        .with_topic(missing[0])
        .into());
    }
    let mut known: HashMap<String, i32> = counts
        .into_iter()
        .map(|(t, c)| (t, c.unwrap_or(1)))
        .collect();
    for (name, partitions) in &repartition {
        if let Some(p) = partitions {
            known.insert(format!("internal:{name}"), *p);
        }
    }
    let source_key = |t: &TopicName| match t {
        TopicName::External(name) => name.clone(),
        TopicName::Internal(name) => format!("internal:{name}"),
    };
    // Repartition topics written by a sub-topology take its partition count;
    // iterate until every count is known (topologies are acyclic).
    for _ in 0..=subtopologies.len() {
        for sub in &subtopologies {
            let Some(count) = sub
                .source_topics
                .iter()
                .map(|t| known.get(&source_key(t)).copied())
                .collect::<Option<Vec<_>>>()
            else {
                continue;
            };
            let count = count.into_iter().max().unwrap_or(1);
            for &node in &sub.nodes {
                if let Some(topic) = topology.sink_topic(node)
                    && repartition.contains_key(topic)
                {
                    known.entry(format!("internal:{topic}")).or_insert(count);
                }
            }
        }
    }
    let mut internal = Vec::new();
    let mut topic_to_subtopology = rustc_hash::FxHashMap::default();
    let mut stores = HashMap::new();
    for sub in &subtopologies {
        let mut sizes = Vec::new();
        for topic in &sub.source_topics {
            let count = *known.get(&source_key(topic)).ok_or_else(|| {
                StreamsError::from(TopologyError::at_topic(
                    topic.raw(),
                    format!("cannot work out the partition count of {}", topic.raw()),
                ))
            })?;
            sizes.push((topic.resolve(application_id), count));
            topic_to_subtopology.insert(topic.resolve(application_id), sub.id);
        }
        let max = sizes.iter().map(|(_, c)| *c).max().unwrap_or(1);
        if !sub.stores.is_empty() && sizes.iter().any(|(_, c)| *c != max) {
            let list: Vec<String> = sizes.iter().map(|(t, c)| format!("{t} ({c})")).collect();
            return Err(TopologyError::at_topic(
                &sizes[0].0,
                format!(
                    "topics joined or aggregated together must be co-partitioned (same partition \
                     count), but sub-topology {} reads {}",
                    sub.id,
                    list.join(", ")
                ),
            )
            .into());
        }
        for store in &sub.stores {
            stores.insert(
                store.clone(),
                StoreSources {
                    topics: sizes.iter().map(|(t, _)| t.clone()).collect(),
                    partitions: max,
                },
            );
            let builder = topology
                .store_builder(store)
                .expect("stores of sub-topologies exist");
            if builder.logging_enabled() {
                internal.push(InternalTopic {
                    name: streams_core::engine::changelog_topic(application_id, store),
                    partitions: max,
                    compacted: true,
                });
            }
        }
    }
    for name in repartition.keys() {
        let partitions = known[&format!("internal:{name}")];
        internal.push(InternalTopic {
            name: format!("{application_id}-{name}"),
            partitions,
            compacted: false,
        });
    }
    Ok(TopicPlan {
        internal,
        topic_to_subtopology,
        stores,
    })
}

/// What [`KafkaStreams::error`] keeps when `start` fails: the caller of
/// `start` gets the error itself, which cannot be copied; a topology or
/// configuration error is kept as it is, any other as text.
fn starting_failed(error: &StreamsError) -> StreamsError {
    match error {
        StreamsError::Topology(error) => StreamsError::Topology(error.clone()),
        StreamsError::Config(message) => StreamsError::Config(message.clone()),
        other => StreamsError::Kafka {
            action: "starting".to_owned(),
            source: other.to_string().into(),
            retriable: other.is_retriable(),
        },
    }
}
