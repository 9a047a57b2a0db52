//! Kafka clients for the runtime: configuration from `StreamsConfig`,
//! blocking on admin futures, and internal topic creation.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::Offset;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;

use streams_core::config::{ClientKind, StreamsConfig};
use streams_core::error::{Result, StreamsError, TopologyError};

/// How long a metadata or admin request may take before it is an error.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A client's error while the runtime was doing `action`, retriable when
/// its error code says so.
pub(crate) fn kafka_error(action: &str, error: KafkaError) -> StreamsError {
    let retriable = match &error {
        // librdkafka says itself for transactional calls.
        KafkaError::Transaction(e) => e.is_retriable() || is_retriable_code(e.code()),
        KafkaError::AdminOp(code) => is_retriable_code(*code),
        other => other.rdkafka_error_code().is_some_and(is_retriable_code),
    };
    StreamsError::Kafka {
        action: action.to_owned(),
        source: Box::new(error),
        retriable,
    }
}

/// The runtime gave up doing `action` for `reason` (no client error to
/// carry): not retriable.
pub(crate) fn kafka_failure(action: &str, reason: impl Into<String>) -> StreamsError {
    StreamsError::Kafka {
        action: action.to_owned(),
        source: reason.into().into(),
        retriable: false,
    }
}

/// Whether a request that failed with `code` may succeed if tried again:
/// Kafka's `RetriableException` codes, and librdkafka's local codes for
/// timeouts, full queues and brokers that cannot be reached.
pub(crate) fn is_retriable_code(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        code,
        BrokerTransportFailure
            | AllBrokersDown
            | OperationTimedOut
            | MessageTimedOut
            | QueueFull
            | Resolve
            | WaitingForCoordinator
            | InProgress
            | Retry
            | RequestTimedOut
            | NetworkException
            | NotLeaderForPartition
            | LeaderNotAvailable
            | CoordinatorLoadInProgress
            | CoordinatorNotAvailable
            | NotCoordinator
            | NotEnoughReplicas
            | NotEnoughReplicasAfterAppend
            | UnknownTopicOrPartition
            | KafkaStorageError
            | ConcurrentTransactions
            | FetchSessionIdNotFound
            | InvalidFetchSessionEpoch
            | UnstableOffsetCommit
            | RebalanceInProgress
    )
}

/// Logs a client's error as librdkafka's default context does, except
/// reaching the end of a partition: consumers that read to the end
/// (restoration, global stores) ask for that event, and it is no error.
pub(crate) fn report_client_error(error: &KafkaError, reason: &str) {
    if matches!(error, KafkaError::PartitionEOF(_))
        || error.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF)
    {
        return;
    }
    log::error!(target: "librdkafka", "librdkafka: {error}: {reason}");
}

/// The context of consumers that read partitions to their end.
pub(crate) struct EndReadingContext;

impl ClientContext for EndReadingContext {
    fn error(&self, error: KafkaError, reason: &str) {
        report_client_error(&error, reason);
    }
}

impl ConsumerContext for EndReadingContext {}

/// A consumer that reads partitions to their end.
pub(crate) type EndReadingConsumer = BaseConsumer<EndReadingContext>;

/// How long [`drain_producer`] sleeps between looks at the producer: a
/// commit waits at most this much longer than its records do.
const DRAIN_NAP: Duration = Duration::from_micros(200);

/// Serves `producer`'s delivery reports until nothing is in flight or
/// `timeout` passes; returns whether nothing is. rdkafka's `flush` waits in
/// 100 ms slices, which would put a floor of 100 ms under every commit. Its
/// `poll(t)` cannot wait briefly either: it hands librdkafka the time left
/// in whole milliseconds, rounded down, so the last millisecond of any `t`
/// is a busy loop, and a 1 ms poll is nothing else. Under exactly-once that
/// burned a core for the 5 to 10 ms of every commit, on a machine whose
/// broker needed it to answer. So: serve what has arrived without waiting,
/// then sleep briefly.
pub fn drain_producer<C: ProducerContext>(producer: &BaseProducer<C>, timeout: Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        producer.poll(Duration::ZERO);
        if producer.in_flight_count() == 0 {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(DRAIN_NAP);
    }
}

