//! Record caches in front of window and session stores, as Kafka Streams'
//! `CachingWindowStore` and `CachingSessionStore`.
//!
//! As [`CachingKeyValueStore`](crate::CachingKeyValueStore): writes stay in
//! the cache until the store is flushed (at commit) or the cache outgrows
//! its budget, so a window (or session) updated a thousand times between
//! two commits reaches the store below, and its changelog, once. Reads see
//! the cached writes merged with the store below, in the store's order.
//!
//! The cache keeps its own clock, as the store below does: a cached write
//! to a window (session) that has expired is ignored, and one that expires
//! while cached is no longer read and never written down.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::iter::Peekable;
use std::ops::Bound;

use crate::changelog::StateRestoreCallback;
use crate::retention::RetentionClock;
use crate::session::{
    ReadOnlySessionStore, SessionIterator, SessionStore, split_session_store_key,
};
use crate::store::Write;
use crate::window::{ReadOnlyWindowStore, WindowIterator, WindowStore, split_window_store_key};
use crate::{Result, StateStore};

/// What an entry costs beyond its value and its key's two copies (two
/// tree slots, times, vectors).
const ENTRY_OVERHEAD: usize = 96;

fn cost(key: &[u8], value: Option<&[u8]>) -> usize {
    2 * key.len() + value.map_or(0, <[u8]>::len) + ENTRY_OVERHEAD
}

/// Cached writes (`None`: a pending delete) in a store's order.
type Cached<'a, K> = Box<dyn Iterator<Item = (K, Option<Vec<u8>>)> + 'a>;

/// Entries of the store below, in the same order.
type Stored<'a, K> = Box<dyn Iterator<Item = Result<(K, Vec<u8>)>> + 'a>;

/// Merges cached writes over a fetch from the store below, both in the
/// order `order` gives: on equal keys the cache wins, and a cached delete
/// hides the stored entry.
struct Merge<'a, K> {
    cached: Peekable<Cached<'a, K>>,
    stored: Peekable<Stored<'a, K>>,
    order: fn(&K, &K) -> Ordering,
}

impl<K> Iterator for Merge<'_, K> {
    type Item = Result<(K, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let order = match (self.cached.peek(), self.stored.peek()) {
                (None, _) | (Some(_), Some(Err(_))) => return self.stored.next(),
                (Some(_), None) => Ordering::Less,
                (Some((cached, _)), Some(Ok((stored, _)))) => (self.order)(cached, stored),
            };
            match order {
                Ordering::Greater => return self.stored.next(),
                Ordering::Equal => {
                    self.stored.next();
                }
                Ordering::Less => {}
            }
            let (key, value) = self.cached.next().expect("peeked");
            if let Some(value) = value {
                return Some(Ok((key, value)));
            }
        }
    }
}

fn merge<'a, K: 'a>(
    cached: Cached<'a, K>,
    stored: Stored<'a, K>,
    order: fn(&K, &K) -> Ordering,
) -> Box<dyn Iterator<Item = Result<(K, Vec<u8>)>> + 'a> {
    Box::new(Merge {
        cached: cached.peekable(),
        stored: stored.peekable(),
        order,
    })
}

/// Window stores' order: by start, then key.
fn window_order((a, a_start): &(Vec<u8>, i64), (b, b_start): &(Vec<u8>, i64)) -> Ordering {
    (a_start, a).cmp(&(b_start, b))
}

/// Session stores' order: by end, then key, then start.
fn session_order(
    (a, a_start, a_end): &(Vec<u8>, i64, i64),
    (b, b_start, b_end): &(Vec<u8>, i64, i64),
) -> Ordering {
    (a_end, a, a_start).cmp(&(b_end, b, b_start))
}

/// Keys `(time, key)` of times from `from` to `to`.
fn time_bounds(from: i64, to: i64) -> (Bound<(i64, Vec<u8>)>, Bound<(i64, Vec<u8>)>) {
    let upper = match to.checked_add(1) {
        Some(after) => Bound::Excluded((after, Vec::new())),
        None => Bound::Unbounded,
    };
    (Bound::Included((from, Vec::new())), upper)
}

