//! A stream thread: one consumer in the application's group, one producer,
//! and the tasks of the partitions assigned to it.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use rustc_hash::FxHashMap;

use super::clients::{
    DataErrors, EndReadingConsumer, EndReadingContext, REQUEST_TIMEOUT, client_config, kafka_error,
    kafka_failure, report_client_error,
};
use super::collector::{DeliveryTracker, KafkaCollector, TrackingContext, is_migration};
use super::metrics::{RecordingRestoreListener, TaskMetrics, ThreadMetrics};
use super::restore::{
    Offsets, checkpoint_mismatch, delete_checkpoint, read_checkpoint, restore_task,
    write_checkpoint,
};
use super::{Shared, State, now_ms, raw_record};
use streams_core::TaskId;
use streams_core::config::{ClientKind, ProcessingGuarantee, StreamsConfig};
use streams_core::engine::{GlobalStores, TaskCore, TaskSetup};
use streams_core::error::{Result, StreamsError};
use streams_core::handlers::{StreamThreadExceptionResponse, panic_message};
use streams_core::record::RecordCollector;
use streams_core::topology::{Subtopology, Topology};

/// What every stream thread of an instance shares.
pub(crate) struct ThreadPlan {
    pub(crate) topology: Arc<Topology>,
    pub(crate) subtopologies: Vec<Subtopology>,
    /// Resolved source topic -> sub-topology (looked up for every record).
    pub(crate) topic_to_subtopology: FxHashMap<String, u32>,
    pub(crate) config: StreamsConfig,
    pub(crate) application_id: String,
    pub(crate) state_dir: PathBuf,
    pub(crate) guarantee: ProcessingGuarantee,
    pub(crate) commit_interval: Duration,
    pub(crate) globals: GlobalStores,
    /// Identifies this instance's transactional producers.
    pub(crate) process_id: String,
}

struct RunningTask {
    core: TaskCore,
    dir: PathBuf,
    /// Next offset to commit per consumed (topic, partition): a task reads
    /// one partition of a few topics, so a short list beats a map.
    consumed: Vec<(String, i32, i64)>,
    /// Changelog offsets the local stores reflect.
    changelog: Offsets,
}

/// The part of a thread the rebalance callback needs too.
pub(crate) struct Engine {
    plan: Arc<ThreadPlan>,
    shared: Arc<Shared>,
    index: usize,
    collector: Arc<KafkaCollector>,
    tasks: BTreeMap<TaskId, RunningTask>,
    pending_assignment: Option<Vec<(String, i32)>>,
    /// Taken at shutdown, to be closed beside the group consumer.
    restore_consumer: Option<EndReadingConsumer>,
    last_commit: Instant,
    stats: ThreadMetrics,
    last_publish: Instant,
    since_housekeeping: u32,
    data_errors: DataErrors,
}

/// Records processed between two rounds of commit checks, punctuation by
/// wall-clock time and delivery reports (an idle poll also triggers one).
const HOUSEKEEPING_EVERY: u32 = 64;

/// One record in this many has its processing time measured.
const PROCESS_SAMPLE: u64 = 16;

fn lock(engine: &Mutex<Engine>) -> MutexGuard<'_, Engine> {
    engine.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The consumer's context: hands rebalances to the engine, consumer lag
/// to the metrics.
pub(crate) struct ThreadContext {
    engine: Arc<Mutex<Engine>>,
    shared: Arc<Shared>,
    /// Whether the consumer reads committed records only: its partitions
    /// then end at the last stable offset.
    read_committed: bool,
}

impl ClientContext for ThreadContext {
    fn error(&self, error: KafkaError, reason: &str) {
        report_client_error(&error, reason);
    }

    /// librdkafka's statistics carry each partition's end and position.
    fn stats(&self, statistics: rdkafka::Statistics) {
        let read_committed = self.read_committed;
        let lags = statistics.topics.into_iter().flat_map(move |(topic, t)| {
            t.partitions
                .into_iter()
                .filter(|(p, _)| *p >= 0)
                .map(move |(p, partition)| {
                    ((topic.clone(), p), records_lag(&partition, read_committed))
                })
        });
        self.shared.metrics.set_lag(lags);
    }
}

