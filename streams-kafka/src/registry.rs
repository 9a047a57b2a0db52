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
use streams_core::config::{ClientKind, StreamsConfig};
use streams_core::error::{Result, StreamsError};

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

impl Announcement {
    /// Whether this entry may be kept: its key is its endpoint, the
    /// endpoint is one an instance can listen on, and its heartbeat is
    /// not beyond `now_ms` by more than `timeout` (a clock that far ahead
    /// would keep a dead instance alive; so would a forged stamp).
    fn check(&self, key: &str, now_ms: i64, timeout: Duration) -> std::result::Result<(), String> {
        validate_endpoint(&self.host, self.port)?;
        if key != format!("{}:{}", self.host, self.port) {
            return Err(format!(
                "its key is not its endpoint {}:{}",
                self.host, self.port
            ));
        }
        if self.heartbeat_ms - now_ms > timeout.as_millis() as i64 {
            return Err(format!(
                "its heartbeat is {} ms in the future",
                self.heartbeat_ms - now_ms
            ));
        }
        Ok(())
    }

    /// Heard from within `timeout`, and not from too far in the future.
    fn live(&self, now_ms: i64, timeout: Duration) -> bool {
        let timeout = timeout.as_millis() as i64;
        now_ms - self.heartbeat_ms <= timeout && self.heartbeat_ms - now_ms <= timeout
    }
}