/// A write-back cache over a window store, as Kafka Streams'
/// `CachingWindowStore`, holding about `max_bytes` of writes.
///
/// Over a store that [keeps duplicates](WindowStore::retains_duplicates)
/// the cache stands aside and every call goes straight down, as Kafka
/// Streams disables caching for such stores.
///
/// ```
/// use state_stores::{
///     CachingWindowStore, ChangeLoggingWindowStore, InMemoryWindowStore, ReadOnlyWindowStore,
///     StateStore, WindowStore, BoxError,
/// };
/// use std::sync::{Arc, Mutex};
///
/// let log = Arc::new(Mutex::new(Vec::new()));
/// let sink = {
///     let log = log.clone();
///     move |key: &[u8], value: Option<&[u8]>| -> Result<(), BoxError> {
///         log.lock().unwrap().push((key.to_vec(), value.map(<[u8]>::to_vec)));
///         Ok(())
///     }
/// };
/// let logged = ChangeLoggingWindowStore::new(InMemoryWindowStore::new("counts", 60_000), Box::new(sink));
/// let mut store = CachingWindowStore::new(logged, 1 << 20);
///
/// for n in 1..=100u32 {
///     store.put(b"kafka", Some(&n.to_be_bytes()), 10_000)?;
/// }
/// assert_eq!(store.fetch(b"kafka", 10_000)?, Some(100u32.to_be_bytes().to_vec()));
/// assert!(log.lock().unwrap().is_empty()); // still in the cache
/// store.flush()?;
/// assert_eq!(log.lock().unwrap().len(), 1); // one changelog record for 100 writes
/// # Ok::<(), state_stores::StoreError>(())
/// ```
pub struct CachingWindowStore<S> {
    inner: S,
    /// Writes not yet in `inner`, by start then key: `None` is a pending
    /// delete.
    dirty: BTreeMap<(i64, Vec<u8>), Option<Vec<u8>>>,
    /// The keys of `dirty`, key first, for one key's fetches.
    by_key: BTreeSet<(Vec<u8>, i64)>,
    /// The latest window start written through the cache.
    clock: RetentionClock,
    bytes: usize,
    max_bytes: usize,
}

