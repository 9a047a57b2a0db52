//! Restoring stores from their changelogs, and the checkpoint files that
//! let a restart replay only the tail.
//!
//! A task's checkpoint (`<task dir>/.checkpoint`) records, per changelog
//! partition, the offset up to which its persistent stores reflect the
//! changelog. A missing or unreadable checkpoint means the local files
//! cannot be trusted: they are wiped and the stores restored in full.
//!
//! A checkpoint vouches only for files in its build's on-disk layout, which
//! its first line names ([`CHECKPOINT_VERSION`]): files written in any
//! other layout are restored in full as well, rather than misread, by a
//! newer build and by an older one alike.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};

use super::clients::{EndReadingConsumer, REQUEST_TIMEOUT, kafka_error, kafka_failure, position};
use super::state_dir::write_atomically;
use streams_core::engine::TaskCore;
use streams_core::error::{Result, StreamsError};

/// Changelog offsets per (topic, partition).
pub(crate) type Offsets = HashMap<(String, i32), i64>;

/// Changelog partitions' low and high watermarks, as the broker reported
/// them, per (topic, partition).
pub(crate) type Watermarks = HashMap<(String, i32), (i64, i64)>;

/// The watermarks of `topic`/`partition`: from `known`, or asked for.
fn watermarks(
    consumer: &EndReadingConsumer,
    known: &Watermarks,
    topic: &str,
    partition: i32,
) -> Result<(i64, i64)> {
    if let Some(&known) = known.get(&(topic.to_owned(), partition)) {
        return Ok(known);
    }
    consumer
        .fetch_watermarks(topic, partition, REQUEST_TIMEOUT)
        .map_err(|e| {
            kafka_error(
                &format!("reading the end of changelog {topic}[{partition}]"),
                e,
            )
        })
}

/// How many changelog records are applied per batch.
const BATCH: usize = 2_000;

/// Hears how restoration goes (Kafka Streams' `StateRestoreListener`).
pub trait StateRestoreListener: Send + Sync {
    /// Restoration of `store` from `topic`/`partition` starts at `start`; the
    /// changelog ends at about `end`.
    fn on_restore_start(&self, store: &str, topic: &str, partition: i32, start: i64, end: i64) {
        let _ = (store, topic, partition, start, end);
    }
    /// A batch of `count` records up to offset `batch_end` was applied.
    fn on_batch_restored(
        &self,
        store: &str,
        topic: &str,
        partition: i32,
        batch_end: i64,
        count: usize,
    ) {
        let _ = (store, topic, partition, batch_end, count);
    }
    /// Restoration finished after `total` records.
    fn on_restore_end(&self, store: &str, topic: &str, partition: i32, total: u64) {
        let _ = (store, topic, partition, total);
    }
}

/// A listener that only logs (the runtime always logs as well).
#[derive(Debug, Default)]
pub struct NoopRestoreListener;

impl StateRestoreListener for NoopRestoreListener {}

pub(crate) fn checkpoint_path(task_dir: &Path) -> PathBuf {
    task_dir.join(".checkpoint")
}

/// The first line of a checkpoint: its format (Kafka Streams' lines of
/// topic, partition and offset) and the on-disk layout of the stores'
/// files it vouches for. Raise it whenever a store lays its files out
/// differently: a checkpoint of another version is ignored, and the files
/// beside it restored in full instead of misread.
///
/// - 0: window and session segments keyed time-first.
/// - 1: keyed key-first (the record's key, then its times), as Kafka
///   Streams' key schemas lay them out.
pub(crate) const CHECKPOINT_VERSION: &str = "1";

