//! A record cache in front of a key-value store.
//!
//! As Kafka Streams' `CachingKeyValueStore`: writes stay in the cache until
//! the store is flushed (at commit) or the cache outgrows its budget, so a
//! key written a thousand times between two commits reaches the store below,
//! and its changelog, once. Reads and scans see the cached writes.
//!
//! A commit that writes no checkpoint (exactly-once: a crash wipes the
//! local state) calls [`StateStore::flush_cache`]: only the changelog
//! records go out then, and the entries stay cached, marked logged, until
//! the cache outgrows its budget, is flushed or closes. The store's own
//! batch write is then off the commit's path.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::iter::Peekable;
use std::ops::Bound;

use rustc_hash::FxHashMap;

use crate::changelog::StateRestoreCallback;
use crate::store::{KeyValue, KeyValueIterator, Write, copy_value, inverted, prefix_upper_bound};
use crate::{KeyValueStore, ReadOnlyKeyValueStore, Result, StateStore};

/// Kafka Streams' default for `statestore.cache.max.bytes`.
pub const DEFAULT_CACHE_MAX_BYTES: usize = 10 * 1024 * 1024;

/// What an entry costs beyond its value and its key's two copies (map
/// slot, set node, vectors).
const ENTRY_OVERHEAD: usize = 64;

/// Cached writes in key order (or reverse key order).
type CachedIter<'a> = Box<dyn Iterator<Item = (&'a Vec<u8>, &'a Option<Vec<u8>>)> + 'a>;

/// A cached write: `None` is a pending delete.
struct Cached {
    value: Option<Vec<u8>>,
    /// Already in the changelog (by [`StateStore::flush_cache`]), not yet
    /// in the store below.
    logged: bool,
}

/// A write-back cache over a key-value store.
pub struct CachingKeyValueStore<S> {
    inner: S,
    /// Writes not yet in `inner`: `None` is a pending delete. Hashed:
    /// every record's read and write of its key looks here, and a hash
    /// lookup costs a fraction of an ordered search among thousands of
    /// keys.
    dirty: FxHashMap<Vec<u8>, Cached>,
    /// The keys of `dirty` in order, for scans and write-back; changed
    /// only when a key enters or leaves the cache.
    order: BTreeSet<Vec<u8>>,
    bytes: usize,
    max_bytes: usize,
}

impl<S: KeyValueStore> CachingKeyValueStore<S> {
    /// Caches writes to `inner`, holding at most about `max_bytes` of them.
    pub fn new(inner: S, max_bytes: usize) -> Self {
        CachingKeyValueStore {
            inner,
            dirty: FxHashMap::default(),
            order: BTreeSet::new(),
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

    fn cost(key: &[u8], value: Option<&[u8]>) -> usize {
        2 * key.len() + value.map_or(0, <[u8]>::len) + ENTRY_OVERHEAD
    }

    fn cache(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        self.cache_as(key, value, false)
    }

    /// Caches a write that is (or is not yet) `logged`.
    fn cache_as(&mut self, key: &[u8], value: Option<&[u8]>, logged: bool) -> Result<()> {
        self.bytes += Self::cost(key, value);
        match self.dirty.get_mut(key) {
            Some(cached) => {
                self.bytes -= Self::cost(key, cached.value.as_deref());
                cached.logged = logged;
                match (cached.value.as_mut(), value) {
                    (Some(old), Some(new)) => {
                        old.clear();
                        old.extend_from_slice(new);
                    }
                    _ => cached.value = value.map(<[u8]>::to_vec),
                }
            }
            None => {
                let value = value.map(<[u8]>::to_vec);
                self.dirty.insert(key.to_vec(), Cached { value, logged });
                self.order.insert(key.to_vec());
            }
        }
        if self.bytes > self.max_bytes {
            self.write_back()?;
        }
        Ok(())
    }

    /// Sends the writes not yet logged to the changelog, and keeps them
    /// cached, marked logged.
    fn log_back(&mut self) -> Result<()> {
        let writes = writes(&self.order, &self.dirty, false);
        if writes.is_empty() {
            return Ok(());
        }
        self.inner.log_all(&writes)?;
        for cached in self.dirty.values_mut() {
            cached.logged = true;
        }
        Ok(())
    }

    /// Writes every cached change to the store below, each batch in one
    /// write: the logged ones without logging them again.
    fn write_back(&mut self) -> Result<()> {
        if self.dirty.is_empty() {
            return Ok(());
        }
        let logged = writes(&self.order, &self.dirty, true);
        if !logged.is_empty() {
            self.inner.put_all_logged(&logged)?;
        }
        let unlogged = writes(&self.order, &self.dirty, false);
        if !unlogged.is_empty() {
            self.inner.put_all(&unlogged)?;
        }
        self.dirty.clear();
        self.order.clear();
        self.bytes = 0;
        Ok(())
    }

    /// The cached writes whose keys lie in `range`, in key order.
    fn cached<'a>(
        &'a self,
        range: (Bound<&[u8]>, Bound<&[u8]>),
    ) -> impl DoubleEndedIterator<Item = (&'a Vec<u8>, &'a Option<Vec<u8>>)> + 'a {
        self.order
            .range::<[u8], _>(range)
            .map(|key| (key, &self.dirty[key].value))
    }

    fn merged<'a>(
        &'a self,
        cached: CachedIter<'a>,
        stored: KeyValueIterator<'a>,
        reverse: bool,
    ) -> KeyValueIterator<'a> {
        Box::new(Merge {
            cached: cached.peekable(),
            stored: stored.peekable(),
            reverse,
        })
    }
}