impl<S: WindowStore> CachingWindowStore<S> {
    /// Caches writes to `inner`, holding at most about `max_bytes` of them.
    pub fn new(inner: S, max_bytes: usize) -> Self {
        let clock = RetentionClock::new(inner.retention());
        CachingWindowStore {
            inner,
            dirty: BTreeMap::new(),
            by_key: BTreeSet::new(),
            clock,
            bytes: 0,
            max_bytes,
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// How many writes wait in the cache.
    pub fn dirty_len(&self) -> usize {
        self.dirty.len()
    }

    fn cache(&mut self, key: &[u8], value: Option<&[u8]>, start: i64) -> Result<()> {
        use std::collections::btree_map::Entry;
        self.bytes += cost(key, value);
        match self.dirty.entry((start, key.to_vec())) {
            Entry::Occupied(mut slot) => {
                self.bytes -= cost(key, slot.get().as_deref());
                *slot.get_mut() = value.map(<[u8]>::to_vec);
            }
            Entry::Vacant(slot) => {
                slot.insert(value.map(<[u8]>::to_vec));
                self.by_key.insert((key.to_vec(), start));
            }
        }
        if self.bytes > self.max_bytes {
            self.write_back()?;
        }
        Ok(())
    }

    /// Writes every cached change to the store below, by start then key
    /// (so its clock moves forward only), leaving out windows that have
    /// expired meanwhile: the store would drop them anyway.
    fn write_back(&mut self) -> Result<()> {
        if self.dirty.is_empty() {
            return Ok(());
        }
        let live = (self.clock.min_live(), Vec::new());
        for ((start, key), value) in self.dirty.range(live..) {
            self.inner.put(key, value.as_deref(), *start)?;
        }
        self.dirty.clear();
        self.by_key.clear();
        self.bytes = 0;
        Ok(())
    }

    /// Drops cached writes to windows the clock has expired: the store
    /// below would drop them too, so they are never written down.
    fn drop_expired(&mut self) {
        let min_live = self.clock.min_live();
        if self
            .dirty
            .first_key_value()
            .is_none_or(|((start, _), _)| *start >= min_live)
        {
            return;
        }
        let live = self.dirty.split_off(&(min_live, Vec::new()));
        for ((start, key), value) in std::mem::replace(&mut self.dirty, live) {
            self.by_key.remove(&(key.clone(), start));
            self.bytes -= cost(&key, value.as_deref());
        }
    }

    fn forget(&mut self, key: &[u8], start: i64) {
        if let Some(old) = self.dirty.remove(&(start, key.to_vec())) {
            self.by_key.remove(&(key.to_vec(), start));
            self.bytes -= cost(key, old.as_deref());
        }
    }
}

impl<S: WindowStore + StateRestoreCallback> StateRestoreCallback for CachingWindowStore<S> {
    fn restore_batch(&mut self, records: &[Write<'_>]) -> Result<()> {
        // Restoration runs before processing, so the cache is normally
        // empty; drop any cached write the changelog supersedes all the
        // same, and keep the clock with the store's.
        for (bytes, _) in records {
            if let Some((key, start, _)) = split_window_store_key(bytes) {
                self.forget(key, start);
                self.clock.observe(start);
            }
        }
        self.inner.restore_batch(records)
    }
}

impl<S: WindowStore> StateStore for CachingWindowStore<S> {
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
        self.write_back()?;
        self.inner.flush()
    }
    fn flush_cache(&mut self) -> Result<()> {
        self.write_back()?;
        self.inner.flush_cache()
    }
    fn close(&mut self) -> Result<()> {
        let flushed = if self.inner.is_open() {
            self.write_back()
        } else {
            Ok(())
        };
        let closed = self.inner.close();
        flushed.and(closed)
    }
}

impl<S: WindowStore> ReadOnlyWindowStore for CachingWindowStore<S> {
    fn fetch(&self, key: &[u8], window_start: i64) -> Result<Option<Vec<u8>>> {
        // A closed store answers Closed even for a cached window.
        if !self.inner.is_open() {
            return self.inner.fetch(key, window_start);
        }
        if window_start < self.clock.min_live() {
            return Ok(None);
        }
        match self.dirty.get(&(window_start, key.to_vec())) {
            Some(value) => Ok(value.clone()),
            None => self.inner.fetch(key, window_start),
        }
    }

    fn fetch_range(&self, key: &[u8], from: i64, to: i64) -> Result<WindowIterator<'_>> {
        // What the cache's clock expired may not have expired below yet.
        let from = from.max(self.clock.min_live());
        let stored = self.inner.fetch_range(key, from, to)?;
        if from > to || self.dirty.is_empty() {
            return Ok(stored);
        }
        let cached = self
            .by_key
            .range((key.to_vec(), from)..=(key.to_vec(), to))
            .map(|(key, start)| {
                let value = self.dirty[&(*start, key.clone())].clone();
                ((key.clone(), *start), value)
            });
        Ok(merge(Box::new(cached), stored, window_order))
    }

    fn fetch_all(&self, from: i64, to: i64) -> Result<WindowIterator<'_>> {
        let from = from.max(self.clock.min_live());
        let stored = self.inner.fetch_all(from, to)?;
        if from > to || self.dirty.is_empty() {
            return Ok(stored);
        }
        let cached = self
            .dirty
            .range(time_bounds(from, to))
            .map(|((start, key), value)| ((key.clone(), *start), value.clone()));
        Ok(merge(Box::new(cached), stored, window_order))
    }
}