/// Reads a checkpoint; `None` when it is missing or unreadable, or of
/// another version than [`CHECKPOINT_VERSION`].
pub(crate) fn read_checkpoint(task_dir: &Path) -> Option<Offsets> {
    let path = checkpoint_path(task_dir);
    let text = std::fs::read_to_string(&path).ok()?;
    let mut offsets = HashMap::new();
    let mut lines = text.lines();
    let version = lines.next();
    if version != Some(CHECKPOINT_VERSION) {
        log::warn!(
            "checkpoint {} is of version {}, not this build's {CHECKPOINT_VERSION} (another \
             on-disk layout): ignoring it, for a full restore",
            path.display(),
            version.unwrap_or("none")
        );
        return None;
    }
    for line in lines {
        let parts: Vec<&str> = line.split(' ').collect();
        let parsed = match parts.as_slice() {
            [topic, partition, offset] => partition
                .parse::<i32>()
                .ok()
                .zip(offset.parse::<i64>().ok())
                .map(|(p, o)| (topic, p, o)),
            _ => None,
        };
        let Some((topic, partition, offset)) = parsed.filter(|(_, p, o)| *p >= 0 && *o >= 0) else {
            log::warn!(
                "checkpoint {} is corrupt at `{line}`: ignoring it",
                path.display()
            );
            return None;
        };
        offsets.insert(((*topic).to_owned(), partition), offset);
    }
    Some(offsets)
}

/// Writes a checkpoint atomically and durably (a temporary file, fsynced,
/// renamed over the old one, and the directory fsynced).
pub(crate) fn write_checkpoint(task_dir: &Path, offsets: &Offsets) -> Result<()> {
    let mut text = format!("{CHECKPOINT_VERSION}\n");
    let mut entries: Vec<_> = offsets.iter().collect();
    entries.sort();
    for ((topic, partition), offset) in entries {
        text.push_str(&format!("{topic} {partition} {offset}\n"));
    }
    let io = |action: &str, source| StreamsError::Io {
        action: format!("{action} {}", task_dir.display()),
        source,
    };
    std::fs::create_dir_all(task_dir).map_err(|e| io("creating", e))?;
    write_atomically(&checkpoint_path(task_dir), text.as_bytes())
        .map_err(|e| io("writing a checkpoint in", e))
}

/// Why `checkpoint` does not fit the changelogs as they are now, if it
/// does not: an offset beyond a changelog partition's end means the topic
/// was deleted and created anew (a new cluster, an application reset), and
/// one before its start that it was truncated. Either way the local state
/// reflects records the changelog no longer has. Kafka Streams meets both
/// as `OffsetOutOfRange` on its restore consumer and wipes the task's state
/// for a full restore (`TaskCorruptedException`); the caller does the same.
/// The watermarks it reads go into `read`, for the restoration to reuse.
pub(crate) fn checkpoint_mismatch(
    consumer: &EndReadingConsumer,
    checkpoint: &Offsets,
    read: &mut Watermarks,
) -> Result<Option<String>> {
    let mut entries: Vec<_> = checkpoint.iter().collect();
    entries.sort();
    for ((topic, partition), &offset) in entries {
        let (low, high) = watermarks(consumer, read, topic, *partition)?;
        read.insert((topic.clone(), *partition), (low, high));
        if offset < low {
            return Ok(Some(format!(
                "the checkpoint of {topic}[{partition}] is at offset {offset}, before the changelog's start {low}"
            )));
        }
        if offset <= high {
            continue;
        }
        // The reported end may be low (see `true_end`): only past the
        // true end is the checkpoint wrong.
        let end = true_end(consumer, topic, *partition, low, high)?;
        if offset > end {
            return Ok(Some(format!(
                "the checkpoint of {topic}[{partition}] is at offset {offset}, beyond the changelog's end {end}"
            )));
        }
    }
    Ok(None)
}

