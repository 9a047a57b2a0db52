//! `KTable::suppress`: hold back a table's updates, and emit only the
//! latest per key once a window has closed or a time limit has passed
//! (Kafka Streams' `Suppressed` and its `KTableSuppressProcessor`).
//!
//! Held updates wait in a [`SuppressionBuffer`], a store of the task: its
//! changes go to a changelog when the task commits, so after a restart the
//! buffer is restored and every final result is emitted once.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use super::ktable::{KTable, ValueGetterSupplier};
use super::{Change, Data, Serdes};
use crate::error::{BoxError, TopologyError};
use crate::processor::{ProcessResult, Processor, ProcessorContext};
use crate::record::Record;
use crate::serde::{SerdeRef, default_serde};
use crate::state::{StoreBuilder, StoreContext, StoreHandle, StoreInstance};
use crate::window::Windowed;
use crate::{ChangelogSink, Write};
use rustc_hash::FxHashMap;

/// What to do when a suppression buffer is full (Kafka Streams'
/// `BufferConfig` strategies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufferFull {
    /// Emit the oldest updates early to make room: results may then not be
    /// final.
    EmitEarly,
    /// Fail the task: nothing is emitted before its time.
    ShutDown,
}

/// How much a suppression buffer may hold, and what happens beyond it.
///
/// ```
/// use streams_core::dsl::{BufferConfig, BufferFull};
///
/// let unbounded = BufferConfig::unbounded();
/// assert_eq!(unbounded.when_full(), BufferFull::ShutDown);
/// let small = BufferConfig::max_records(1_000).with_max_bytes(1 << 20).shut_down_when_full();
/// assert_eq!(small.when_full(), BufferFull::ShutDown);
/// assert_eq!(BufferConfig::max_bytes(4096).when_full(), BufferFull::EmitEarly);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferConfig {
    max_records: Option<u64>,
    max_bytes: Option<u64>,
    when_full: BufferFull,
}

impl BufferConfig {
    /// No limit (memory is the limit); never emits early.
    pub fn unbounded() -> Self {
        BufferConfig {
            max_records: None,
            max_bytes: None,
            when_full: BufferFull::ShutDown,
        }
    }

    /// At most `records` keys; emits early when full, unless told to shut
    /// down.
    pub fn max_records(records: u64) -> Self {
        BufferConfig {
            max_records: Some(records),
            max_bytes: None,
            when_full: BufferFull::EmitEarly,
        }
    }

    /// At most about `bytes` of keys and values; emits early when full,
    /// unless told to shut down.
    pub fn max_bytes(bytes: u64) -> Self {
        BufferConfig {
            max_records: None,
            max_bytes: Some(bytes),
            when_full: BufferFull::EmitEarly,
        }
    }

    /// Also at most `records` keys.
    pub fn with_max_records(mut self, records: u64) -> Self {
        self.max_records = Some(records);
        self
    }

    /// Also at most about `bytes`.
    pub fn with_max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = Some(bytes);
        self
    }

    /// When full, emit the oldest updates early.
    pub fn emit_early_when_full(mut self) -> Self {
        self.when_full = BufferFull::EmitEarly;
        self
    }

    /// When full, fail the task (the stream thread stops with an error).
    pub fn shut_down_when_full(mut self) -> Self {
        self.when_full = BufferFull::ShutDown;
        self
    }

    /// What happens when the buffer is full.
    pub fn when_full(&self) -> BufferFull {
        self.when_full
    }

    fn over(&self, records: usize, bytes: usize) -> bool {
        self.max_records.is_some_and(|max| records as u64 > max)
            || self.max_bytes.is_some_and(|max| bytes as u64 > max)
    }
}

/// The time a buffered update is held from: the window's end, or the
/// record's timestamp.
type BufferTime<K> = Arc<dyn Fn(&K, i64) -> i64 + Send + Sync>;

/// How a table's updates are suppressed (Kafka Streams' `Suppressed`).
pub struct Suppressed<K> {
    time: BufferTime<K>,
    /// `None`: the grace period of the windowed aggregation upstream.
    wait: Option<i64>,
    buffer: BufferConfig,
    final_results: bool,
    name: Option<String>,
}

