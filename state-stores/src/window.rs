//! Window stores, as Kafka Streams' `WindowStore`: a value per key and
//! window start, kept for a retention period counted back from the latest
//! window start the store has seen.
//!
//! [`InMemoryWindowStore`] keeps windows by start time, so expired ones go
//! a whole start time at a time. [`ChangeLoggingWindowStore`] reports every
//! write with Kafka Streams' changelog key layout ([`window_store_key`]),
//! and restores from it.
//!
//! A store made with duplicates kept (Kafka Streams' `retainDuplicates`,
//! what stream-stream joins use) keeps every put as an entry of its own,
//! even to the same key and window: see
//! [`InMemoryWindowStore::new_with_duplicates`] and
//! [`RocksDbWindowStore::open_with_duplicates`].

use std::collections::BTreeMap;

use crate::changelog::{ChangelogSink, StateRestoreCallback, log_change};
use crate::retention::RetentionClock;
use crate::segments::{Segments, read_time, seek_key, time_bytes};
use crate::store::{Write, ensure_open};
use crate::{Result, StateStore, StoreError};

/// A key and its window's start, with the value.
pub type WindowedKeyValue = ((Vec<u8>, i64), Vec<u8>);

/// Windows in the order a fetch gives them. Items are results: a
/// persistent store may fail in the middle of a scan.
pub type WindowIterator<'a> = Box<dyn Iterator<Item = Result<WindowedKeyValue>> + 'a>;

/// Reads from a window store over bytes. Time ranges are inclusive at both
/// ends and refer to window starts.
pub trait ReadOnlyWindowStore {
    /// The value of `key` in the window starting at `window_start` (in a
    /// store that keeps duplicates, the first one put).
    fn fetch(&self, key: &[u8], window_start: i64) -> Result<Option<Vec<u8>>>;
    /// `key`'s windows starting from `from` to `to`, earliest first (a
    /// store's duplicates in the order they were put).
    fn fetch_range(&self, key: &[u8], from: i64, to: i64) -> Result<WindowIterator<'_>>;
    /// Every key's windows starting from `from` to `to`, by start, then key
    /// (then the order duplicates were put).
    fn fetch_all(&self, from: i64, to: i64) -> Result<WindowIterator<'_>>;
    /// Every window the store keeps.
    fn all(&self) -> Result<WindowIterator<'_>> {
        self.fetch_all(i64::MIN, i64::MAX)
    }
}

/// A window store: reads, and writes that age out after the retention.
pub trait WindowStore: StateStore + ReadOnlyWindowStore {
    /// Puts `value` (`None`: deletes) for `key` in the window starting at
    /// `window_start`. The latest start seen is the store's clock: windows
    /// that start a retention period or more before it are dropped, and a
    /// write to one is ignored, as in Kafka Streams.
    ///
    /// In a store that [keeps duplicates](Self::retains_duplicates), each
    /// value is an entry of its own, and `None` does nothing.
    fn put(&mut self, key: &[u8], value: Option<&[u8]>, window_start: i64) -> Result<()>;
    /// The retention period in ms.
    fn retention(&self) -> i64;
    /// Whether every put is kept as an entry of its own, even to the same
    /// key and window (Kafka Streams' `retainDuplicates`). Layers above ask
    /// it: change logging numbers the entries, caching stands aside.
    fn retains_duplicates(&self) -> bool {
        false
    }
}

/// The sequence number after `seq`, as Kafka Streams counts duplicates: from
/// 1, wrapping within the positive `int`s.
pub(crate) fn next_seq(seq: u32) -> u32 {
    seq.wrapping_add(1) & 0x7FFF_FFFF
}

/// A window store's changelog key, as Kafka Streams'
/// `WindowKeySchema.toStoreKeyBinary` writes it: the key, the window start
/// (8 bytes, big-endian), a sequence number (4 bytes, big-endian; 0 unless
/// duplicates are kept).
///
/// ```
/// use state_stores::{split_window_store_key, window_store_key};
///
/// let bytes = window_store_key(b"alice", 60_000, 0);
/// assert_eq!(bytes, [b"alice".as_slice(), &60_000_i64.to_be_bytes(), &[0, 0, 0, 0]].concat());
/// assert_eq!(split_window_store_key(&bytes), Some((b"alice".as_slice(), 60_000, 0)));
/// ```
pub fn window_store_key(key: &[u8], window_start: i64, seq: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 12);
    out.extend_from_slice(key);
    out.extend_from_slice(&window_start.to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out
}