/// The offset after the last record (or transaction marker) of
/// `topic`/`partition`, read from the log, when the broker reported
/// `low`/`high` for it. A broker may report a high watermark below the
/// true end (Tansu says the last batch's base offset plus one); a fetch
/// returns whole batches, so reading from `high - 1` to the end of the
/// partition gives it. Kafka's watermark is exact, and the read returns
/// `high` at once.
fn true_end(
    consumer: &EndReadingConsumer,
    topic: &str,
    partition: i32,
    low: i64,
    high: i64,
) -> Result<i64> {
    if high <= low {
        return Ok(high);
    }
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, partition, Offset::Offset(high - 1))
        .map_err(|e| kafka_error("assigning", e))?;
    consumer
        .assign(&assignment)
        .map_err(|e| kafka_error(&format!("assigning changelog {topic}[{partition}]"), e))?;
    let began = Instant::now();
    let mut next = high - 1;
    let end = loop {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => next = next.max(message.offset() + 1),
            // An end-of-partition event counts once the position has
            // reached the reported end (not one left from an earlier
            // assignment); the position is past any trailing marker.
            Some(Err(KafkaError::PartitionEOF(_)))
                if next.max(position(consumer, topic, partition).unwrap_or(next)) >= high =>
            {
                break next.max(position(consumer, topic, partition).unwrap_or(next));
            }
            Some(Err(KafkaError::PartitionEOF(_))) | None => {
                if began.elapsed() > REQUEST_TIMEOUT {
                    return Err(kafka_failure(
                        &format!("reading the end of changelog {topic}[{partition}]"),
                        format!("stalled at offset {next} (reported end {high})"),
                    ));
                }
            }
            Some(Err(error)) => {
                return Err(kafka_error(
                    &format!("reading the end of changelog {topic}[{partition}]"),
                    error,
                ));
            }
        }
    };
    consumer
        .unassign()
        .map_err(|e| kafka_error("unassigning the restore consumer", e))?;
    Ok(end)
}

/// Removes a task's checkpoint, durably where it can: a checkpoint that
/// came back after a power loss would vouch for stores being wiped.
pub(crate) fn delete_checkpoint(task_dir: &Path) {
    if std::fs::remove_file(checkpoint_path(task_dir)).is_ok() {
        let _ = std::fs::File::open(task_dir).and_then(|dir| dir.sync_all());
    }
}

/// One changelog partition being restored into one store of one task.
struct Restoring<'a> {
    /// Index of the task in the caller's list.
    task: usize,
    store: &'a str,
    topic: String,
    partition: i32,
    from: i64,
    high: i64,
    /// The offset after the last record read (or marker passed).
    next: i64,
    total: u64,
    /// The batch being gathered: keys and values one after the other in
    /// one buffer (no allocation per record), and each record's spans.
    bytes: Vec<u8>,
    spans: Vec<(usize, usize, Option<usize>)>,
    listener: Box<dyn StateRestoreListener + 'a>,
    began: Instant,
    done: bool,
}

impl Restoring<'_> {
    fn push(&mut self, key: &[u8], value: Option<&[u8]>) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(key);
        let value_end = value.map(|v| {
            self.bytes.extend_from_slice(v);
            self.bytes.len()
        });
        self.spans.push((start, start + key.len(), value_end));
    }

    /// Applies the gathered batch to the store in one write.
    fn apply(&mut self, task: &TaskCore) -> Result<()> {
        if self.spans.is_empty() {
            return Ok(());
        }
        let bytes = &self.bytes;
        let batch: Vec<_> = self
            .spans
            .iter()
            .map(|&(start, key_end, value_end)| {
                (
                    &bytes[start..key_end],
                    value_end.map(|end| &bytes[key_end..end]),
                )
            })
            .collect();
        task.restore_batch(self.store, &batch)?;
        self.listener.on_batch_restored(
            self.store,
            &self.topic,
            self.partition,
            self.next - 1,
            batch.len(),
        );
        self.bytes.clear();
        self.spans.clear();
        Ok(())
    }
}