impl<K: 'static> Suppressed<Windowed<K>> {
    /// Final results only: each window's latest value once the window has
    /// closed (stream time has reached its end plus the grace period of
    /// the windowed aggregation upstream). The buffer must not emit early
    /// (unbounded, or shutting down when full), or the topology fails to
    /// build.
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_core::dsl::{BufferConfig, KStream, Materialized, Suppressed};
    /// use streams_core::serde::{I64Serde, Nullable, StringSerde};
    /// use streams_core::testing::TopologyTestDriver;
    /// use streams_core::window::{TimeWindowedSerde, TimeWindows, Window, Windowed};
    /// use streams_core::{StreamsBuilder, StreamsConfig};
    ///
    /// let builder = StreamsBuilder::new();
    /// let clicks: KStream<String, String> = builder.stream("clicks");
    /// clicks
    ///     .group_by_key()
    ///     .windowed_by(TimeWindows::of_size_and_grace(Duration::from_secs(60), Duration::from_secs(10))?)
    ///     .count_with(Materialized::named("counts").in_memory())
    ///     .suppress(Suppressed::until_window_closes(BufferConfig::unbounded()))
    ///     .to_stream()
    ///     .to("final-counts");
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let mut input = driver.create_input_topic("clicks", StringSerde, StringSerde);
    /// let keys = TimeWindowedSerde::new(StringSerde, 60_000);
    /// let output = driver.create_output_topic("final-counts", keys, Nullable(I64Serde));
    /// input.pipe_input_at("ann".into(), "/".into(), 1_000);
    /// input.pipe_input_at("ann".into(), "/".into(), 30_000);
    /// input.pipe_input_at("ann".into(), "/".into(), 65_000); // next window
    /// assert!(output.is_empty(), "[0, 60 s) closes at 70 s");
    /// input.pipe_input_at("bob".into(), "/".into(), 70_000);
    /// let first = Windowed::new("ann".to_string(), Window::new(0, 60_000));
    /// assert_eq!(output.read_key_values_to_list(), [(first, Some(2))]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn until_window_closes(buffer: BufferConfig) -> Self {
        Suppressed {
            time: Arc::new(|key: &Windowed<K>, _| key.window.end),
            wait: None,
            buffer,
            final_results: true,
            name: None,
        }
    }
}

impl<K: 'static> Suppressed<K> {
    /// The latest value of each key once `limit` of stream time has passed
    /// since its first held update (Kafka Streams' `untilTimeLimit`):
    /// fewer, later updates, not necessarily final ones.
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_core::dsl::{BufferConfig, Consumed, Materialized, Suppressed};
    /// use streams_core::serde::{I64Serde, Nullable, StringSerde};
    /// use streams_core::testing::TopologyTestDriver;
    /// use streams_core::{StreamsBuilder, StreamsConfig};
    ///
    /// let builder = StreamsBuilder::new();
    /// builder
    ///     .table("prices", Consumed::with(StringSerde, I64Serde), Materialized::named("prices").in_memory())
    ///     .suppress(Suppressed::until_time_limit(Duration::from_secs(10), BufferConfig::max_records(100)))
    ///     .to_stream()
    ///     .to("slow-prices");
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let mut input = driver.create_input_topic("prices", StringSerde, I64Serde);
    /// let output = driver.create_output_topic("slow-prices", StringSerde, Nullable(I64Serde));
    /// input.pipe_input_at("tea".into(), 3, 0);
    /// input.pipe_input_at("tea".into(), 4, 5_000);
    /// input.pipe_input_at("cake".into(), 9, 10_000); // 10 s after tea's first update
    /// assert_eq!(output.read_key_values_to_list(), [("tea".into(), Some(4))]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn until_time_limit(limit: Duration, buffer: BufferConfig) -> Self {
        Suppressed {
            time: Arc::new(|_: &K, timestamp| timestamp),
            wait: Some(i64::try_from(limit.as_millis()).unwrap_or(i64::MAX)),
            buffer,
            final_results: false,
            name: None,
        }
    }

    /// Names the suppression (and its buffer's store and changelog).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