/// The cached writes, in key order (as the store below and its changelog
/// always got them), that are (or are not) `logged`.
fn writes<'a>(
    order: &'a BTreeSet<Vec<u8>>,
    dirty: &'a FxHashMap<Vec<u8>, Cached>,
    logged: bool,
) -> Vec<Write<'a>> {
    order
        .iter()
        .filter_map(|key| {
            let cached = &dirty[key];
            (cached.logged == logged).then_some((key.as_slice(), cached.value.as_deref()))
        })
        .collect()
}

/// Merges cached writes over a scan of the store below: on equal keys the
/// cache wins, and a cached delete hides the stored entry.
struct Merge<'a> {
    cached: Peekable<CachedIter<'a>>,
    stored: Peekable<KeyValueIterator<'a>>,
    reverse: bool,
}

impl Iterator for Merge<'_> {
    type Item = Result<KeyValue>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let order = match (self.cached.peek(), self.stored.peek()) {
                (None, _) | (Some(_), Some(Err(_))) => return self.stored.next(),
                (Some(_), None) => Ordering::Less,
                (Some((cached_key, _)), Some(Ok((stored_key, _)))) => {
                    let order = cached_key.as_slice().cmp(stored_key.as_slice());
                    if self.reverse { order.reverse() } else { order }
                }
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
                return Some(Ok((key.clone(), value.clone())));
            }
        }
    }
}

fn bounds<'k>(from: Option<&'k [u8]>, to: Option<&'k [u8]>) -> (Bound<&'k [u8]>, Bound<&'k [u8]>) {
    (
        from.map_or(Bound::Unbounded, Bound::Included),
        to.map_or(Bound::Unbounded, Bound::Included),
    )
}

impl<S: KeyValueStore + StateRestoreCallback> StateRestoreCallback for CachingKeyValueStore<S> {
    fn restore_batch(&mut self, records: &[Write<'_>]) -> Result<()> {
        // Restoration runs before processing, so the cache is normally empty;
        // drop any cached write the changelog supersedes all the same.
        for (key, _) in records {
            if let Some(old) = self.dirty.remove(*key) {
                self.order.remove(*key);
                self.bytes -= Self::cost(key, old.value.as_deref());
            }
        }
        self.inner.restore_batch(records)
    }
}

impl<S: KeyValueStore> StateStore for CachingKeyValueStore<S> {
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
        self.log_back()?;
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

impl<S: KeyValueStore> ReadOnlyKeyValueStore for CachingKeyValueStore<S> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.dirty.get(key) {
            Some(cached) => {
                // A closed store answers Closed even for a cached key.
                if !self.inner.is_open() {
                    return self.inner.get(key);
                }
                Ok(cached.value.clone())
            }
            None => self.inner.get(key),
        }
    }

    fn get_into(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        match self.dirty.get(key) {
            // A closed store answers Closed even for a cached key.
            Some(cached) if self.inner.is_open() => Ok(copy_value(cached.value.as_deref(), out)),
            _ => self.inner.get_into(key, out),
        }
    }

    fn range(&self, from: Option<&[u8]>, to: Option<&[u8]>) -> Result<KeyValueIterator<'_>> {
        let stored = self.inner.range(from, to)?;
        if inverted(from, to) {
            return Ok(stored);
        }
        let cached = Box::new(self.cached(bounds(from, to)));
        Ok(self.merged(cached, stored, false))
    }

    fn reverse_range(
        &self,
        from: Option<&[u8]>,
        to: Option<&[u8]>,
    ) -> Result<KeyValueIterator<'_>> {
        let stored = self.inner.reverse_range(from, to)?;
        if inverted(from, to) {
            return Ok(stored);
        }
        let cached = Box::new(self.cached(bounds(from, to)).rev());
        Ok(self.merged(cached, stored, true))
    }

    fn prefix_scan(&self, prefix: &[u8]) -> Result<KeyValueIterator<'_>> {
        let stored = self.inner.prefix_scan(prefix)?;
        let upper = prefix_upper_bound(prefix);
        let end = upper.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
        let cached = Box::new(self.cached((Bound::Included(prefix), end)));
        Ok(self.merged(cached, stored, false))
    }

    fn approximate_num_entries(&self) -> Result<u64> {
        // Pending writes may or may not be new keys: an estimate either way.
        Ok(self.inner.approximate_num_entries()?
            + self.dirty.values().filter(|c| c.value.is_some()).count() as u64)
    }
}

impl<S: KeyValueStore> KeyValueStore for CachingKeyValueStore<S> {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        if !self.inner.is_open() {
            return self.inner.put(key, value);
        }
        self.cache(key, Some(value))
    }

    fn put_all(&mut self, writes: &[Write<'_>]) -> Result<()> {
        if !self.inner.is_open() {
            return self.inner.put_all(writes);
        }
        for (key, value) in writes {
            self.cache(key, *value)?;
        }
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let old = self.get(key)?;
        self.cache(key, None)?;
        Ok(old)
    }

    /// Passed down: the layer that logs is below.
    fn log_all(&mut self, writes: &[Write<'_>]) -> Result<()> {
        self.inner.log_all(writes)
    }

    /// Cached as logged: written below, without logging, at write-back.
    fn put_all_logged(&mut self, writes: &[Write<'_>]) -> Result<()> {
        if !self.inner.is_open() {
            return self.inner.put_all_logged(writes);
        }
        for (key, value) in writes {
            self.cache_as(key, *value, true)?;
        }
        Ok(())
    }
}
