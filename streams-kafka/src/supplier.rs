//! The client seam, as Kafka Streams' `KafkaClientSupplier`: a stream
//! thread gets its group consumer, its producer and its restore consumer
//! from a [`ClientSupplier`], and talks to them only through
//! [`GroupConsumer`] and [`TaskProducer`]. [`RdKafkaSupplier`] makes the
//! real librdkafka clients; in-process fakes in the thread's unit tests
//! drive commits, rebalances, aborts and fencing without a broker.

use std::any::Any;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, ConsumerGroupMetadata, Rebalance,
};
use rdkafka::error::KafkaError;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::Shared;
use super::clients::{
    DataErrors, EndReadingConsumer, EndReadingContext, REQUEST_TIMEOUT, client_config, kafka_error,
    report_client_error,
};
use super::collector::{DeliveryTracker, KafkaCollector, TrackingContext, is_migration};
use super::raw_record;
use super::thread::ThreadPlan;
use streams_core::config::{ClientKind, ProcessingGuarantee};
use streams_core::error::{Result, StreamsError};
use streams_core::record::{RawView, RecordCollector};

/// A consumed offset to commit: topic, partition, and the next offset to
/// read.
pub(crate) type CommitOffset = (String, i32, i64);

/// The consumer group's metadata, as a transaction needs it to commit
/// consumed offsets; opaque between a supplier's consumer and producer.
pub(crate) struct GroupMetadata(pub(crate) Box<dyn Any + Send>);

/// What a stream thread asks of its group consumer. Methods take `&self`:
/// a rebalance listener commits through the consumer while it polls.
pub(crate) trait GroupConsumer: Send {
    /// Joins the group, reading `topics`.
    fn subscribe(&self, topics: &[&str]) -> Result<()>;

    /// Leaves the group's assignment (to rejoin after a migration).
    fn unsubscribe(&self);

    /// Waits up to `timeout` for a record and hands it to `on_record`;
    /// rebalances reach the listener inside. `None` when no record came,
    /// else what `on_record` returned.
    fn poll(
        &self,
        timeout: Duration,
        on_record: &mut dyn FnMut(RawView<'_>) -> Result<bool>,
    ) -> Result<Option<bool>>;

    /// Commits `offsets` synchronously; a group that moved on is
    /// [`StreamsError::TaskMigrated`].
    fn commit(&self, offsets: &[CommitOffset]) -> Result<()>;

    /// The group's metadata, once the consumer is in the group.
    fn group_metadata(&self) -> Option<GroupMetadata>;

    /// Kafka's `currentLag`: how many records of `topic`/`partition` lie
    /// between the consumer's position and the partition's end; `None`
    /// while it cannot tell. A task reading several partitions asks
    /// about one that has nothing buffered (see `partition_group.rs`).
    fn current_lag(&self, topic: &str, partition: i32) -> Option<i64>;

    /// Stops fetching `partitions` (a task's buffer of them is full); the
    /// records not yet handed over are fetched again on resume.
    fn pause(&self, partitions: &[(String, i32)]);

    /// Fetches `partitions` again.
    fn resume(&self, partitions: &[(String, i32)]);
}

/// Told of rebalances by the consumer, from inside its poll.
pub(crate) trait RebalanceListener: Send + Sync {
    /// The partitions are being taken away: commit and close their tasks.
    fn on_partitions_revoked(&self, consumer: &dyn GroupConsumer, partitions: &[(String, i32)]);

    /// The partitions were assigned.
    fn on_partitions_assigned(&self, partitions: &[(String, i32)]);
}

/// What a stream thread asks of its producer, beyond sending its tasks'
/// records.
pub(crate) trait TaskProducer: RecordCollector {
    /// Under exactly-once, opens a transaction unless one is open.
    fn begin_if_needed(&self) -> Result<()>;

    /// Whether a transaction is open.
    fn in_transaction(&self) -> bool;