impl<K: Data, V: Data> KTable<K, V> {
    /// This table's updates held back as `suppressed` says: final results
    /// of windows, or the latest update per key after a time limit.
    pub fn suppress(&self, suppressed: Suppressed<K>) -> KTable<K, V> {
        let mut st = self.state.borrow_mut();
        let name = match &suppressed.name {
            Some(name) => name.clone(),
            None => st.next_name("KTABLE-SUPPRESS-"),
        };
        let store = format!("{name}-store");
        let wait = match suppressed.wait {
            Some(wait) => Some(wait),
            None => st.upstream_grace(&self.node),
        };
        let failure = match (wait, &self.serdes) {
            (None, _) => Some(format!(
                "`{name}` suppresses until windows close, but no windowed aggregation is upstream of it"
            )),
            (_, _)
                if suppressed.final_results
                    && suppressed.buffer.when_full == BufferFull::EmitEarly =>
            {
                Some(format!(
                    "`{name}` emits final results only, so its buffer must not emit early: use BufferConfig::unbounded() or shut_down_when_full()"
                ))
            }
            _ => None,
        };
        let keys = self.serdes.keys.clone().or_else(default_serde);
        let values = self.serdes.values.clone().or_else(default_serde);
        let (Some(wait), None, Some(keys), Some(values)) = (wait, &failure, keys, values) else {
            st.fail(TopologyError::at_node(
                &name,
                failure.unwrap_or_else(|| {
                    format!("`{name}` needs the table's key and value serdes to buffer its updates")
                }),
            ));
            drop(st);
            return self.clone();
        };
        let getter = buffered_getter(&self.getter, &store, keys.clone(), values.clone());
        let processor = SuppressProcessor {
            store: store.clone(),
            time: suppressed.time.clone(),
            wait,
            buffer: suppressed.buffer,
            final_results: suppressed.final_results,
            keys,
            values,
            handle: None,
            evicted: Vec::new(),
        };
        let result = st
            .topology
            .add_processor(&name, move || processor.clone(), &[&self.node])
            .map(|_| ())
            .and_then(|()| {
                st.topology
                    .add_state_store(
                        SuppressionBufferBuilder {
                            name: store.clone(),
                        },
                        &[],
                    )
                    .map(|_| ())
            })
            .and_then(|()| {
                st.topology
                    .connect_processor_and_state_stores(&name, &[&store])
                    .map(|_| ())
            });
        st.record(result);
        KTable {
            state: self.state.clone(),
            node: name,
            serdes: Serdes {
                keys: self.serdes.keys.clone(),
                values: self.serdes.values.clone(),
            },
            getter,
            store: None,
        }
    }
}

/// A suppressed table's value getter: while a key's updates are held, the
/// value downstream last saw (the held entry's prior value), else the
/// parent's (Kafka Streams' `KTableSuppressProcessorSupplier.view`).
fn buffered_getter<K: Data, V: Data>(
    parent: &ValueGetterSupplier<K, V>,
    store: &str,
    keys: SerdeRef<K>,
    values: SerdeRef<V>,
) -> ValueGetterSupplier<K, V> {
    let make = parent.make.clone();
    let name = store.to_owned();
    let mut stores = parent.stores.clone();
    stores.push(name.clone());
    ValueGetterSupplier {
        stores,
        make: Arc::new(move |lookup| {
            let parent = make(lookup)?;
            let buffer = lookup.state_store(&name)?;
            let (keys, values) = (keys.clone(), values.clone());
            Ok(Box::new(move |key: &K| {
                let bytes = keys
                    .serialize(key)
                    .map_err(|e| buffer.access_error(e.to_string()))?;
                let held = buffer.with(|b: &mut SuppressionBuffer| {
                    b.entries.get(&bytes).map(|held| held.entry.prior.clone())
                })?;
                match held {
                    Some(prior) => prior
                        .map(|v| values.deserialize(&v))
                        .transpose()
                        .map_err(|e| buffer.access_error(e.to_string())),
                    None => parent(key),
                }
            }))
        }),
    }
}

/// Holds back a table's updates in a [`SuppressionBuffer`].
struct SuppressProcessor<K, V> {
    store: String,
    time: BufferTime<K>,
    wait: i64,
    buffer: BufferConfig,
    final_results: bool,
    keys: SerdeRef<K>,
    values: SerdeRef<V>,
    handle: Option<StoreHandle>,
    /// The entries evicted by one record, kept between records: a window
    /// closing evicts each of its keys at once, and a fresh list that
    /// grows to that size every time costs more than the eviction.
    evicted: Vec<(Vec<u8>, Buffered)>,
}

