//! A stream thread: one consumer in the application's group, one producer,
//! and the tasks of the partitions assigned to it.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use super::clients::{EndReadingConsumer, REQUEST_TIMEOUT, kafka_failure};
use super::metrics::{RecordingRestoreListener, TaskMetrics, ThreadMetrics};
use super::restore::{
    Offsets, Watermarks, checkpoint_mismatch, delete_checkpoint, read_checkpoint, restore_tasks,
    write_checkpoint,
};
use super::supplier::{
    ClientSupplier, CommitOffset, GroupConsumer, RebalanceListener, TaskProducer,
};
use super::{Shared, State, now_ms};
use partition_group::PartitionGroup;
use streams_core::TaskId;
use streams_core::config::{ProcessingGuarantee, StreamsConfig};
use streams_core::engine::{GlobalStores, TaskCore, TaskSetup};
use streams_core::error::{Result, StreamsError};
use streams_core::handlers::{StreamThreadExceptionResponse, panic_message};
use streams_core::record::{RawView, RecordCollector};
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
    /// Where the threads get their clients.
    pub(crate) supplier: Arc<dyn ClientSupplier>,
}

struct RunningTask {
    core: TaskCore,
    dir: PathBuf,
    /// Next offset to commit per consumed (topic, partition): a task reads
    /// one partition of a few topics, so a short list beats a map.
    consumed: Vec<(String, i32, i64)>,
    /// Changelog offsets the local stores reflect.
    changelog: Offsets,
    /// For a task that reads several partitions: their records, buffered
    /// to be processed lowest timestamp first. A task that reads one
    /// partition processes each record as it comes.
    group: Option<PartitionGroup>,
}

/// A task created but not yet restored.
struct CreatedTask {
    id: TaskId,
    core: TaskCore,
    dir: PathBuf,
    checkpoint: Offsets,
    /// The watermarks of the checkpoint's changelog partitions, as read to
    /// check it: restoration need not ask again.
    watermarks: Watermarks,
}

/// The part of a thread the rebalance callback needs too.
pub(crate) struct Engine {
    plan: Arc<ThreadPlan>,
    shared: Arc<Shared>,
    index: usize,
    collector: Arc<dyn TaskProducer>,
    tasks: BTreeMap<TaskId, RunningTask>,
    pending_assignment: Option<Vec<(String, i32)>>,
    /// Taken at shutdown, to be closed beside the group consumer.
    restore_consumer: Option<EndReadingConsumer>,
    last_commit: Instant,
    stats: ThreadMetrics,
    last_publish: Instant,
    since_housekeeping: u32,
}

/// Records processed between two rounds of commit checks, punctuation by
/// wall-clock time and delivery reports (an idle poll also triggers one).
const HOUSEKEEPING_EVERY: u32 = 64;

/// One record in this many has its processing time measured.
const PROCESS_SAMPLE: u64 = 16;

fn lock(engine: &Mutex<Engine>) -> MutexGuard<'_, Engine> {
    engine.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Hands the consumer's rebalances to the engine.
struct EngineListener {
    engine: Arc<Mutex<Engine>>,
}