impl<S: WindowStore> WindowStore for CachingWindowStore<S> {
    fn put(&mut self, key: &[u8], value: Option<&[u8]>, window_start: i64) -> Result<()> {
        if !self.inner.is_open() || self.inner.retains_duplicates() {
            return self.inner.put(key, value, window_start);
        }
        if !self.clock.observe(window_start) {
            // Expired already: the store below would skip it too.
            return Ok(());
        }
        self.drop_expired();
        self.cache(key, value, window_start)
    }

    fn retention(&self) -> i64 {
        self.inner.retention()
    }

    fn retains_duplicates(&self) -> bool {
        self.inner.retains_duplicates()
    }
}

/// A write-back cache over a session store, as Kafka Streams'
/// `CachingSessionStore`, holding about `max_bytes` of writes.
///
/// ```
/// use state_stores::{
///     CachingSessionStore, InMemorySessionStore, ReadOnlySessionStore, SessionStore, StateStore,
/// };
///
/// let mut store = CachingSessionStore::new(InMemorySessionStore::new("sessions", 60_000), 1 << 20);
/// store.put(b"alice", 1_000, 1_000, Some(b"1"))?;
/// // The session grows: the old one goes, a longer one comes.
/// store.put(b"alice", 1_000, 1_000, None)?;
/// store.put(b"alice", 1_000, 4_000, Some(b"2"))?;
/// assert_eq!(store.dirty_len(), 2);
/// assert_eq!(store.inner().fetch(b"alice")?.count(), 0); // nothing below yet
/// store.flush()?;
/// assert_eq!(store.dirty_len(), 0);
/// assert_eq!(store.inner().fetch_session(b"alice", 1_000, 4_000)?.as_deref(), Some(&b"2"[..]));
/// # Ok::<(), state_stores::StoreError>(())
/// ```
pub struct CachingSessionStore<S> {
    inner: S,
    /// Writes not yet in `inner`, by end, then key, then start: `None` is
    /// a pending removal.
    dirty: BTreeMap<(i64, Vec<u8>, i64), Option<Vec<u8>>>,
    /// The keys of `dirty`, key first, for one key's searches.
    by_key: BTreeSet<(Vec<u8>, i64, i64)>,
    /// The latest session end written through the cache.
    clock: RetentionClock,
    bytes: usize,
    max_bytes: usize,
}