impl<K, V> Clone for SuppressProcessor<K, V> {
    fn clone(&self) -> Self {
        SuppressProcessor {
            store: self.store.clone(),
            time: self.time.clone(),
            wait: self.wait,
            buffer: self.buffer,
            final_results: self.final_results,
            keys: self.keys.clone(),
            values: self.values.clone(),
            handle: None,
            evicted: Vec::new(),
        }
    }
}

impl<K, V> SuppressProcessor<K, V>
where
    K: Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    fn emit(
        &self,
        ctx: &mut ProcessorContext<'_, K, Change<V>>,
        (key, entry): (Vec<u8>, Buffered),
    ) -> ProcessResult {
        if self.final_results && entry.new.is_none() {
            // A window's final tombstone says nothing downstream needs.
            return Ok(());
        }
        let value = |bytes: Option<Vec<u8>>| -> Result<Option<V>, BoxError> {
            Ok(bytes.map(|b| self.values.deserialize(&b)).transpose()?)
        };
        let change = Change {
            new: value(entry.new)?,
            old: value(entry.prior)?,
        };
        let key = self.keys.deserialize(&key)?;
        ctx.forward(Record::new(key, change, entry.timestamp))?;
        Ok(())
    }
}

impl<K, V> Processor<K, Change<V>, K, Change<V>> for SuppressProcessor<K, V>
where
    K: Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, Change<V>>) -> ProcessResult {
        self.handle = Some(ctx.state_store(&self.store)?);
        Ok(())
    }

    fn process(
        &mut self,
        r: Record<K, Change<V>>,
        ctx: &mut ProcessorContext<'_, K, Change<V>>,
    ) -> ProcessResult {
        let time = (self.time)(&r.key, r.timestamp);
        let key = self.keys.serialize(&r.key)?;
        let bytes = |v: &Option<V>| -> Result<Option<Vec<u8>>, BoxError> {
            Ok(v.as_ref().map(|v| self.values.serialize(v)).transpose()?)
        };
        let (old, new) = (bytes(&r.value.old)?, bytes(&r.value.new)?);
        let expiry = ctx.current_stream_time().saturating_sub(self.wait);
        let (buffer, final_results) = (self.buffer, self.final_results);
        let handle = self.handle.as_ref().expect("init looks the store up");
        let mut evicted = std::mem::take(&mut self.evicted);
        handle.with(|b: &mut SuppressionBuffer| {
            b.put(key, time, old, new, r.timestamp)?;
            b.evict_while(&mut evicted, |b| b.min_time().is_some_and(|t| t <= expiry));
            if buffer.over(b.len(), b.bytes()) {
                if buffer.when_full == BufferFull::ShutDown {
                    return Err(format!(
                        "the suppression buffer `{}` is full ({} records, {} bytes){}",
                        b.name,
                        b.len(),
                        b.bytes(),
                        if final_results {
                            ": final results cannot be emitted early"
                        } else {
                            ""
                        }
                    ));
                }
                b.evict_while(&mut evicted, |b| buffer.over(b.len(), b.bytes()));
            }
            Ok(())
        })??;
        let emitted = evicted
            .drain(..)
            .try_for_each(|entry| self.emit(ctx, entry));
        self.evicted = evicted;
        emitted
    }
}

/// An update held in a suppression buffer: the value before the first held
/// update (`prior`), the latest value (`new`), the latest record's
/// timestamp, and the time the entry is held from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Buffered {
    time: i64,
    timestamp: i64,
    prior: Option<Vec<u8>>,
    new: Option<Vec<u8>>,
}

/// A [`Buffered`] entry and whether it changed since it was last logged.
struct Held {
    entry: Buffered,
    unlogged: bool,
}

/// What a buffered entry costs beyond its bytes.
const ENTRY_OVERHEAD: usize = 64;

impl Buffered {
    fn size(&self, key: &[u8]) -> usize {
        2 * key.len()
            + self.prior.as_ref().map_or(0, Vec::len)
            + self.new.as_ref().map_or(0, Vec::len)
            + ENTRY_OVERHEAD
    }

