//! How the `stage` and `actors` engines send results and commit what they
//! read: at-least-once, with no future per record.
//!
//! Records are acknowledged in epochs. Each record read is counted in the
//! open epoch ([`Acknowledger::track`]), and its result carries the
//! epoch's slot to the producer's delivery callback, which counts it down
//! ([`Acks`]). An epoch closes every [`EPOCH`] with a note of the offsets
//! read so far; once it and every epoch before it have counted down to
//! zero, those offsets are committed. A result the broker refused leaves
//! its epoch above zero for good: nothing read from then on is committed,
//! and the engine stops with the refusal.
//!
//! The per-record cost is two atomic counts, where a `FutureProducer`
//! costs a oneshot channel, a boxed future and a wake-up per record.
//!
//! Partitions a rebalance takes away are forgotten before the next commit
//! ([`Revocations`]): their new owner commits them from then on, and an
//! offset of ours would move its progress back.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use streams_core::StreamsConfig;
use streams_core::config::ClientKind;
use streams_kafka::partitioner::partition_for_unkeyed;

use crate::serving::DATA_TOPIC;
use crate::stage::client;

/// Epochs that may be unacknowledged at once: at [`EPOCH`] each, a broker
/// may lag this many times 100 ms before the open epoch stays open longer.
const SLOTS: usize = 64;

/// How long an epoch stays open: the engine ticks at this interval.
pub(crate) const EPOCH: Duration = Duration::from_millis(100);

/// How often acknowledged offsets are committed.
const COMMIT_EVERY: Duration = Duration::from_millis(500);

/// How long the last results may take to be delivered when the engine
/// stops.
const FINAL_FLUSH: Duration = Duration::from_secs(30);

/// The consumer of `mdata`, whose context notes revoked partitions.
pub(crate) type RecordsConsumer = StreamConsumer<Revocations>;

/// The partitions of `mdata` rebalances took away since the acknowledger
/// last looked: the records consumer's context, called back within its
/// `recv`.
#[derive(Default)]
pub(crate) struct Revocations {
    revoked: Mutex<Vec<i32>>,
}

impl ClientContext for Revocations {}

impl ConsumerContext for Revocations {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            let mut revoked = self.revoked.lock().unwrap_or_else(PoisonError::into_inner);
            revoked.extend(
                partitions
                    .elements()
                    .iter()
                    .filter(|e| e.topic() == DATA_TOPIC)
                    .map(|e| e.partition()),
            );
        }
    }
}

impl Revocations {
    fn take(&self) -> Vec<i32> {
        std::mem::take(&mut *self.revoked.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Results not yet acknowledged, per epoch slot, and the first refusal;
/// the producer's context, so its delivery callback counts them down.
pub(crate) struct Acks {
    outstanding: [AtomicU64; SLOTS],
    refused: Mutex<Option<String>>,
}

impl Default for Acks {
    fn default() -> Self {
        Acks {
            outstanding: std::array::from_fn(|_| AtomicU64::new(0)),
            refused: Mutex::new(None),
        }
    }
}

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    /// The epoch slot of the record the result answers.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, slot: usize) {
        match result {
            Ok(_) => self.acknowledge(slot),
            Err((error, _)) => self.refuse(format!("a result was not delivered: {error}")),
        }
    }
}

impl Acks {
    fn acknowledge(&self, slot: usize) {
        // Release: the engine that reads zero sees every delivery before it.
        self.outstanding[slot].fetch_sub(1, Ordering::Release);
    }

    /// Notes `reason` as the first refusal; its epoch is never counted
    /// down, so nothing from it on is committed.
    fn refuse(&self, reason: String) {
        self.refused
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(reason);
    }

    fn refusal(&self) -> Option<String> {
        self.refused
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn is_done(&self, slot: usize) -> bool {
        self.outstanding[slot].load(Ordering::Acquire) == 0
    }
}

/// The engine's side of [`Acks`]: opens and closes epochs, and works out
/// which offsets may be committed. Owned by the task that reads records.
pub(crate) struct Acknowledger {
    acks: Arc<Acks>,
    /// The open epoch; its slot is `epoch % SLOTS`.
    epoch: u64,
    /// Per partition of `mdata`, the offset after the last record read.
    read: BTreeMap<i32, i64>,
    /// Whether a record was read in the open epoch.
    busy: bool,
    /// Closed epochs not yet acknowledged in full, oldest first, each with
    /// what had been read when it closed.
    closed: VecDeque<(u64, BTreeMap<i32, i64>)>,
    /// Offsets every result before which is acknowledged.
    done: BTreeMap<i32, i64>,
    uncommitted: bool,
    committed: Instant,
}

impl Acknowledger {
    pub(crate) fn new(acks: Arc<Acks>) -> Self {
        let now = Instant::now();
        Acknowledger {
            acks,
            epoch: 0,
            read: BTreeMap::new(),
            busy: false,
            closed: VecDeque::new(),
            done: BTreeMap::new(),
            uncommitted: false,
            committed: now,
        }
    }