/// Kafka's `records-lag`: the partition's end (its last stable offset for a
/// `read_committed` consumer) minus the consumer's position, the offset of
/// the next record it hands the application. -1 (unknown) for a partition
/// that is not being consumed. Not librdkafka's `consumer_lag`, which
/// counts from the committed offset: up to a commit interval's worth of
/// records behind a consumer that is caught up.
fn records_lag(partition: &rdkafka::statistics::Partition, read_committed: bool) -> i64 {
    let end = if read_committed && partition.ls_offset >= 0 {
        partition.ls_offset
    } else {
        partition.hi_offset
    };
    let position = if partition.app_offset >= 0 {
        partition.app_offset
    } else if partition.fetch_state == "active" {
        // Assigned, nothing handed over yet: fetching starts here.
        partition.next_offset
    } else {
        -1
    };
    if end < 0 || position < 0 {
        return -1;
    }
    // A broker may report a low end (Tansu's is the last batch's base
    // offset plus one): never a negative lag.
    (end - position).max(0)
}

impl ConsumerContext for ThreadContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let mut engine = lock(&self.engine);
        engine.shared.thread_rebalancing(engine.index, true);
        if let Rebalance::Revoke(partitions) = rebalance {
            log::info!(
                "thread {}: partitions revoked: {}",
                engine.index,
                describe(partitions)
            );
            let revoked = engine.revoke_all(consumer).map_err(|e| engine.migrated(e));
            if let Err(error) = revoked.or_else(|e| engine.recover_if_migrated(e)) {
                engine.shared.fail(error);
            }
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            let mut engine = lock(&self.engine);
            log::info!(
                "thread {}: partitions assigned: {}",
                engine.index,
                describe(partitions)
            );
            let list = partitions
                .elements()
                .iter()
                .map(|e| (e.topic().to_owned(), e.partition()))
                .collect();
            engine.pending_assignment = Some(list);
            engine.stats.rebalances += 1;
        }
    }
}

fn describe_offsets(partitions: &TopicPartitionList) -> String {
    let list: Vec<String> = partitions
        .elements()
        .iter()
        .map(|e| format!("{}[{}]={:?}", e.topic(), e.partition(), e.offset()))
        .collect();
    list.join(", ")
}

fn describe(partitions: &TopicPartitionList) -> String {
    let list: Vec<String> = partitions
        .elements()
        .iter()
        .map(|e| format!("{}[{}]", e.topic(), e.partition()))
        .collect();
    if list.is_empty() {
        "none".into()
    } else {
        list.join(", ")
    }
}

/// The thread's producer (transactional under exactly-once, with a
/// transactional id stable across restarts of this instance, so that a new
/// incarnation fences its predecessor) wrapped as the tasks' collector.
fn create_collector(plan: &ThreadPlan, index: usize) -> Result<Arc<KafkaCollector>> {
    let tracker = Arc::new(DeliveryTracker::default());
    let producer = create_producer(plan, index, tracker.clone())?;
    Ok(Arc::new(KafkaCollector::new(
        producer,
        tracker,
        plan.config.production_handler(),
        plan.guarantee == ProcessingGuarantee::ExactlyOnceV2,
    )))
}

fn create_producer(
    plan: &ThreadPlan,
    index: usize,
    tracker: Arc<DeliveryTracker>,
) -> Result<BaseProducer<TrackingContext>> {
    let mut config = client_config(&plan.config, ClientKind::Producer);
    // Idempotence is a default (`PRODUCER_DEFAULTS`) that at-least-once
    // may turn off; `validate` keeps it on under exactly-once.
    config.set("partitioner", "murmur2_random");
    if plan.guarantee == ProcessingGuarantee::ExactlyOnceV2 {
        config.set(
            "transactional.id",
            format!("{}-{}-{index}", plan.application_id, plan.process_id),
        );
    }
    let producer: BaseProducer<TrackingContext> = config
        .create_with_context(TrackingContext { tracker })
        .map_err(|e| kafka_error("creating a producer", e))?;
    if plan.guarantee == ProcessingGuarantee::ExactlyOnceV2 {
        producer
            .init_transactions(REQUEST_TIMEOUT)
            .map_err(|e| kafka_error("initialising transactions", e))?;
    }
    Ok(producer)
}

