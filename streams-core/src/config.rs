//! `StreamsConfig`: settings under Kafka Streams' names.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `application.id` | (required) | names the consumer group, internal topics and state directory |
//! | `bootstrap.servers` | (required to run on Kafka) | brokers to connect to |
//! | `state.dir` | `<tmp>/kafka-streams` | where persistent stores live, under `<application.id>/`; one running instance per directory (a lock file) |
//! | `num.stream.threads` | 1 | stream threads per instance |
//! | `commit.interval.ms` | 30000 (100 with exactly-once) | how often to commit |
//! | `processing.guarantee` | `at_least_once` | or `exactly_once_v2` |
//! | `application.server` | none | `host:port` of this instance's query endpoint |
//! | `replication.factor` | -1 (broker default) | of internal topics |
//! | `registry.heartbeat.interval.ms` | 1000 | how often an instance re-announces itself in the instance registry |
//! | `registry.instance.timeout.ms` | 10000 | an instance silent this long is taken for dead |
//! | `default.timestamp.extractor` | `FailOnInvalidTimestamp` | the timestamps of sources without an extractor of their own: a built-in's name (or Kafka's class name); see [`crate::timestamps`] and [`StreamsConfig::with_default_timestamp_extractor`] |
//! | `max.task.idle.ms` | 0 | how long a task reading several partitions waits for one that has no buffered record, once that partition is caught up, before it processes the others' records anyway; -1 never waits |
//!
//! Any other key is passed through to the Kafka clients: `consumer.`,
//! `producer.` and `admin.` prefixes target one client, unprefixed keys
//! go to all.
//!
//! Client defaults that differ from librdkafka's (any setting overrides them):
//!
//! | client | key | default | librdkafka's | why |
//! |---|---|---|---|---|
//! | consumer | `fetch.queue.backoff.ms` | 10 | 1000 | a consumer that drains its prefetch queue fast would otherwise wait up to 1 s before the next fetch (about 5x the throughput in `scripts/bench.sh`'s raw loop) |
//! | consumer | `queued.max.messages.kbytes` | 1024 | 65536 | bounds the prefetch queue, and so each fetch (librdkafka sizes `fetch.max.bytes` to it, but never below `message.max.bytes`): a consumer kept up to 64 MiB of records ahead, most of the model server's memory under load (issue 20; no throughput lost in `scripts/bench.sh` or `scripts/bench-memory.sh`) |
//! | consumer | `queued.min.messages` | 10000 | 100000 | the same bound counted in records, per partition |
//! | producer | `queue.buffering.max.kbytes` | 8192 | 1048576 | bounds the records waiting to be sent or acknowledged (Java's `buffer.memory` is 32 MiB); a full queue makes a send wait while delivery reports are served |
//! | producer | `linger.ms` | 1 under `exactly_once_v2` | 5 | each commit waits for every delivery, the last batch's linger included (Java's `flush()` sends it at once; rdkafka cannot): exactly-once commits took 10.1 ms, now 5.8 (`scripts/bench.sh`'s count-eos, issue 20) |
//! | producer | `enable.idempotence` | true | false | as the Java producer's (since Kafka 3.0), so Kafka Streams': a retried send neither duplicates nor reorders a partition's records, and a changelog restores to the last value written. Under at-least-once it may be turned off (the raw loop ran 10–20% faster without it on the development broker; a topology, no faster beyond the noise); exactly-once requires it |

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::error::{Result, StreamsError};
use crate::handlers::{
    DeserializationExceptionHandler, FailOnProductionError, LogAndContinue, LogAndFail,
    ProcessingExceptionHandler, ProductionExceptionHandler,
};
use crate::timestamps::{AnyTimestampExtractor, FailOnInvalidTimestamp, TimestampExtractor};