impl RebalanceListener for EngineListener {
    fn on_partitions_revoked(&self, consumer: &dyn GroupConsumer, partitions: &[(String, i32)]) {
        let mut engine = lock(&self.engine);
        engine.shared.thread_rebalancing(engine.index, true);
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

    fn on_partitions_assigned(&self, partitions: &[(String, i32)]) {
        let mut engine = lock(&self.engine);
        engine.shared.thread_rebalancing(engine.index, true);
        log::info!(
            "thread {}: partitions assigned: {}",
            engine.index,
            describe(partitions)
        );
        engine.pending_assignment = Some(partitions.to_vec());
        engine.stats.rebalances += 1;
    }
}

fn describe_offsets(offsets: &[CommitOffset]) -> String {
    let list: Vec<String> = offsets
        .iter()
        .map(|(topic, partition, offset)| format!("{topic}[{partition}]={offset}"))
        .collect();
    list.join(", ")
}

fn describe(partitions: &[(String, i32)]) -> String {
    let list: Vec<String> = partitions
        .iter()
        .map(|(topic, partition)| format!("{topic}[{partition}]"))
        .collect();
    if list.is_empty() {
        "none".into()
    } else {
        list.join(", ")
    }
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

/// How long one poll waits for a record.
const POLL: Duration = Duration::from_millis(50);

/// A thread's engine and group consumer, subscribed.
type Started = (Arc<Mutex<Engine>>, Box<dyn GroupConsumer>);

/// Gets the thread's clients from the plan's supplier and subscribes.
fn start(index: usize, plan: &Arc<ThreadPlan>, shared: &Arc<Shared>) -> Result<Started> {
    let supplier = &plan.supplier;
    let collector = supplier.producer(plan, index)?;
    let restore_consumer = supplier.restore_consumer(plan)?;
    let engine = Arc::new(Mutex::new(Engine::new(
        plan.clone(),
        shared.clone(),
        index,
        collector,
        restore_consumer,
    )));
    let listener = Arc::new(EngineListener {
        engine: engine.clone(),
    });
    let consumer = supplier.consumer(plan, index, shared, listener)?;
    let topics = plan.source_topics();
    consumer.subscribe(&topics)?;
    log::info!("thread {index}: subscribed to {}", topics.join(", "));
    Ok((engine, consumer))
}

fn run_inner(index: usize, plan: Arc<ThreadPlan>, shared: &Arc<Shared>) -> Result<()> {
    let (engine, consumer) = start(index, &plan, shared)?;
    let topics = plan.source_topics();

    let mut result = Ok(());
    while !shared.stopping() {
        if let Err(error) = poll_once(&engine, &*consumer, &topics) {
            result = Err(error);
            break;
        }
    }
    let mut guard = lock(&engine);
    if result.is_ok() {
        result = guard.revoke_all(&*consumer);
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

/// One round of the thread's loop: a poll (a record processed, or
/// rebalances handled), then commits and punctuation when due. Tasks that
/// migrated away are closed dirty and the consumer rejoins the group.
fn poll_once(engine: &Mutex<Engine>, consumer: &dyn GroupConsumer, topics: &[&str]) -> Result<()> {
    let polled = consumer.poll(POLL, &mut |raw| lock(engine).on_record(raw, consumer));
    // Under load, the rest runs once per HOUSEKEEPING_EVERY records: it
    // reads clocks and serves the producer's queue. A record's round
    // takes the engine's lock once.
    if let Ok(Some(false)) = polled {
        return Ok(());
    }
    let mut guard = lock(engine);
    let step = polled
        .and_then(|_| guard.housekeeping(consumer))
        .map_err(|e| guard.migrated(e));
    let migrated = matches!(step, Err(StreamsError::TaskMigrated(_)));
    step.or_else(|e| guard.recover_if_migrated(e))?;
    drop(guard);
    if migrated {
        // Rejoin so the group hands our tasks back (or to others).
        consumer.unsubscribe();
        consumer.subscribe(topics)?;
    }
    Ok(())
}

impl ThreadPlan {
    /// The topics the threads subscribe to.
    fn source_topics(&self) -> Vec<&str> {
        self.topic_to_subtopology
            .keys()
            .map(String::as_str)
            .collect()
    }
}

impl Engine {
    fn new(
        plan: Arc<ThreadPlan>,
        shared: Arc<Shared>,
        index: usize,
        collector: Arc<dyn TaskProducer>,
        restore_consumer: Option<EndReadingConsumer>,
    ) -> Self {
        Engine {
            plan,
            shared,
            index,
            collector,
            tasks: BTreeMap::new(),
            pending_assignment: None,
            restore_consumer,
            last_commit: Instant::now(),
            stats: ThreadMetrics::default(),
            last_publish: Instant::now(),
            since_housekeeping: 0,
        }
    }

    /// Creates the tasks of partitions assigned since the last call.
    fn apply_assignment(&mut self, consumer: &dyn GroupConsumer) -> Result<()> {
        if let Some(assignment) = self.pending_assignment.take() {
            self.assign(assignment, consumer)?;
            self.shared.thread_rebalancing(self.index, false);
        }
        Ok(())
    }

    /// Processes one record; returns whether housekeeping is due.
    fn on_record(&mut self, raw: RawView<'_>, consumer: &dyn GroupConsumer) -> Result<bool> {
        self.apply_assignment(consumer)?;
        self.process(raw, consumer)?;
        self.since_housekeeping += 1;
        Ok(self.since_housekeeping >= HOUSEKEEPING_EVERY)
    }

    /// Commits and punctuates when due; serves delivery reports.
    fn housekeeping(&mut self, consumer: &dyn GroupConsumer) -> Result<()> {
        self.apply_assignment(consumer)?;
        // Idle deadlines pass and lags change without a record coming.
        self.process_buffered(consumer)?;
        self.since_housekeeping = 0;
        self.collector.poll();
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
                    dropped_expired_window: task.core.drops.expired_window,
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
    fn assign(
        &mut self,
        assignment: Vec<(String, i32)>,
        consumer: &dyn GroupConsumer,
    ) -> Result<()> {
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
        wanted.retain(|id| !self.tasks.contains_key(id));
        // Every new task's stores restore together (see `restore_tasks`).
        let mut created = Vec::with_capacity(wanted.len());
        for id in wanted {
            created.push(self.create_task(id)?);
        }
        let changelogs = self.restore(&created)?;
        for (created, changelog) in created.into_iter().zip(changelogs) {
            let CreatedTask { id, core, dir, .. } = created;
            let task = self.start_task(id, core, dir, changelog)?;
            if let Some(group) = &task.group {
                // A partition paused for an earlier task of the same
                // partitions must not stay paused.
                consumer.resume(&group.partitions());
            }
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

    /// Creates task `id`'s stores, after dropping a checkpoint that does
    /// not fit the changelogs and wiping local files no checkpoint vouches
    /// for; returns it with its directory and checkpoint, to be restored.
    fn create_task(&mut self, id: TaskId) -> Result<CreatedTask> {
        let plan = self.plan.clone();
        let sub = &plan.subtopologies[id.subtopology as usize];
        let dir = self.task_dir(id);
        let mut checkpoint = read_checkpoint(&dir);
        let mut watermarks = Watermarks::new();
        if let (Some(offsets), Some(consumer)) = (&checkpoint, self.restore_consumer.as_ref())
            && let Some(reason) = checkpoint_mismatch(consumer, offsets, &mut watermarks)?
        {
            log::warn!("task {id}: {reason}: the changelog was recreated or truncated");
            // Gone first: a crash before the next checkpoint must not find
            // it again beside the rebuilt stores.
            delete_checkpoint(&dir);
            checkpoint = None;
        }
        if checkpoint.is_none() && dir.join("rocksdb").exists() {
            // Local files that no checkpoint vouches for: restore in full.
            // An ignored checkpoint (another version) goes first, as above.
            delete_checkpoint(&dir);
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
            timestamp_extractor: plan.config.default_timestamp_extractor()?,
            wall_clock: now_ms(),
        };
        let core = TaskCore::new(&plan.topology, &sub.nodes, setup)?;
        Ok(CreatedTask {
            id,
            core,
            dir,
            checkpoint: checkpoint.unwrap_or_default(),
            watermarks,
        })
    }

    /// Restores the stores of `created` from their changelogs, all at once;
    /// returns each task's changelog offsets.
    fn restore(&self, created: &[CreatedTask]) -> Result<Vec<Offsets>> {
        let with_changelogs = created
            .iter()
            .any(|task| task.core.stores().values().any(|s| s.changelog.is_some()));
        let Some(consumer) = self.restore_consumer.as_ref().filter(|_| with_changelogs) else {
            if with_changelogs {
                // At shutdown (taken to be closed), or from a supplier
                // without one (the thread's tests).
                return Err(kafka_failure(
                    "restoring",
                    "no restore consumer for a task with changelogs",
                ));
            }
            return Ok(vec![Offsets::default(); created.len()]);
        };
        let tasks: Vec<(&TaskCore, &Offsets)> = created
            .iter()
            .map(|task| (&task.core, &task.checkpoint))
            .collect();
        let known: Watermarks = created
            .iter()
            .flat_map(|task| task.watermarks.iter().map(|(k, v)| (k.clone(), *v)))
            .collect();
        let shared = &self.shared;
        restore_tasks(&tasks, consumer, &known, &|| {
            Box::new(RecordingRestoreListener {
                metrics: &shared.metrics,
                inner: shared.restore_listener(),
                end: Default::default(),
            })
        })
    }

    /// Starts a restored task: its processors' `init`, and its partition
    /// group when it reads several partitions.
    fn start_task(
        &mut self,
        id: TaskId,
        core: TaskCore,
        dir: PathBuf,
        changelog: Offsets,
    ) -> Result<RunningTask> {
        let plan = self.plan.clone();
        let sub = &plan.subtopologies[id.subtopology as usize];
        if plan.guarantee == ProcessingGuarantee::ExactlyOnceV2 {
            // Under exactly-once the local state may run ahead of committed
            // transactions: only a clean close vouches for it.
            delete_checkpoint(&dir);
        }
        // Several input partitions: one of each source topic.
        let inputs: Vec<(String, i32)> = sub
            .source_topics
            .iter()
            .map(|topic| (topic.resolve(&plan.application_id), id.partition))
            .collect();
        let group = if inputs.len() > 1 {
            Some(PartitionGroup::new(inputs, plan.config.max_task_idle_ms()?))
        } else {
            None
        };
        let mut task = RunningTask {
            core,
            dir,
            consumed: Vec::new(),
            changelog,
            group,
        };
        task.core.init()?;
        log::info!("thread {}: task {id} running", self.index);
        Ok(task)
    }

    fn process(&mut self, raw: RawView<'_>, consumer: &dyn GroupConsumer) -> Result<()> {
        let (topic, partition) = (raw.topic, raw.partition);
        let Some(&subtopology) = self.plan.topic_to_subtopology.get(topic) else {
            return Ok(());
        };
        let id = TaskId {
            subtopology,
            partition,
        };
        match self.tasks.get_mut(&id) {
            Some(RunningTask {
                group: Some(group), ..
            }) => {
                if let Some(full) = group.add(raw) {
                    consumer.pause(&[full]);
                }
                self.process_ready(id, consumer)
            }
            Some(task) => {
                // The consumed offset joins the transaction even if no
                // output does.
                self.collector.begin_if_needed()?;
                process_record(&mut task.core, &mut task.consumed, &mut self.stats, raw)
            }
            None => {
                self.collector.begin_if_needed()?;
                log::warn!(
                    "thread {}: record for unassigned task {id} ignored",
                    self.index
                );
                Ok(())
            }
        }
    }

    /// Processes the buffered records of task `id` while it is ready to,
    /// lowest timestamp first (see `partition_group.rs`).
    fn process_ready(&mut self, id: TaskId, consumer: &dyn GroupConsumer) -> Result<()> {
        let Some(RunningTask {
            core,
            consumed,
            group: Some(group),
            ..
        }) = self.tasks.get_mut(&id)
        else {
            return Ok(());
        };
        let now = Instant::now();
        let mut lag = |topic: &str, partition: i32| consumer.current_lag(topic, partition);
        while let Some(index) = group.next_partition(now, &mut lag) {
            let Some((mut popped, resume)) = group.pop(index) else {
                break;
            };
            self.collector.begin_if_needed()?;
            let raw = popped.view();
            let partition = [(raw.topic.to_owned(), raw.partition)];
            process_record(core, consumed, &mut self.stats, raw)?;
            if resume {
                consumer.resume(&partition);
            }
        }
        Ok(())
    }

    /// Gives every task with buffered records a chance to process them.
    fn process_buffered(&mut self, consumer: &dyn GroupConsumer) -> Result<()> {
        let waiting: Vec<TaskId> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.group.as_ref().is_some_and(|g| g.buffered() > 0))
            .map(|(id, _)| *id)
            .collect();
        for id in waiting {
            self.process_ready(id, consumer)?;
        }
        Ok(())
    }

    fn offsets_to_commit(&self) -> Vec<CommitOffset> {
        self.tasks
            .values()
            .flat_map(|task| task.consumed.iter().cloned())
            .collect()
    }

    /// Flushes stores and output, then commits consumed offsets (in the
    /// transaction under exactly-once), then writes checkpoints.
    fn commit(&mut self, consumer: &dyn GroupConsumer) -> Result<()> {
        let started = Instant::now();
        let committed = self.commit_inner(consumer);
        // The interval counts from the end of a commit: a commit as slow
        // as the interval must not make every step commit.
        self.last_commit = Instant::now();
        // Only commits with something to commit count, as in Kafka
        // Streams: idle ones would hide the time the others take.
        if let Ok(true) = committed {
            self.stats.commits += 1;
            self.stats.commit_nanos += started.elapsed().as_nanos() as u64;
        }
        committed.map(drop)
    }

    /// Commits; returns whether there was anything to commit (consumed
    /// offsets, or an open transaction).
    fn commit_inner(&mut self, consumer: &dyn GroupConsumer) -> Result<bool> {
        let began = Instant::now();
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
        // The stores' part of a commit (under exactly-once, the caches'
        // records sent downstream), apart from the producer's.
        log::debug!(
            "thread {}: stores flushed in {:?}",
            self.index,
            began.elapsed()
        );
        let offsets = self.offsets_to_commit();
        match self.plan.guarantee {
            ProcessingGuarantee::AtLeastOnce => {
                self.collector.flush(REQUEST_TIMEOUT)?;
                if !offsets.is_empty() {
                    consumer.commit(&offsets)?;
                }
                self.write_checkpoints()?;
            }
            ProcessingGuarantee::ExactlyOnceV2 => {
                if !self.collector.in_transaction() {
                    return Ok(false);
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
        Ok(!offsets.is_empty() || self.plan.guarantee == ProcessingGuarantee::ExactlyOnceV2)
    }

    fn write_checkpoints(&mut self) -> Result<()> {
        for task in self.tasks.values_mut() {
            let mut offsets = task.changelog.clone();
            for (topic, partition) in task.changelog.keys() {
                if let Some(next) = self.collector.next_offset(topic, *partition) {
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
    fn revoke_all(&mut self, consumer: &dyn GroupConsumer) -> Result<()> {
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

/// Runs one record through its task and notes its offset for the commit.
fn process_record(
    core: &mut TaskCore,
    consumed: &mut Vec<(String, i32, i64)>,
    stats: &mut ThreadMetrics,
    raw: RawView<'_>,
) -> Result<()> {
    let (topic, partition, next) = (raw.topic, raw.partition, raw.offset + 1);
    // Process latency is sampled on one record in PROCESS_SAMPLE: two
    // clock reads per record would cost more than some topologies.
    if stats.records_processed.is_multiple_of(PROCESS_SAMPLE) {
        let started = Instant::now();
        core.process(raw)?;
        stats.process_nanos += started.elapsed().as_nanos() as u64 * PROCESS_SAMPLE;
    } else {
        core.process(raw)?;
    }
    stats.records_processed += 1;
    match consumed
        .iter_mut()
        .find(|(t, p, _)| *p == partition && t == topic)
    {
        Some((_, _, offset)) => *offset = next,
        None => consumed.push((topic.to_owned(), partition, next)),
    }
    Ok(())
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
            self.collector = self.plan.supplier.producer(&self.plan, self.index)?;
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

#[path = "partition_group.rs"]
mod partition_group;

#[cfg(test)]
#[path = "thread_tests.rs"]
mod client_seam_tests;