/// How long a replaced thread waits before its successor starts: a record
/// that kills every thread must not make replacements spin.
const REPLACE_BACKOFF: Duration = Duration::from_secs(1);

/// Runs one stream thread until the instance stops or fails. A thread that
/// dies (an error, or a panic outside user code) is handed to the
/// uncaught-exception handler, which may replace it with a new one: new
/// clients, its tasks restored from their committed state.
pub(crate) fn run(index: usize, plan: Arc<ThreadPlan>, shared: Arc<Shared>) {
    loop {
        let outcome = catch_unwind(AssertUnwindSafe(|| run_inner(index, plan.clone(), &shared)));
        let error = match outcome {
            Ok(Ok(())) => break,
            Ok(Err(error)) => error,
            Err(panic) => StreamsError::Panicked {
                thread: format!("stream thread {index}"),
                message: panic_message(&*panic),
            },
        };
        if shared.stopping() {
            shared.fail(error);
            break;
        }
        match shared.uncaught_exception_response(&error) {
            StreamThreadExceptionResponse::ReplaceThread => {
                log::error!("stream thread {index} died: {error}; replacing it");
                shared.thread_replaced(index);
                std::thread::sleep(REPLACE_BACKOFF);
            }
            StreamThreadExceptionResponse::ShutdownClient => {
                shared.fail(error);
                break;
            }
            StreamThreadExceptionResponse::ShutdownApplication => {
                if let Err(e) =
                    super::registry::request_shutdown(&plan.config, &plan.application_id, &error)
                {
                    log::error!("cannot ask the other instances to shut down: {e}");
                }
                shared.fail(error);
                break;
            }
        }
    }
    shared.thread_stopped(index);
}

fn run_inner(index: usize, plan: Arc<ThreadPlan>, shared: &Arc<Shared>) -> Result<()> {
    let collector = create_collector(&plan, index)?;
    let mut restore_config = client_config(&plan.config, ClientKind::Consumer);
    // librdkafka wants a group for assign(); this one never joins or commits.
    restore_config.set(
        "group.id",
        format!("{}-restore-consumer", plan.application_id),
    );
    restore_config
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest");
    let restore_consumer: EndReadingConsumer = restore_config
        .create_with_context(EndReadingContext)
        .map_err(|e| kafka_error("creating the restore consumer", e))?;
    let engine = Arc::new(Mutex::new(Engine {
        plan: plan.clone(),
        shared: shared.clone(),
        index,
        collector,
        tasks: BTreeMap::new(),
        pending_assignment: None,
        restore_consumer: Some(restore_consumer),
        last_commit: Instant::now(),
        stats: ThreadMetrics::default(),
        last_publish: Instant::now(),
        since_housekeeping: 0,
        data_errors: DataErrors::default(),
    }));

    let mut consumer_config = client_config(&plan.config, ClientKind::Consumer);
    consumer_config
        .set("group.id", &plan.application_id)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "range");
    if !consumer_config
        .config_map()
        .contains_key("statistics.interval.ms")
    {
        // Consumer lag for the metrics.
        consumer_config.set("statistics.interval.ms", "5000");
    }
    if plan.guarantee == ProcessingGuarantee::ExactlyOnceV2 {
        consumer_config.set("isolation.level", "read_committed");
    }
    // librdkafka's default, unlike Java's, is read_committed.
    let read_committed = consumer_config.get("isolation.level") != Some("read_uncommitted");
    let consumer: BaseConsumer<ThreadContext> = consumer_config
        .create_with_context(ThreadContext {
            engine: engine.clone(),
            shared: shared.clone(),
            read_committed,
        })
        .map_err(|e| kafka_error("creating the consumer", e))?;
    let topics: Vec<&str> = plan
        .topic_to_subtopology
        .keys()
        .map(String::as_str)
        .collect();
    consumer
        .subscribe(&topics)
        .map_err(|e| kafka_error("subscribing", e))?;
    log::info!("thread {index}: subscribed to {}", topics.join(", "));

    let mut result = Ok(());
    while !shared.stopping() {
        let polled = consumer.poll(Duration::from_millis(50));
        let mut guard = lock(&engine);
        let step = guard.step(&consumer, polled).map_err(|e| guard.migrated(e));
        let migrated = matches!(step, Err(StreamsError::TaskMigrated(_)));
        if let Err(error) = step.or_else(|e| guard.recover_if_migrated(e)) {
            result = Err(error);
            break;
        }
        drop(guard);
        if migrated {
            // Rejoin so the group hands our tasks back (or to others).
            consumer.unsubscribe();
            if let Err(error) = consumer.subscribe(&topics) {
                result = Err(kafka_error("subscribing again", error));
                break;
            }
        }
    }
    let mut guard = lock(&engine);
    if result.is_ok() {
        result = guard.revoke_all(&consumer);
    } else {
        guard.close_all_dirty();
    }
    let restore_consumer = guard.restore_consumer.take();
    drop(guard);
    // rdkafka closes a consumer that has a group in 100 ms polls: close
    // the two side by side, so a shutdown waits for one of them.
    std::thread::scope(|scope| {
        // Without a thread to spare, the closure is dropped at once, and
        // the restore consumer with it: one after the other, then.
        let _ = std::thread::Builder::new()
            .name(format!("stream-close-{index}"))
            .spawn_scoped(scope, move || drop(restore_consumer));
        drop(consumer);
    });
    result
}