    /// Changelog bytes: time, timestamp, then each value as a presence
    /// byte, a 4-byte big-endian length and the bytes.
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(26 + self.size(&[]));
        out.extend_from_slice(&self.time.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        for value in [&self.prior, &self.new] {
            match value {
                Some(v) => {
                    out.push(1);
                    out.extend_from_slice(&(v.len() as u32).to_be_bytes());
                    out.extend_from_slice(v);
                }
                None => out.push(0),
            }
        }
        out
    }

    fn decode(bytes: &[u8]) -> Option<Buffered> {
        let (time, rest) = bytes.split_first_chunk::<8>()?;
        let (timestamp, mut rest) = rest.split_first_chunk::<8>()?;
        let mut values = [None, None];
        for value in &mut values {
            let (&present, after) = rest.split_first()?;
            rest = after;
            if present == 1 {
                let (len, after) = rest.split_first_chunk::<4>()?;
                let len = u32::from_be_bytes(*len) as usize;
                let (v, after) = after.split_at_checked(len)?;
                *value = Some(v.to_vec());
                rest = after;
            }
        }
        let [prior, new] = values;
        rest.is_empty().then_some(Buffered {
            time: i64::from_be_bytes(*time),
            timestamp: i64::from_be_bytes(*timestamp),
            prior,
            new,
        })
    }
}

/// The store of a suppression: held updates by key and in time order,
/// logged at each commit (only the keys changed since the last one, as
/// Kafka Streams' time-ordered buffer does) and restored from the log.
pub struct SuppressionBuffer {
    name: String,
    // Fx hashing: every record looks its key up here.
    entries: FxHashMap<Vec<u8>, Held>,
    order: BTreeSet<(i64, Vec<u8>)>,
    bytes: usize,
    /// The keys to log at the next commit: each held entry changed since
    /// the last one (marked `unlogged`, listed once) and each key evicted
    /// meanwhile. A flag and a list, not a set: a set would hash every
    /// record's key once more.
    dirty: Vec<Vec<u8>>,
    changelog: Option<Box<dyn ChangelogSink>>,
    open: bool,
}

impl SuppressionBuffer {
    fn new(name: String, changelog: Option<Box<dyn ChangelogSink>>) -> Self {
        SuppressionBuffer {
            name,
            entries: FxHashMap::default(),
            order: BTreeSet::new(),
            bytes: 0,
            dirty: Vec::new(),
            changelog,
            open: true,
        }
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// About how many bytes are held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn min_time(&self) -> Option<i64> {
        self.order.first().map(|(time, _)| *time)
    }

    /// Holds an update of `key`. A key already held keeps its place in
    /// time (Kafka Streams' non-resetting order) and its prior value.
    fn put(
        &mut self,
        key: Vec<u8>,
        time: i64,
        old: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
        timestamp: i64,
    ) -> Result<(), String> {
        if !self.open {
            return Err(format!("the suppression buffer `{}` is closed", self.name));
        }
        match self.entries.get_mut(&key) {
            Some(held) => {
                let entry = &mut held.entry;
                self.bytes -= entry.size(&key);
                entry.new = new;
                entry.timestamp = timestamp;
                self.bytes += entry.size(&key);
                if !held.unlogged {
                    held.unlogged = true;
                    self.dirty.push(key);
                }
            }
            None => {
                let entry = Buffered {
                    time,
                    timestamp,
                    prior: old,
                    new,
                };
                self.bytes += entry.size(&key);
                self.order.insert((time, key.clone()));
                let held = Held {
                    entry,
                    unlogged: true,
                };
                self.entries.insert(key.clone(), held);
                self.dirty.push(key);
            }
        }
        Ok(())
    }

    /// Takes out the oldest entries while `more` holds, onto `out`.
    fn evict_while(&mut self, out: &mut Vec<(Vec<u8>, Buffered)>, more: impl Fn(&Self) -> bool) {
        while !self.order.is_empty() && more(self) {
            let (_, key) = self.order.pop_first().expect("not empty");
            let held = self.entries.remove(&key).expect("ordered keys are held");
            self.bytes -= held.entry.size(&key);
            if !held.unlogged {
                // An unlogged entry's key is listed already.
                self.dirty.push(key.clone());
            }
            out.push((key, held.entry));
        }
    }

