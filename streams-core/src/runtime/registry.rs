//! The registry of live instances. Kafka Streams learns where every task
//! runs from the group protocol; brokers that do not answer
//! ListGroups/DescribeGroups (and clients that are not the group leader)
//! cannot, so the registry rides on Kafka itself: a compacted internal
//! topic `<application.id>-instance-registry`, keyed by endpoint, to which
//! each instance writes its endpoint, store names and source partitions
//! when its assignment changes and on a heartbeat, and a tombstone when it
//! stops cleanly. Every instance reads the whole topic. An instance whose
//! last heartbeat is older than `registry.instance.timeout.ms` is dead.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::Shared;
use super::clients::{client_config, kafka_error};
use super::query::{HostInfo, StreamsMetadata};
use crate::config::{ClientKind, StreamsConfig};
use crate::error::{Result, StreamsError};

/// The registry topic of an application.
pub(crate) fn registry_topic(application_id: &str) -> String {
    format!("{application_id}-instance-registry")
}

/// The registry key of a request that every instance shut down: not a
/// `host:port`, so no instance announces under it.
const SHUTDOWN_KEY: &str = "__shutdown__";

/// A request that every instance of the application shut down (an
/// uncaught-exception handler answered `ShutdownApplication`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ShutdownRequest {
    /// The instance that asked (its process id).
    instance: String,
    reason: String,
    /// When it asked (its clock, ms since the epoch): instances started
    /// after that are not bound by it.
    requested_ms: i64,
}

/// Asks every instance of the application to shut down, through the
/// registry topic that they all read.
pub(crate) fn request_shutdown(
    config: &StreamsConfig,
    application_id: &str,
    error: &StreamsError,
) -> Result<()> {
    let producer: BaseProducer = client_config(config, ClientKind::Producer)
        .set("linger.ms", "0")
        .create()
        .map_err(|e| kafka_error("creating the shutdown producer", e))?;
    let request = ShutdownRequest {
        instance: config
            .get("application.server")
            .unwrap_or("an instance")
            .to_owned(),
        reason: error.to_string(),
        requested_ms: super::now_ms(),
    };
    let value = serde_json::to_vec(&request).unwrap_or_default();
    let topic = registry_topic(application_id);
    producer
        .send(BaseRecord::to(&topic).key(SHUTDOWN_KEY).payload(&value))
        .map_err(|(e, _)| kafka_error("asking the application to shut down", e))?;
    producer
        .flush(Duration::from_secs(10))
        .map_err(|e| kafka_error("asking the application to shut down", e))?;
    log::error!("asked every instance of {application_id} to shut down: {error}");
    Ok(())
}

/// A shutdown request read from the registry topic: one made since this
/// instance started stops it.
fn on_shutdown_request(value: Option<&[u8]>, shared: &Shared) {
    let Some(Ok(request)) = value.map(serde_json::from_slice::<ShutdownRequest>) else {
        return;
    };
    if request.requested_ms < shared.started_ms.load(Ordering::Relaxed) {
        return;
    }
    shared.fail(StreamsError::ApplicationShutdown {
        instance: request.instance,
        reason: request.reason,
    });
}

/// One instance's announcement, as JSON on the registry topic.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct Announcement {
    host: String,
    port: u16,
    store_names: BTreeSet<String>,
    partitions: Vec<TopicPartition>,
    /// When the instance sent this (its clock, ms since the epoch).
    heartbeat_ms: i64,
    /// When its assignment last changed: the newer claim on a partition
    /// wins while a dead owner has not yet timed out.
    assigned_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
struct TopicPartition {
    topic: String,
    partition: i32,
}

/// What this instance processes now; stream threads update it.
#[derive(Default)]
pub(crate) struct LocalAssignment {
    partitions: Mutex<BTreeMap<usize, BTreeSet<(String, i32)>>>,
    version: AtomicU64,
    assigned_ms: AtomicU64,
}

impl LocalAssignment {
    /// Sets the partitions of stream thread `thread`.
    pub(crate) fn set(&self, thread: usize, partitions: BTreeSet<(String, i32)>) {
        let mut all = self
            .partitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if all.get(&thread) != Some(&partitions) {
            all.insert(thread, partitions);
            self.assigned_ms
                .store(super::now_ms() as u64, Ordering::Relaxed);
            self.version.fetch_add(1, Ordering::Release);
        }
    }