/// A client configuration from the streams settings for `kind`.
pub(crate) fn client_config(config: &StreamsConfig, kind: ClientKind) -> ClientConfig {
    let mut client = ClientConfig::new();
    for (key, value) in config.client_properties(kind) {
        client.set(key, value);
    }
    client
}

/// The consumer's position in `topic`/`partition`: the next offset it will
/// read. Past control records (transaction markers), which take offsets
/// but are never delivered, so reaching the end is judged by this, not by
/// the last record's offset.
pub(crate) fn position<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
) -> Option<i64> {
    let positions = consumer.position().ok()?;
    match positions.find_partition(topic, partition)?.offset() {
        rdkafka::Offset::Offset(offset) => Some(offset),
        _ => None,
    }
}

/// Consumer errors about the records of a partition (a batch that cannot
/// be decompressed or parsed), which librdkafka reports again at every
/// fetch of the batch instead of skipping it: the partition stalls. Kafka's
/// Java consumer throws on such a batch and Kafka Streams' thread dies of
/// it; here one that repeats fails the stream thread, so the state is `Error`
/// and the health check says so, never a silent stall. (A repeat, not the
/// first: a checksum error can come from a transfer and pass on a
/// refetch.)
#[derive(Default)]
pub(crate) struct DataErrors {
    /// The last such error and when it was seen.
    last: Option<(RDKafkaErrorCode, Instant)>,
    /// How many times in a row it was seen.
    count: u32,
    /// The consumer's positions when the run began.
    pub(crate) positions: Vec<(String, i32, Option<i64>)>,
}

impl DataErrors {
    /// Occurrences in a row that fail the thread: librdkafka fetches again
    /// after `fetch.error.backoff.ms` (500 ms), so a stalled partition
    /// reaches this within seconds.
    pub(crate) const REPEATS: u32 = 5;
    /// A longer gap between two occurrences starts a new run.
    const GAP: Duration = Duration::from_secs(60);

    /// Whether `code` is about a partition's records rather than the
    /// connection or the group.
    pub(crate) fn about_data(code: RDKafkaErrorCode) -> bool {
        use RDKafkaErrorCode::*;
        matches!(
            code,
            BadMessage
                | BadCompression
                | NotImplemented
                | InvalidMessage
                | UnsupportedForMessageFormat
                | UnsupportedCompressionType
                | InvalidRecord
        )
    }

    /// Logs a consumer error, and fails (an `Err` for the thread to die of)
    /// on one about a partition's data seen [`REPEATS`](Self::REPEATS)
    /// times in a row: a batch librdkafka cannot read stops its partition
    /// for good, and must not be a silent stall. `who` names the thread.
    pub(crate) fn check<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        error: KafkaError,
        who: &str,
    ) -> Result<()> {
        let code = match &error {
            KafkaError::MessageConsumptionFatal(_) => {
                return Err(kafka_error("the consumer failed fatally", error));
            }
            KafkaError::MessageConsumption(code) if DataErrors::about_data(*code) => *code,
            _ => {
                // Connection trouble and the like: librdkafka retries.
                log::warn!("{who}: consumer error: {error}");
                return Ok(());
            }
        };
        let seen = self.note(code, Instant::now());
        if seen == 1 {
            self.positions = positions(consumer);
        }
        log::error!(
            "{who}: consumer error ({seen} of {} in a row fail the thread): {error}",
            DataErrors::REPEATS
        );
        if seen < DataErrors::REPEATS {
            return Ok(());
        }
        // librdkafka drops the failing partition from the error: name the
        // partitions that have not moved since the first one.
        let now = positions(consumer);
        let stuck: Vec<String> = now
            .iter()
            .filter(|p| self.positions.contains(p))
            .map(|(topic, partition, offset)| match offset {
                Some(offset) => format!("{topic}[{partition}] at offset {offset}"),
                None => format!("{topic}[{partition}] before its first record"),
            })
            .collect();
        // The client's error is kept as the cause; the action says why it
        // is fatal here.
        Err(StreamsError::Kafka {
            action: format!(
                "consuming (a consumer error repeated {seen} times; a record batch that cannot \
                 be read, for example compressed with a codec this build lacks, stops its \
                 partition, and librdkafka does not skip it; partitions without progress since \
                 the first error: {})",
                if stuck.is_empty() {
                    "none".to_owned()
                } else {
                    stuck.join(", ")
                }
            ),
            source: Box::new(error),
            retriable: false,
        })
    }

    /// Notes one occurrence of `code` at `now`; returns how many times in a
    /// row it has been seen.
    pub(crate) fn note(&mut self, code: RDKafkaErrorCode, now: Instant) -> u32 {
        let repeat = self
            .last
            .is_some_and(|(last, at)| last == code && now.duration_since(at) <= Self::GAP);
        self.count = if repeat { self.count + 1 } else { 1 };
        self.last = Some((code, now));
        self.count
    }
}

