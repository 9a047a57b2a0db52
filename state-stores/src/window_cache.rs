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

/// Where a cached write goes: the time the store's clock counts (a
/// window's start, a session's end), the key, and what else tells one
/// key's entries at that time apart (nothing for a window, the start for
/// a session). Ids sort as the store below wants its writes: by time.
type Id<E> = (i64, Vec<u8>, E);

/// The last part of an [`Id`], with the bounds of its values.
trait IdTail: Copy + Ord {
    const LEAST: Self;
    const MOST: Self;
}

impl IdTail for () {
    const LEAST: Self = ();
    const MOST: Self = ();
}

impl IdTail for i64 {
    const LEAST: Self = i64::MIN;
    const MOST: Self = i64::MAX;
}

/// What a [`WriteCache`] asks of the store below it: one implementation
/// for window stores, one for session stores.
trait Below<E>: StateStore {
    /// Whether writes may wait in the cache: not over a window store that
    /// keeps duplicates, as Kafka Streams disables caching for those.
    fn cacheable(&self) -> bool {
        true
    }
    /// The retention period in ms.
    fn retention_ms(&self) -> i64;
    /// Writes `value` (`None`: deletes) at `time` for `key`.
    fn put_below(&mut self, time: i64, key: &[u8], tail: E, value: Option<&[u8]>) -> Result<()>;
    /// The time, key and tail that a changelog record's key is for.
    fn changelog_id(bytes: &[u8]) -> Option<(i64, &[u8], E)>;
}

impl<S: WindowStore + ?Sized> Below<()> for S {
    fn cacheable(&self) -> bool {
        !self.retains_duplicates()
    }
    fn retention_ms(&self) -> i64 {
        self.retention()
    }
    fn put_below(&mut self, start: i64, key: &[u8], (): (), value: Option<&[u8]>) -> Result<()> {
        self.put(key, value, start)
    }
    fn changelog_id(bytes: &[u8]) -> Option<(i64, &[u8], ())> {
        split_window_store_key(bytes).map(|(key, start, _)| (start, key, ()))
    }
}

impl<S: SessionStore + ?Sized> Below<i64> for S {
    fn retention_ms(&self) -> i64 {
        self.retention()
    }
    fn put_below(&mut self, end: i64, key: &[u8], start: i64, value: Option<&[u8]>) -> Result<()> {
        self.put(key, start, end, value)
    }
    fn changelog_id(bytes: &[u8]) -> Option<(i64, &[u8], i64)> {
        split_session_store_key(bytes).map(|(key, start, end)| (end, key, start))
    }
}

/// Ids of times from `from` to `to`.
fn time_bounds<E: IdTail>(from: i64, to: i64) -> (Bound<Id<E>>, Bound<Id<E>>) {
    let upper = match to.checked_add(1) {
        Some(after) => Bound::Excluded((after, Vec::new(), E::LEAST)),
        None => Bound::Unbounded,
    };
    (Bound::Included((from, Vec::new(), E::LEAST)), upper)
}

/// The cache of [`CachingWindowStore`] and [`CachingSessionStore`]: the
/// store below, the writes not yet in it, and its own clock.
struct WriteCache<S, E> {
    inner: S,
    /// Writes not yet in `inner`, by id: `None` is a pending delete.
    dirty: BTreeMap<Id<E>, Option<Vec<u8>>>,
    /// The ids of `dirty`, key first, for one key's reads.
    by_key: BTreeSet<(Vec<u8>, i64, E)>,
    /// The latest time written through the cache.
    clock: RetentionClock,
    bytes: usize,
    max_bytes: usize,
}

impl<S: Below<E>, E: IdTail> WriteCache<S, E> {
    fn new(inner: S, max_bytes: usize) -> Self {
        let clock = RetentionClock::new(inner.retention_ms());
        WriteCache {
            inner,
            dirty: BTreeMap::new(),
            by_key: BTreeSet::new(),
            clock,
            bytes: 0,
            max_bytes,
        }
    }

    /// The earliest time still read: what the cache's clock expired may
    /// not have expired below yet.
    fn min_live(&self) -> i64 {
        self.clock.min_live()
    }

    fn put(&mut self, time: i64, key: &[u8], tail: E, value: Option<&[u8]>) -> Result<()> {
        if !self.inner.is_open() || !self.inner.cacheable() {
            return self.inner.put_below(time, key, tail, value);
        }
        if !self.clock.observe(time) {
            // Expired already: the store below would skip it too.
            return Ok(());
        }
        self.drop_expired();
        self.cache(time, key, tail, value)
    }