    /// Counts the record at `offset` of `partition` in the open epoch;
    /// its result must be sent with the slot returned, once.
    pub(crate) fn track(&mut self, partition: i32, offset: i64) -> usize {
        let slot = (self.epoch % SLOTS as u64) as usize;
        self.acks.outstanding[slot].fetch_add(1, Ordering::Relaxed);
        self.read.insert(partition, offset + 1);
        self.busy = true;
        slot
    }

    /// Closes the open epoch (if its successor's slot is free), moves past
    /// the acknowledged epochs, and commits their offsets every so often;
    /// the first refusal, if a result was refused. Called every [`EPOCH`].
    pub(crate) fn tick(&mut self, records: &RecordsConsumer) -> Result<(), String> {
        self.forget(&records.context().take());
        self.advance();
        if self.uncommitted && self.committed.elapsed() >= COMMIT_EVERY {
            commit(records, &self.done, CommitMode::Async);
            self.uncommitted = false;
            self.committed = Instant::now();
        }
        self.acks.refusal().map_or(Ok(()), Err)
    }

    /// Drops `partitions` from what was read and may be committed.
    fn forget(&mut self, partitions: &[i32]) {
        for partition in partitions {
            self.read.remove(partition);
            self.done.remove(partition);
            for (_, read) in &mut self.closed {
                read.remove(partition);
            }
        }
    }

    fn advance(&mut self) {
        self.pop_acknowledged();
        // The next epoch's slot is the oldest closed one's after SLOTS - 1.
        if self.busy && self.closed.len() < SLOTS - 1 {
            self.closed.push_back((self.epoch, self.read.clone()));
            self.epoch += 1;
            self.busy = false;
            self.pop_acknowledged();
        }
    }

    fn pop_acknowledged(&mut self) {
        while let Some((epoch, _)) = self.closed.front()
            && self.acks.is_done((*epoch % SLOTS as u64) as usize)
        {
            if let Some((_, read)) = self.closed.pop_front() {
                self.done = read;
                self.uncommitted = true;
            }
        }
    }

    /// Waits for the results still on their way, then commits what was
    /// acknowledged; the first refusal, if a result was refused.
    pub(crate) fn finish(
        mut self,
        producer: &Results,
        records: &RecordsConsumer,
    ) -> Result<(), String> {
        if let Err(e) = producer.producer.flush(FINAL_FLUSH) {
            log::warn!("results still unacknowledged at the end: {e}");
        }
        self.forget(&records.context().take());
        self.advance();
        // Even when nothing changed since the last commit: that one was
        // asynchronous, and may have failed.
        commit(records, &self.done, CommitMode::Sync);
        self.acks.refusal().map_or(Ok(()), Err)
    }

    /// What may be committed now (for tests).
    #[cfg(test)]
    fn done(&self) -> &BTreeMap<i32, i64> {
        &self.done
    }
}

fn commit(records: &RecordsConsumer, done: &BTreeMap<i32, i64>, mode: CommitMode) {
    let mut offsets = TopicPartitionList::new();
    for (&partition, &next) in done {
        let _ = offsets.add_partition_offset(DATA_TOPIC, partition, Offset::Offset(next));
    }
    if offsets.count() > 0
        && let Err(e) = records.commit(&offsets, mode)
    {
        log::warn!("committing {DATA_TOPIC}: {e}");
    }
}

/// The producer of results, which picks each record's partition itself:
/// records go to the partitions in turn, in batches, as the framework's
/// sinks spread records without a key
/// (`streams_kafka::partitioner::partition_for_unkeyed`), rather than
/// through librdkafka's sticky partitioner, which reads the clock and
/// locks the topic for every record.
pub(crate) struct Results {
    producer: ThreadedProducer<Acks>,
    /// Each output topic's partition count, read once at the start (two
    /// topics: a list beats hashing a name per record); a topic missing
    /// here is left to librdkafka's partitioner.
    partitions: Vec<(String, i32)>,
    sent: AtomicU64,
}

impl Results {
    /// A producer for `topics` (whose partition counts it asks the cluster
    /// for now, once), with its acknowledgements.
    pub(crate) fn new(config: &StreamsConfig, topics: &[&str]) -> Result<Self, String> {
        let producer = client(config, ClientKind::Producer)
            .create_with_context(Acks::default())
            .map_err(|e| format!("cannot create the producer: {e}"))?;
        let partitions = topics
            .iter()
            .filter_map(|&topic| {
                let count = streams_kafka::partition_count(config, topic)
                    .map_err(|e| log::warn!("partitions of {topic}: {e}"))
                    .ok()??;
                Some((topic.to_owned(), count))
            })
            .collect();
        Ok(Results {
            producer,
            partitions,
            sent: AtomicU64::new(0),
        })
    }

