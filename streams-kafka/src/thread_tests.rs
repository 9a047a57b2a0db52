//! The stream thread's commit, rebalance, abort and fencing paths, and the
//! order in which a task reading several partitions processes their
//! records, driven through in-process fakes of the client seam: no broker.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::*;
use crate::supplier::GroupMetadata;
use streams_core::StreamsBuilder;
use streams_core::dsl::{Consumed, Produced};
use streams_core::record::ProducerRecord;
use streams_core::serde::{StringSerde, UnitSerde};

/// What the fake consumer hands the thread, in order.
enum Event {
    Assign(Vec<(String, i32)>),
    Revoke(Vec<(String, i32)>),
    Record {
        offset: i64,
        value: &'static str,
    },
    /// A record of partition 0 of `topic`.
    At {
        topic: &'static str,
        offset: i64,
        timestamp: i64,
        value: &'static str,
    },
}

/// The broker and group as the fakes see them: scripted consumer events,
/// and what the thread did.
#[derive(Default)]
struct Cluster {
    events: Mutex<VecDeque<Event>>,
    /// Offsets committed through the group consumer, per commit.
    commits: Mutex<Vec<Vec<CommitOffset>>>,
    subscriptions: AtomicUsize,
    producers: Mutex<Vec<Arc<FakeProducer>>>,
    /// Flushes and commits, in the order they happened.
    log: Arc<Mutex<Vec<&'static str>>>,
    /// What the consumer knows of each topic's lag (partition 0); unknown
    /// when absent.
    lags: Mutex<HashMap<&'static str, i64>>,
    /// Partitions paused and resumed, in order.
    pauses: Mutex<Vec<(&'static str, String)>>,
}

impl Cluster {
    fn script(&self, events: impl IntoIterator<Item = Event>) {
        lock_any(&self.events).extend(events);
    }

    fn producer(&self, n: usize) -> Arc<FakeProducer> {
        lock_any(&self.producers)[n].clone()
    }

    fn commits(&self) -> Vec<Vec<CommitOffset>> {
        lock_any(&self.commits).clone()
    }

    fn set_lag(&self, topic: &'static str, lag: i64) {
        lock_any(&self.lags).insert(topic, lag);
    }

    fn pauses(&self) -> Vec<(&'static str, String)> {
        lock_any(&self.pauses).clone()
    }
}

fn lock_any<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

struct FakeSupplier(Arc<Cluster>);

impl ClientSupplier for FakeSupplier {
    fn producer(&self, plan: &ThreadPlan, _index: usize) -> Result<Arc<dyn TaskProducer>> {
        let producer = Arc::new(FakeProducer {
            transactional: plan.guarantee == ProcessingGuarantee::ExactlyOnceV2,
            log: self.0.log.clone(),
            ..FakeProducer::default()
        });
        lock_any(&self.0.producers).push(producer.clone());
        Ok(producer)
    }

    fn consumer(
        &self,
        _plan: &ThreadPlan,
        _index: usize,
        _shared: &Arc<Shared>,
        listener: Arc<dyn RebalanceListener>,
    ) -> Result<Box<dyn GroupConsumer>> {
        Ok(Box::new(FakeConsumer {
            cluster: self.0.clone(),
            listener,
        }))
    }