impl Engine {
    /// Handles what one poll returned, then commits and punctuates when due.
    fn step<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        polled: Option<rdkafka::error::KafkaResult<BorrowedMessage<'_>>>,
    ) -> Result<()> {
        if let Some(assignment) = self.pending_assignment.take() {
            self.assign(assignment)?;
            self.shared.thread_rebalancing(self.index, false);
        }
        match polled {
            Some(Ok(message)) => {
                self.process(&message)?;
                // Under load, the rest runs once per HOUSEKEEPING_EVERY
                // records: it reads clocks and serves the producer's queue.
                self.since_housekeeping += 1;
                if self.since_housekeeping < HOUSEKEEPING_EVERY {
                    return Ok(());
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) | None => {}
            Some(Err(error)) => self.consumer_error(consumer, error)?,
        }
        self.since_housekeeping = 0;
        self.collector.producer.poll(Duration::ZERO);
        let now = now_ms();
        for task in self.tasks.values_mut() {
            task.core.advance_wall_clock(now)?;
        }
        let mut requested = false;
        for task in self.tasks.values_mut() {
            // Every task's request is taken, not just the first.
            requested |= task.core.take_commit_request();
        }
        if requested || self.last_commit.elapsed() >= self.plan.commit_interval {
            self.commit(consumer)?;
        }
        if self.last_publish.elapsed() >= Duration::from_secs(1) {
            self.publish_metrics();
        }
        Ok(())
    }

    /// Logs a consumer error, and fails the thread on one that means a
    /// partition cannot go on (see [`DataErrors`]).
    fn consumer_error<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        error: KafkaError,
    ) -> Result<()> {
        self.data_errors
            .check(consumer, error, &format!("thread {}", self.index))
    }

    /// Copies this thread's counters to the shared metrics.
    fn publish_metrics(&mut self) {
        self.last_publish = Instant::now();
        let index = self.index;
        let tasks = self.tasks.iter().map(|(id, task)| {
            (
                *id,
                TaskMetrics {
                    thread: index,
                    records_processed: task.core.processed(),
                    dropped_records: task.core.drops.total(),
                    dead_lettered_records: task.core.drops.dead_lettered(),
                    dropped_unreadable: task.core.drops.unreadable,
                    dropped_failed: task.core.drops.failed,
                    dropped_invalid_timestamp: task.core.drops.invalid_timestamp,
                    dead_lettered_unreadable: task.core.drops.dead_lettered_unreadable,
                    dead_lettered_failed: task.core.drops.dead_lettered_failed,
                },
            )
        });
        self.shared.metrics.publish_thread(index, self.stats, tasks);
    }

    fn task_dir(&self, id: TaskId) -> PathBuf {
        self.plan.state_dir.join(id.to_string())
    }

    /// Creates and restores the tasks of newly assigned partitions.
    fn assign(&mut self, assignment: Vec<(String, i32)>) -> Result<()> {
        let mut wanted: Vec<TaskId> = assignment
            .iter()
            .filter_map(|(topic, partition)| {
                self.plan
                    .topic_to_subtopology
                    .get(topic)
                    .map(|&subtopology| TaskId {
                        subtopology,
                        partition: *partition,
                    })
            })
            .collect();
        wanted.sort();
        wanted.dedup();
        for id in wanted {
            if self.tasks.contains_key(&id) {
                continue;
            }
            let task = self.create_task(id)?;
            self.shared.local_stores.register(id, task.core.stores());
            self.tasks.insert(id, task);
        }
        self.publish_metrics();
        let partitions = assignment
            .into_iter()
            .filter(|(topic, _)| self.plan.topic_to_subtopology.contains_key(topic))
            .collect();
        self.shared.assignment.set(self.index, partitions);
        Ok(())
    }

    fn create_task(&mut self, id: TaskId) -> Result<RunningTask> {
        let plan = self.plan.clone();
        let sub = &plan.subtopologies[id.subtopology as usize];
        let dir = self.task_dir(id);
        let restore_consumer = self
            .restore_consumer
            .as_ref()
            .ok_or_else(|| kafka_failure("restoring", "the stream thread is shutting down"))?;
        let mut checkpoint = read_checkpoint(&dir);
        if let Some(offsets) = &checkpoint
            && let Some(reason) = checkpoint_mismatch(restore_consumer, offsets)?
        {
            log::warn!("task {id}: {reason}: the changelog was recreated or truncated");
            // Gone first: a crash before the next checkpoint must not find
            // it again beside the rebuilt stores.
            delete_checkpoint(&dir);
            checkpoint = None;
        }
        if checkpoint.is_none() && dir.join("rocksdb").exists() {
            // Local files that no checkpoint vouches for: restore in full.
            log::info!("task {id}: no valid checkpoint; wiping local state for a full restore");
            std::fs::remove_dir_all(dir.join("rocksdb")).map_err(|source| StreamsError::Io {
                action: format!("wiping {}", dir.display()),
                source,
            })?;
        }
        let setup = TaskSetup {
            application_id: &plan.application_id,
            id,
            task_dir: &dir,
            collector: self.collector.clone() as Arc<dyn RecordCollector>,
            globals: plan.globals.clone(),
            deserialization_handler: plan.config.deserialization_handler(),
            processing_handler: plan.config.processing_handler(),
            wall_clock: now_ms(),
        };
        let core = TaskCore::new(&plan.topology, &sub.nodes, setup)?;
        let listener = RecordingRestoreListener {
            metrics: &self.shared.metrics,
            inner: self.shared.restore_listener(),
            end: Default::default(),
        };
        let changelog = restore_task(
            &core,
            restore_consumer,
            &checkpoint.unwrap_or_default(),
            &listener,
        )?;
        if plan.guarantee == ProcessingGuarantee::ExactlyOnceV2 {
            // Under exactly-once the local state may run ahead of committed
            // transactions: only a clean close vouches for it.
            delete_checkpoint(&dir);
        }
        let mut task = RunningTask {
            core,
            dir,
            consumed: Vec::new(),
            changelog,
        };
        task.core.init()?;
        log::info!("thread {}: task {id} running", self.index);
        Ok(task)
    }

    fn process(&mut self, message: &BorrowedMessage<'_>) -> Result<()> {
        // Its topic is read from librdkafka (and checked as UTF-8) once.
        let raw = raw_record(message);
        let (topic, partition, next) = (raw.topic, raw.partition, raw.offset + 1);
        let Some(&subtopology) = self.plan.topic_to_subtopology.get(topic) else {
            return Ok(());
        };
        let id = TaskId {
            subtopology,
            partition,
        };
        // The consumed offset joins the transaction even if no output does.
        self.collector.begin_if_needed()?;
        let Some(task) = self.tasks.get_mut(&id) else {
            log::warn!(
                "thread {}: record for unassigned task {id} ignored",
                self.index
            );
            return Ok(());
        };
        // Process latency is sampled on one record in PROCESS_SAMPLE: two
        // clock reads per record would cost more than some topologies.
        if self.stats.records_processed.is_multiple_of(PROCESS_SAMPLE) {
            let started = Instant::now();
            task.core.process(raw)?;
            self.stats.process_nanos += started.elapsed().as_nanos() as u64 * PROCESS_SAMPLE;
        } else {
            task.core.process(raw)?;
        }
        self.stats.records_processed += 1;
        match task
            .consumed
            .iter_mut()
            .find(|(t, p, _)| *p == partition && t == topic)
        {
            Some((_, _, offset)) => *offset = next,
            None => task.consumed.push((topic.to_owned(), partition, next)),
        }
        Ok(())
    }

    fn offsets_to_commit(&self) -> Result<TopicPartitionList> {
        let mut list = TopicPartitionList::new();
        for task in self.tasks.values() {
            for (topic, partition, offset) in &task.consumed {
                list.add_partition_offset(topic, *partition, Offset::Offset(*offset))
                    .map_err(|e| kafka_error("offsets", e))?;
            }
        }
        Ok(list)
    }

    /// Flushes stores and output, then commits consumed offsets (in the
    /// transaction under exactly-once), then writes checkpoints.
    fn commit<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<()> {
        let started = Instant::now();
        let committed = self.commit_inner(consumer);
        // The interval counts from the end of a commit: a commit as slow
        // as the interval must not make every step commit.
        self.last_commit = Instant::now();
        if committed.is_ok() {
            self.stats.commits += 1;
            self.stats.commit_nanos += started.elapsed().as_nanos() as u64;
        }
        committed
    }

    fn commit_inner<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<()> {
        for task in self.tasks.values_mut() {
            match self.plan.guarantee {
                // Checkpoints follow: the stores must hold what they claim.
                ProcessingGuarantee::AtLeastOnce => task.core.flush()?,
                // No checkpoint while running (a crash wipes the state), so
                // the changelog records are all the transaction needs, as
                // in Kafka Streams (`flushCache`). A full flush would write
                // each RocksDB store's memtable out every 100 ms: a small
                // table file per store per commit for compaction to merge.
                ProcessingGuarantee::ExactlyOnceV2 => task.core.flush_cache()?,
            }
        }
        let offsets = self.offsets_to_commit()?;
        match self.plan.guarantee {
            ProcessingGuarantee::AtLeastOnce => {
                self.collector.flush(REQUEST_TIMEOUT)?;
                if offsets.count() > 0 {
                    consumer.commit(&offsets, CommitMode::Sync).map_err(|e| {
                        match e.rdkafka_error_code() {
                            Some(code) if is_migration(code) => {
                                StreamsError::TaskMigrated(format!("committing offsets: {e}"))
                            }
                            _ => kafka_error("committing offsets", e),
                        }
                    })?;
                }
                self.write_checkpoints()?;
            }
            ProcessingGuarantee::ExactlyOnceV2 => {
                if !self.collector.in_transaction() {
                    return Ok(());
                }
                let metadata = consumer.group_metadata().ok_or_else(|| {
                    kafka_failure("committing a transaction", "no group metadata")
                })?;
                self.collector.commit_transaction(&offsets, &metadata)?;
                log::debug!(
                    "thread {}: committed a transaction with offsets {}",
                    self.index,
                    describe_offsets(&offsets)
                );
            }
        }
        for task in self.tasks.values_mut() {
            task.consumed.clear();
        }
        Ok(())
    }

    fn write_checkpoints(&mut self) -> Result<()> {
        for task in self.tasks.values_mut() {
            let mut offsets = task.changelog.clone();
            for (topic, partition) in task.changelog.keys() {
                if let Some(next) = self.collector.tracker.next_offset(topic, *partition) {
                    let entry = offsets.entry((topic.clone(), *partition)).or_insert(next);
                    *entry = (*entry).max(next);
                }
            }
            let persistent = task
                .core
                .stores()
                .values()
                .any(|s| s.persistent && s.changelog.is_some());
            if persistent {
                write_checkpoint(&task.dir, &offsets)?;
            }
            task.changelog = offsets;
        }
        Ok(())
    }

    /// Commits, then closes every task cleanly (with checkpoints).
    fn revoke_all<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<()> {
        if self.tasks.is_empty() {
            return Ok(());
        }
        self.commit(consumer)?;
        if self.plan.guarantee == ProcessingGuarantee::ExactlyOnceV2 {
            // The commit left the stores' files behind their contents.
            for task in self.tasks.values_mut() {
                task.core.flush()?;
            }
            self.write_checkpoints()?;
        }
        self.shared.assignment.set(self.index, Default::default());
        let mut first = Ok(());
        for (id, mut task) in std::mem::take(&mut self.tasks) {
            // Queries stop seeing the store before it closes.
            self.shared.local_stores.deregister(id);
            if let Err(error) = task.core.close() {
                log::error!("closing task {id}: {error}");
                first = first.and(Err(error));
            }
        }
        first
    }

    /// Closes tasks without committing (after a failure). Under
    /// exactly-once their local state may hold uncommitted writes: wipe it.
    fn close_all_dirty(&mut self) {
        self.collector.abort_transaction();
        self.shared.assignment.set(self.index, Default::default());
        for (id, mut task) in std::mem::take(&mut self.tasks) {
            self.shared.local_stores.deregister(id);
            let _ = task.core.close();
            if self.plan.guarantee == ProcessingGuarantee::ExactlyOnceV2 {
                delete_checkpoint(&task.dir);
                let _ = std::fs::remove_dir_all(task.dir.join("rocksdb"));
                log::info!("task {id} closed dirty; its local state was wiped");
            }
        }
    }
}