    /// Adds the consumed `offsets` to the open transaction and commits it;
    /// on failure the transaction is aborted. A fenced producer's failure
    /// is [`StreamsError::TaskMigrated`].
    fn commit_transaction(&self, offsets: &[CommitOffset], group: &GroupMetadata) -> Result<()>;

    /// Aborts the open transaction, if any.
    fn abort_transaction(&self);

    /// Waits until everything sent is delivered; a failure is the
    /// production handler's call.
    fn flush(&self, timeout: Duration) -> Result<()>;

    /// Serves delivery reports without waiting.
    fn poll(&self);

    /// Why the producer was fenced, if it was.
    fn fenced(&self) -> Option<String>;

    /// The offset after the last delivered record of `topic`/`partition`
    /// among records sent to a chosen partition (changelog writes).
    fn next_offset(&self, topic: &str, partition: i32) -> Option<i64>;
}

/// Supplies a stream thread's clients, as Kafka Streams'
/// `KafkaClientSupplier`.
pub(crate) trait ClientSupplier: Send + Sync {
    /// Thread `index`'s producer: transactional under exactly-once, with an
    /// id stable across restarts of this instance (a new incarnation
    /// fences the old one).
    fn producer(&self, plan: &ThreadPlan, index: usize) -> Result<Arc<dyn TaskProducer>>;

    /// Thread `index`'s member of the group `application.id`.
    fn consumer(
        &self,
        plan: &ThreadPlan,
        index: usize,
        shared: &Arc<Shared>,
        listener: Arc<dyn RebalanceListener>,
    ) -> Result<Box<dyn GroupConsumer>>;

    /// The consumer that restores stores from their changelogs; `None`
    /// where none can be had (then only tasks without changelogs run).
    fn restore_consumer(&self, plan: &ThreadPlan) -> Result<Option<EndReadingConsumer>>;
}

/// The librdkafka clients.
pub(crate) struct RdKafkaSupplier;

/// `linger.ms` of exactly-once producers unless the configuration sets it
/// (librdkafka's default is 5).
pub(crate) const EXACTLY_ONCE_LINGER_MS: &str = "1";

impl ClientSupplier for RdKafkaSupplier {
    fn producer(&self, plan: &ThreadPlan, index: usize) -> Result<Arc<dyn TaskProducer>> {
        let exactly_once = plan.guarantee == ProcessingGuarantee::ExactlyOnceV2;
        let mut config = client_config(&plan.config, ClientKind::Producer);
        // Idempotence is a default (`PRODUCER_DEFAULTS`) that at-least-once
        // may turn off; `validate` keeps it on under exactly-once.
        config.set("partitioner", "murmur2_random");
        if exactly_once {
            config.set(
                "transactional.id",
                format!("{}-{}-{index}", plan.application_id, plan.process_id),
            );
            // Each commit (every 100 ms) waits for every delivery, and the
            // last batch lingers first: Java's flush sends it at once, which
            // rdkafka cannot ask librdkafka for. A shorter linger is the
            // nearest (commits 10.1 -> 5.8 ms in scripts/bench.sh's
            // count-eos). A setting of the application's wins.
            if config.get("linger.ms").is_none() && config.get("queue.buffering.max.ms").is_none() {
                config.set("linger.ms", EXACTLY_ONCE_LINGER_MS);
            }
        }
        let tracker = Arc::new(DeliveryTracker::default());
        let producer = config
            .create_with_context(TrackingContext {
                tracker: tracker.clone(),
            })
            .map_err(|e| kafka_error("creating a producer", e))?;
        if exactly_once {
            rdkafka::producer::Producer::init_transactions(&producer, REQUEST_TIMEOUT)
                .map_err(|e| kafka_error("initialising transactions", e))?;
        }
        Ok(Arc::new(KafkaCollector::new(
            producer,
            tracker,
            plan.config.production_handler(),
            exactly_once,
        )))
    }

