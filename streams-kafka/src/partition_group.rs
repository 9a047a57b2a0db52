//! Kafka Streams' `PartitionGroup`: a task that reads several partitions
//! (several source topics, as a join does) buffers their records per
//! partition and processes, each time, the head record with the lowest
//! timestamp, so that its stream time advances in order across inputs.
//!
//! A partition with nothing buffered holds the task up
//! (`max.task.idle.ms`, Kafka Streams' `readyToProcess`):
//!
//! - while the consumer does not know how far the partition goes, or
//!   knows it has records still to fetch, the task waits for them;
//! - once it is caught up (no lag), the task waits `max.task.idle.ms` more
//!   for new records (0, the default: not at all), then processes the
//!   other partitions' records anyway;
//! - with `max.task.idle.ms` = -1 the task never waits: it processes
//!   whatever is buffered.
//!
//! A task that reads one partition has no group: the thread hands it
//! each record as it comes, copying nothing.
//!
//! Records are ordered by the timestamp they were written with: the
//! sources' timestamp extractors run when a record is processed, on the
//! deserialized record, so a payload-derived event time does not order
//! the buffer.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use streams_core::Headers;
use streams_core::config::MAX_TASK_IDLE_MS_DISABLED;
use streams_core::record::RawView;

/// Records buffered per partition before the partition is paused (Kafka
/// Streams' `buffered.records.per.partition` default).
pub(crate) const MAX_BUFFERED_PER_PARTITION: usize = 1000;

/// How often a partition that holds its task up has its lag asked for: the
/// real consumer asks the broker for the partition's end each time.
const LAG_CHECK_INTERVAL: Duration = if cfg!(test) {
    Duration::ZERO
} else {
    Duration::from_millis(10)
};

/// A record read and not yet processed: its topic and partition are its
/// queue's.
struct Buffered {
    offset: i64,
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Headers,
}

/// One input partition of a task, with its buffered records.
struct PartitionQueue {
    topic: String,
    partition: i32,
    records: VecDeque<Buffered>,
    /// Known to have nothing more to fetch, and no record came since.
    caught_up: bool,
    /// When the task stops waiting for this (caught up, empty) partition.
    deadline: Option<Instant>,
    last_lag_check: Option<Instant>,
    /// Fetching stopped: its buffer is full.
    paused: bool,
}

/// The input partitions of one task and their buffered records.
pub(crate) struct PartitionGroup {
    queues: Vec<PartitionQueue>,
    /// `max.task.idle.ms`.
    max_idle_ms: i64,
    buffered: usize,
}

/// What the group asks of the consumer: Kafka's `currentLag`, the records
/// between its position in a partition and the partition's end, or `None`
/// while it does not know.
pub(crate) type LagOf<'a> = &'a mut dyn FnMut(&str, i32) -> Option<i64>;

impl PartitionGroup {
    /// A group of `partitions` (topic, partition), waiting on empty ones as
    /// `max_idle_ms` (`max.task.idle.ms`) says.
    pub(crate) fn new(partitions: Vec<(String, i32)>, max_idle_ms: i64) -> Self {
        PartitionGroup {
            queues: partitions
                .into_iter()
                .map(|(topic, partition)| PartitionQueue {
                    topic,
                    partition,
                    records: VecDeque::new(),
                    caught_up: false,
                    deadline: None,
                    last_lag_check: None,
                    paused: false,
                })
                .collect(),
            max_idle_ms,
            buffered: 0,
        }
    }

    /// Records buffered in all partitions.
    pub(crate) fn buffered(&self) -> usize {
        self.buffered
    }