    /// Every partition of every thread.
    pub(crate) fn partitions(&self) -> BTreeSet<(String, i32)> {
        self.partitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .flatten()
            .cloned()
            .collect()
    }

    fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }
}

/// The instances read from the registry topic.
#[derive(Default)]
pub(crate) struct Registry {
    instances: RwLock<BTreeMap<String, Announcement>>,
}

impl Registry {
    fn apply(&self, key: &str, value: Option<&[u8]>) {
        let mut instances = self
            .instances
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        match value.map(serde_json::from_slice::<Announcement>) {
            None => {
                instances.remove(key);
            }
            Some(Ok(announcement)) => {
                instances.insert(key.to_owned(), announcement);
            }
            Some(Err(error)) => log::warn!("instance registry: unreadable entry {key}: {error}"),
        }
    }

    /// Live instances other than `me`, newest assignment first.
    fn alive(
        &self,
        me: Option<&HostInfo>,
        now_ms: i64,
        timeout: Duration,
    ) -> Vec<(i64, StreamsMetadata)> {
        let instances = self
            .instances
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        instances
            .values()
            .filter(|a| now_ms - a.heartbeat_ms <= timeout.as_millis() as i64)
            .filter(|a| me.is_none_or(|me| me.host != a.host || me.port != a.port))
            .map(|a| {
                (
                    a.assigned_ms,
                    StreamsMetadata {
                        host_info: HostInfo {
                            host: a.host.clone(),
                            port: a.port,
                        },
                        state_store_names: a.store_names.clone(),
                        topic_partitions: a
                            .partitions
                            .iter()
                            .map(|tp| (tp.topic.clone(), tp.partition))
                            .collect(),
                    },
                )
            })
            .collect()
    }
}

impl Shared {
    /// This instance as the registry would show it now.
    pub(crate) fn local_metadata(&self) -> Option<(i64, StreamsMetadata)> {
        let me = self.endpoint.clone()?;
        let mut stores = self.local_stores.names();
        stores.extend(self.query_plan().global_stores.iter().cloned());
        Some((
            self.assignment.assigned_ms.load(Ordering::Relaxed) as i64,
            StreamsMetadata {
                host_info: me,
                state_store_names: stores,
                topic_partitions: self.assignment.partitions(),
            },
        ))
    }

    /// Every live instance, this one included, the newest assignment first
    /// (so that a partition claimed twice during a handover resolves to
    /// its new owner).
    pub(crate) fn live_instances(&self) -> Vec<StreamsMetadata> {
        let mut all = self.registry.alive(
            self.endpoint.as_ref(),
            super::now_ms(),
            self.registry_timeout,
        );
        all.extend(self.local_metadata());
        all.sort_by(|a, b| {
            b.0.cmp(&a.0)
                .then_with(|| a.1.host_info.cmp(&b.1.host_info))
        });
        all.into_iter().map(|(_, m)| m).collect()
    }
}

/// Starts the registry thread: it reads the registry topic and, when this
/// instance has an `application.server`, announces it.
pub(crate) fn start(
    config: &StreamsConfig,
    application_id: &str,
    shared: Arc<Shared>,
) -> Result<std::thread::JoinHandle<()>> {
    let topic = registry_topic(application_id);
    let mut consumer_config = client_config(config, ClientKind::Consumer);
    // librdkafka wants a group for assign(); this one never joins or commits.
    consumer_config
        .set("group.id", format!("{application_id}-registry-reader"))
        .set("enable.auto.commit", "false");
    let consumer: BaseConsumer = consumer_config
        .create()
        .map_err(|e| kafka_error("creating the registry consumer", e))?;
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(&topic, 0, Offset::Beginning)
        .map_err(|e| kafka_error("assigning the registry topic", e))?;
    consumer
        .assign(&assignment)
        .map_err(|e| kafka_error("assigning the registry topic", e))?;
    let producer: Option<BaseProducer> = match &shared.endpoint {
        Some(_) => Some(
            client_config(config, ClientKind::Producer)
                .set("linger.ms", "0")
                .create()
                .map_err(|e| kafka_error("creating the registry producer", e))?,
        ),
        None => None,
    };
    let (heartbeat, _) = config.registry_timing()?;
    std::thread::Builder::new()
        .name("registry-thread".into())
        .spawn(move || run(&consumer, producer.as_ref(), &topic, heartbeat, &shared))
        .map_err(|source| StreamsError::Io {
            action: "spawning the registry thread".into(),
            source,
        })
}