/// Checks that `host:port` is an endpoint a peer may be asked at: a port
/// other than 0, and a host that is an IP address (not unspecified,
/// multicast or broadcast) or a DNS name (labels of letters, digits and
/// `-`, at most 253 characters).
pub fn validate_endpoint(host: &str, port: u16) -> std::result::Result<(), String> {
    if port == 0 {
        return Err("port 0".into());
    }
    let literal = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = literal.parse::<std::net::IpAddr>() {
        let bad = ip.is_unspecified()
            || ip.is_multicast()
            || matches!(ip, std::net::IpAddr::V4(v4) if v4.is_broadcast());
        return match bad {
            true => Err(format!("address {ip} cannot be called")),
            false => Ok(()),
        };
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(format!("host {host:?} is not a host name or an address"));
    }
    Ok(())
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
    /// Applies one record of the registry topic, read at `now_ms`: an
    /// announcement (kept only if [`Announcement::check`] accepts it) or a
    /// tombstone. Anyone who can write to the topic can write an entry, so
    /// an entry is never trusted to name a host worth calling.
    fn apply(&self, key: &str, value: Option<&[u8]>, now_ms: i64, timeout: Duration) {
        let mut instances = self
            .instances
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        match value.map(serde_json::from_slice::<Announcement>) {
            None => {
                instances.remove(key);
            }
            Some(Ok(announcement)) => match announcement.check(key, now_ms, timeout) {
                Ok(()) => {
                    instances.insert(key.to_owned(), announcement);
                }
                Err(why) => log::warn!("instance registry: ignoring entry {key}: {why}"),
            },
            Some(Err(error)) => log::warn!("instance registry: unreadable entry {key}: {error}"),
        }
    }

    /// Forgets entries whose last heartbeat is older than `timeout`: an
    /// instance that died without a tombstone must not stay in memory
    /// for ever (its next heartbeat, if it comes back, adds it again).
    fn forget_expired(&self, now_ms: i64, timeout: Duration) {
        let timeout = timeout.as_millis() as i64;
        self.instances
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, a| now_ms - a.heartbeat_ms <= timeout);
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
            .filter(|a| a.live(now_ms, timeout))
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
    let mut pruned = Instant::now();
    while !shared.stopping() {
        match consumer.poll(Duration::from_millis(50)) {
            Some(Ok(message)) => match message.key().and_then(|k| std::str::from_utf8(k).ok()) {
                Some(SHUTDOWN_KEY) => on_shutdown_request(message.payload(), shared),
                Some(key) => shared.registry.apply(
                    key,
                    message.payload(),
                    super::now_ms(),
                    shared.registry_timeout,
                ),
                None => {}
            },
            Some(Err(KafkaError::PartitionEOF(_))) | None => {}
            Some(Err(error)) => log::debug!("instance registry: {error}"),
        }
        if pruned.elapsed() >= Duration::from_secs(1) {
            shared
                .registry
                .forget_expired(super::now_ms(), shared.registry_timeout);
            pruned = Instant::now();
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

    fn entry(host: &str, port: u16, heartbeat_ms: i64) -> Vec<u8> {
        serde_json::to_vec(&Announcement {
            host: host.into(),
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

    fn announcement(port: u16, heartbeat_ms: i64) -> Vec<u8> {
        entry("h", port, heartbeat_ms)
    }

    fn ports(registry: &Registry, now: i64, timeout: Duration) -> Vec<u16> {
        registry
            .alive(None, now, timeout)
            .into_iter()
            .map(|(_, m)| m.host_info.port)
            .collect()
    }

    #[test]
    fn silent_instances_expire_and_tombstones_remove_at_once() {
        let registry = Registry::default();
        let timeout = Duration::from_secs(10);
        registry.apply("h:1", Some(&announcement(1, 100_000)), 100_000, timeout);
        registry.apply("h:2", Some(&announcement(2, 105_000)), 105_000, timeout);
        registry.apply("h:3", Some(b"not json"), 105_000, timeout);
        assert_eq!(ports(&registry, 106_000, timeout), [1, 2]);
        assert_eq!(ports(&registry, 112_000, timeout), [2], "h:1 went silent");
        registry.apply("h:2", None, 106_000, timeout);
        assert!(
            ports(&registry, 106_000, timeout).iter().all(|p| *p != 2),
            "h:2 left"
        );
        let me = HostInfo {
            host: "h".into(),
            port: 1,
        };
        assert!(registry.alive(Some(&me), 106_000, timeout).is_empty());
    }

    #[test]
    fn expired_entries_are_forgotten() {
        let registry = Registry::default();
        let timeout = Duration::from_secs(10);
        registry.apply("h:1", Some(&announcement(1, 100_000)), 100_000, timeout);
        registry.apply("h:2", Some(&announcement(2, 108_000)), 108_000, timeout);
        registry.forget_expired(111_000, timeout);
        let kept: Vec<String> = registry.instances.read().unwrap().keys().cloned().collect();
        assert_eq!(kept, ["h:2"]);
    }

    #[test]
    fn entries_with_bad_endpoints_or_future_heartbeats_are_ignored() {
        let registry = Registry::default();
        let timeout = Duration::from_secs(10);
        let now = 1_000_000;
        for (host, port) in [
            ("", 1),
            ("h", 0),
            ("evil host", 80),
            ("a/b", 80),
            ("-h", 80),
            ("0.0.0.0", 80),
            ("224.0.0.1", 80),
            ("255.255.255.255", 80),
            ("[::]", 80),
            ("h\r\nX-Injected: 1", 80),
        ] {
            let key = format!("{host}:{port}");
            registry.apply(&key, Some(&entry(host, port, now)), now, timeout);
        }
        // A key that is not the entry's endpoint would let one instance
        // appear twice.
        registry.apply("other:9", Some(&entry("h", 9, now)), now, timeout);
        // A heartbeat from the far future would live for ever.
        registry.apply("h:7", Some(&entry("h", 7, now + 3_600_000)), now, timeout);
        assert!(registry.instances.read().unwrap().is_empty());
        assert!(registry.alive(None, now, timeout).is_empty());
        // Small skew is fine, and good names and addresses are kept.
        registry.apply("h:8", Some(&entry("h", 8, now + 2_000)), now, timeout);
        registry.apply("10.0.0.1:9", Some(&entry("10.0.0.1", 9, now)), now, timeout);
        registry.apply(
            "a-b.example.com:10",
            Some(&entry("a-b.example.com", 10, now)),
            now,
            timeout,
        );
        assert_eq!(ports(&registry, now, timeout), [9, 10, 8]);
    }
}