impl<S: SessionStore> CachingSessionStore<S> {
    /// Caches writes to `inner`, holding at most about `max_bytes` of them.
    pub fn new(inner: S, max_bytes: usize) -> Self {
        let clock = RetentionClock::new(inner.retention());
        CachingSessionStore {
            inner,
            dirty: BTreeMap::new(),
            by_key: BTreeSet::new(),
            clock,
            bytes: 0,
            max_bytes,
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// How many writes wait in the cache.
    pub fn dirty_len(&self) -> usize {
        self.dirty.len()
    }

    fn cache(&mut self, key: &[u8], start: i64, end: i64, value: Option<&[u8]>) -> Result<()> {
        use std::collections::btree_map::Entry;
        self.bytes += cost(key, value);
        match self.dirty.entry((end, key.to_vec(), start)) {
            Entry::Occupied(mut slot) => {
                self.bytes -= cost(key, slot.get().as_deref());
                *slot.get_mut() = value.map(<[u8]>::to_vec);
            }
            Entry::Vacant(slot) => {
                slot.insert(value.map(<[u8]>::to_vec));
                self.by_key.insert((key.to_vec(), end, start));
            }
        }
        if self.bytes > self.max_bytes {
            self.write_back()?;
        }
        Ok(())
    }

    /// Writes every cached change to the store below, by end (so its clock
    /// moves forward only), leaving out sessions that have expired
    /// meanwhile: the store would drop them anyway.
    fn write_back(&mut self) -> Result<()> {
        if self.dirty.is_empty() {
            return Ok(());
        }
        let live = (self.clock.min_live(), Vec::new(), i64::MIN);
        for ((end, key, start), value) in self.dirty.range(live..) {
            self.inner.put(key, *start, *end, value.as_deref())?;
        }
        self.dirty.clear();
        self.by_key.clear();
        self.bytes = 0;
        Ok(())
    }

    /// Drops cached writes to sessions the clock has expired: the store
    /// below would drop them too, so they are never written down.
    fn drop_expired(&mut self) {
        let min_live = self.clock.min_live();
        if self
            .dirty
            .first_key_value()
            .is_none_or(|((end, _, _), _)| *end >= min_live)
        {
            return;
        }
        let live = self.dirty.split_off(&(min_live, Vec::new(), i64::MIN));
        for ((end, key, start), value) in std::mem::replace(&mut self.dirty, live) {
            self.by_key.remove(&(key.clone(), end, start));
            self.bytes -= cost(&key, value.as_deref());
        }
    }

    fn forget(&mut self, key: &[u8], start: i64, end: i64) {
        if let Some(old) = self.dirty.remove(&(end, key.to_vec(), start)) {
            self.by_key.remove(&(key.to_vec(), end, start));
            self.bytes -= cost(key, old.as_deref());
        }
    }
}

impl<S: SessionStore + StateRestoreCallback> StateRestoreCallback for CachingSessionStore<S> {
    fn restore_batch(&mut self, records: &[Write<'_>]) -> Result<()> {
        // As for windows: drop what the changelog supersedes, keep the
        // clock with the store's.
        for (bytes, _) in records {
            if let Some((key, start, end)) = split_session_store_key(bytes) {
                self.forget(key, start, end);
                self.clock.observe(end);
            }
        }
        self.inner.restore_batch(records)
    }
}

impl<S: SessionStore> StateStore for CachingSessionStore<S> {
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
        self.write_back()?;
        self.inner.flush()
    }
    fn flush_cache(&mut self) -> Result<()> {
        self.write_back()?;
        self.inner.flush_cache()
    }
    fn close(&mut self) -> Result<()> {
        let flushed = if self.inner.is_open() {
            self.write_back()
        } else {
            Ok(())
        };
        let closed = self.inner.close();
        flushed.and(closed)
    }
}

impl<S: SessionStore> ReadOnlySessionStore for CachingSessionStore<S> {
    fn fetch_session(&self, key: &[u8], start: i64, end: i64) -> Result<Option<Vec<u8>>> {
        // A closed store answers Closed even for a cached session.
        if !self.inner.is_open() {
            return self.inner.fetch_session(key, start, end);
        }
        if end < self.clock.min_live() {
            return Ok(None);
        }
        match self.dirty.get(&(end, key.to_vec(), start)) {
            Some(value) => Ok(value.clone()),
            None => self.inner.fetch_session(key, start, end),
        }
    }

    fn find_sessions(
        &self,
        key: &[u8],
        earliest_end: i64,
        latest_start: i64,
    ) -> Result<SessionIterator<'_>> {
        // What the cache's clock expired may not have expired below yet.
        let from = earliest_end.max(self.clock.min_live());
        let stored = self.inner.find_sessions(key, from, latest_start)?;
        if self.dirty.is_empty() {
            return Ok(stored);
        }
        let wanted = key.to_vec();
        let cached = self
            .by_key
            .range((key.to_vec(), from, i64::MIN)..)
            .take_while(move |(k, _, _)| *k == wanted)
            .filter(move |(_, _, start)| *start <= latest_start)
            .map(|(key, end, start)| {
                let value = self.dirty[&(*end, key.clone(), *start)].clone();
                ((key.clone(), *start, *end), value)
            });
        Ok(merge(Box::new(cached), stored, session_order))
    }
}

impl<S: SessionStore> SessionStore for CachingSessionStore<S> {
    fn put(&mut self, key: &[u8], start: i64, end: i64, value: Option<&[u8]>) -> Result<()> {
        if !self.inner.is_open() {
            return self.inner.put(key, start, end, value);
        }
        if !self.clock.observe(end) {
            // Expired already: the store below would skip it too.
            return Ok(());
        }
        self.drop_expired();
        self.cache(key, start, end, value)
    }

    fn retention(&self) -> i64 {
        self.inner.retention()
    }
}
