//! The global thread: reads every partition of each global store's topic,
//! on every instance, into the global stores; caught up before stream
//! threads start, then kept up to date. Persistent global stores keep a
//! checkpoint (`<state.dir>/<application.id>/global/.checkpoint`), so a
//! restart reads only what was published since.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};

use super::clients::{
    DataErrors, EndReadingConsumer, EndReadingContext, REQUEST_TIMEOUT, client_config, kafka_error,
    kafka_failure, partition_counts, position,
};
use super::restore::{Offsets, read_checkpoint, write_checkpoint};
use super::{Shared, now_ms, raw_record};
use streams_core::config::{ClientKind, StreamsConfig};
use streams_core::engine::{GlobalStores, TaskCore, TaskSetup};
use streams_core::error::{Result, StreamsError, TopologyError};
use streams_core::handlers::{
    DeserializationExceptionHandler, ErrorHandlerContext, HandlerResponse,
    ProcessingExceptionHandler, panic_message,
};
use streams_core::record::RawRecord;
use streams_core::record::{ProducerRecord, RecordCollector};
use streams_core::serde::SerdeError;
use streams_core::{TaskId, Topology};

/// Global processors only fill stores; anything they produce is a mistake.
struct NoOutput;

impl RecordCollector for NoOutput {
    fn send(&self, record: ProducerRecord<'_>) -> Result<()> {
        Err(TopologyError::at_topic(
            record.topic,
            format!(
                "a global store's processor tried to write to {}",
                record.topic
            ),
        )
        .into())
    }
}

/// A global task writes nothing, so it cannot send dead letters: a record
/// the handler would send to a dead-letter topic is skipped (and logged).
struct NoDeadLetters<H: ?Sized>(Arc<H>);

fn skip_dead_letter(response: HandlerResponse, record: Option<&RawRecord>) -> HandlerResponse {
    let HandlerResponse::DeadLetter(topic) = response else {
        return response;
    };
    if let Some(record) = record {
        log::warn!(
            "global store record {}[{}]@{} is skipped, not sent to {topic}: \
             global tasks write no dead letters",
            record.topic,
            record.partition,
            record.offset
        );
    }
    HandlerResponse::Continue
}

impl DeserializationExceptionHandler for NoDeadLetters<dyn DeserializationExceptionHandler> {
    fn handle(&self, record: &RawRecord, error: &SerdeError) -> HandlerResponse {
        skip_dead_letter(self.0.handle(record, error), Some(record))
    }
}

impl ProcessingExceptionHandler for NoDeadLetters<dyn ProcessingExceptionHandler> {
    fn handle(&self, context: &ErrorHandlerContext<'_>, error: &StreamsError) -> HandlerResponse {
        skip_dead_letter(self.0.handle(context, error), context.record)
    }
}

/// Whether every global store keeps its data on disk: then the global
/// task keeps a checkpoint and a restart reads only what was published
/// since (as Kafka Streams does for persistent global stores). Otherwise
/// every start reads the topics from the beginning.
fn all_persistent(topology: &Topology, nodes: &[usize]) -> bool {
    nodes
        .iter()
        .flat_map(|&node| topology.node_stores(node))
        .all(|store| {
            topology
                .store_builder(store)
                .is_some_and(|builder| builder.persistent())
        })
}

fn wipe(dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|source| StreamsError::Io {
            action: format!("wiping {}", dir.display()),
            source,
        })?;
    }
    Ok(())
}