    fn cache(&mut self, time: i64, key: &[u8], tail: E, value: Option<&[u8]>) -> Result<()> {
        use std::collections::btree_map::Entry;
        self.bytes += cost(key, value);
        match self.dirty.entry((time, key.to_vec(), tail)) {
            Entry::Occupied(mut slot) => {
                self.bytes -= cost(key, slot.get().as_deref());
                *slot.get_mut() = value.map(<[u8]>::to_vec);
            }
            Entry::Vacant(slot) => {
                slot.insert(value.map(<[u8]>::to_vec));
                self.by_key.insert((key.to_vec(), time, tail));
            }
        }
        if self.bytes > self.max_bytes {
            self.write_back()?;
        }
        Ok(())
    }

    /// Writes every cached change to the store below, by time (so its
    /// clock moves forward only), leaving out what has expired meanwhile:
    /// the store would drop it anyway.
    fn write_back(&mut self) -> Result<()> {
        if self.dirty.is_empty() {
            return Ok(());
        }
        let live = (self.clock.min_live(), Vec::new(), E::LEAST);
        for ((time, key, tail), value) in self.dirty.range(live..) {
            self.inner.put_below(*time, key, *tail, value.as_deref())?;
        }
        self.dirty.clear();
        self.by_key.clear();
        self.bytes = 0;
        Ok(())
    }

    /// Drops cached writes the clock has expired: the store below would
    /// drop them too, so they are never written down.
    fn drop_expired(&mut self) {
        let min_live = self.clock.min_live();
        if self
            .dirty
            .first_key_value()
            .is_none_or(|((time, _, _), _)| *time >= min_live)
        {
            return;
        }
        let live = self.dirty.split_off(&(min_live, Vec::new(), E::LEAST));
        for ((time, key, tail), value) in std::mem::replace(&mut self.dirty, live) {
            self.bytes -= cost(&key, value.as_deref());
            self.by_key.remove(&(key, time, tail));
        }
    }

    fn forget(&mut self, time: i64, key: &[u8], tail: E) {
        if let Some(old) = self.dirty.remove(&(time, key.to_vec(), tail)) {
            self.by_key.remove(&(key.to_vec(), time, tail));
            self.bytes -= cost(key, old.as_deref());
        }
    }

    fn restore_batch(&mut self, records: &[Write<'_>]) -> Result<()>
    where
        S: StateRestoreCallback,
    {
        // Restoration runs before processing, so the cache is normally
        // empty; drop any cached write the changelog supersedes all the
        // same, and keep the clock with the store's.
        for (bytes, _) in records {
            if let Some((time, key, tail)) = S::changelog_id(bytes) {
                self.forget(time, key, tail);
                self.clock.observe(time);
            }
        }
        self.inner.restore_batch(records)
    }

    /// The value at `id`: cached (a pending delete reads as none), else
    /// what `below` reads from the store below; none once expired.
    fn read(
        &self,
        id: Id<E>,
        below: impl FnOnce(&S) -> Result<Option<Vec<u8>>>,
    ) -> Result<Option<Vec<u8>>> {
        // A closed store answers Closed even for a cached entry.
        if !self.inner.is_open() {
            return below(&self.inner);
        }
        if id.0 < self.clock.min_live() {
            return Ok(None);
        }
        match self.dirty.get(&id) {
            Some(value) => Ok(value.clone()),
            None => below(&self.inner),
        }
    }

    /// `key`'s cached writes at times from `from` to `to`, by time, then
    /// tail.
    fn cached_of<'a>(
        &'a self,
        key: &[u8],
        from: i64,
        to: i64,
    ) -> impl Iterator<Item = (i64, &'a Vec<u8>, E, &'a Option<Vec<u8>>)> + 'a {
        let ids = (from <= to).then(|| {
            self.by_key
                .range((key.to_vec(), from, E::LEAST)..=(key.to_vec(), to, E::MOST))
        });
        ids.into_iter().flatten().map(|(key, time, tail)| {
            let value = &self.dirty[&(*time, key.clone(), *tail)];
            (*time, key, *tail, value)
        })
    }