fn run(
    consumer: &BaseConsumer,
    producer: Option<&BaseProducer>,
    topic: &str,
    heartbeat: Duration,
    shared: &Shared,
) {
    let mut announced: Option<(u64, Instant)> = None;
    while !shared.stopping() {
        match consumer.poll(Duration::from_millis(50)) {
            Some(Ok(message)) => match message.key().and_then(|k| std::str::from_utf8(k).ok()) {
                Some(SHUTDOWN_KEY) => on_shutdown_request(message.payload(), shared),
                Some(key) => shared.registry.apply(key, message.payload()),
                None => {}
            },
            Some(Err(KafkaError::PartitionEOF(_))) | None => {}
            Some(Err(error)) => log::debug!("instance registry: {error}"),
        }
        let (Some(producer), Some((stamp, metadata))) = (producer, shared.local_metadata()) else {
            continue;
        };
        let version = shared.assignment.version();
        let due = announced.is_none_or(|(seen, at)| seen != version || at.elapsed() >= heartbeat);
        if due {
            let announcement = Announcement {
                host: metadata.host_info.host.clone(),
                port: metadata.host_info.port,
                store_names: metadata.state_store_names,
                partitions: metadata
                    .topic_partitions
                    .into_iter()
                    .map(|(topic, partition)| TopicPartition { topic, partition })
                    .collect(),
                heartbeat_ms: super::now_ms(),
                assigned_ms: stamp,
            };
            let key = metadata.host_info.to_string();
            let value = serde_json::to_vec(&announcement).unwrap_or_default();
            if let Err((error, _)) = producer.send(BaseRecord::to(topic).key(&key).payload(&value))
            {
                log::warn!("instance registry: announcing {key}: {error}");
            }
            announced = Some((version, Instant::now()));
        }
        producer.poll(Duration::ZERO);
    }
    // A clean stop leaves the registry at once.
    if let (Some(producer), Some(me)) = (producer, &shared.endpoint) {
        let key = me.to_string();
        let _ = producer.send(BaseRecord::<String, [u8]>::to(topic).key(&key));
        if let Err(error) = producer.flush(Duration::from_secs(5)) {
            log::warn!("instance registry: leaving: {error}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn announcement(port: u16, heartbeat_ms: i64) -> Vec<u8> {
        serde_json::to_vec(&Announcement {
            host: "h".into(),
            port,
            store_names: BTreeSet::from(["s".to_owned()]),
            partitions: vec![TopicPartition {
                topic: "t".into(),
                partition: 1,
            }],
            heartbeat_ms,
            assigned_ms: 5,
        })
        .unwrap()
    }

    #[test]
    fn silent_instances_expire_and_tombstones_remove_at_once() {
        let registry = Registry::default();
        let timeout = Duration::from_secs(10);
        registry.apply("h:1", Some(&announcement(1, 100_000)));
        registry.apply("h:2", Some(&announcement(2, 105_000)));
        registry.apply("h:3", Some(b"not json"));
        let ports = |now| -> Vec<u16> {
            registry
                .alive(None, now, timeout)
                .into_iter()
                .map(|(_, m)| m.host_info.port)
                .collect()
        };
        assert_eq!(ports(106_000), [1, 2]);
        assert_eq!(ports(112_000), [2], "h:1 went silent");
        registry.apply("h:2", None);
        assert!(ports(106_000).iter().all(|p| *p != 2), "h:2 left");
        let me = HostInfo {
            host: "h".into(),
            port: 1,
        };
        assert!(registry.alive(Some(&me), 106_000, timeout).is_empty());
    }
}
