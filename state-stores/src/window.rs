//! Window stores, as Kafka Streams' `WindowStore`: a value per key and
//! window start, kept for a retention period counted back from the latest
//! window start the store has seen.
//!
//! [`InMemoryWindowStore`] keeps windows by start time, so expired ones go
//! a whole start time at a time. [`ChangeLoggingWindowStore`] reports every
//! write with Kafka Streams' changelog key layout ([`window_store_key`]),
//! and restores from it.

use std::collections::BTreeMap;

use crate::changelog::{ChangelogSink, StateRestoreCallback, log_change};
use crate::retention::RetentionClock;
use crate::segments::{Segments, split_time_prefix, time_prefix};
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
    /// The value of `key` in the window starting at `window_start`.
    fn fetch(&self, key: &[u8], window_start: i64) -> Result<Option<Vec<u8>>>;
    /// `key`'s windows starting from `from` to `to`, earliest first.
    fn fetch_range(&self, key: &[u8], from: i64, to: i64) -> Result<WindowIterator<'_>>;
    /// Every key's windows starting from `from` to `to`, by start, then key.
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
    fn put(&mut self, key: &[u8], value: Option<&[u8]>, window_start: i64) -> Result<()>;
    /// The retention period in ms.
    fn retention(&self) -> i64;
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
    windows: BTreeMap<i64, BTreeMap<Vec<u8>, Vec<u8>>>,
    /// The latest window start seen, and the retention behind it.
    clock: RetentionClock,
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
            open: true,
        }
    }

    fn check_open(&self) -> Result<()> {
        ensure_open(self.open, &self.name)
    }

    /// The earliest window start still kept.
    fn min_live(&self) -> i64 {
        self.clock.min_live()
    }

    /// The window starts from `from` to `to` still kept.
    fn live(&self, from: i64, to: i64) -> std::ops::RangeInclusive<i64> {
        from.max(self.min_live())..=to
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
            .cloned())
    }

    fn fetch_range(&self, key: &[u8], from: i64, to: i64) -> Result<WindowIterator<'_>> {
        self.check_open()?;
        if from > to {
            return Ok(Box::new(std::iter::empty()));
        }
        let key = key.to_vec();
        Ok(Box::new(
            self.windows
                .range(self.live(from, to))
                .filter_map(move |(start, keys)| {
                    keys.get(&key)
                        .map(|value| Ok(((key.clone(), *start), value.clone())))
                }),
        ))
    }

    fn fetch_all(&self, from: i64, to: i64) -> Result<WindowIterator<'_>> {
        self.check_open()?;
        if from > to {
            return Ok(Box::new(std::iter::empty()));
        }
        Ok(Box::new(self.windows.range(self.live(from, to)).flat_map(
            |(start, keys)| {
                keys.iter()
                    .map(move |(key, value)| Ok(((key.clone(), *start), value.clone())))
            },
        )))
    }
}