    /// Every key's cached writes at times from `from` to `to`, by id.
    fn cached_in(&self, from: i64, to: i64) -> impl Iterator<Item = (&Id<E>, &Option<Vec<u8>>)> {
        let ids = (from <= to).then(|| self.dirty.range(time_bounds(from, to)));
        ids.into_iter().flatten()
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

/// What a caching store is besides its reads and writes, over
/// [`WriteCache`]: the inherent `new`, `inner` and `dirty_len`, restoration
/// and [`StateStore`].
macro_rules! caching_store {
    ($name:ident over $store:ident) => {
        impl<S: $store> $name<S> {
            /// Caches writes to `inner`, holding at most about `max_bytes`
            /// of them.
            pub fn new(inner: S, max_bytes: usize) -> Self {
                $name(WriteCache::new(inner, max_bytes))
            }

            /// The wrapped store.
            pub fn inner(&self) -> &S {
                &self.0.inner
            }

            /// How many writes wait in the cache.
            pub fn dirty_len(&self) -> usize {
                self.0.dirty.len()
            }
        }

        impl<S: $store + StateRestoreCallback> StateRestoreCallback for $name<S> {
            /// Drops the cached writes the records supersede, then restores
            /// the store below.
            fn restore_batch(&mut self, records: &[Write<'_>]) -> Result<()> {
                self.0.restore_batch(records)
            }
        }

        impl<S: $store> StateStore for $name<S> {
            fn name(&self) -> &str {
                self.0.inner.name()
            }
            fn persistent(&self) -> bool {
                self.0.inner.persistent()
            }
            fn is_open(&self) -> bool {
                self.0.inner.is_open()
            }
            fn flush(&mut self) -> Result<()> {
                self.0.flush()
            }
            fn flush_cache(&mut self) -> Result<()> {
                self.0.flush_cache()
            }
            fn close(&mut self) -> Result<()> {
                self.0.close()
            }
        }
    };
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
pub struct CachingWindowStore<S>(WriteCache<S, ()>);

caching_store!(CachingWindowStore over WindowStore);

impl<S: WindowStore> ReadOnlyWindowStore for CachingWindowStore<S> {
    fn fetch(&self, key: &[u8], window_start: i64) -> Result<Option<Vec<u8>>> {
        self.0.read((window_start, key.to_vec(), ()), |inner| {
            inner.fetch(key, window_start)
        })
    }

    fn fetch_range(&self, key: &[u8], from: i64, to: i64) -> Result<WindowIterator<'_>> {
        let from = from.max(self.0.min_live());
        let stored = self.0.inner.fetch_range(key, from, to)?;
        if from > to || self.0.dirty.is_empty() {
            return Ok(stored);
        }
        let cached = self
            .0
            .cached_of(key, from, to)
            .map(|(start, key, (), value)| ((key.clone(), start), value.clone()));
        Ok(merge(Box::new(cached), stored, window_order))
    }

    fn fetch_all(&self, from: i64, to: i64) -> Result<WindowIterator<'_>> {
        let from = from.max(self.0.min_live());
        let stored = self.0.inner.fetch_all(from, to)?;
        if from > to || self.0.dirty.is_empty() {
            return Ok(stored);
        }
        let cached = self
            .0
            .cached_in(from, to)
            .map(|((start, key, ()), value)| ((key.clone(), *start), value.clone()));
        Ok(merge(Box::new(cached), stored, window_order))
    }
}

impl<S: WindowStore> WindowStore for CachingWindowStore<S> {
    fn put(&mut self, key: &[u8], value: Option<&[u8]>, window_start: i64) -> Result<()> {
        self.0.put(window_start, key, (), value)
    }

    fn retention(&self) -> i64 {
        self.0.inner.retention()
    }

    fn retains_duplicates(&self) -> bool {
        self.0.inner.retains_duplicates()
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
pub struct CachingSessionStore<S>(WriteCache<S, i64>);

caching_store!(CachingSessionStore over SessionStore);

impl<S: SessionStore> ReadOnlySessionStore for CachingSessionStore<S> {
    fn fetch_session(&self, key: &[u8], start: i64, end: i64) -> Result<Option<Vec<u8>>> {
        self.0.read((end, key.to_vec(), start), |inner| {
            inner.fetch_session(key, start, end)
        })
    }

    fn find_sessions(
        &self,
        key: &[u8],
        earliest_end: i64,
        latest_start: i64,
    ) -> Result<SessionIterator<'_>> {
        let from = earliest_end.max(self.0.min_live());
        let stored = self.0.inner.find_sessions(key, from, latest_start)?;
        if self.0.dirty.is_empty() {
            return Ok(stored);
        }
        let cached = self
            .0
            .cached_of(key, from, i64::MAX)
            .filter(move |(_, _, start, _)| *start <= latest_start)
            .map(|(end, key, start, value)| ((key.clone(), start, end), value.clone()));
        Ok(merge(Box::new(cached), stored, session_order))
    }
}

impl<S: SessionStore> SessionStore for CachingSessionStore<S> {
    fn put(&mut self, key: &[u8], start: i64, end: i64, value: Option<&[u8]>) -> Result<()> {
        self.0.put(end, key, start, value)
    }

    fn retention(&self) -> i64 {
        self.0.inner.retention()
    }
}