    fn remove(&mut self, key: &[u8]) {
        if let Some(held) = self.entries.remove(key) {
            self.bytes -= held.entry.size(key);
            self.order.remove(&(held.entry.time, key.to_vec()));
        }
    }
}

impl state_stores::StateStore for SuppressionBuffer {
    fn name(&self) -> &str {
        &self.name
    }

    fn persistent(&self) -> bool {
        false
    }

    fn is_open(&self) -> bool {
        self.open
    }

    fn flush(&mut self) -> state_stores::Result<()> {
        let Some(sink) = &mut self.changelog else {
            self.dirty.clear();
            return Ok(());
        };
        // A key listed more than once (evicted, then held again) is logged
        // once, as it is now.
        self.dirty.sort_unstable();
        self.dirty.dedup();
        let mut done = 0;
        let mut result = Ok(());
        for key in &self.dirty {
            let value = match self.entries.get(key) {
                Some(held) if !held.unlogged => None,
                Some(held) => Some(Some(held.entry.encode())),
                None => Some(None),
            };
            if let Some(value) = value {
                if let Err(source) = sink.log_change(key, value.as_deref()) {
                    result = Err(state_stores::StoreError::Changelog {
                        store: self.name.clone(),
                        source,
                    });
                    break;
                }
                if let Some(held) = self.entries.get_mut(key) {
                    held.unlogged = false;
                }
            }
            done += 1;
        }
        // What a failed write left unlogged stays listed for the next flush.
        self.dirty.drain(..done);
        result
    }

    fn close(&mut self) -> state_stores::Result<()> {
        self.open = false;
        Ok(())
    }
}

impl state_stores::StateRestoreCallback for SuppressionBuffer {
    fn restore_batch(&mut self, records: &[Write<'_>]) -> state_stores::Result<()> {
        for (key, value) in records {
            self.remove(key);
            let Some(value) = value else { continue };
            let entry =
                Buffered::decode(value).ok_or_else(|| state_stores::StoreError::Changelog {
                    store: self.name.clone(),
                    source: format!(
                        "an unreadable suppression buffer entry of {} bytes",
                        value.len()
                    )
                    .into(),
                })?;
            self.bytes += entry.size(key);
            self.order.insert((entry.time, key.to_vec()));
            let held = Held {
                entry,
                unlogged: false,
            };
            self.entries.insert(key.to_vec(), held);
        }
        Ok(())
    }
}

/// Builds each task's [`SuppressionBuffer`], change-logged.
struct SuppressionBufferBuilder {
    name: String,
}

impl StoreBuilder for SuppressionBufferBuilder {
    fn name(&self) -> &str {
        &self.name
    }

    fn logging_enabled(&self) -> bool {
        true
    }

    fn persistent(&self) -> bool {
        false
    }

