//! The global thread: reads every partition of each global store's topic,
//! on every instance, into the global stores; caught up before stream
//! threads start, then kept up to date.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};

use super::clients::{
    EndReadingConsumer, EndReadingContext, REQUEST_TIMEOUT, client_config, kafka_error,
    partition_counts, position,
};
use super::{Shared, raw_record};
use crate::config::{ClientKind, StreamsConfig};
use crate::error::{Result, StreamsError};
use crate::task::{GlobalStores, ProducerRecord, RecordCollector, TaskCore, TaskSetup};
use crate::{TaskId, Topology};

/// Global processors only fill stores; anything they produce is a mistake.
struct NoOutput;

impl RecordCollector for NoOutput {
    fn send(&self, record: ProducerRecord<'_>) -> Result<()> {
        Err(StreamsError::Topology(format!(
            "a global store's processor tried to write to {}",
            record.topic
        )))
    }
}

/// Builds the global stores, reads their topics to the end, and starts the
/// thread that keeps them current. `None` when the topology has none.
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
    // Global stores are rebuilt from their topics at every start: the topic
    // is the changelog, and stale local keys could outlive their tombstones.
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|source| StreamsError::Io {
            action: format!("wiping {}", dir.display()),
            source,
        })?;
    }
    let setup = TaskSetup {
        application_id,
        id: TaskId::GLOBAL,
        task_dir: &dir,
        collector: Arc::new(NoOutput),
        globals: Arc::default(),
        deserialization_handler: config.deserialization_handler(),
        wall_clock: 0,
    };
    let mut task = TaskCore::new(topology, &nodes, setup)?;
    task.init()?;
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
    let mut assignment = TopicPartitionList::new();
    let mut remaining = HashMap::new();
    for topic in &topics {
        let count = counts[topic].ok_or_else(|| {
            StreamsError::Topology(format!(
                "global store topic {topic} does not exist; create it before starting"
            ))
        })?;
        for partition in 0..count {
            assignment
                .add_partition_offset(topic, partition, Offset::Beginning)
                .map_err(|e| kafka_error("assigning", e))?;
            let (low, high) = consumer
                .fetch_watermarks(topic, partition, REQUEST_TIMEOUT)
                .map_err(|e| kafka_error(&format!("reading the end of {topic}[{partition}]"), e))?;
            if high > low {
                remaining.insert((topic.clone(), partition), high);
            }
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
                task.process(raw_record(&message))?;
                records += 1;
                last_progress = Instant::now();
                let key = (message.topic().to_owned(), message.partition());
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
                    return Err(StreamsError::Kafka(format!(
                        "bootstrapping global stores stalled; still reading {remaining:?}"
                    )));
                }
            }
        }
    }
    log::info!(
        "global stores bootstrapped: {records} records in {:.2} s",
        began.elapsed().as_secs_f64()
    );
    let stores = Arc::new(task.stores().clone());
    let handle = std::thread::Builder::new()
        .name("global-thread".into())
        .spawn(move || {
            while !shared.stopping() {
                match consumer.poll(Duration::from_millis(100)) {
                    Some(Ok(message)) => {
                        if let Err(error) = task.process(raw_record(&message)) {
                            shared.fail(error);
                            break;
                        }
                    }
                    Some(Err(KafkaError::PartitionEOF(_))) | None => {}
                    Some(Err(error)) => log::warn!("global thread: {error}"),
                }
            }
            let _ = task.close();
        })
        .map_err(|source| StreamsError::Io {
            action: "spawning the global thread".into(),
            source,
        })?;
    Ok(Some((stores, handle)))
}