/// The key, window start and sequence number of a window store's
/// changelog key; `None` for bytes too short to be one.
pub fn split_window_store_key(bytes: &[u8]) -> Option<(&[u8], i64, u32)> {
    let key_len = bytes.len().checked_sub(12)?;
    let (key, rest) = bytes.split_at(key_len);
    let start = i64::from_be_bytes(rest[..8].try_into().ok()?);
    let seq = u32::from_be_bytes(rest[8..].try_into().ok()?);
    Some((key, start, seq))
}

/// Splits bytes that end in `N` big-endian 8-byte times (as windowed and
/// session keys do) into what comes before and the times, in order;
/// `None` for bytes too short.
///
/// ```
/// use state_stores::split_trailing_times;
///
/// let bytes = [b"k".as_slice(), &5_i64.to_be_bytes(), &1_i64.to_be_bytes()].concat();
/// assert_eq!(split_trailing_times::<2>(&bytes), Some((b"k".as_slice(), [5, 1])));
/// assert_eq!(split_trailing_times::<2>(&bytes[..15]), None);
/// ```
pub fn split_trailing_times<const N: usize>(bytes: &[u8]) -> Option<(&[u8], [i64; N])> {
    let (key, times) = bytes.split_at_checked(bytes.len().checked_sub(8 * N)?)?;
    let mut out = [0; N];
    for (time, chunk) in out.iter_mut().zip(times.chunks_exact(8)) {
        *time = i64::from_be_bytes(chunk.try_into().ok()?);
    }
    Some((key, out))
}

/// A window store in memory: windows by start time, keys in order within
/// one. Gone when the process ends (wrap it in change logging).
#[derive(Debug)]
pub struct InMemoryWindowStore {
    name: String,
    /// Per start, per key, its values: one, or with duplicates kept, each
    /// put's in the order they came.
    windows: BTreeMap<i64, BTreeMap<Vec<u8>, Vec<Vec<u8>>>>,
    /// The latest window start seen, and the retention behind it.
    clock: RetentionClock,
    duplicates: bool,
    open: bool,
}

impl InMemoryWindowStore {
    /// An empty store keeping windows for `retention` ms (at least a
    /// window's size plus its grace, for the windows it holds).
    pub fn new(name: impl Into<String>, retention: i64) -> Self {
        InMemoryWindowStore {
            name: name.into(),
            windows: BTreeMap::new(),
            clock: RetentionClock::new(retention),
            duplicates: false,
            open: true,
        }
    }

    /// An empty store that keeps every put as an entry of its own, even to
    /// the same key and window, as Kafka Streams' window stores with
    /// `retainDuplicates` (those of stream-stream joins). A put of `None`
    /// does nothing; a fetch gives every entry, in the order they were put.
    ///
    /// ```
    /// use state_stores::{InMemoryWindowStore, ReadOnlyWindowStore, WindowStore};
    ///
    /// let mut store = InMemoryWindowStore::new_with_duplicates("join-left", 10_000);
    /// store.put(b"k", Some(b"first"), 1_000)?;
    /// store.put(b"k", Some(b"second"), 1_000)?;
    /// store.put(b"k", None, 1_000)?; // no-op
    /// let values: Vec<Vec<u8>> = store
    ///     .fetch_range(b"k", 0, 5_000)?
    ///     .map(|entry| entry.map(|(_, value)| value))
    ///     .collect::<Result<_, _>>()?;
    /// assert_eq!(values, [b"first".to_vec(), b"second".to_vec()]);
    /// assert_eq!(store.fetch(b"k", 1_000)?.as_deref(), Some(&b"first"[..]));
    /// # Ok::<(), state_stores::StoreError>(())
    /// ```
    pub fn new_with_duplicates(name: impl Into<String>, retention: i64) -> Self {
        InMemoryWindowStore {
            duplicates: true,
            ..Self::new(name, retention)
        }
    }

    fn check_open(&self) -> Result<()> {
        ensure_open(self.open, &self.name)
    }