    /// Buffers a copy of `raw`. Returns its partition when that partition's
    /// buffer has just filled up: the caller pauses it.
    pub(crate) fn add(&mut self, raw: RawView<'_>) -> Option<(String, i32)> {
        let queue = match self
            .queues
            .iter_mut()
            .find(|q| q.partition == raw.partition && q.topic == raw.topic)
        {
            Some(queue) => queue,
            None => {
                // Not a partition the task was made with (a topic added to
                // the assignment later): it joins the group.
                self.queues.push(PartitionQueue {
                    topic: raw.topic.to_owned(),
                    partition: raw.partition,
                    records: VecDeque::new(),
                    caught_up: false,
                    deadline: None,
                    last_lag_check: None,
                    paused: false,
                });
                self.queues.last_mut().expect("just pushed")
            }
        };
        queue.records.push_back(Buffered {
            offset: raw.offset,
            timestamp: raw.timestamp,
            key: raw.key.map(<[u8]>::to_vec),
            value: raw.value.map(<[u8]>::to_vec),
            headers: raw.headers,
        });
        // What was known of its end is past: ask again once it is empty.
        queue.caught_up = false;
        queue.deadline = None;
        self.buffered += 1;
        if queue.records.len() >= MAX_BUFFERED_PER_PARTITION && !queue.paused {
            queue.paused = true;
            return Some((queue.topic.clone(), queue.partition));
        }
        None
    }

    /// The partition whose head record is processed next, when the task
    /// is ready to process (see the module docs); `lag` is asked about
    /// empty partitions.
    pub(crate) fn next_partition(&mut self, now: Instant, lag: LagOf<'_>) -> Option<usize> {
        if self.buffered == 0 {
            return None;
        }
        if self.max_idle_ms != MAX_TASK_IDLE_MS_DISABLED && !self.ready(now, lag) {
            return None;
        }
        self.queues
            .iter()
            .enumerate()
            .filter_map(|(i, q)| q.records.front().map(|r| (r.timestamp, i)))
            .min()
            .map(|(_, i)| i)
    }

    /// Whether no empty partition holds the task up.
    fn ready(&mut self, now: Instant, lag: LagOf<'_>) -> bool {
        let idle = Duration::from_millis(self.max_idle_ms.max(0).unsigned_abs());
        for queue in &mut self.queues {
            if !queue.records.is_empty() {
                queue.deadline = None;
                continue;
            }
            if !queue.caught_up {
                if queue
                    .last_lag_check
                    .is_some_and(|at| now.saturating_duration_since(at) < LAG_CHECK_INTERVAL)
                {
                    return false;
                }
                queue.last_lag_check = Some(now);
                match lag(&queue.topic, queue.partition) {
                    Some(0) => queue.caught_up = true,
                    // Unknown, or records to fetch: wait for them.
                    unknown_or_behind => {
                        log::trace!(
                            "{}[{}] has no buffered record and a lag of {unknown_or_behind:?}: waiting",
                            queue.topic,
                            queue.partition
                        );
                        return false;
                    }
                }
            }
            // Caught up: wait for new records until the deadline.
            if now < *queue.deadline.get_or_insert(now + idle) {
                return false;
            }
        }
        true
    }

    /// Takes the head record of partition `index`, and whether the
    /// partition was paused and has room again (the caller resumes it).
    pub(crate) fn pop(&mut self, index: usize) -> Option<(Popped<'_>, bool)> {
        let queue = &mut self.queues[index];
        let record = queue.records.pop_front()?;
        self.buffered -= 1;
        let resume = queue.paused && queue.records.len() < MAX_BUFFERED_PER_PARTITION / 2;
        if resume {
            queue.paused = false;
        }
        Some((
            Popped {
                topic: &queue.topic,
                partition: queue.partition,
                record,
            },
            resume,
        ))
    }

    /// Every partition, for resuming them.
    pub(crate) fn partitions(&self) -> Vec<(String, i32)> {
        self.queues
            .iter()
            .map(|q| (q.topic.clone(), q.partition))
            .collect()
    }
}

/// A record taken from its partition's buffer, to be processed.
pub(crate) struct Popped<'a> {
    topic: &'a str,
    partition: i32,
    record: Buffered,
}