    fn restore_consumer(&self, _plan: &ThreadPlan) -> Result<Option<EndReadingConsumer>> {
        Ok(None)
    }
}

struct FakeConsumer {
    cluster: Arc<Cluster>,
    listener: Arc<dyn RebalanceListener>,
}

impl GroupConsumer for FakeConsumer {
    fn subscribe(&self, _topics: &[&str]) -> Result<()> {
        self.cluster.subscriptions.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn unsubscribe(&self) {}

    fn poll(
        &self,
        _timeout: Duration,
        on_record: &mut dyn FnMut(RawView<'_>) -> Result<bool>,
    ) -> Result<Option<bool>> {
        let event = lock_any(&self.cluster.events).pop_front();
        match event {
            None => Ok(None),
            Some(Event::Assign(partitions)) => {
                self.listener.on_partitions_assigned(&partitions);
                Ok(None)
            }
            Some(Event::Revoke(partitions)) => {
                self.listener.on_partitions_revoked(self, &partitions);
                Ok(None)
            }
            Some(Event::Record { offset, value }) => on_record(RawView {
                topic: "in",
                partition: 0,
                offset,
                timestamp: 1,
                key: None,
                value: Some(value.as_bytes()),
                headers: Default::default(),
            })
            .map(Some),
            Some(Event::At {
                topic,
                offset,
                timestamp,
                value,
            }) => on_record(RawView {
                topic,
                partition: 0,
                offset,
                timestamp,
                key: None,
                value: Some(value.as_bytes()),
                headers: Default::default(),
            })
            .map(Some),
        }
    }

    fn current_lag(&self, topic: &str, partition: i32) -> Option<i64> {
        assert_eq!(partition, 0);
        lock_any(&self.cluster.lags).get(topic).copied()
    }

    fn pause(&self, partitions: &[(String, i32)]) {
        for (topic, _) in partitions {
            lock_any(&self.cluster.pauses).push(("pause", topic.clone()));
        }
    }

    fn resume(&self, partitions: &[(String, i32)]) {
        for (topic, _) in partitions {
            lock_any(&self.cluster.pauses).push(("resume", topic.clone()));
        }
    }

    fn commit(&self, offsets: &[CommitOffset]) -> Result<()> {
        lock_any(&self.cluster.log).push("commit offsets");
        lock_any(&self.cluster.commits).push(offsets.to_vec());
        Ok(())
    }

    fn group_metadata(&self) -> Option<GroupMetadata> {
        Some(GroupMetadata(Box::new("the group")))
    }
}

/// Records what the thread sends and how it uses transactions.
#[derive(Default)]
struct FakeProducer {
    transactional: bool,
    sent: Mutex<Vec<(String, String)>>,
    in_transaction: AtomicBool,
    begun: AtomicUsize,
    aborted: AtomicUsize,
    flushed: AtomicUsize,
    /// Offsets committed with each transaction.
    transactions: Mutex<Vec<Vec<CommitOffset>>>,
    fenced: AtomicBool,
    log: Arc<Mutex<Vec<&'static str>>>,
}

impl FakeProducer {
    fn values(&self) -> Vec<String> {
        lock_any(&self.sent)
            .iter()
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn transactions(&self) -> Vec<Vec<CommitOffset>> {
        lock_any(&self.transactions).clone()
    }

    fn fence(&self) {
        self.fenced.store(true, Ordering::Relaxed);
    }
}

impl RecordCollector for FakeProducer {
    fn send(&self, record: ProducerRecord<'_>) -> Result<()> {
        self.begin_if_needed()?;
        let value = String::from_utf8_lossy(record.value.unwrap_or_default()).into_owned();
        lock_any(&self.sent).push((record.topic.to_owned(), value));
        Ok(())
    }
}

impl TaskProducer for FakeProducer {
    fn begin_if_needed(&self) -> Result<()> {
        if self.fenced.load(Ordering::Relaxed) {
            return Err(StreamsError::TaskMigrated("fenced".into()));
        }
        if self.transactional && !self.in_transaction.swap(true, Ordering::Relaxed) {
            self.begun.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    fn in_transaction(&self) -> bool {
        self.in_transaction.load(Ordering::Relaxed)
    }

    fn commit_transaction(&self, offsets: &[CommitOffset], group: &GroupMetadata) -> Result<()> {
        assert_eq!(group.0.downcast_ref::<&str>(), Some(&"the group"));
        if self.fenced.load(Ordering::Relaxed) {
            self.abort_transaction();
            return Err(StreamsError::TaskMigrated(
                "committing the transaction: fenced".into(),
            ));
        }
        self.in_transaction.store(false, Ordering::Relaxed);
        lock_any(&self.transactions).push(offsets.to_vec());
        Ok(())
    }

    fn abort_transaction(&self) {
        if self.in_transaction.swap(false, Ordering::Relaxed) {
            self.aborted.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn flush(&self, _timeout: Duration) -> Result<()> {
        self.flushed.fetch_add(1, Ordering::Relaxed);
        lock_any(&self.log).push("flush");
        Ok(())
    }

    fn poll(&self) {}

    fn fenced(&self) -> Option<String> {
        self.fenced
            .load(Ordering::Relaxed)
            .then(|| "ProducerFenced".to_owned())
    }

    fn next_offset(&self, _topic: &str, _partition: i32) -> Option<i64> {
        None
    }
}

/// `in` upper-cased to `out`; "poison" fails in user code.
fn topology() -> Topology {
    let builder = StreamsBuilder::new();
    builder
        .stream_with("in", Consumed::with(UnitSerde, StringSerde))
        .map_values(|v| {
            assert_ne!(v, "poison", "poison record");
            v.to_uppercase()
        })
        .to_with("out", Produced::with(UnitSerde, StringSerde));
    builder.build().unwrap()
}

struct Harness {
    cluster: Arc<Cluster>,
    plan: Arc<ThreadPlan>,
    shared: Arc<Shared>,
    _dir: tempfile::TempDir,
}

fn harness(guarantee: ProcessingGuarantee) -> Harness {
    // Every housekeeping round commits.
    harness_committing_every(guarantee, Duration::ZERO)
}

fn harness_committing_every(guarantee: ProcessingGuarantee, interval: Duration) -> Harness {
    harness_of(
        topology(),
        &["in"],
        StreamsConfig::new("app"),
        guarantee,
        interval,
    )
}

/// A thread running `topology`, which reads `topics` in one sub-topology.
fn harness_of(
    topology: Topology,
    topics: &[&str],
    config: StreamsConfig,
    guarantee: ProcessingGuarantee,
    interval: Duration,
) -> Harness {
    let topology = Arc::new(topology);
    let dir = tempfile::tempdir().unwrap();
    let cluster = Arc::new(Cluster::default());
    let plan = Arc::new(ThreadPlan {
        subtopologies: topology.subtopologies(),
        topology,
        topic_to_subtopology: topics.iter().map(|t| ((*t).to_owned(), 0)).collect(),
        config,
        application_id: "app".into(),
        state_dir: dir.path().to_owned(),
        guarantee,
        commit_interval: interval,
        globals: Arc::default(),
        process_id: "test".into(),
        supplier: Arc::new(FakeSupplier(cluster.clone())),
    });
    let shared = Arc::new(Shared::new(None, Duration::from_secs(1)));
    *lock_any(&shared.threads) = vec![false];
    Harness {
        cluster,
        plan,
        shared,
        _dir: dir,
    }
}

impl Harness {
    fn start(&self) -> Started {
        start(0, &self.plan, &self.shared).unwrap()
    }

    /// Polls until the script has run out, and once more (an idle poll,
    /// which commits).
    fn drain(&self, (engine, consumer): &Started) -> Result<()> {
        let topics = self.plan.source_topics();
        while !lock_any(&self.cluster.events).is_empty() {
            poll_once(engine, &**consumer, &topics)?;
        }
        poll_once(engine, &**consumer, &topics)
    }
}

fn assigned() -> Event {
    Event::Assign(vec![("in".into(), 0)])
}

fn record(offset: i64, value: &'static str) -> Event {
    Event::Record { offset, value }
}

fn offsets(next: i64) -> Vec<CommitOffset> {
    vec![("in".into(), 0, next)]
}

#[test]
fn at_least_once_flushes_the_output_then_commits_the_consumed_offsets() {
    let h = harness(ProcessingGuarantee::AtLeastOnce);
    let started = h.start();
    h.cluster
        .script([assigned(), record(0, "a"), record(1, "b")]);
    h.drain(&started).unwrap();
    let producer = h.cluster.producer(0);
    assert_eq!(producer.values(), ["A", "B"]);
    // Output delivered before the offsets that would skip its input.
    let log = lock_any(&h.cluster.log).clone();
    assert_eq!(
        log.last_chunk(),
        Some(&["flush", "commit offsets"]),
        "{log:?}"
    );
    // The offset after the last record processed, once.
    assert_eq!(h.cluster.commits(), [offsets(2)]);
    // Nothing new: an idle round commits nothing.
    h.drain(&started).unwrap();
    assert_eq!(h.cluster.commits(), [offsets(2)]);
}

#[test]
fn a_revocation_commits_and_closes_the_tasks_and_an_assignment_reopens_them() {
    // A commit interval long enough that only the revocation commits.
    let h = harness_committing_every(ProcessingGuarantee::AtLeastOnce, Duration::from_secs(3600));
    let started = h.start();
    h.cluster.script([
        assigned(),
        record(0, "a"),
        Event::Revoke(vec![("in".into(), 0)]),
    ]);
    h.drain(&started).unwrap();
    assert_eq!(h.cluster.commits(), [offsets(1)]);
    assert!(lock_any(&started.0).tasks.is_empty(), "tasks closed");

    h.cluster.script([assigned(), record(1, "b")]);
    h.drain(&started).unwrap();
    let engine = lock_any(&started.0);
    assert_eq!(
        engine
            .tasks
            .keys()
            .map(|id| id.to_string())
            .collect::<Vec<_>>(),
        ["0_0"]
    );
    drop(engine);
    assert_eq!(h.cluster.producer(0).values(), ["A", "B"]);
    // A record after the reassignment is consumed from where the commit left off.
    assert_eq!(
        lock_any(&started.0).offsets_to_commit(),
        offsets(2),
        "not committed yet"
    );
}

#[test]
fn exactly_once_commits_offsets_inside_the_transaction() {
    let h = harness(ProcessingGuarantee::ExactlyOnceV2);
    let started = h.start();
    h.cluster
        .script([assigned(), record(0, "a"), record(1, "b")]);
    h.drain(&started).unwrap();
    let producer = h.cluster.producer(0);
    assert_eq!(producer.values(), ["A", "B"]);
    assert_eq!(producer.begun.load(Ordering::Relaxed), 1);
    assert_eq!(producer.transactions(), [offsets(2)]);
    // Not through the consumer: a crash would not keep the offsets
    // without the output.
    assert!(h.cluster.commits().is_empty());
}

#[test]
fn exactly_once_aborts_the_open_transaction_when_processing_fails() {
    let h = harness(ProcessingGuarantee::ExactlyOnceV2);
    h.cluster
        .script([assigned(), record(0, "a"), record(1, "poison")]);
    let error = run_inner(0, h.plan.clone(), &h.shared).unwrap_err();
    assert!(
        matches!(&error, StreamsError::Processing { source, .. } if source.to_string().contains("poison record")),
        "{error:?}"
    );
    let producer = h.cluster.producer(0);
    // "A" was sent inside the transaction that the failure aborted; nothing
    // was committed, so a successor reads both records again.
    assert_eq!(producer.values(), ["A"]);
    assert_eq!(producer.begun.load(Ordering::Relaxed), 1);
    assert_eq!(producer.aborted.load(Ordering::Relaxed), 1);
    assert!(producer.transactions().is_empty());
    assert!(h.cluster.commits().is_empty());
}

#[test]
fn a_fenced_producer_closes_the_tasks_dirty_and_a_new_producer_takes_over() {
    let h = harness(ProcessingGuarantee::ExactlyOnceV2);
    let started = h.start();
    h.cluster.script([assigned(), record(0, "a")]);
    // The record is processed, but the producer is fenced before the
    // commit: another instance owns the task now.
    let topics = h.plan.source_topics();
    poll_once(&started.0, &*started.1, &topics).unwrap();
    poll_once(&started.0, &*started.1, &topics).unwrap();
    let first = h.cluster.producer(0);
    first.fence();
    // The commit fails as a migration, which the thread survives: tasks
    // closed dirty, a new producer, and the consumer rejoins.
    poll_once(&started.0, &*started.1, &topics).unwrap();
    assert!(first.transactions().is_empty());
    assert!(lock_any(&started.0).tasks.is_empty(), "tasks closed dirty");
    assert_eq!(lock_any(&h.cluster.producers).len(), 2, "a new producer");
    assert_eq!(
        h.cluster.subscriptions.load(Ordering::Relaxed),
        2,
        "rejoined"
    );

    // The group hands the partition back from the last committed offset.
    h.cluster.script([assigned(), record(0, "a")]);
    h.drain(&started).unwrap();
    let second = h.cluster.producer(1);
    assert_eq!(second.values(), ["A"]);
    assert_eq!(second.transactions(), [offsets(1)]);
}

/// `left` and `right`, merged in one task and upper-cased to `out`; the
/// output shows the order the task processed its records in.
fn merge_harness(max_task_idle_ms: &str) -> Harness {
    let builder = StreamsBuilder::new();
    let strings = || Consumed::with(UnitSerde, StringSerde);
    let left = builder.stream_with("left", strings());
    let right = builder.stream_with("right", strings());
    left.merge(&right)
        .map_values(|v: String| v.to_uppercase())
        .to_with("out", Produced::with(UnitSerde, StringSerde));
    let config =
        StreamsConfig::new("app").set(streams_core::config::MAX_TASK_IDLE_MS, max_task_idle_ms);
    harness_of(
        builder.build().unwrap(),
        &["left", "right"],
        config,
        ProcessingGuarantee::AtLeastOnce,
        Duration::ZERO,
    )
}

fn both_assigned() -> Event {
    Event::Assign(vec![("left".into(), 0), ("right".into(), 0)])
}

fn at(topic: &'static str, offset: i64, timestamp: i64, value: &'static str) -> Event {
    Event::At {
        topic,
        offset,
        timestamp,
        value,
    }
}

#[test]
fn a_task_reading_two_partitions_processes_the_lowest_timestamp_first() {
    let h = merge_harness("0");
    let started = h.start();
    // `right` is behind: nothing of it has come, and the consumer cannot
    // tell yet whether it has records to fetch. `left` waits for it.
    h.cluster.script([
        both_assigned(),
        at("left", 0, 1, "l1"),
        at("left", 1, 5, "l5"),
    ]);
    h.drain(&started).unwrap();
    let producer = h.cluster.producer(0);
    assert!(producer.values().is_empty(), "{:?}", producer.values());
    assert!(
        h.cluster.commits().is_empty(),
        "nothing processed, nothing committed"
    );

    // `right` fills: the heads are taken lowest timestamp first, until
    // `right` is empty again and its lag unknown.
    h.cluster.script([at("right", 0, 3, "r3")]);
    h.drain(&started).unwrap();
    assert_eq!(producer.values(), ["L1", "R3"]);
    // Only processed records count as consumed: `l5` is read again after
    // a crash.
    let mut committed = h.cluster.commits().concat();
    committed.sort();
    assert_eq!(
        committed,
        [("left".to_owned(), 0, 1), ("right".to_owned(), 0, 1)]
    );

    // `right` has records still to fetch: the task waits for them.
    h.cluster.set_lag("right", 2);
    h.drain(&started).unwrap();
    assert_eq!(producer.values(), ["L1", "R3"]);
    h.cluster
        .script([at("right", 1, 4, "r4"), at("right", 2, 9, "r9")]);
    h.drain(&started).unwrap();
    assert_eq!(producer.values(), ["L1", "R3", "R4", "L5"]);

    // Caught up (its lag is 0): with max.task.idle.ms = 0 the task goes
    // on without it, at the next round.
    h.cluster.set_lag("left", 0);
    h.drain(&started).unwrap();
    assert_eq!(producer.values(), ["L1", "R3", "R4", "L5", "R9"]);
}

#[test]
fn with_max_task_idle_ms_a_caught_up_partition_is_waited_for() {
    // An hour: the test never sees the wait end by itself.
    let h = merge_harness("3600000");
    let started = h.start();
    h.cluster.set_lag("right", 0);
    h.cluster.script([
        both_assigned(),
        at("left", 0, 7, "l7"),
        at("left", 1, 8, "l8"),
    ]);
    h.drain(&started).unwrap();
    let producer = h.cluster.producer(0);
    assert!(producer.values().is_empty(), "{:?}", producer.values());
    // A record on the partition waited for: processing goes on in order,
    // until that partition is empty (and caught up) again.
    h.cluster.script([at("right", 0, 2, "r2")]);
    h.drain(&started).unwrap();
    assert_eq!(producer.values(), ["R2"]);
    h.cluster.script([at("right", 1, 9, "r9")]);
    h.drain(&started).unwrap();
    assert_eq!(producer.values(), ["R2", "L7", "L8"]);
}

#[test]
fn with_max_task_idle_ms_of_minus_one_records_are_processed_as_they_come() {
    let h = merge_harness("-1");
    let started = h.start();
    h.cluster.script([
        both_assigned(),
        at("left", 0, 5, "l5"),
        at("right", 0, 3, "r3"),
    ]);
    h.drain(&started).unwrap();
    assert_eq!(h.cluster.producer(0).values(), ["L5", "R3"]);
}

#[test]
fn a_partition_whose_buffer_fills_up_is_paused_until_it_drains() {
    let h = merge_harness("0");
    let started = h.start();
    let full = partition_group::MAX_BUFFERED_PER_PARTITION;
    h.cluster.script([both_assigned()]);
    h.cluster
        .script((0..full as i64).map(|offset| at("left", offset, 10 + offset, "l")));
    h.drain(&started).unwrap();
    // Resumed once when the task was made (in case an earlier task left
    // them paused), then `left` paused when its buffer filled.
    assert_eq!(
        h.cluster.pauses(),
        [
            ("resume", "left".into()),
            ("resume", "right".into()),
            ("pause", "left".into())
        ]
    );
    h.cluster.set_lag("right", 0);
    h.drain(&started).unwrap();
    assert_eq!(h.cluster.producer(0).values().len(), full);
    assert_eq!(h.cluster.pauses().last(), Some(&("resume", "left".into())));
    assert_eq!(
        h.cluster.commits().concat(),
        [("left".to_owned(), 0, full as i64)]
    );
}