/// Restores every logged store of `tasks` (each with its checkpoint) from
/// its changelog partition, starting at the checkpoint for persistent
/// stores, all partitions at once: the restore consumer is assigned every
/// changelog partition that has records to restore, so fetches for all of
/// them are in flight together and the tail of each (the wait for the end
/// of the partition) is paid once, not once per partition. Each
/// partition's records are applied in batches, one write per batch.
/// `known` holds watermarks already read (see [`checkpoint_mismatch`]).
/// `listener` makes the listener of one changelog partition. Returns, per
/// task, the offset each of its changelog partitions was restored to.
pub(crate) fn restore_tasks<'a>(
    tasks: &[(&TaskCore, &Offsets)],
    consumer: &EndReadingConsumer,
    known: &Watermarks,
    listener: &dyn Fn() -> Box<dyn StateRestoreListener + 'a>,
) -> Result<Vec<Offsets>> {
    let mut restored: Vec<Offsets> = vec![HashMap::new(); tasks.len()];
    let mut states: Vec<Restoring<'_>> = Vec::new();
    for (index, (task, checkpoint)) in tasks.iter().enumerate() {
        let partition = task.task_id().partition;
        let mut stores: Vec<_> = task
            .stores()
            .iter()
            .filter_map(|(name, s)| Some((name.as_str(), s.changelog.clone()?, s.persistent)))
            .collect();
        stores.sort();
        for (store, topic, persistent) in stores {
            let start = persistent
                .then(|| checkpoint.get(&(topic.clone(), partition)).copied())
                .flatten();
            let (low, high) = watermarks(consumer, known, &topic, partition)?;
            let from = start.unwrap_or(low).max(low);
            if from >= high {
                // Nothing past the checkpoint (a broker may report a
                // watermark below the true end; a checkpoint is always at a
                // true end).
                restored[index].insert((topic, partition), start.unwrap_or(high).max(high));
                continue;
            }
            states.push(Restoring {
                task: index,
                store,
                topic,
                partition,
                from,
                high,
                next: from,
                total: 0,
                bytes: Vec::new(),
                spans: Vec::with_capacity(BATCH),
                listener: listener(),
                began: Instant::now(),
                done: false,
            });
        }
    }
    if states.is_empty() {
        return Ok(restored);
    }
    let mut assignment = TopicPartitionList::new();
    for state in &mut states {
        state.listener.on_restore_start(
            state.store,
            &state.topic,
            state.partition,
            state.from,
            state.high,
        );
        state.began = Instant::now();
        assignment
            .add_partition_offset(&state.topic, state.partition, Offset::Offset(state.from))
            .map_err(|e| kafka_error("assigning", e))?;
    }
    consumer
        .assign(&assignment)
        .map_err(|e| kafka_error("assigning changelog partitions", e))?;
    let outcome = read_to_ends(tasks, consumer, &mut states);
    // Unassigned even after a failure: the next restoration starts afresh.
    let unassigned = consumer
        .unassign()
        .map_err(|e| kafka_error("unassigning the restore consumer", e));
    outcome.and(unassigned)?;
    for state in states {
        restored[state.task].insert((state.topic, state.partition), state.next);
    }
    Ok(restored)
}