    /// The earliest window start still kept.
    fn min_live(&self) -> i64 {
        self.clock.min_live()
    }

    /// The windows starting from `from` to `to` still kept. A range that
    /// ends before the retention is empty (a `BTreeMap` range with its
    /// ends swapped would panic).
    fn live(
        &self,
        from: i64,
        to: i64,
    ) -> std::collections::btree_map::Range<'_, i64, BTreeMap<Vec<u8>, Vec<Vec<u8>>>> {
        let from = from.max(self.min_live());
        if from > to {
            // An empty range of the map.
            return self.windows.range(from..from);
        }
        self.windows.range(from..=to)
    }
}

impl StateStore for InMemoryWindowStore {
    fn name(&self) -> &str {
        &self.name
    }
    fn persistent(&self) -> bool {
        false
    }
    fn is_open(&self) -> bool {
        self.open
    }
    fn flush(&mut self) -> Result<()> {
        self.check_open()
    }
    fn close(&mut self) -> Result<()> {
        self.open = false;
        self.windows.clear();
        Ok(())
    }
}

impl ReadOnlyWindowStore for InMemoryWindowStore {
    fn fetch(&self, key: &[u8], window_start: i64) -> Result<Option<Vec<u8>>> {
        self.check_open()?;
        if window_start < self.min_live() {
            return Ok(None);
        }
        Ok(self
            .windows
            .get(&window_start)
            .and_then(|keys| keys.get(key))
            .and_then(|values| values.first())
            .cloned())
    }

    fn fetch_range(&self, key: &[u8], from: i64, to: i64) -> Result<WindowIterator<'_>> {
        self.check_open()?;
        if from > to {
            return Ok(Box::new(std::iter::empty()));
        }
        let key = key.to_vec();
        Ok(Box::new(
            self.live(from, to)
                .filter_map(move |(start, keys)| {
                    keys.get_key_value(key.as_slice())
                        .map(|(key, values)| (*start, key, values))
                })
                .flat_map(|(start, key, values)| {
                    values
                        .iter()
                        .map(move |value| Ok(((key.clone(), start), value.clone())))
                }),
        ))
    }

    fn fetch_all(&self, from: i64, to: i64) -> Result<WindowIterator<'_>> {
        self.check_open()?;
        if from > to {
            return Ok(Box::new(std::iter::empty()));
        }
        Ok(Box::new(self.live(from, to).flat_map(|(start, keys)| {
            keys.iter().flat_map(move |(key, values)| {
                values
                    .iter()
                    .map(move |value| Ok(((key.clone(), *start), value.clone())))
            })
        })))
    }
}

impl WindowStore for InMemoryWindowStore {
    fn put(&mut self, key: &[u8], value: Option<&[u8]>, window_start: i64) -> Result<()> {
        self.check_open()?;
        if value.is_none() && self.duplicates {
            // Nothing names one duplicate to delete: Kafka Streams skips it.
            return Ok(());
        }
        if !self.clock.observe(window_start) {
            // Expired already: Kafka Streams skips it too.
            return Ok(());
        }
        // Whole start times age out together.
        self.windows = self.windows.split_off(&self.clock.min_live());
        match value {
            Some(value) => {
                let values = self
                    .windows
                    .entry(window_start)
                    .or_default()
                    .entry(key.to_vec())
                    .or_default();
                if !self.duplicates {
                    values.clear();
                }
                values.push(value.to_vec());
            }
            None => {
                if let Some(keys) = self.windows.get_mut(&window_start) {
                    keys.remove(key);
                    if keys.is_empty() {
                        self.windows.remove(&window_start);
                    }
                }
            }
        }
        Ok(())
    }

    fn retention(&self) -> i64 {
        self.clock.retention()
    }

    fn retains_duplicates(&self) -> bool {
        self.duplicates
    }
}

