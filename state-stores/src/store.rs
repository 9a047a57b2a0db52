//! The store traits, as Kafka Streams has them: [`StateStore`] for the life
//! cycle, [`ReadOnlyKeyValueStore`] for queries and [`KeyValueStore`] for
//! writes. Keys and values are bytes here; [`TypedKeyValueStore`](crate::TypedKeyValueStore)
//! adds serdes on top.

use crate::Result;

/// A key and its value, as iterators yield them.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// An iterator over entries in key order (or reverse key order). Items are
/// results because a persistent store may fail in the middle of a scan; an
/// error is never swallowed into a short answer.
pub type KeyValueIterator<'a> = Box<dyn Iterator<Item = Result<KeyValue>> + 'a>;

/// One write of a batch: a value to put, or `None` to delete the key.
pub type Write<'a> = (&'a [u8], Option<&'a [u8]>);

/// The life cycle every store shares.
pub trait StateStore: Send {
    /// The store's name, unique within a topology.
    fn name(&self) -> &str;
    /// Whether the store keeps its data on disk across restarts.
    fn persistent(&self) -> bool;
    /// Whether the store can still be used.
    fn is_open(&self) -> bool;
    /// Makes every write so far durable in the store (and forwards cached
    /// writes to the layers below). Called before offsets are committed.
    fn flush(&mut self) -> Result<()>;
    /// Sends cached writes to the changelog without making the store
    /// durable on disk: what a commit needs when no checkpoint follows it
    /// (under exactly-once, where a crash wipes the local state anyway). As
    /// Kafka Streams' `flushCache`; a key-value cache only logs its writes
    /// then, and keeps them for the store below until a full flush.
    /// By default, [`flush`](Self::flush).
    fn flush_cache(&mut self) -> Result<()> {
        self.flush()
    }
    /// Flushes and releases the store. Later calls fail with
    /// [`StoreError::Closed`](crate::StoreError::Closed); closing twice is harmless.
    fn close(&mut self) -> Result<()>;
}

/// `Ok` while a store is open, else [`StoreError::Closed`](crate::StoreError::Closed)
/// naming it: what every call of an in-memory store checks first.
pub(crate) fn ensure_open(open: bool, name: &str) -> Result<()> {
    if open {
        Ok(())
    } else {
        Err(crate::StoreError::Closed {
            name: name.to_owned(),
        })
    }
}

/// What `get_into` does with a value found (or not): `out` holds it, or
/// nothing, and the answer says which.
#[inline]
pub(crate) fn copy_value(value: Option<&[u8]>, out: &mut Vec<u8>) -> bool {
    out.clear();
    if let Some(value) = value {
        out.extend_from_slice(value);
    }
    value.is_some()
}

/// Reads from a key-value store over bytes.
///
/// Ranges are inclusive at both ends, as in Kafka Streams, and `None` leaves
/// that end open. A range whose `from` is greater than its `to` is empty.
pub trait ReadOnlyKeyValueStore {
    /// The value of `key`, if any.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Copies the value of `key`, if any, into `out` (cleared first) and
    /// says whether there was one. For a lookup per record: a store that
    /// holds its values copies them without allocating.
    fn get_into(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        Ok(copy_value(self.get(key)?.as_deref(), out))
    }
    /// Entries with `from <= key <= to`, in ascending key order.
    fn range(&self, from: Option<&[u8]>, to: Option<&[u8]>) -> Result<KeyValueIterator<'_>>;
    /// Entries with `from <= key <= to`, in descending key order.
    fn reverse_range(&self, from: Option<&[u8]>, to: Option<&[u8]>)
    -> Result<KeyValueIterator<'_>>;
    /// Entries whose key starts with `prefix`, in ascending key order.
    fn prefix_scan(&self, prefix: &[u8]) -> Result<KeyValueIterator<'_>>;
    /// Every entry, in ascending key order.
    fn all(&self) -> Result<KeyValueIterator<'_>> {
        self.range(None, None)
    }
    /// Every entry, in descending key order.
    fn reverse_all(&self) -> Result<KeyValueIterator<'_>> {
        self.reverse_range(None, None)
    }
    /// An estimate of the number of entries (exact for in-memory stores).
    fn approximate_num_entries(&self) -> Result<u64>;
}

