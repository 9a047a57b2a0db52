//! The runtime's `RecordCollector`: one producer per stream thread, keys
//! partitioned with Java's murmur2, records without a key spread over the
//! partitions in batches, deliveries tracked for checkpoints.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, TopicPartitionList};
use rustc_hash::FxHashMap;

use super::clients::{REQUEST_TIMEOUT, drain_producer, kafka_error};
use super::partitioner::{partition_for_key, partition_for_unkeyed};
use streams_core::error::{Result, StreamsError};
use streams_core::handlers::{ProductionExceptionHandler, ProductionHandlerResponse};
use streams_core::record::{ProducerRecord, RecordCollector};

/// What the producer reported back: the next offset after the last
/// delivered record per partition, for records sent to a partition chosen
/// by the sender (changelog writes: checkpoints need their offsets), and
/// delivery failures of every record.
#[derive(Default)]
pub(crate) struct DeliveryTracker {
    offsets: Mutex<FxHashMap<String, FxHashMap<i32, i64>>>,
    failures: Mutex<Vec<(String, String)>>,
}

impl DeliveryTracker {
    /// The offset after the last record delivered to `topic`/`partition`.
    pub(crate) fn next_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        self.offsets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(topic)?
            .get(&partition)
            .copied()
    }

    fn take_failures(&self) -> Vec<(String, String)> {
        std::mem::take(&mut *self.failures.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The producer's context: records deliveries in the tracker.
pub(crate) struct TrackingContext {
    pub(crate) tracker: Arc<DeliveryTracker>,
}

impl ClientContext for TrackingContext {}

/// A send's delivery opaque: whether its offset is tracked. Other
/// deliveries cost no lock, which matters at a million records a second.
const TRACKED: usize = 1;

impl ProducerContext for TrackingContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        use rdkafka::Message;
        match result {
            Ok(_) if opaque != TRACKED => {}
            Ok(message) => {
                let mut offsets = self
                    .tracker
                    .offsets
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                // Looked up by &str: no allocation per delivered record.
                let partitions = match offsets.get_mut(message.topic()) {
                    Some(partitions) => partitions,
                    None => offsets.entry(message.topic().to_owned()).or_default(),
                };
                let next = partitions.entry(message.partition()).or_insert(0);
                *next = (*next).max(message.offset() + 1);
            }
            Err((error, message)) => {
                let mut failures = self
                    .tracker
                    .failures
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                failures.push((message.topic().to_owned(), error.to_string()));
            }
        }
    }
}

/// Sends a stream thread's output, changelog records and dead letters.
pub(crate) struct KafkaCollector {
    pub(crate) producer: BaseProducer<TrackingContext>,
    pub(crate) tracker: Arc<DeliveryTracker>,
    /// Partition counts by topic, looked up for every keyed send.
    partitions: Mutex<FxHashMap<String, i32>>,
    handler: Arc<dyn ProductionExceptionHandler>,
    /// Exactly-once: every send happens inside a transaction.
    transactional: bool,
    in_transaction: AtomicBool,
    /// Records sent so far with neither a key nor a partitioner.
    unkeyed: AtomicU64,
}

/// Errors that mean another producer or group member owns our tasks now:
/// the producer was fenced, or the group generation moved on.
pub(crate) fn is_migration(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::Fenced
            | RDKafkaErrorCode::ProducerFenced
            | RDKafkaErrorCode::InvalidProducerEpoch
            | RDKafkaErrorCode::IllegalGeneration
            | RDKafkaErrorCode::UnknownMemberId
            | RDKafkaErrorCode::RebalanceInProgress
            | RDKafkaErrorCode::FencedInstanceId
    )
}

impl KafkaCollector {
    pub(crate) fn new(
        producer: BaseProducer<TrackingContext>,
        tracker: Arc<DeliveryTracker>,
        handler: Arc<dyn ProductionExceptionHandler>,
        transactional: bool,
    ) -> Self {
        KafkaCollector {
            producer,
            tracker,
            partitions: Mutex::new(FxHashMap::default()),
            handler,
            transactional,
            in_transaction: AtomicBool::new(false),
            unkeyed: AtomicU64::new(0),
        }
    }

    /// The producer's fatal error when it says our tasks have migrated.
    pub(crate) fn fenced(&self) -> Option<String> {
        self.producer
            .client()
            .fatal_error()
            .filter(|(code, _)| is_migration(*code))
            .map(|(code, reason)| format!("{code:?}: {reason}"))
    }

    /// A transactional call's error: `TaskMigrated` when we were fenced.
    fn transaction_error(&self, context: &str, error: KafkaError) -> StreamsError {
        if let Some(reason) = self.fenced() {
            return StreamsError::TaskMigrated(format!("{context}: {reason}"));
        }
        if error.rdkafka_error_code().is_some_and(is_migration) {
            return StreamsError::TaskMigrated(format!("{context}: {error}"));
        }
        kafka_error(context, error)
    }