/// Applies a window store's changelog records: each key is
/// [`window_store_key`] bytes.
pub fn restore_window_batch<S: WindowStore + ?Sized>(
    store: &mut S,
    records: &[Write<'_>],
) -> Result<()> {
    for (bytes, value) in records {
        let (key, start, _) =
            split_window_store_key(bytes).ok_or_else(|| StoreError::Changelog {
                store: store.name().to_owned(),
                source: format!(
                    "a window store's changelog key has at least 12 bytes, not {}",
                    bytes.len()
                )
                .into(),
            })?;
        store.put(key, *value, start)?;
    }
    Ok(())
}

impl StateRestoreCallback for InMemoryWindowStore {
    fn restore_batch(&mut self, records: &[Write<'_>]) -> Result<()> {
        restore_window_batch(self, records)
    }
}

/// A window store whose every write is also reported to a
/// [`ChangelogSink`], keyed as Kafka Streams keys a window store's
/// changelog.
///
/// Over a store that [keeps duplicates](WindowStore::retains_duplicates),
/// each put is logged under a sequence number of its own (the last 4
/// bytes of [`window_store_key`], counted from 1 as Kafka Streams'
/// `ChangeLoggingWindowBytesStore` does), so the compacted changelog keeps
/// every duplicate; a put of `None`, a no-op there, is not logged.
pub struct ChangeLoggingWindowStore<S> {
    inner: S,
    sink: Box<dyn ChangelogSink>,
    /// The last sequence number logged (duplicates only).
    seq: u32,
}

impl<S: WindowStore> ChangeLoggingWindowStore<S> {
    /// `inner`, logging to `sink`.
    pub fn new(inner: S, sink: Box<dyn ChangelogSink>) -> Self {
        ChangeLoggingWindowStore {
            inner,
            sink,
            seq: 0,
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

crate::store::state_store_via_inner!(ChangeLoggingWindowStore over WindowStore);

impl<S: WindowStore> ReadOnlyWindowStore for ChangeLoggingWindowStore<S> {
    fn fetch(&self, key: &[u8], window_start: i64) -> Result<Option<Vec<u8>>> {
        self.inner.fetch(key, window_start)
    }
    fn fetch_range(&self, key: &[u8], from: i64, to: i64) -> Result<WindowIterator<'_>> {
        self.inner.fetch_range(key, from, to)
    }
    fn fetch_all(&self, from: i64, to: i64) -> Result<WindowIterator<'_>> {
        self.inner.fetch_all(from, to)
    }
}

impl<S: WindowStore> WindowStore for ChangeLoggingWindowStore<S> {
    fn put(&mut self, key: &[u8], value: Option<&[u8]>, window_start: i64) -> Result<()> {
        self.inner.put(key, value, window_start)?;
        let seq = if self.inner.retains_duplicates() {
            if value.is_none() {
                return Ok(());
            }
            self.seq = next_seq(self.seq);
            self.seq
        } else {
            0
        };
        log_change(
            &mut *self.sink,
            self.inner.name(),
            &window_store_key(key, window_start, seq),
            value,
        )
    }

    fn retention(&self) -> i64 {
        self.inner.retention()
    }

    fn retains_duplicates(&self) -> bool {
        self.inner.retains_duplicates()
    }
}

impl<S: WindowStore> StateRestoreCallback for ChangeLoggingWindowStore<S> {
    /// Restores the inner store without logging the records again. New
    /// duplicates are numbered after the highest number restored, so they
    /// do not replace the restored ones in the compacted changelog.
    fn restore_batch(&mut self, records: &[Write<'_>]) -> Result<()> {
        restore_window_batch(&mut self.inner, records)?;
        if self.inner.retains_duplicates() {
            for (bytes, _) in records {
                if let Some((_, _, seq)) = split_window_store_key(bytes) {
                    self.seq = self.seq.max(seq);
                }
            }
        }
        Ok(())
    }
}

/// A persistent window store on RocksDB, in time segments as Kafka
/// Streams' `RocksDBWindowStore`: each segment, a RocksDB database of its
/// own under the store's directory, holds the windows that start within
/// one segment interval (half the retention, at least a minute). Expired
/// windows are filtered out when read, and a segment is dropped whole, its
/// directory removed, once every window it holds has expired.
///
/// Within a segment, keys are key-first as Kafka Streams'
/// `WindowKeySchema` lays them out: the key, the window start (8 bytes),
/// a sequence number (4 bytes, big-endian; 0 unless duplicates are kept).
/// So `fetch` is one get (one short seek with duplicates), and
/// `fetch_range` one seek per segment its range overlaps, whatever the
/// number of other keys; `fetch_all` reads the overlapping segments whole.
/// (The start is stored with its sign bit flipped, so that negative
/// starts sort before positive ones.)
#[derive(Debug)]
pub struct RocksDbWindowStore {
    segments: Segments,
    duplicates: bool,
    /// The last sequence number given to a duplicate.
    seq: u32,
}

/// The bytes after the key in a stored key: the start and a sequence
/// number.
const SUFFIX: usize = 12;

/// `key`, then `start` and `seq` as the store keeps them.
fn stored_key(key: &[u8], start: i64, seq: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + SUFFIX);
    out.extend_from_slice(key);
    out.extend_from_slice(&time_bytes(start));
    out.extend_from_slice(&seq.to_be_bytes());
    out
}

/// The key, start and sequence number of a stored key.
fn split_stored(bytes: &[u8]) -> Option<(&[u8], i64, u32)> {
    let (key, suffix) = bytes.split_at_checked(bytes.len().checked_sub(SUFFIX)?)?;
    let seq = u32::from_be_bytes(suffix[8..].try_into().ok()?);
    Some((key, read_time(suffix)?, seq))
}

fn stored_start(bytes: &[u8]) -> Option<i64> {
    split_stored(bytes).map(|(_, start, _)| start)
}

impl RocksDbWindowStore {
    /// Opens (creating if needed) the store `name` in directory `dir`,
    /// keeping windows for `retention` ms. Segments already there are
    /// opened, and the store's clock is the latest window start they hold.
    pub fn open(
        name: impl Into<String>,
        dir: impl AsRef<std::path::Path>,
        retention: i64,
    ) -> Result<Self> {
        Ok(RocksDbWindowStore {
            segments: Segments::open(name.into(), dir.as_ref(), retention, stored_start)?,
            duplicates: false,
            seq: 0,
        })
    }

    /// As [`open`](Self::open), for a store that keeps every put as an
    /// entry of its own, even to the same key and window (Kafka Streams'
    /// `retainDuplicates`, for stream-stream joins): a put of `None` does
    /// nothing, and a fetch gives every entry in the order they were put.
    /// Open a directory always with duplicates or always without.
    ///
    /// The entries on disk are read once, so that new ones are numbered
    /// after them and never replace one.
    ///
    /// ```
    /// use state_stores::{ReadOnlyWindowStore, RocksDbWindowStore, StateStore, WindowStore};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let mut store = RocksDbWindowStore::open_with_duplicates("join-left", dir.path(), 60_000)?;
    /// store.put(b"k", Some(b"first"), 1_000)?;
    /// store.close()?;
    /// let mut store = RocksDbWindowStore::open_with_duplicates("join-left", dir.path(), 60_000)?;
    /// store.put(b"k", Some(b"second"), 1_000)?;
    /// assert_eq!(store.fetch_range(b"k", 0, 5_000)?.count(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_with_duplicates(
        name: impl Into<String>,
        dir: impl AsRef<std::path::Path>,
        retention: i64,
    ) -> Result<Self> {
        use crate::ReadOnlyKeyValueStore;
        let mut store = Self::open(name, dir, retention)?;
        store.duplicates = true;
        let mut seq = 0;
        for segment in store.segments.covering(i64::MIN, i64::MAX) {
            for entry in segment.all()? {
                if let Some((_, _, last)) = split_stored(&entry?.0) {
                    seq = seq.max(last);
                }
            }
        }
        store.seq = seq;
        Ok(store)
    }

    /// The earliest start a read from `from` may return: none before the
    /// retention.
    fn live_from(&self, from: i64) -> Result<i64> {
        self.segments.check_open()?;
        Ok(from.max(self.segments.min_live()))
    }
}

/// A stored entry as a window store gives it.
fn windowed(bytes: &[u8], value: Vec<u8>) -> Option<WindowedKeyValue> {
    let (key, start, _) = split_stored(bytes)?;
    Some(((key.to_vec(), start), value))
}

impl StateStore for RocksDbWindowStore {
    fn name(&self) -> &str {
        self.segments.name()
    }
    fn persistent(&self) -> bool {
        true
    }
    fn is_open(&self) -> bool {
        self.segments.is_open()
    }
    fn flush(&mut self) -> Result<()> {
        self.segments.flush()
    }
    fn flush_cache(&mut self) -> Result<()> {
        // Writes are readable from the memtables; writing them to disk is
        // for checkpoints only (as RocksDbStore).
        self.segments.check_open()
    }
    fn close(&mut self) -> Result<()> {
        self.segments.close()
    }
}

impl ReadOnlyWindowStore for RocksDbWindowStore {
    fn fetch(&self, key: &[u8], window_start: i64) -> Result<Option<Vec<u8>>> {
        use crate::ReadOnlyKeyValueStore;
        self.segments.check_open()?;
        if window_start < self.segments.min_live() {
            return Ok(None);
        }
        let Some(segment) = self.segments.get(window_start) else {
            return Ok(None);
        };
        if !self.duplicates {
            return segment.get(&stored_key(key, window_start, 0));
        }
        // The first of the key's entries in that window: the lowest number.
        let lower = stored_key(key, window_start, 0);
        let upper = stored_key(key, window_start, u32::MAX);
        match seek_key(segment, &lower, &upper, lower.len()).next() {
            Some(entry) => entry.map(|(_, value)| Some(value)),
            None => Ok(None),
        }
    }

    fn fetch_range(&self, key: &[u8], from: i64, to: i64) -> Result<WindowIterator<'_>> {
        let from = self.live_from(from)?;
        if from > to {
            return Ok(Box::new(std::iter::empty()));
        }
        // Segments are oldest first and each is in (start, sequence)
        // order for one key: the chain is in the trait's order.
        let (lower, upper) = (stored_key(key, from, 0), stored_key(key, to, u32::MAX));
        Ok(Box::new(
            self.segments
                .covering(from, to)
                .flat_map(move |segment| seek_key(segment, &lower, &upper, lower.len()))
                .filter_map(|entry| match entry {
                    Ok((bytes, value)) => windowed(&bytes, value).map(Ok),
                    Err(error) => Some(Err(error)),
                }),
        ))
    }

    fn fetch_all(&self, from: i64, to: i64) -> Result<WindowIterator<'_>> {
        use crate::ReadOnlyKeyValueStore;
        let from = self.live_from(from)?;
        if from > to {
            return Ok(Box::new(std::iter::empty()));
        }
        let mut out = Vec::new();
        for segment in self.segments.covering(from, to) {
            let first = out.len();
            for entry in segment.all()? {
                let (bytes, value) = entry?;
                if let Some(entry @ ((_, start), _)) = windowed(&bytes, value)
                    && (from..=to).contains(&start)
                {
                    out.push(entry);
                }
            }
            // A segment is in key order: put its windows in the trait's
            // (start, then key). The sort is stable, so one key's
            // duplicates keep their sequence order; segments are in time
            // order already.
            out[first..]
                .sort_by(|((a, a_start), _), ((b, b_start), _)| (a_start, a).cmp(&(b_start, b)));
        }
        Ok(Box::new(out.into_iter().map(Ok)))
    }
}

impl WindowStore for RocksDbWindowStore {
    fn put(&mut self, key: &[u8], value: Option<&[u8]>, window_start: i64) -> Result<()> {
        use crate::KeyValueStore;
        if value.is_none() && self.duplicates {
            // Nothing names one duplicate to delete: Kafka Streams skips it.
            return self.segments.check_open();
        }
        if !self.segments.observe(window_start)? {
            // Expired already: Kafka Streams skips it too.
            return Ok(());
        }
        let seq = if self.duplicates {
            self.seq = next_seq(self.seq);
            self.seq
        } else {
            0
        };
        let stored = stored_key(key, window_start, seq);
        let segment = self.segments.segment_for(window_start)?;
        match value {
            Some(value) => segment.put(&stored, value),
            None => segment.delete(&stored).map(drop),
        }
    }

    fn retention(&self) -> i64 {
        self.segments.retention()
    }

    fn retains_duplicates(&self) -> bool {
        self.duplicates
    }
}

impl StateRestoreCallback for RocksDbWindowStore {
    fn restore_batch(&mut self, records: &[Write<'_>]) -> Result<()> {
        restore_window_batch(self, records)
    }
}