/// Builds the global stores, reads their topics to the end, and starts the
/// thread that keeps them current. `None` when the topology has none.
///
/// Persistent global stores start from their checkpoint; a checkpoint that
/// does not fit the topics (an offset past a partition's end or before its
/// start: a topic deleted and made anew) is dropped with the local files.
/// Stores are flushed once caught up (a store may wait for that to do work
/// it would otherwise repeat for each record read), every
/// `commit.interval.ms`, and at close, each time followed by a checkpoint.
pub(crate) fn start(
    topology: &Topology,
    config: &StreamsConfig,
    application_id: &str,
    state_dir: &Path,
    shared: Arc<Shared>,
) -> Result<Option<(GlobalStores, std::thread::JoinHandle<()>)>> {
    let nodes = topology.global_nodes();
    if nodes.is_empty() {
        return Ok(None);
    }
    let dir = state_dir.join(TaskId::GLOBAL.to_string());
    let persistent = all_persistent(topology, &nodes);
    // Local files are kept only when a checkpoint vouches for them: stale
    // local keys could otherwise outlive their tombstones.
    let mut checkpoint = if persistent {
        read_checkpoint(&dir)
    } else {
        None
    };
    if checkpoint.is_none() {
        wipe(&dir)?;
    }
    let commit_interval = config.commit_interval()?;
    let handler: Arc<dyn DeserializationExceptionHandler> =
        Arc::new(NoDeadLetters(config.deserialization_handler()));
    let processing_handler: Arc<dyn ProcessingExceptionHandler> =
        Arc::new(NoDeadLetters(config.processing_handler()));
    // As Kafka Streams' global update task: the record's own timestamp,
    // no extractor, and no update lost to a negative one.
    let timestamp_extractor: streams_core::timestamps::AnyTimestampExtractor =
        Arc::new(RecordTimestamp);
    let new_task = || -> Result<TaskCore> {
        let setup = TaskSetup {
            application_id,
            id: TaskId::GLOBAL,
            task_dir: &dir,
            collector: Arc::new(NoOutput),
            globals: Arc::default(),
            deserialization_handler: handler.clone(),
            processing_handler: processing_handler.clone(),
            timestamp_extractor: timestamp_extractor.clone(),
            wall_clock: now_ms(),
        };
        TaskCore::new(topology, &nodes, setup)
    };
    let mut task = new_task()?;
    let topics: Vec<String> = task.source_topics().map(str::to_owned).collect();
    let counts = partition_counts(config, &topics)?;
    let mut consumer_config = client_config(config, ClientKind::Consumer);
    // librdkafka wants a group for assign(); this one never joins or commits.
    consumer_config.set("group.id", format!("{application_id}-global-consumer"));
    consumer_config
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true");
    let consumer: EndReadingConsumer = consumer_config
        .create_with_context(EndReadingContext)
        .map_err(|e| kafka_error("creating the global consumer", e))?;
    let mut watermarks = HashMap::new();
    for topic in &topics {
        let count = counts[topic].ok_or_else(|| {
            StreamsError::from(TopologyError::at_topic(
                topic,
                format!("global store topic {topic} does not exist; create it before starting"),
            ))
        })?;
        for partition in 0..count {
            let marks = consumer
                .fetch_watermarks(topic, partition, REQUEST_TIMEOUT)
                .map_err(|e| kafka_error(&format!("reading the end of {topic}[{partition}]"), e))?;
            watermarks.insert((topic.clone(), partition), marks);
        }
    }
    if let Some(offsets) = &checkpoint {
        let misfit = offsets.iter().find(|&(key, &offset)| {
            watermarks
                .get(key)
                .is_none_or(|&(low, high)| offset > high || offset < low)
        });
        if let Some(((topic, partition), offset)) = misfit {
            log::warn!(
                "global checkpoint offset {offset} of {topic}[{partition}] lies outside the \
                 partition; reading the global topics from the beginning"
            );
            task.close()?;
            drop(task);
            wipe(&dir)?;
            checkpoint = None;
            task = new_task()?;
        }
    }
    task.init()?;
    let mut positions = checkpoint.unwrap_or_default();
    let mut assignment = TopicPartitionList::new();
    let mut remaining = HashMap::new();
    for ((topic, partition), &(low, high)) in &watermarks {
        let start = positions.get(&(topic.clone(), *partition)).copied();
        let offset = start.map_or(Offset::Beginning, Offset::Offset);
        assignment
            .add_partition_offset(topic, *partition, offset)
            .map_err(|e| kafka_error("assigning", e))?;
        if high > start.unwrap_or(low) {
            remaining.insert((topic.clone(), *partition), high);
        }
    }
    consumer
        .assign(&assignment)
        .map_err(|e| kafka_error("assigning global topics", e))?;

    // Bootstrap: read every partition to its end before anything else runs.
    let began = Instant::now();
    let mut records = 0u64;
    let mut last_progress = Instant::now();
    while !remaining.is_empty() {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                task.advance_wall_clock(now_ms())?;
                task.process(raw_record(&message))?;
                records += 1;
                last_progress = Instant::now();
                let key = (message.topic().to_owned(), message.partition());
                positions.insert(key.clone(), message.offset() + 1);
                // Caught up once past the end seen at start (a broker may
                // report a low end; the thread reads on after bootstrap).
                if remaining
                    .get(&key)
                    .is_some_and(|&end| message.offset() + 1 >= end)
                {
                    remaining.remove(&key);
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {
                // A topic written transactionally ends with a marker that is
                // never delivered: the position tells that the end is reached.
                remaining.retain(|(topic, partition), end| {
                    position(&consumer, topic, *partition).is_none_or(|p| p < *end)
                });
            }
            Some(Err(error)) => return Err(kafka_error("reading global topics", error)),
            None => {
                if last_progress.elapsed() > REQUEST_TIMEOUT {
                    return Err(kafka_failure(
                        "bootstrapping global stores",
                        format!("stalled; still reading {remaining:?}"),
                    ));
                }
            }
        }
    }
    let checkpoint_to = persistent.then(|| dir.clone());
    flush_and_checkpoint(&mut task, checkpoint_to.as_deref(), &positions)?;
    log::info!(
        "global stores bootstrapped: {records} records in {:.2} s",
        began.elapsed().as_secs_f64()
    );
    let stores = Arc::new(task.stores().clone());
    let handle = std::thread::Builder::new()
        .name("global-thread".into())
        .spawn(move || {
            // A panic in user code is an error of the task's; one outside
            // it (a store's flush, say) must not end the thread unseen.
            let body = AssertUnwindSafe(|| {
                let mut last_flush = Instant::now();
                let mut dirty = false;
                let mut data_errors = DataErrors::default();
                let result = loop {
                    if shared.stopping() {
                        break Ok(());
                    }
                    match consumer.poll(Duration::from_millis(100)) {
                        Some(Ok(message)) => {
                            let processed = task
                                .advance_wall_clock(now_ms())
                                .and_then(|_| task.process(raw_record(&message)));
                            if let Err(error) = processed {
                                break Err(error);
                            }
                            positions.insert(
                                (message.topic().to_owned(), message.partition()),
                                message.offset() + 1,
                            );
                            dirty = true;
                        }
                        Some(Err(KafkaError::PartitionEOF(_))) | None => {}
                        // A batch it cannot read would stall the global
                        // stores for good: that fails the client, as it
                        // does in a stream thread.
                        Some(Err(error)) => {
                            if let Err(error) = data_errors.check(&consumer, error, "global thread")
                            {
                                break Err(error);
                            }
                        }
                    }
                    if dirty && last_flush.elapsed() >= commit_interval {
                        if let Err(error) =
                            flush_and_checkpoint(&mut task, checkpoint_to.as_deref(), &positions)
                        {
                            break Err(error);
                        }
                        last_flush = Instant::now();
                        dirty = false;
                    }
                };
                match result {
                    // A clean stop leaves a checkpoint, so the next start reads
                    // only what is published after it.
                    Ok(()) => {
                        if let Err(error) =
                            flush_and_checkpoint(&mut task, checkpoint_to.as_deref(), &positions)
                        {
                            log::warn!("global thread: no checkpoint at close: {error}");
                        }
                    }
                    Err(error) => shared.fail(error),
                }
                let _ = task.close();
            });
            if let Err(panic) = catch_unwind(body) {
                shared.fail(StreamsError::Panicked {
                    thread: "the global thread".into(),
                    message: panic_message(&*panic),
                });
            }
        })
        .map_err(|source| StreamsError::Io {
            action: "spawning the global thread".into(),
            source,
        })?;
    Ok(Some((stores, handle)))
}

/// Flushes the global stores and, when they are persistent, records how far
/// they reflect their topics.
fn flush_and_checkpoint(
    task: &mut TaskCore,
    dir: Option<&Path>,
    positions: &Offsets,
) -> Result<()> {
    task.flush()?;
    match dir {
        Some(dir) => write_checkpoint(dir, positions),
        None => Ok(()),
    }
}

/// A global record's own timestamp (0 for a negative one): global stores
/// take every update, as Kafka Streams' global task does.
struct RecordTimestamp;

impl<K: ?Sized, V: ?Sized> streams_core::timestamps::TimestampExtractor<K, V> for RecordTimestamp {
    fn extract(
        &self,
        record: &streams_core::timestamps::ConsumerRecord<'_, K, V>,
        _: i64,
    ) -> std::result::Result<i64, streams_core::error::BoxError> {
        Ok(record.timestamp.max(0))
    }
}