impl Engine {
    /// `error` as `TaskMigrated` when the producer was fenced: a send that
    /// failed for that reason may surface wrapped, as a store's changelog
    /// error for instance.
    fn migrated(&self, error: StreamsError) -> StreamsError {
        match (&error, self.collector.fenced()) {
            (StreamsError::TaskMigrated(_), _) | (_, None) => error,
            (_, Some(reason)) => StreamsError::TaskMigrated(format!("{error} ({reason})")),
        }
    }

    /// Handles Kafka Streams' `TaskMigratedException`: every task is closed
    /// dirty (its uncommitted work is someone else's now) and, under
    /// exactly-once, a new producer replaces the fenced one. Other errors
    /// pass through.
    fn recover_if_migrated(&mut self, error: StreamsError) -> Result<()> {
        let StreamsError::TaskMigrated(reason) = error else {
            return Err(error);
        };
        log::warn!(
            "thread {}: {reason}; closing tasks dirty and rejoining the group",
            self.index
        );
        self.close_all_dirty();
        if self.plan.guarantee == ProcessingGuarantee::ExactlyOnceV2 {
            self.collector = create_collector(&self.plan, self.index)?;
        }
        Ok(())
    }
}

impl Shared {
    pub(crate) fn thread_rebalancing(&self, index: usize, rebalancing: bool) {
        let all_running = {
            let mut threads = self.threads.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(slot) = threads.get_mut(index) {
                *slot = !rebalancing;
            }
            threads.iter().all(|running| *running)
        };
        if rebalancing {
            self.transition(State::Rebalancing);
        } else if all_running {
            self.transition(State::Running);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::statistics::Partition;

    fn partition(app: i64, committed: i64, hi: i64, ls: i64) -> Partition {
        Partition {
            app_offset: app,
            committed_offset: committed,
            hi_offset: hi,
            ls_offset: ls,
            next_offset: app,
            fetch_state: "active".into(),
            ..Partition::default()
        }
    }

    #[test]
    fn records_lag_counts_from_the_position_not_the_committed_offset() {
        // Caught up, with the last commit 5,000 records back.
        assert_eq!(
            records_lag(&partition(9_000, 4_000, 9_000, 9_000), false),
            0
        );
        assert_eq!(
            records_lag(&partition(8_990, 4_000, 9_000, 9_000), false),
            10
        );
        // read_committed ends at the last stable offset, when known.
        assert_eq!(records_lag(&partition(8_990, -1001, 9_000, 8_995), true), 5);
        assert_eq!(records_lag(&partition(8_990, -1001, 9_000, -1), true), 10);
        // A broker that reports a low end: no negative lag.
        assert_eq!(records_lag(&partition(9_004, 0, 9_000, 9_000), false), 0);
        // Assigned, nothing handed over yet: from where fetching starts.
        let mut fresh = partition(-1001, -1001, 50, 50);
        fresh.next_offset = 20;
        assert_eq!(records_lag(&fresh, false), 30);
        // Not consumed (revoked): unknown.
        fresh.fetch_state = "stopped".into();
        assert_eq!(records_lag(&fresh, false), -1);
        assert_eq!(records_lag(&partition(10, 0, -1001, -1001), false), -1);
    }
}