/// Settings of a streams application.
#[derive(Clone)]
pub struct StreamsConfig {
    properties: BTreeMap<String, String>,
    deserialization_handler: Arc<dyn DeserializationExceptionHandler>,
    processing_handler: Arc<dyn ProcessingExceptionHandler>,
    production_handler: Arc<dyn ProductionExceptionHandler>,
    /// Set in code; wins over `default.timestamp.extractor`.
    timestamp_extractor: Option<AnyTimestampExtractor>,
}

impl std::fmt::Debug for StreamsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamsConfig")
            .field("properties", &self.properties)
            .finish_non_exhaustive()
    }
}

/// `application.id`
pub const APPLICATION_ID: &str = "application.id";
/// `bootstrap.servers`
pub const BOOTSTRAP_SERVERS: &str = "bootstrap.servers";
/// `state.dir`
pub const STATE_DIR: &str = "state.dir";
/// `num.stream.threads`
pub const NUM_STREAM_THREADS: &str = "num.stream.threads";
/// `commit.interval.ms`
pub const COMMIT_INTERVAL_MS: &str = "commit.interval.ms";
/// `processing.guarantee`
pub const PROCESSING_GUARANTEE: &str = "processing.guarantee";
/// `application.server`
pub const APPLICATION_SERVER: &str = "application.server";
/// `replication.factor`
pub const REPLICATION_FACTOR: &str = "replication.factor";

/// `registry.heartbeat.interval.ms`
pub const REGISTRY_HEARTBEAT_INTERVAL_MS: &str = "registry.heartbeat.interval.ms";
/// `registry.instance.timeout.ms`
pub const REGISTRY_INSTANCE_TIMEOUT_MS: &str = "registry.instance.timeout.ms";

/// `default.timestamp.extractor`
pub const DEFAULT_TIMESTAMP_EXTRACTOR: &str = "default.timestamp.extractor";
/// `max.task.idle.ms`
pub const MAX_TASK_IDLE_MS: &str = "max.task.idle.ms";
/// `max.task.idle.ms` for "never wait" (Kafka Streams'
/// `MAX_TASK_IDLE_MS_DISABLED`).
pub const MAX_TASK_IDLE_MS_DISABLED: i64 = -1;

/// Keys read by the streams runtime itself, not passed to Kafka clients.
const STREAMS_KEYS: &[&str] = &[
    APPLICATION_ID,
    STATE_DIR,
    NUM_STREAM_THREADS,
    COMMIT_INTERVAL_MS,
    PROCESSING_GUARANTEE,
    APPLICATION_SERVER,
    REPLICATION_FACTOR,
    REGISTRY_HEARTBEAT_INTERVAL_MS,
    REGISTRY_INSTANCE_TIMEOUT_MS,
    DEFAULT_TIMESTAMP_EXTRACTOR,
    MAX_TASK_IDLE_MS,
];

/// librdkafka settings the framework's consumers get unless the
/// configuration sets them: `fetch.queue.backoff.ms` 10 instead of 1000, so
/// a consumer that empties its prefetch queue quickly fetches again within
/// 10 ms rather than idling for up to a second; a prefetch queue of 1 MiB
/// and 10,000 records per partition instead of 64 MiB and 100,000, which
/// bounds memory without slowing a stream thread down (see the module
/// documentation).
pub const CONSUMER_DEFAULTS: &[(&str, &str)] = &[
    ("fetch.queue.backoff.ms", "10"),
    ("queued.max.messages.kbytes", "1024"),
    ("queued.min.messages", "10000"),
];

/// librdkafka settings the framework's producers get unless the
/// configuration sets them: idempotence on, as in the Java producer (and so
/// in Kafka Streams), so retries keep each partition's order; at most
/// 8 MiB of records queued for sending instead of 1 GiB.
pub const PRODUCER_DEFAULTS: &[(&str, &str)] = &[
    ("enable.idempotence", "true"),
    ("queue.buffering.max.kbytes", "8192"),
];