    fn consumer(
        &self,
        plan: &ThreadPlan,
        index: usize,
        shared: &Arc<Shared>,
        listener: Arc<dyn RebalanceListener>,
    ) -> Result<Box<dyn GroupConsumer>> {
        let mut config = client_config(&plan.config, ClientKind::Consumer);
        config
            .set("group.id", &plan.application_id)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("partition.assignment.strategy", "range");
        if !config.config_map().contains_key("statistics.interval.ms") {
            // Consumer lag for the metrics.
            config.set("statistics.interval.ms", "5000");
        }
        if plan.guarantee == ProcessingGuarantee::ExactlyOnceV2 {
            config.set("isolation.level", "read_committed");
        }
        // librdkafka's default, unlike Java's, is read_committed.
        let read_committed = config.get("isolation.level") != Some("read_uncommitted");
        let consumer: BaseConsumer<ThreadContext> = config
            .create_with_context(ThreadContext {
                listener,
                shared: shared.clone(),
                read_committed,
                index,
                data_errors: Mutex::default(),
            })
            .map_err(|e| kafka_error("creating the consumer", e))?;
        Ok(Box::new(consumer))
    }

    fn restore_consumer(&self, plan: &ThreadPlan) -> Result<Option<EndReadingConsumer>> {
        let mut config = client_config(&plan.config, ClientKind::Consumer);
        // librdkafka wants a group for assign(); this one never joins or commits.
        config.set(
            "group.id",
            format!("{}-restore-consumer", plan.application_id),
        );
        config
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest");
        let consumer = config
            .create_with_context(EndReadingContext)
            .map_err(|e| kafka_error("creating the restore consumer", e))?;
        Ok(Some(consumer))
    }
}

/// The group consumer's context: hands rebalances to the listener,
/// consumer lag to the metrics, and keeps count of repeated data errors.
pub(crate) struct ThreadContext {
    listener: Arc<dyn RebalanceListener>,
    shared: Arc<Shared>,
    /// Whether the consumer reads committed records only: its partitions
    /// then end at the last stable offset.
    read_committed: bool,
    index: usize,
    data_errors: Mutex<DataErrors>,
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

fn partitions(list: &TopicPartitionList) -> Vec<(String, i32)> {
    list.elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect()
}

impl ConsumerContext for ThreadContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            self.listener
                .on_partitions_revoked(consumer, &partitions(list));
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            self.listener.on_partitions_assigned(&partitions(list));
        }
    }
}

/// `offsets` as librdkafka takes them.
fn offset_list(offsets: &[CommitOffset]) -> Result<TopicPartitionList> {
    let mut list = TopicPartitionList::new();
    for (topic, partition, offset) in offsets {
        list.add_partition_offset(topic, *partition, Offset::Offset(*offset))
            .map_err(|e| kafka_error("offsets", e))?;
    }
    Ok(list)
}

impl GroupConsumer for BaseConsumer<ThreadContext> {
    fn subscribe(&self, topics: &[&str]) -> Result<()> {
        Consumer::subscribe(self, topics).map_err(|e| kafka_error("subscribing", e))
    }

    fn unsubscribe(&self) {
        Consumer::unsubscribe(self);
    }