    /// The acknowledger of this producer's results.
    pub(crate) fn acknowledger(&self) -> Acknowledger {
        Acknowledger::new(self.producer.context().clone())
    }

    /// Sends `bytes` to `topic` as the result of a record tracked in
    /// `slot`, waiting while the producer's queue is full. A send that
    /// fails is refused, as a delivery would be.
    pub(crate) async fn send(&self, topic: &str, bytes: &[u8], slot: usize) -> Result<(), String> {
        let mut record = BaseRecord::<(), [u8], usize>::with_opaque_to(topic, slot).payload(bytes);
        if let Some(&(_, count)) = self.partitions.iter().find(|(t, _)| t == topic) {
            let n = self.sent.fetch_add(1, Ordering::Relaxed);
            record = record.partition(partition_for_unkeyed(n, count));
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    record = returned;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => {
                    let reason = format!("cannot send to {topic}: {e}");
                    self.producer.context().refuse(reason.clone());
                    return Err(reason);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acknowledger() -> (Arc<Acks>, Acknowledger) {
        let acks = Arc::new(Acks::default());
        (acks.clone(), Acknowledger::new(acks))
    }

    #[test]
    fn offsets_are_done_once_every_result_before_them_is_acknowledged() {
        let (acks, mut ack) = acknowledger();
        let first = [ack.track(0, 10), ack.track(1, 20)];
        ack.advance();
        let second = ack.track(0, 11);
        ack.advance();
        assert_ne!(first[0], second, "a new epoch takes a new slot");
        assert!(ack.done().is_empty());
        // The later epoch is acknowledged first: nothing is done yet.
        acks.acknowledge(second);
        ack.advance();
        assert!(ack.done().is_empty());
        acks.acknowledge(first[0]);
        ack.advance();
        assert!(
            ack.done().is_empty(),
            "one of the first epoch's is still out"
        );
        acks.acknowledge(first[1]);
        ack.advance();
        assert_eq!(ack.done(), &BTreeMap::from([(0, 12), (1, 21)]));
    }

    #[test]
    fn revoked_partitions_are_forgotten_everywhere() {
        let (acks, mut ack) = acknowledger();
        let first = [ack.track(0, 10), ack.track(1, 20)];
        ack.advance();
        let second = ack.track(1, 21);
        for slot in first {
            acks.acknowledge(slot);
        }
        ack.advance();
        assert_eq!(ack.done(), &BTreeMap::from([(0, 11), (1, 21)]));
        // Partition 1 moves to another instance while its last result is
        // on its way: none of its offsets is committed again.
        ack.forget(&[1]);
        assert_eq!(ack.done(), &BTreeMap::from([(0, 11)]));
        acks.acknowledge(second);
        ack.advance();
        assert_eq!(ack.done(), &BTreeMap::from([(0, 11)]));
        // Assigned back: committed from what is read then.
        let third = ack.track(1, 40);
        ack.advance();
        acks.acknowledge(third);
        ack.advance();
        assert_eq!(ack.done(), &BTreeMap::from([(0, 11), (1, 41)]));
    }

    #[test]
    fn a_refused_result_holds_back_every_later_offset() {
        let (acks, mut ack) = acknowledger();
        let _refused = ack.track(0, 5);
        ack.advance();
        let later = ack.track(0, 6);
        ack.advance();
        acks.refuse("the broker said no".into());
        acks.acknowledge(later);
        ack.advance();
        assert!(ack.done().is_empty());
        assert_eq!(acks.refusal().as_deref(), Some("the broker said no"));
    }

    #[test]
    fn an_epoch_stays_open_while_every_slot_is_taken() {
        let (acks, mut ack) = acknowledger();
        let mut slots = Vec::new();
        for offset in 0..SLOTS as i64 + 10 {
            slots.push(ack.track(0, offset));
            ack.advance();
        }
        // SLOTS - 1 epochs closed; the rest went into the open one.
        assert_eq!(ack.closed.len(), SLOTS - 1);
        let open = *slots.last().unwrap();
        assert_eq!(acks.outstanding[open].load(Ordering::Relaxed), 11);
        for slot in slots {
            acks.acknowledge(slot);
        }
        ack.advance();
        assert_eq!(ack.done(), &BTreeMap::from([(0, SLOTS as i64 + 10)]));
        assert!(ack.closed.is_empty());
    }

    #[test]
    fn an_idle_epoch_does_not_close() {
        let (_, mut ack) = acknowledger();
        ack.advance();
        assert!(ack.closed.is_empty());
        assert_eq!(ack.epoch, 0);
    }
}