    fn build(
        &self,
        _: &StoreContext<'_>,
        changelog: Option<Box<dyn ChangelogSink>>,
    ) -> crate::Result<StoreInstance> {
        Ok(StoreInstance::Custom(Box::new(SuppressionBuffer::new(
            self.name.clone(),
            changelog,
        ))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_survive_their_changelog_bytes() {
        for entry in [
            Buffered {
                time: 60_000,
                timestamp: -1,
                prior: None,
                new: Some(b"2".to_vec()),
            },
            Buffered {
                time: i64::MIN,
                timestamp: 7,
                prior: Some(Vec::new()),
                new: None,
            },
        ] {
            assert_eq!(Buffered::decode(&entry.encode()), Some(entry.clone()));
            let bytes = entry.encode();
            assert_eq!(Buffered::decode(&bytes[..bytes.len() - 1]), None);
        }
    }

    #[test]
    fn a_held_key_keeps_its_place_and_prior_value_and_restores_from_its_log() {
        let sink = state_stores::testing::RecordingSink::new();
        let mut buffer = SuppressionBuffer::new("b".into(), Some(Box::new(sink.clone())));
        buffer
            .put(
                b"a".to_vec(),
                10,
                Some(b"0".to_vec()),
                Some(b"1".to_vec()),
                10,
            )
            .unwrap();
        buffer
            .put(b"b".to_vec(), 20, None, Some(b"1".to_vec()), 20)
            .unwrap();
        buffer
            .put(
                b"a".to_vec(),
                30,
                Some(b"1".to_vec()),
                Some(b"2".to_vec()),
                30,
            )
            .unwrap();
        assert_eq!(buffer.min_time(), Some(10), "non-resetting");
        use state_stores::StateStore;
        buffer.flush().unwrap();
        let mut restored = SuppressionBuffer::new("b".into(), None);
        let changes = sink.changes();
        let writes: Vec<Write<'_>> = changes
            .iter()
            .map(|(k, v)| (k.as_slice(), v.as_deref()))
            .collect();
        state_stores::StateRestoreCallback::restore_batch(&mut restored, &writes).unwrap();
        assert_eq!(restored.bytes(), buffer.bytes());
        let mut evicted = Vec::new();
        restored.evict_while(&mut evicted, |b| b.min_time().is_some_and(|t| t <= 10));
        assert_eq!(evicted.len(), 1);
        let (key, entry) = &evicted[0];
        assert_eq!(key, b"a");
        assert_eq!(entry.prior.as_deref(), Some(b"0".as_slice()));
        assert_eq!(entry.new.as_deref(), Some(b"2".as_slice()));
        assert_eq!(entry.timestamp, 30);
        // The eviction is logged as a tombstone at the next flush.
        buffer.evict_while(&mut Vec::new(), |b| b.len() > 1);
        buffer.flush().unwrap();
        assert_eq!(sink.changes().last(), Some(&(b"a".to_vec(), None)));
    }

    #[test]
    fn a_commit_logs_each_changed_key_once_as_it_is_now() {
        use state_stores::StateStore;
        let sink = state_stores::testing::RecordingSink::new();
        let mut buffer = SuppressionBuffer::new("b".into(), Some(Box::new(sink.clone())));
        let put = |buffer: &mut SuppressionBuffer, key: &[u8], time: i64, value: &[u8]| {
            buffer
                .put(key.to_vec(), time, None, Some(value.to_vec()), time)
                .unwrap()
        };
        put(&mut buffer, b"a", 10, b"1");
        put(&mut buffer, b"a", 11, b"2");
        put(&mut buffer, b"b", 12, b"1");
        buffer.flush().unwrap();
        let logged = |sink: &state_stores::testing::RecordingSink| {
            sink.changes()
                .into_iter()
                .map(|(k, v)| (k, v.and_then(|v| Buffered::decode(&v)).map(|e| e.new)))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            logged(&sink),
            [
                (b"a".to_vec(), Some(Some(b"2".to_vec()))),
                (b"b".to_vec(), Some(Some(b"1".to_vec())))
            ]
        );
        // Unchanged since: nothing to log.
        buffer.flush().unwrap();
        assert_eq!(logged(&sink).len(), 2);
        // `a` evicted and held again, `b` changed then evicted: the log
        // ends as the buffer is, one record per key.
        let mut out = Vec::new();
        buffer.evict_while(&mut out, |b| b.min_time().is_some_and(|t| t <= 10));
        put(&mut buffer, b"a", 40, b"3");
        put(&mut buffer, b"b", 13, b"2");
        buffer.evict_while(&mut out, |b| b.min_time().is_some_and(|t| t <= 12));
        assert_eq!(out.len(), 2);
        buffer.flush().unwrap();
        assert_eq!(
            logged(&sink)[2..],
            [
                (b"a".to_vec(), Some(Some(b"3".to_vec()))),
                (b"b".to_vec(), None)
            ]
        );
        // `c` held and evicted twice within one commit: one tombstone.
        for time in [20, 30] {
            put(&mut buffer, b"c", time, b"1");
            buffer.evict_while(&mut out, |b| b.min_time().is_some_and(|t| t <= time));
        }
        buffer.flush().unwrap();
        assert_eq!(logged(&sink)[4..], [(b"c".to_vec(), None)]);
        // A commit whose log write fails keeps what it did not log for the
        // next, even keys changed again meanwhile.
        sink.set_failing(true);
        put(&mut buffer, b"d", 35, b"1");
        assert!(buffer.flush().is_err());
        put(&mut buffer, b"d", 36, b"2");
        sink.set_failing(false);
        buffer.flush().unwrap();
        assert_eq!(
            logged(&sink)[5..],
            [(b"d".to_vec(), Some(Some(b"2".to_vec())))]
        );
    }
}