    /// Under exactly-once, opens a transaction unless one is open.
    pub(crate) fn begin_if_needed(&self) -> Result<()> {
        if self.transactional && !self.in_transaction.load(Ordering::Relaxed) {
            self.producer
                .begin_transaction()
                .map_err(|e| self.transaction_error("beginning a transaction", e))?;
            self.in_transaction.store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Whether a transaction is open.
    pub(crate) fn in_transaction(&self) -> bool {
        self.in_transaction.load(Ordering::Relaxed)
    }

    /// Adds the consumed `offsets` to the open transaction and commits it;
    /// on failure the transaction is aborted.
    pub(crate) fn commit_transaction(
        &self,
        offsets: &TopicPartitionList,
        group: &ConsumerGroupMetadata,
    ) -> Result<()> {
        // rdkafka's commit flushes in 100 ms slices: drain first, so it
        // finds nothing in flight. (Sending the offsets first, as Kafka
        // Streams does, so that their round trips overlap the deliveries,
        // made no difference beyond the noise.) The phases are logged at
        // debug level: the drain is most of a commit.
        let began = Instant::now();
        drain_producer(&self.producer, REQUEST_TIMEOUT);
        let drained = began.elapsed();
        let committed = self
            .producer
            .send_offsets_to_transaction(offsets, group, REQUEST_TIMEOUT)
            .and_then(|()| self.producer.commit_transaction(REQUEST_TIMEOUT));
        log::debug!(
            "transaction committed: records delivered in {drained:?}, offsets sent and \
             transaction committed {:?} later",
            began.elapsed() - drained
        );
        if let Err(error) = committed {
            let error = self.transaction_error("committing the transaction", error);
            self.abort_transaction();
            return Err(error);
        }
        self.in_transaction.store(false, Ordering::Relaxed);
        self.check_failures()
    }

    /// Aborts the open transaction, if any; a fenced producer cannot abort,
    /// and its transaction is aborted by the broker when the new one starts.
    pub(crate) fn abort_transaction(&self) {
        if self.in_transaction.swap(false, Ordering::Relaxed)
            && let Err(error) = self.producer.abort_transaction(REQUEST_TIMEOUT)
        {
            log::warn!("aborting the transaction: {error}");
        }
    }

    fn partition_count(&self, topic: &str) -> Result<i32> {
        if let Some(&count) = self
            .partitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(topic)
        {
            return Ok(count);
        }
        let metadata = self
            .producer
            .client()
            .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
            .map_err(|e| kafka_error(&format!("fetching metadata of {topic}"), e))?;
        let count = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map(|t| t.partitions().len() as i32)
            .filter(|&n| n > 0)
            .ok_or_else(|| StreamsError::Production {
                topic: topic.to_owned(),
                message: "the topic does not exist; create it before starting the application"
                    .into(),
            })?;
        self.partitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(topic.to_owned(), count);
        Ok(count)
    }

    /// Waits until everything sent so far is delivered, then applies the
    /// production handler to any failure.
    pub(crate) fn flush(&self, timeout: Duration) -> Result<()> {
        drain_producer(&self.producer, timeout);
        self.producer
            .flush(timeout)
            .map_err(|e| kafka_error("flushing the producer", e))?;
        self.check_failures()
    }

    /// Applies the production handler to failures reported so far.
    pub(crate) fn check_failures(&self) -> Result<()> {
        if let Some(reason) = self.fenced() {
            return Err(StreamsError::TaskMigrated(reason));
        }
        for (topic, error) in self.tracker.take_failures() {
            if self.handler.handle(&topic, &error) == ProductionHandlerResponse::Fail {
                return Err(StreamsError::Production {
                    topic,
                    message: error,
                });
            }
        }
        Ok(())
    }
}

impl RecordCollector for KafkaCollector {
    fn send(&self, record: ProducerRecord<'_>) -> Result<()> {
        // Punctuators may send outside record processing: they join the
        // transaction too.
        self.begin_if_needed()?;
        let partition = match record.partition {
            Some(partition) => partition,
            None => {
                let count = self.partition_count(record.topic)?;
                match record.partitioner.and_then(|choose| choose(count)) {
                    Some(partition) => partition,
                    None => match record.key {
                        Some(key) => partition_for_key(key, count),
                        None => partition_for_unkeyed(
                            self.unkeyed.fetch_add(1, Ordering::Relaxed),
                            count,
                        ),
                    },
                }
            }
        };
        // Offsets are tracked for records whose sender chose the partition:
        // changelog writes, which checkpoints need.
        let opaque = if record.partition.is_some() {
            TRACKED
        } else {
            0
        };
        let mut message: BaseRecord<'_, [u8], [u8], usize> =
            BaseRecord::with_opaque_to(record.topic, opaque).timestamp(record.timestamp);
        // librdkafka allocates a header list even for none: skip it.
        if !record.headers.is_empty() {
            let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
            for (key, value) in record.headers.iter() {
                headers = headers.insert(Header { key, value });
            }
            message = message.headers(headers);
        }
        message = message.partition(partition);
        if let Some(key) = record.key {
            message = message.key(key);
        }
        if let Some(value) = record.value {
            message = message.payload(value);
        }
        let mut waited = Duration::ZERO;
        loop {
            match self.producer.send(message) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned))
                    if waited < REQUEST_TIMEOUT =>
                {
                    // Serve delivery reports to make room, then retry.
                    self.producer.poll(Duration::from_millis(10));
                    waited += Duration::from_millis(10);
                    message = returned;
                }
                Err((error, _)) => {
                    if let Some(reason) = self.fenced() {
                        return Err(StreamsError::TaskMigrated(reason));
                    }
                    // A record the producer refuses at once (larger than
                    // `message.max.bytes`, say) is the handler's call, as
                    // one the broker refuses later is.
                    let message = error.to_string();
                    if self.handler.handle(record.topic, &message)
                        == ProductionHandlerResponse::Continue
                    {
                        return Ok(());
                    }
                    return Err(StreamsError::Production {
                        topic: record.topic.to_owned(),
                        message,
                    });
                }
            }
        }
    }
}