impl Popped<'_> {
    /// The record as the task takes it.
    pub(crate) fn view(&mut self) -> RawView<'_> {
        RawView {
            topic: self.topic,
            partition: self.partition,
            offset: self.record.offset,
            timestamp: self.record.timestamp,
            key: self.record.key.as_deref(),
            value: self.record.value.as_deref(),
            headers: std::mem::take(&mut self.record.headers),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(topic: &str, offset: i64, timestamp: i64) -> RawView<'_> {
        RawView {
            topic,
            partition: 0,
            offset,
            timestamp,
            key: None,
            value: Some(b"v"),
            headers: Headers::new(),
        }
    }

    fn group(max_idle_ms: i64) -> PartitionGroup {
        PartitionGroup::new(vec![("a".into(), 0), ("b".into(), 0)], max_idle_ms)
    }

    /// Pops and names (topic, offset) the next records while ready.
    fn take(group: &mut PartitionGroup, now: Instant, lags: &[(&str, i64)]) -> Vec<(String, i64)> {
        let mut lag = |topic: &str, _| lags.iter().find(|(t, _)| *t == topic).map(|(_, l)| *l);
        let mut taken = Vec::new();
        while let Some(index) = group.next_partition(now, &mut lag) {
            let (mut popped, _) = group.pop(index).unwrap();
            let view = popped.view();
            taken.push((view.topic.to_owned(), view.offset));
        }
        taken
    }

    fn names(list: &[(&str, i64)]) -> Vec<(String, i64)> {
        list.iter().map(|(t, o)| ((*t).to_owned(), *o)).collect()
    }

    #[test]
    fn an_idle_deadline_starts_when_the_partition_is_caught_up_and_ends_in_max_task_idle_ms() {
        let start = Instant::now();
        let mut g = group(100);
        g.add(record("a", 0, 50));
        // `b`'s lag unknown, then positive: no deadline, however long.
        assert!(take(&mut g, start, &[]).is_empty());
        let later = start + Duration::from_secs(3600);
        assert!(take(&mut g, later, &[("b", 3)]).is_empty());
        // Caught up: 100 ms from when that was seen.
        assert!(take(&mut g, later, &[("b", 0)]).is_empty());
        assert!(take(&mut g, later + Duration::from_millis(99), &[]).is_empty());
        let due = later + Duration::from_millis(100);
        assert_eq!(take(&mut g, due, &[]), names(&[("a", 0)]));
        // Still empty past its deadline: nothing more to wait for.
        g.add(record("a", 1, 60));
        assert_eq!(take(&mut g, due, &[]), names(&[("a", 1)]));
        // A record of `b` ends the wait; the next empty spell starts anew.
        g.add(record("b", 0, 70));
        g.add(record("a", 2, 80));
        assert_eq!(take(&mut g, due, &[("b", 0)]), names(&[("b", 0)]));
        assert_eq!(
            take(&mut g, due + Duration::from_millis(100), &[]),
            names(&[("a", 2)])
        );
    }

    #[test]
    fn heads_are_taken_lowest_timestamp_first_and_ties_in_partition_order() {
        let now = Instant::now();
        let mut g = group(0);
        for (topic, offset, timestamp) in [("a", 0, 5), ("a", 1, 9), ("b", 0, 5), ("b", 1, 6)] {
            g.add(record(topic, offset, timestamp));
        }
        assert_eq!(
            take(&mut g, now, &[("a", 0), ("b", 0)]),
            names(&[("a", 0), ("b", 0), ("b", 1), ("a", 1)])
        );
        assert_eq!(g.buffered(), 0);
    }

    #[test]
    fn a_full_partition_is_paused_once_and_resumed_when_half_drained() {
        let now = Instant::now();
        let mut g = group(MAX_TASK_IDLE_MS_DISABLED);
        let mut paused = Vec::new();
        for offset in 0..MAX_BUFFERED_PER_PARTITION as i64 + 5 {
            paused.extend(g.add(record("a", offset, offset)));
        }
        assert_eq!(paused, [("a".to_owned(), 0)]);
        let mut lag = |_: &str, _| None;
        let mut resumed_after = None;
        for taken in 1.. {
            let Some(index) = g.next_partition(now, &mut lag) else {
                break;
            };
            if g.pop(index).unwrap().1 {
                assert!(resumed_after.is_none(), "resumed twice");
                resumed_after = Some(taken);
            }
        }
        // 1005 buffered: below 500 after 506 taken.
        assert_eq!(resumed_after, Some(506));
    }
}