/// How records are processed across failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessingGuarantee {
    /// Offsets are committed after the output and store changes they cover
    /// are flushed: after a failure some records are processed again.
    AtLeastOnce,
    /// Output, changelog writes and consumed offsets commit in one
    /// transaction per thread (`exactly_once_v2`).
    ExactlyOnceV2,
}

/// Which Kafka client a pass-through property is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// The stream threads' (and restore) consumers.
    Consumer,
    /// The stream threads' producers.
    Producer,
    /// The admin client.
    Admin,
}

impl ClientKind {
    fn prefix(self) -> &'static str {
        match self {
            ClientKind::Consumer => "consumer.",
            ClientKind::Producer => "producer.",
            ClientKind::Admin => "admin.",
        }
    }
}

impl StreamsConfig {
    /// Settings for the application `application_id`.
    pub fn new(application_id: impl Into<String>) -> Self {
        let mut properties = BTreeMap::new();
        properties.insert(APPLICATION_ID.to_owned(), application_id.into());
        StreamsConfig {
            properties,
            deserialization_handler: Arc::new(LogAndContinue),
            processing_handler: Arc::new(LogAndFail),
            production_handler: Arc::new(FailOnProductionError),
            timestamp_extractor: None,
        }
    }

    /// Sets `key` to `value`.
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(key.into(), value.into());
        self
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.properties.get(key).map(String::as_str)
    }

    /// Every setting.
    pub fn properties(&self) -> &BTreeMap<String, String> {
        &self.properties
    }

    /// Decide with `handler` what happens to records that cannot be read.
    pub fn with_deserialization_handler(
        mut self,
        handler: impl DeserializationExceptionHandler + 'static,
    ) -> Self {
        self.deserialization_handler = Arc::new(handler);
        self
    }

    /// The deserialization-exception handler configured.
    pub fn deserialization_handler(&self) -> Arc<dyn DeserializationExceptionHandler> {
        self.deserialization_handler.clone()
    }

    /// Decide with `handler` what happens to a record whose processing
    /// failed: an error or a panic in user code. The default,
    /// [`LogAndFail`], stops the thread without committing the record.
    ///
    /// ```
    /// use streams_core::StreamsConfig;
    /// use streams_core::handlers::DeadLetterQueue;
    ///
    /// let config = StreamsConfig::new("app")
    ///     .with_processing_handler(DeadLetterQueue::new("app-dead-letters"));
    /// # let _ = config;
    /// ```
    pub fn with_processing_handler(
        mut self,
        handler: impl ProcessingExceptionHandler + 'static,
    ) -> Self {
        self.processing_handler = Arc::new(handler);
        self
    }

    /// The processing-exception handler configured.
    pub fn processing_handler(&self) -> Arc<dyn ProcessingExceptionHandler> {
        self.processing_handler.clone()
    }

    /// Decide with `handler` what a record that cannot be delivered means.
    pub fn with_production_handler(
        mut self,
        handler: impl ProductionExceptionHandler + 'static,
    ) -> Self {
        self.production_handler = Arc::new(handler);
        self
    }

    /// The production-exception handler configured.
    pub fn production_handler(&self) -> Arc<dyn ProductionExceptionHandler> {
        self.production_handler.clone()
    }

    /// Give records of every source without an extractor of its own their
    /// timestamps with `extractor` (`default.timestamp.extractor`, which
    /// this wins over). It sees keys and values as `dyn Any`.
    ///
    /// ```
    /// use std::any::Any;
    /// use streams_core::StreamsConfig;
    /// use streams_core::timestamps::{AnyConsumerRecord, extractor_fn};
    ///
    /// // Numeric values are event times; other records keep their own.
    /// let config = StreamsConfig::new("app").with_default_timestamp_extractor(extractor_fn(
    ///     |record: &AnyConsumerRecord<'_>, _| {
    ///         record.value.downcast_ref::<i64>().copied().unwrap_or(record.timestamp)
    ///     },
    /// ));
    /// # let _ = config;
    /// ```
    pub fn with_default_timestamp_extractor(
        mut self,
        extractor: impl TimestampExtractor<dyn std::any::Any, dyn std::any::Any>,
    ) -> Self {
        self.timestamp_extractor = Some(Arc::new(extractor));
        self
    }

    /// The extractor for sources without one of their own: the one given
    /// to [`with_default_timestamp_extractor`](Self::with_default_timestamp_extractor),
    /// else the built-in `default.timestamp.extractor` names (by its name,
    /// such as `LogAndSkipOnInvalidTimestamp`, or Kafka's class name), else
    /// [`FailOnInvalidTimestamp`].
    ///
    /// ```
    /// use streams_core::StreamsConfig;
    /// use streams_core::config::DEFAULT_TIMESTAMP_EXTRACTOR;
    ///
    /// let config = StreamsConfig::new("app")
    ///     .set(DEFAULT_TIMESTAMP_EXTRACTOR, "UsePartitionTimeOnInvalidTimestamp");
    /// assert!(config.default_timestamp_extractor().is_ok());
    /// let wrong = StreamsConfig::new("app").set(DEFAULT_TIMESTAMP_EXTRACTOR, "Sundial");
    /// assert!(wrong.default_timestamp_extractor().is_err());
    /// ```
    pub fn default_timestamp_extractor(&self) -> Result<AnyTimestampExtractor> {
        if let Some(extractor) = &self.timestamp_extractor {
            return Ok(extractor.clone());
        }
        match self.get(DEFAULT_TIMESTAMP_EXTRACTOR) {
            None => Ok(Arc::new(FailOnInvalidTimestamp)),
            Some(name) => crate::timestamps::built_in(name).ok_or_else(|| {
                StreamsError::Config(format!(
                    "{DEFAULT_TIMESTAMP_EXTRACTOR} is `{name}`, but must be one of \
                     FailOnInvalidTimestamp, LogAndSkipOnInvalidTimestamp, \
                     UsePartitionTimeOnInvalidTimestamp or WallclockTimestampExtractor \
                     (set your own with StreamsConfig::with_default_timestamp_extractor)"
                ))
            }),
        }
    }

    /// `max.task.idle.ms` (default 0): how long, in ms, a task that reads
    /// several partitions waits for one of them that has no buffered
    /// record, once that partition is caught up (nothing more to fetch),
    /// before it processes the others' records, lowest timestamp first,
    /// anyway. While such a partition still has records to fetch, the task
    /// waits for them. [`MAX_TASK_IDLE_MS_DISABLED`] (-1) never waits.
    pub fn max_task_idle_ms(&self) -> Result<i64> {
        self.parse(
            MAX_TASK_IDLE_MS,
            0i64,
            |ms| *ms >= MAX_TASK_IDLE_MS_DISABLED,
            "-1 (never wait) or a number of milliseconds",
        )
    }

    /// The application id; an error when empty or not a valid topic-name part.
    pub fn application_id(&self) -> Result<&str> {
        let id = self.get(APPLICATION_ID).unwrap_or_default();
        if id.is_empty() {
            return Err(StreamsError::Config("application.id must be set".into()));
        }
        if !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(StreamsError::Config(format!(
                "application.id `{id}` may only contain ASCII letters, digits, '.', '_' and '-' (it names topics)"
            )));
        }
        Ok(id)
    }

    /// `bootstrap.servers`; an error when missing.
    pub fn bootstrap_servers(&self) -> Result<&str> {
        match self.get(BOOTSTRAP_SERVERS) {
            Some(servers) if !servers.trim().is_empty() => Ok(servers),
            _ => Err(StreamsError::Config(
                "bootstrap.servers must be set to run on Kafka".into(),
            )),
        }
    }

    fn parse<T: std::str::FromStr>(
        &self,
        key: &str,
        default: T,
        valid: impl Fn(&T) -> bool,
        what: &str,
    ) -> Result<T> {
        match self.get(key) {
            None => Ok(default),
            Some(text) => match text.trim().parse::<T>() {
                Ok(value) if valid(&value) => Ok(value),
                _ => Err(StreamsError::Config(format!(
                    "{key} is `{text}`, but must be {what}"
                ))),
            },
        }
    }

    /// `num.stream.threads` (default 1).
    pub fn num_stream_threads(&self) -> Result<usize> {
        self.parse(
            NUM_STREAM_THREADS,
            1usize,
            |n| *n >= 1,
            "a whole number of at least 1",
        )
    }

    /// `processing.guarantee` (default `at_least_once`).
    pub fn processing_guarantee(&self) -> Result<ProcessingGuarantee> {
        match self.get(PROCESSING_GUARANTEE).unwrap_or("at_least_once") {
            "at_least_once" => Ok(ProcessingGuarantee::AtLeastOnce),
            "exactly_once_v2" | "exactly_once" => Ok(ProcessingGuarantee::ExactlyOnceV2),
            other => Err(StreamsError::Config(format!(
                "processing.guarantee is `{other}`, but must be at_least_once or exactly_once_v2"
            ))),
        }
    }

    /// `commit.interval.ms` (default 30 s, or 100 ms with exactly-once).
    pub fn commit_interval(&self) -> Result<std::time::Duration> {
        let default = match self.processing_guarantee()? {
            ProcessingGuarantee::AtLeastOnce => 30_000,
            ProcessingGuarantee::ExactlyOnceV2 => 100,
        };
        let ms = self.parse(
            COMMIT_INTERVAL_MS,
            default,
            |_| true,
            "a number of milliseconds",
        )?;
        Ok(std::time::Duration::from_millis(ms))
    }

    /// How often an instance re-announces itself in the registry of live
    /// instances, and how long one may stay silent before it is taken for
    /// dead: (`registry.heartbeat.interval.ms`, `registry.instance.timeout.ms`).
    pub fn registry_timing(&self) -> Result<(std::time::Duration, std::time::Duration)> {
        let heartbeat = self.parse(
            REGISTRY_HEARTBEAT_INTERVAL_MS,
            1000u64,
            |ms| *ms >= 10,
            "at least 10 milliseconds",
        )?;
        let timeout = self.parse(
            REGISTRY_INSTANCE_TIMEOUT_MS,
            10_000u64.max(heartbeat * 3),
            |_| true,
            "a number of milliseconds",
        )?;
        if timeout <= heartbeat {
            return Err(StreamsError::Config(format!(
                "{REGISTRY_INSTANCE_TIMEOUT_MS} ({timeout}) must be longer than {REGISTRY_HEARTBEAT_INTERVAL_MS} ({heartbeat})"
            )));
        }
        Ok((
            std::time::Duration::from_millis(heartbeat),
            std::time::Duration::from_millis(timeout),
        ))
    }

    /// `replication.factor` of internal topics (default -1: the broker's default).
    pub fn replication_factor(&self) -> Result<i32> {
        self.parse(
            REPLICATION_FACTOR,
            -1i32,
            |r| *r == -1 || *r >= 1,
            "-1 or at least 1",
        )
    }

    /// `application.server` as host and port, if set.
    pub fn application_server(&self) -> Result<Option<(String, u16)>> {
        let Some(endpoint) = self.get(APPLICATION_SERVER) else {
            return Ok(None);
        };
        let bad = || {
            StreamsError::Config(format!(
                "application.server is `{endpoint}`, but must be host:port"
            ))
        };
        let (host, port) = endpoint.rsplit_once(':').ok_or_else(bad)?;
        let port = port.parse::<u16>().map_err(|_| bad())?;
        if host.is_empty() {
            return Err(bad());
        }
        Ok(Some((host.to_owned(), port)))
    }

    /// The properties for one Kafka client: the framework's defaults for
    /// that client ([`CONSUMER_DEFAULTS`], [`PRODUCER_DEFAULTS`]), then unprefixed keys that are not
    /// streams settings, then keys with the client's prefix (which win).
    pub fn client_properties(&self, kind: ClientKind) -> BTreeMap<String, String> {
        let prefixes = [
            ClientKind::Consumer.prefix(),
            ClientKind::Producer.prefix(),
            ClientKind::Admin.prefix(),
        ];
        let defaults: &[(&str, &str)] = match kind {
            ClientKind::Consumer => CONSUMER_DEFAULTS,
            ClientKind::Producer => PRODUCER_DEFAULTS,
            ClientKind::Admin => &[],
        };
        let mut out: BTreeMap<String, String> = defaults
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        for (key, value) in &self.properties {
            if !STREAMS_KEYS.contains(&key.as_str()) && !prefixes.iter().any(|p| key.starts_with(p))
            {
                out.insert(key.clone(), value.clone());
            }
        }
        for (key, value) in &self.properties {
            if let Some(stripped) = key.strip_prefix(kind.prefix()) {
                out.insert(stripped.to_owned(), value.clone());
            }
        }
        out
    }

    /// Checks every setting the runtime reads; the first problem is the error.
    pub fn validate(&self) -> Result<()> {
        self.application_id()?;
        self.bootstrap_servers()?;
        self.num_stream_threads()?;
        if self.processing_guarantee()? == ProcessingGuarantee::ExactlyOnceV2
            && let Some(value) = self
                .client_properties(ClientKind::Producer)
                .get("enable.idempotence")
                .filter(|v| v.as_str() != "true")
        {
            return Err(StreamsError::Config(format!(
                "enable.idempotence is `{value}`, but exactly_once_v2 needs an idempotent producer: \
                 remove the setting or set it to true"
            )));
        }
        self.commit_interval()?;
        self.replication_factor()?;
        self.application_server()?;
        self.registry_timing()?;
        self.default_timestamp_extractor()?;
        self.max_task_idle_ms()?;
        Ok(())
    }

    /// `state.dir`, or `<tmp>/kafka-streams`.
    pub fn state_dir(&self) -> PathBuf {
        match self.get(STATE_DIR) {
            Some(dir) => PathBuf::from(dir),
            None => std::env::temp_dir().join("kafka-streams"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_settings_are_validated_with_clear_errors() {
        let base = || StreamsConfig::new("app").set(BOOTSTRAP_SERVERS, "127.0.0.1:9092");
        base().validate().unwrap();
        let err = |c: StreamsConfig| c.validate().unwrap_err().to_string();
        assert!(err(StreamsConfig::new("app")).contains("bootstrap.servers must be set"));
        assert!(err(base().set(NUM_STREAM_THREADS, "0")).contains("num.stream.threads is `0`"));
        assert!(
            err(base().set(PROCESSING_GUARANTEE, "maybe"))
                .contains("at_least_once or exactly_once_v2")
        );
        assert!(
            err(base().set(COMMIT_INTERVAL_MS, "soon")).contains("commit.interval.ms is `soon`")
        );
        assert!(err(base().set(APPLICATION_SERVER, "nohost")).contains("host:port"));
        assert!(
            err(base().set(DEFAULT_TIMESTAMP_EXTRACTOR, "Sundial"))
                .contains("default.timestamp.extractor is `Sundial`")
        );
        assert!(err(base().set(MAX_TASK_IDLE_MS, "-2")).contains("max.task.idle.ms is `-2`"));
        assert_eq!(base().max_task_idle_ms().unwrap(), 0);
        assert_eq!(
            base()
                .set(MAX_TASK_IDLE_MS, "-1")
                .max_task_idle_ms()
                .unwrap(),
            MAX_TASK_IDLE_MS_DISABLED
        );
        assert_eq!(base().commit_interval().unwrap().as_millis(), 30_000);
        let eos = base().set(PROCESSING_GUARANTEE, "exactly_once_v2");
        assert_eq!(
            eos.processing_guarantee().unwrap(),
            ProcessingGuarantee::ExactlyOnceV2
        );
        assert_eq!(eos.commit_interval().unwrap().as_millis(), 100);
        assert_eq!(
            base()
                .set(APPLICATION_SERVER, "h:8080")
                .application_server()
                .unwrap(),
            Some(("h".into(), 8080))
        );
    }

    #[test]
    fn client_properties_pass_through_with_prefixes() {
        let config = StreamsConfig::new("app")
            .set(BOOTSTRAP_SERVERS, "b:1")
            .set("session.timeout.ms", "6000")
            .set("consumer.session.timeout.ms", "7000")
            .set("producer.linger.ms", "1");
        let consumer = config.client_properties(ClientKind::Consumer);
        assert_eq!(
            consumer.get("session.timeout.ms").map(String::as_str),
            Some("7000")
        );
        assert_eq!(
            consumer.get("bootstrap.servers").map(String::as_str),
            Some("b:1")
        );
        assert!(!consumer.contains_key("application.id") && !consumer.contains_key("linger.ms"));
        let producer = config.client_properties(ClientKind::Producer);
        assert_eq!(producer.get("linger.ms").map(String::as_str), Some("1"));
        assert!(!producer.contains_key("fetch.queue.backoff.ms"));
        assert_eq!(
            producer.get("session.timeout.ms").map(String::as_str),
            Some("6000")
        );
    }

    #[test]
    fn consumer_defaults_apply_unless_set() {
        let base = StreamsConfig::new("app").set(BOOTSTRAP_SERVERS, "b:1");
        let backoff = |c: &StreamsConfig, kind| {
            c.client_properties(kind)
                .get("fetch.queue.backoff.ms")
                .cloned()
        };
        assert_eq!(backoff(&base, ClientKind::Consumer).as_deref(), Some("10"));
        assert_eq!(backoff(&base, ClientKind::Producer), None);
        assert_eq!(backoff(&base, ClientKind::Admin), None);
        let unprefixed = base.clone().set("fetch.queue.backoff.ms", "500");
        assert_eq!(
            backoff(&unprefixed, ClientKind::Consumer).as_deref(),
            Some("500")
        );
        let prefixed = base.set("consumer.fetch.queue.backoff.ms", "1000");
        assert_eq!(
            backoff(&prefixed, ClientKind::Consumer).as_deref(),
            Some("1000")
        );
    }

    #[test]
    fn producers_are_idempotent_unless_at_least_once_says_otherwise() {
        let base = StreamsConfig::new("app").set(BOOTSTRAP_SERVERS, "b:1");
        let idempotence = |c: &StreamsConfig| {
            c.client_properties(ClientKind::Producer)
                .get("enable.idempotence")
                .cloned()
        };
        assert_eq!(idempotence(&base).as_deref(), Some("true"));
        assert_eq!(
            base.client_properties(ClientKind::Consumer)
                .get("enable.idempotence"),
            None
        );
        let off = base.clone().set("producer.enable.idempotence", "false");
        assert_eq!(idempotence(&off).as_deref(), Some("false"));
        off.validate().unwrap();
        let error = off
            .set(PROCESSING_GUARANTEE, "exactly_once_v2")
            .validate()
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("enable.idempotence is `false`") && error.contains("exactly_once_v2"),
            "{error}"
        );
        base.set(PROCESSING_GUARANTEE, "exactly_once_v2")
            .set("enable.idempotence", "true")
            .validate()
            .unwrap();
    }

    #[test]
    fn application_id_is_checked() {
        assert_eq!(
            StreamsConfig::new("word-count.v1")
                .application_id()
                .unwrap(),
            "word-count.v1"
        );
        assert!(
            StreamsConfig::new("")
                .application_id()
                .unwrap_err()
                .to_string()
                .contains("must be set")
        );
        assert!(
            StreamsConfig::new("a b")
                .application_id()
                .unwrap_err()
                .to_string()
                .contains("may only contain")
        );
    }
}