/// Reads every partition of `states` to its end, applying batches as they
/// fill.
fn read_to_ends(
    tasks: &[(&TaskCore, &Offsets)],
    consumer: &EndReadingConsumer,
    states: &mut [Restoring<'_>],
) -> Result<()> {
    // Records are routed by partition number first: a short list each.
    let mut by_partition: HashMap<i32, Vec<usize>> = HashMap::new();
    for (i, state) in states.iter().enumerate() {
        by_partition.entry(state.partition).or_default().push(i);
    }
    let mut remaining = states.len();
    let mut last_progress = Instant::now();
    // Read until the consumer reports the end of each partition: that comes
    // after whole fetched batches, so it is right even where a broker
    // reports a low watermark.
    while remaining > 0 {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                last_progress = Instant::now();
                let Some(&i) = by_partition
                    .get(&message.partition())
                    .and_then(|list| list.iter().find(|&&i| states[i].topic == message.topic()))
                else {
                    continue;
                };
                let state = &mut states[i];
                if state.done {
                    // Past the end it was restored to (nothing writes a
                    // changelog while its task restores).
                    continue;
                }
                if let Some(key) = message.key() {
                    state.push(key, message.payload());
                }
                state.next = message.offset() + 1;
                state.total += 1;
                if state.spans.len() >= BATCH {
                    state.apply(tasks[state.task].0)?;
                }
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                let Some(list) = by_partition.get(&partition) else {
                    continue;
                };
                for &i in list {
                    let state = &mut states[i];
                    if state.done {
                        continue;
                    }
                    // Under exactly-once the changelog ends with a commit
                    // marker: the position, not the last record, reaches
                    // the end.
                    let at = state.next.max(
                        position(consumer, &state.topic, state.partition).unwrap_or(state.next),
                    );
                    if at < state.high {
                        continue;
                    }
                    state.next = at;
                    state.apply(tasks[state.task].0)?;
                    state.done = true;
                    remaining -= 1;
                    finished(tasks[state.task].0, state);
                }
            }
            None => {}
            Some(Err(error)) => {
                let partitions: Vec<String> = states
                    .iter()
                    .filter(|s| !s.done)
                    .map(|s| format!("{}[{}]", s.topic, s.partition))
                    .collect();
                return Err(kafka_error(
                    &format!("reading changelogs {}", partitions.join(", ")),
                    error,
                ));
            }
        }
        if remaining > 0 && last_progress.elapsed() > REQUEST_TIMEOUT {
            let stalled: Vec<String> = states
                .iter()
                .filter(|s| !s.done)
                .map(|s| {
                    format!(
                        "offset {} of changelog {}[{}] (end {}) for store {}",
                        s.next, s.topic, s.partition, s.high, s.store
                    )
                })
                .collect();
            return Err(kafka_failure(
                "restoring stores",
                format!("stalled at {}", stalled.join(", ")),
            ));
        }
    }
    Ok(())
}

/// Logs a restored partition and tells its listener.
fn finished(task: &TaskCore, state: &Restoring<'_>) {
    let seconds = state.began.elapsed().as_secs_f64();
    log::info!(
        "restored store {} of task {} from {}[{}]: {} records from offset {} in {seconds:.2} s ({:.0} records/s)",
        state.store,
        task.task_id(),
        state.topic,
        state.partition,
        state.total,
        state.from,
        state.total as f64 / seconds.max(1e-9)
    );
    state
        .listener
        .on_restore_end(state.store, &state.topic, state.partition, state.total);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_round_trip_and_corruption_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_checkpoint(dir.path()).is_none());
        let offsets: Offsets =
            HashMap::from([(("app-s-changelog".into(), 3), 42), (("b".into(), 0), 0)]);
        write_checkpoint(dir.path(), &offsets).unwrap();
        assert_eq!(read_checkpoint(dir.path()).unwrap(), offsets);
        for corrupt in ["1\nfoo\n", "1\nt x 1\n", "1\nt 1 -5\n", "9\nt 1 1\n", ""] {
            std::fs::write(checkpoint_path(dir.path()), corrupt).unwrap();
            assert!(read_checkpoint(dir.path()).is_none(), "{corrupt:?}");
        }
        delete_checkpoint(dir.path());
        assert!(!checkpoint_path(dir.path()).exists());
    }

    #[test]
    fn a_checkpoint_vouches_only_for_files_in_its_builds_layout() {
        let dir = tempfile::tempdir().unwrap();
        let offsets: Offsets = HashMap::from([(("app-w-changelog".into(), 0), 7)]);
        write_checkpoint(dir.path(), &offsets).unwrap();
        let written = std::fs::read_to_string(checkpoint_path(dir.path())).unwrap();
        assert_eq!(written, "1\napp-w-changelog 0 7\n");
        assert_eq!(read_checkpoint(dir.path()).unwrap(), offsets);
        // As a build of the time-first layout left it: ignored.
        std::fs::write(checkpoint_path(dir.path()), "0\napp-w-changelog 0 7\n").unwrap();
        assert!(read_checkpoint(dir.path()).is_none());
    }
}