    fn poll(
        &self,
        timeout: Duration,
        on_record: &mut dyn FnMut(RawView<'_>) -> Result<bool>,
    ) -> Result<Option<bool>> {
        match BaseConsumer::poll(self, timeout) {
            Some(Ok(message)) => on_record(raw_record(&message)).map(Some),
            Some(Err(KafkaError::PartitionEOF(_))) | None => Ok(None),
            Some(Err(error)) => {
                let context = self.context();
                context
                    .data_errors
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .check(self, error, &format!("thread {}", context.index))?;
                Ok(None)
            }
        }
    }

    fn commit(&self, offsets: &[CommitOffset]) -> Result<()> {
        Consumer::commit(self, &offset_list(offsets)?, CommitMode::Sync).map_err(|e| {
            match e.rdkafka_error_code() {
                Some(code) if is_migration(code) => {
                    StreamsError::TaskMigrated(format!("committing offsets: {e}"))
                }
                _ => kafka_error("committing offsets", e),
            }
        })
    }

    fn group_metadata(&self) -> Option<GroupMetadata> {
        Consumer::group_metadata(self).map(|m| GroupMetadata(Box::new(m)))
    }

    /// The partition's end from the broker (rust-rdkafka does not expose
    /// librdkafka's cached one), minus the position: librdkafka's, which
    /// passes transaction markers, or, before anything was handed over,
    /// the committed offset (else the log's start). The end is the high
    /// watermark, also for `read_committed`: an open transaction counts
    /// as lag until it ends. A broker that reports a low watermark (as
    /// Tansu does for a batch of several records) makes the lag look
    /// smaller.
    fn current_lag(&self, topic: &str, partition: i32) -> Option<i64> {
        let (low, high) = self
            .fetch_watermarks(topic, partition, LAG_TIMEOUT)
            .map_err(|e| log::debug!("lag of {topic}[{partition}]: {e}"))
            .ok()?;
        let offset_of = |list: &TopicPartitionList| match list
            .find_partition(topic, partition)
            .map(|e| e.offset())
        {
            Some(Offset::Offset(offset)) => Some(offset),
            _ => None,
        };
        let position = match Consumer::position(self).ok().as_ref().and_then(offset_of) {
            Some(position) => position,
            None if high <= low => return Some(0),
            None => {
                let mut list = TopicPartitionList::new();
                list.add_partition(topic, partition);
                let committed = self.committed_offsets(list, LAG_TIMEOUT).ok()?;
                offset_of(&committed).unwrap_or(low)
            }
        };
        Some((high - position).max(0))
    }

    fn pause(&self, partitions: &[(String, i32)]) {
        let list = partition_list(partitions);
        if let Err(e) = Consumer::pause(self, &list) {
            log::warn!("pausing {partitions:?}: {e}");
        }
    }

    fn resume(&self, partitions: &[(String, i32)]) {
        let list = partition_list(partitions);
        if let Err(e) = Consumer::resume(self, &list) {
            log::warn!("resuming {partitions:?}: {e}");
        }
    }
}

/// How long asking for a lag may hold the stream thread up.
const LAG_TIMEOUT: Duration = Duration::from_secs(1);

fn partition_list(partitions: &[(String, i32)]) -> TopicPartitionList {
    let mut list = TopicPartitionList::new();
    for (topic, partition) in partitions {
        list.add_partition(topic, *partition);
    }
    list
}

impl TaskProducer for KafkaCollector {
    fn begin_if_needed(&self) -> Result<()> {
        KafkaCollector::begin_if_needed(self)
    }

    fn in_transaction(&self) -> bool {
        KafkaCollector::in_transaction(self)
    }

    fn commit_transaction(&self, offsets: &[CommitOffset], group: &GroupMetadata) -> Result<()> {
        let Some(group) = group.0.downcast_ref::<ConsumerGroupMetadata>() else {
            return Err(StreamsError::InvalidState(
                "the group metadata is not librdkafka's".into(),
            ));
        };
        KafkaCollector::commit_transaction(self, &offset_list(offsets)?, group)
    }

    fn abort_transaction(&self) {
        KafkaCollector::abort_transaction(self);
    }

    fn flush(&self, timeout: Duration) -> Result<()> {
        KafkaCollector::flush(self, timeout)
    }

    fn poll(&self) {
        self.producer.poll(Duration::ZERO);
    }

    fn fenced(&self) -> Option<String> {
        KafkaCollector::fenced(self)
    }

    fn next_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        self.tracker.next_offset(topic, partition)
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