/// The consumer's position in each assigned partition (`None` before its
/// first record).
pub(crate) fn positions<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
) -> Vec<(String, i32, Option<i64>)> {
    let Ok(list) = consumer.position() else {
        return Vec::new();
    };
    list.elements()
        .iter()
        .map(|e| {
            let offset = match e.offset() {
                Offset::Offset(offset) => Some(offset),
                _ => None,
            };
            (e.topic().to_owned(), e.partition(), offset)
        })
        .collect()
}

/// Runs a future to completion on this thread. rdkafka's admin futures are
/// completed by the admin client's own thread, so parking is enough.
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    struct ThreadWaker(std::thread::Thread);
    impl Wake for ThreadWaker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        match future.as_mut().poll(&mut context) {
            Poll::Ready(output) => return output,
            Poll::Pending => std::thread::park_timeout(Duration::from_millis(100)),
        }
    }
}

/// Partition counts of `topics` (`None` for topics that do not exist).
pub(crate) fn partition_counts(
    config: &StreamsConfig,
    topics: &[String],
) -> Result<HashMap<String, Option<i32>>> {
    let consumer: BaseConsumer = client_config(config, ClientKind::Consumer)
        .create()
        .map_err(|e| kafka_error("creating a metadata client", e))?;
    let mut counts = HashMap::new();
    for topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
            .map_err(|e| {
                kafka_error(
                    &format!(
                        "fetching metadata from {} (is the broker up?)",
                        config.get("bootstrap.servers").unwrap_or("?")
                    ),
                    e,
                )
            })?;
        let count = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map(|t| t.partitions().len() as i32)
            .filter(|&n| n > 0);
        counts.insert(topic.clone(), count);
    }
    Ok(counts)
}

/// An internal topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InternalTopic {
    pub(crate) name: String,
    pub(crate) partitions: i32,
    pub(crate) compacted: bool,
}