/// A key-value store over bytes.
pub trait KeyValueStore: StateStore + ReadOnlyKeyValueStore {
    /// Sets `key` to `value`.
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()>;
    /// Sets `key` to `value` unless it has a value; returns the value it had.
    fn put_if_absent(&mut self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.get(key)? {
            Some(existing) => Ok(Some(existing)),
            None => {
                self.put(key, value)?;
                Ok(None)
            }
        }
    }
    /// Applies puts and deletes (`None` values) as one batch, in order.
    fn put_all(&mut self, writes: &[Write<'_>]) -> Result<()>;
    /// Removes `key`; returns the value it had.
    fn delete(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Sends `writes` to the changelog without applying them: a cache's
    /// commit that writes no checkpoint. A store without a changelog does
    /// nothing; a layer that logs must log them, and a layer over another
    /// store must pass the call down.
    fn log_all(&mut self, writes: &[Write<'_>]) -> Result<()> {
        let _ = writes;
        Ok(())
    }
    /// Applies `writes` that [`log_all`](Self::log_all) already logged: a
    /// layer that logs applies them without logging them again.
    fn put_all_logged(&mut self, writes: &[Write<'_>]) -> Result<()> {
        self.put_all(writes)
    }
}

/// Whether the range is empty because its ends are swapped.
pub(crate) fn inverted(from: Option<&[u8]>, to: Option<&[u8]>) -> bool {
    matches!((from, to), (Some(f), Some(t)) if f > t)
}

/// The smallest key greater than every key that starts with `prefix`, or
/// `None` when there is none (the prefix is all `0xff`).
pub(crate) fn prefix_upper_bound(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut bound = prefix.to_vec();
    while let Some(last) = bound.pop() {
        if last < u8::MAX {
            bound.push(last + 1);
            return Some(bound);
        }
    }
    None
}

macro_rules! forward_store_impls {
    ($($wrapper:ty),*) => {$(
        impl<S: StateStore + ?Sized> StateStore for $wrapper {
            fn name(&self) -> &str { (**self).name() }
            fn persistent(&self) -> bool { (**self).persistent() }
            fn is_open(&self) -> bool { (**self).is_open() }
            fn flush(&mut self) -> Result<()> { (**self).flush() }
            fn flush_cache(&mut self) -> Result<()> { (**self).flush_cache() }
            fn close(&mut self) -> Result<()> { (**self).close() }
        }

        impl<S: ReadOnlyKeyValueStore + ?Sized> ReadOnlyKeyValueStore for $wrapper {
            fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> { (**self).get(key) }
            fn get_into(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> { (**self).get_into(key, out) }
            fn range(&self, from: Option<&[u8]>, to: Option<&[u8]>) -> Result<KeyValueIterator<'_>> { (**self).range(from, to) }
            fn reverse_range(&self, from: Option<&[u8]>, to: Option<&[u8]>) -> Result<KeyValueIterator<'_>> { (**self).reverse_range(from, to) }
            fn prefix_scan(&self, prefix: &[u8]) -> Result<KeyValueIterator<'_>> { (**self).prefix_scan(prefix) }
            fn all(&self) -> Result<KeyValueIterator<'_>> { (**self).all() }
            fn reverse_all(&self) -> Result<KeyValueIterator<'_>> { (**self).reverse_all() }
            fn approximate_num_entries(&self) -> Result<u64> { (**self).approximate_num_entries() }
        }

        impl<S: KeyValueStore + ?Sized> KeyValueStore for $wrapper {
            fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> { (**self).put(key, value) }
            fn put_if_absent(&mut self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>> { (**self).put_if_absent(key, value) }
            fn put_all(&mut self, writes: &[Write<'_>]) -> Result<()> { (**self).put_all(writes) }
            fn delete(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> { (**self).delete(key) }
            fn log_all(&mut self, writes: &[Write<'_>]) -> Result<()> { (**self).log_all(writes) }
            fn put_all_logged(&mut self, writes: &[Write<'_>]) -> Result<()> { (**self).put_all_logged(writes) }
        }
    )*};
}

forward_store_impls!(Box<S>, &mut S);

/// [`StateStore`] for a layer whose `inner` store answers every call (the
/// change-logging layers: they log writes, nothing else).
macro_rules! state_store_via_inner {
    ($layer:ident over $bound:ident) => {
        impl<S: $bound> $crate::store::StateStore for $layer<S> {
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
            fn flush_cache(&mut self) -> Result<()> {
                self.inner.flush_cache()
            }
            fn close(&mut self) -> Result<()> {
                self.inner.close()
            }
        }
    };
}
pub(crate) use state_store_via_inner;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_upper_bounds() {
        assert_eq!(prefix_upper_bound(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_upper_bound(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_upper_bound(&[0xff, 0xff]), None);
        assert_eq!(prefix_upper_bound(b""), None);
    }

    #[test]
    fn stores_are_object_safe_and_send() {
        fn is_send<T: Send>() {}
        is_send::<Box<dyn KeyValueStore>>();
    }
}