impl WindowStore for InMemoryWindowStore {
    fn put(&mut self, key: &[u8], value: Option<&[u8]>, window_start: i64) -> Result<()> {
        self.check_open()?;
        if !self.clock.observe(window_start) {
            // Expired already: Kafka Streams skips it too.
            return Ok(());
        }
        // Whole start times age out together.
        self.windows = self.windows.split_off(&self.clock.min_live());
        match value {
            Some(value) => {
                self.windows
                    .entry(window_start)
                    .or_default()
                    .insert(key.to_vec(), value.to_vec());
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
pub struct ChangeLoggingWindowStore<S> {
    inner: S,
    sink: Box<dyn ChangelogSink>,
}

impl<S: WindowStore> ChangeLoggingWindowStore<S> {
    /// `inner`, logging to `sink`.
    pub fn new(inner: S, sink: Box<dyn ChangelogSink>) -> Self {
        ChangeLoggingWindowStore { inner, sink }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S: WindowStore> StateStore for ChangeLoggingWindowStore<S> {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn persistent(&self) -> bool {
        self.inner.persistent()
    }
    fn is_open(&self) -> bool {
        self.inner.is_open()
    }
    fn flush(&mut self) -> Result<()> {
        self.inner.flush()
    }
    fn close(&mut self) -> Result<()> {
        self.inner.close()
    }
}

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
        log_change(
            &mut *self.sink,
            self.inner.name(),
            &window_store_key(key, window_start, 0),
            value,
        )
    }

    fn retention(&self) -> i64 {
        self.inner.retention()
    }
}

impl<S: WindowStore> StateRestoreCallback for ChangeLoggingWindowStore<S> {
    /// Restores the inner store without logging the records again.
    fn restore_batch(&mut self, records: &[Write<'_>]) -> Result<()> {
        restore_window_batch(&mut self.inner, records)
    }
}

/// A persistent window store on RocksDB, in time segments as Kafka
/// Streams' `RocksDBWindowStore`: each segment, a RocksDB database of its
/// own under the store's directory, holds the windows that start within
/// one segment interval (half the retention, at least a minute). Expired
/// windows are filtered out when read, and a segment is dropped whole, its
/// directory removed, once every window it holds has expired.
///
/// Within a segment, keys are time-first (the start, then the key), so a
/// point lookup is one get and a scan over a time range is in order; a
/// fetch of one key over a range reads every key's windows of that range.
#[derive(Debug)]
pub struct RocksDbWindowStore {
    segments: Segments,
}

fn time_first_key(key: &[u8], start: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + key.len());
    out.extend_from_slice(&time_prefix(start));
    out.extend_from_slice(key);
    out
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
            segments: Segments::open(name.into(), dir.as_ref(), retention)?,
        })
    }

    /// The windows starting from `from` to `to` still kept, by start then
    /// key, those of `key` only when given.
    fn scan(&self, key: Option<&[u8]>, from: i64, to: i64) -> Result<Vec<WindowedKeyValue>> {
        use crate::ReadOnlyKeyValueStore;
        self.segments.check_open()?;
        let from = from.max(self.segments.min_live());
        let mut out = Vec::new();
        if from > to {
            return Ok(out);
        }
        let (lower, upper) = (time_prefix(from), time_prefix(to.saturating_add(1)));
        for segment in self.segments.covering(from, to) {
            for entry in segment.range(Some(&lower), Some(&upper))? {
                let (bytes, value) = entry?;
                let Some((start, k)) = split_time_prefix(&bytes) else {
                    continue;
                };
                if start > to || key.is_some_and(|key| key != k) {
                    continue;
                }
                out.push(((k.to_vec(), start), value));
            }
        }
        Ok(out)
    }
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
        match self.segments.get(window_start) {
            Some(segment) => segment.get(&time_first_key(key, window_start)),
            None => Ok(None),
        }
    }

    fn fetch_range(&self, key: &[u8], from: i64, to: i64) -> Result<WindowIterator<'_>> {
        Ok(Box::new(
            self.scan(Some(key), from, to)?.into_iter().map(Ok),
        ))
    }

    fn fetch_all(&self, from: i64, to: i64) -> Result<WindowIterator<'_>> {
        Ok(Box::new(self.scan(None, from, to)?.into_iter().map(Ok)))
    }
}

impl WindowStore for RocksDbWindowStore {
    fn put(&mut self, key: &[u8], value: Option<&[u8]>, window_start: i64) -> Result<()> {
        use crate::KeyValueStore;
        if !self.segments.observe(window_start)? {
            // Expired already: Kafka Streams skips it too.
            return Ok(());
        }
        let segment = self.segments.segment_for(window_start)?;
        let stored = time_first_key(key, window_start);
        match value {
            Some(value) => segment.put(&stored, value),
            None => segment.delete(&stored).map(drop),
        }
    }

    fn retention(&self) -> i64 {
        self.segments.retention()
    }
}

impl StateRestoreCallback for RocksDbWindowStore {
    fn restore_batch(&mut self, records: &[Write<'_>]) -> Result<()> {
        restore_window_batch(self, records)
    }
}