/// Creates the topics that do not exist yet, with their configs given
/// explicitly. Existing ones must have the expected partition count.
pub(crate) fn ensure_topics(config: &StreamsConfig, topics: &[InternalTopic]) -> Result<()> {
    let names: Vec<String> = topics.iter().map(|t| t.name.clone()).collect();
    let existing = partition_counts(config, &names)?;
    let replication = config.replication_factor()?;
    let missing: Vec<&InternalTopic> = topics
        .iter()
        .filter(|t| existing[&t.name].is_none())
        .collect();
    for topic in topics {
        if let Some(Some(count)) = existing.get(&topic.name)
            && *count != topic.partitions
        {
            return Err(TopologyError::at_topic(
                &topic.name,
                format!(
                    "internal topic {} has {count} partitions, but the topology needs {}; \
                     delete it (and reset the application) or restore the input topics' \
                     partition counts",
                    topic.name, topic.partitions
                ),
            )
            .into());
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = client_config(config, ClientKind::Admin)
        .create()
        .map_err(|e| kafka_error("creating the admin client", e))?;
    let configs: Vec<BTreeMap<&str, &str>> = missing
        .iter()
        .map(|t| {
            let mut c = BTreeMap::new();
            c.insert(
                "cleanup.policy",
                if t.compacted { "compact" } else { "delete" },
            );
            c.insert("retention.ms", "-1");
            c
        })
        .collect();
    let new_topics: Vec<NewTopic<'_>> = missing
        .iter()
        .zip(&configs)
        .map(|(t, c)| {
            c.iter().fold(
                NewTopic::new(&t.name, t.partitions, TopicReplication::Fixed(replication)),
                |n, (k, v)| n.set(k, v),
            )
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
    let results = block_on(admin.create_topics(&new_topics, &options))
        .map_err(|e| kafka_error("creating internal topics", e))?;
    for result in results {
        match result {
            Ok(name) => log::info!("created topic {name}"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(kafka_error(
                    &format!("creating internal topic {name}"),
                    KafkaError::AdminOp(code),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::producer::BaseRecord;

    #[test]
    fn drain_producer_says_whether_everything_was_delivered() {
        // No bootstrap servers: the producer never connects, so nothing is
        // delivered and no connection errors join the queue it counts
        // (a refused connection queues an error event, which `in_flight_count`
        // includes until it is served).
        let producer: BaseProducer = ClientConfig::new()
            .set("message.timeout.ms", "60000")
            .create()
            .unwrap();
        assert!(
            drain_producer(&producer, Duration::from_secs(5)),
            "nothing sent"
        );
        producer
            .send(BaseRecord::<(), _>::to("t").payload("x"))
            .map_err(|(e, _)| e)
            .unwrap();
        let started = std::time::Instant::now();
        assert!(!drain_producer(&producer, Duration::from_millis(50)));
        assert!(started.elapsed() >= Duration::from_millis(50), "waited");
        assert!(
            producer.in_flight_count() >= 1,
            "the record is still queued"
        );
        producer.purge(rdkafka::producer::PurgeConfig::default().queue());
        assert!(drain_producer(&producer, Duration::from_secs(5)), "purged");
    }

    #[test]
    fn a_data_error_fails_on_its_fifth_time_in_a_row_and_others_never() {
        use RDKafkaErrorCode::*;
        let mut errors = DataErrors::default();
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        for (i, expected) in (1..=5).enumerate() {
            assert_eq!(errors.note(NotImplemented, at(i as u64)), expected);
        }
        // Another code starts a new run, and so does a long gap.
        assert_eq!(errors.note(BadCompression, at(6)), 1);
        assert_eq!(errors.note(BadCompression, at(7)), 2);
        assert_eq!(errors.note(BadCompression, at(7 + 61)), 1);
        assert!(DataErrors::about_data(NotImplemented));
        assert!(DataErrors::about_data(InvalidMessage));
        for transient in [
            BrokerTransportFailure,
            AllBrokersDown,
            OperationTimedOut,
            Resolve,
        ] {
            assert!(!DataErrors::about_data(transient), "{transient:?}");
        }
    }
}

#[cfg(test)]
mod error_tests {
    use super::*;

    #[test]
    fn retriable_errors_are_told_by_their_code() {
        let timeout = kafka_error(
            "committing offsets",
            KafkaError::ConsumerCommit(RDKafkaErrorCode::RequestTimedOut),
        );
        assert!(timeout.is_retriable());
        assert_eq!(
            timeout.to_string(),
            "kafka: committing offsets: Consumer commit error: RequestTimedOut (Broker: Request timed out)"
        );
        let fenced = kafka_error(
            "producing",
            KafkaError::MessageProduction(RDKafkaErrorCode::InvalidProducerEpoch),
        );
        assert!(!fenced.is_retriable());
        let admin = kafka_error(
            "creating internal topics",
            KafkaError::AdminOp(RDKafkaErrorCode::RequestTimedOut),
        );
        assert!(admin.is_retriable());
        // The client's error is kept, to be read by code.
        let StreamsError::Kafka { source, action, .. } = &timeout else {
            panic!("{timeout:?}")
        };
        assert_eq!(action, "committing offsets");
        let source = source
            .downcast_ref::<KafkaError>()
            .expect("rdkafka's error");
        assert_eq!(
            source.rdkafka_error_code(),
            Some(RDKafkaErrorCode::RequestTimedOut)
        );
        // A failure of the runtime's own is not retriable.
        assert!(!kafka_failure("restoring", "stalled").is_retriable());
    }
}
