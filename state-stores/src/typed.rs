//! A typed view over a byte store.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;

use crate::{KeyValueStore, Result, Serde, StoreError};

thread_local! {
    /// Buffers that `get` and `put` encode into: stores copy what they keep,
    /// so a lookup or write per record allocates nothing for its bytes.
    static SCRATCH: RefCell<(Vec<u8>, Vec<u8>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// The largest scratch buffer kept between calls.
const SCRATCH_KEEP: usize = 1 << 20;

/// Runs `f` with two empty buffers: this thread's scratch buffers, or new
/// ones if they are in use (a serde or store that reenters).
fn with_scratch<R>(f: impl FnOnce(&mut Vec<u8>, &mut Vec<u8>) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buffers) => {
            let (key, value) = &mut *buffers;
            key.clear();
            value.clear();
            let result = f(key, value);
            // One huge value must not pin its buffer for the thread's life.
            for buffer in [key, value] {
                if buffer.capacity() > SCRATCH_KEEP {
                    *buffer = Vec::new();
                }
            }
            result
        }
        Err(_) => f(&mut Vec::new(), &mut Vec::new()),
    })
}

/// A key-value store of `K` to `V`, over any byte store and two serdes.
///
/// ```
/// use std::sync::Arc;
/// use state_stores::{I64Serde, InMemoryKeyValueStore, StringSerde, TypedKeyValueStore};
///
/// let mut counts = TypedKeyValueStore::new(
///     InMemoryKeyValueStore::new("counts"),
///     Arc::new(StringSerde),
///     Arc::new(I64Serde),
/// );
/// counts.put(&"kafka".to_string(), &3)?;
/// assert_eq!(counts.get(&"kafka".to_string())?, Some(3));
/// # Ok::<(), state_stores::StoreError>(())
/// ```
///
/// The serdes are held as `KS` and `VS`: shared ([`Arc`], the default) or
/// borrowed ([`TypedKeyValueStore::borrowing`]), for a view made afresh
/// for every call, which then costs no reference counting.
pub struct TypedKeyValueStore<S, K, V, KS = Arc<dyn Serde<K>>, VS = Arc<dyn Serde<V>>> {
    store: S,
    keys: KS,
    values: VS,
    types: PhantomData<fn(K, V) -> (K, V)>,
}

/// An iterator over typed entries.
pub type TypedIterator<'a, K, V> = Box<dyn Iterator<Item = Result<(K, V)>> + 'a>;

impl<S: KeyValueStore, K: 'static, V: 'static> TypedKeyValueStore<S, K, V> {
    /// Wraps `store`, encoding keys with `keys` and values with `values`.
    pub fn new(store: S, keys: Arc<dyn Serde<K>>, values: Arc<dyn Serde<V>>) -> Self {
        TypedKeyValueStore {
            store,
            keys,
            values,
            types: PhantomData,
        }
    }
}

impl<'a, S: KeyValueStore, K: 'static, V: 'static>
    TypedKeyValueStore<S, K, V, &'a (dyn Serde<K> + 'static), &'a (dyn Serde<V> + 'static)>
{
    /// Wraps `store` for a short while, with borrowed serdes.
    pub fn borrowing(
        store: S,
        keys: &'a (dyn Serde<K> + 'static),
        values: &'a (dyn Serde<V> + 'static),
    ) -> Self {
        TypedKeyValueStore {
            store,
            keys,
            values,
            types: PhantomData,
        }
    }
}

impl<S, K, V, KS, VS> TypedKeyValueStore<S, K, V, KS, VS>
where
    S: KeyValueStore,
    K: 'static,
    V: 'static,
    KS: Deref<Target = dyn Serde<K>>,
    VS: Deref<Target = dyn Serde<V>>,
{
    /// The byte store underneath.
    pub fn inner(&self) -> &S {
        &self.store
    }

    /// The byte store underneath, for writes.
    pub fn inner_mut(&mut self) -> &mut S {
        &mut self.store
    }

    fn serde_error(&self, source: crate::SerdeError) -> StoreError {
        StoreError::Serde {
            store: self.store.name().to_owned(),
            source,
        }
    }

    fn key(&self, key: &K) -> Result<Vec<u8>> {
        self.keys.serialize(key).map_err(|e| self.serde_error(e))
    }

    fn key_into(&self, key: &K, out: &mut Vec<u8>) -> Result<()> {
        self.keys
            .serialize_into(key, out)
            .map_err(|e| self.serde_error(e))
    }

    fn value_into(&self, value: &V, out: &mut Vec<u8>) -> Result<()> {
        self.values
            .serialize_into(value, out)
            .map_err(|e| self.serde_error(e))
    }

    fn value(&self, value: &V) -> Result<Vec<u8>> {
        self.values
            .serialize(value)
            .map_err(|e| self.serde_error(e))
    }

    fn decode_value(&self, bytes: Option<Vec<u8>>) -> Result<Option<V>> {
        bytes
            .map(|b| self.values.deserialize(&b).map_err(|e| self.serde_error(e)))
            .transpose()
    }

    fn typed<'a>(&'a self, iter: crate::KeyValueIterator<'a>) -> TypedIterator<'a, K, V> {
        Box::new(iter.map(move |item| {
            let (key, value) = item?;
            let key = self
                .keys
                .deserialize(&key)
                .map_err(|e| self.serde_error(e))?;
            let value = self
                .values
                .deserialize(&value)
                .map_err(|e| self.serde_error(e))?;
            Ok((key, value))
        }))
    }

    /// The value of `key`, if any.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        with_scratch(|key_bytes, value_bytes| {
            self.key_into(key, key_bytes)?;
            if !self.store.get_into(key_bytes, value_bytes)? {
                return Ok(None);
            }
            let value = self.values.deserialize(value_bytes);
            value.map(Some).map_err(|e| self.serde_error(e))
        })
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, key: &K, value: &V) -> Result<()> {
        with_scratch(|key_bytes, value_bytes| {
            self.key_into(key, key_bytes)?;
            self.value_into(value, value_bytes)?;
            self.store.put(key_bytes, value_bytes)
        })
    }

    /// Sets `key` to `value` unless it has one; returns the value it had.
    pub fn put_if_absent(&mut self, key: &K, value: &V) -> Result<Option<V>> {
        let (key, value) = (self.key(key)?, self.value(value)?);
        let old = self.store.put_if_absent(&key, &value)?;
        self.decode_value(old)
    }

    /// Applies puts and deletes (`None`) as one batch.
    pub fn put_all(&mut self, entries: &[(K, Option<V>)]) -> Result<()> {
        let encoded = entries
            .iter()
            .map(|(k, v)| Ok((self.key(k)?, v.as_ref().map(|v| self.value(v)).transpose()?)))
            .collect::<Result<Vec<_>>>()?;
        let writes: Vec<_> = encoded
            .iter()
            .map(|(k, v)| (k.as_slice(), v.as_deref()))
            .collect();
        self.store.put_all(&writes)
    }

    /// Removes `key`; returns the value it had.
    pub fn delete(&mut self, key: &K) -> Result<Option<V>> {
        let old = self.store.delete(&self.key(key)?)?;
        self.decode_value(old)
    }

    /// Entries with `from <= key <= to` in serialized-key order.
    pub fn range(&self, from: Option<&K>, to: Option<&K>) -> Result<TypedIterator<'_, K, V>> {
        let from = from.map(|k| self.key(k)).transpose()?;
        let to = to.map(|k| self.key(k)).transpose()?;
        Ok(self.typed(self.store.range(from.as_deref(), to.as_deref())?))
    }

    /// Entries with `from <= key <= to` in descending serialized-key order.
    pub fn reverse_range(
        &self,
        from: Option<&K>,
        to: Option<&K>,
    ) -> Result<TypedIterator<'_, K, V>> {
        let from = from.map(|k| self.key(k)).transpose()?;
        let to = to.map(|k| self.key(k)).transpose()?;
        Ok(self.typed(self.store.reverse_range(from.as_deref(), to.as_deref())?))
    }

    /// Entries whose serialized key starts with the serialized `prefix`.
    pub fn prefix_scan<P>(
        &self,
        prefix: &P,
        prefix_serde: &dyn Serde<P>,
    ) -> Result<TypedIterator<'_, K, V>> {
        let prefix = prefix_serde
            .serialize(prefix)
            .map_err(|e| self.serde_error(e))?;
        Ok(self.typed(self.store.prefix_scan(&prefix)?))
    }

    /// Every entry.
    pub fn all(&self) -> Result<TypedIterator<'_, K, V>> {
        Ok(self.typed(self.store.all()?))
    }

    /// An estimate of the number of entries.
    pub fn approximate_num_entries(&self) -> Result<u64> {
        self.store.approximate_num_entries()
    }

    /// Flushes the store.
    pub fn flush(&mut self) -> Result<()> {
        self.store.flush()
    }

    /// Closes the store.
    pub fn close(&mut self) -> Result<()> {
        self.store.close()
    }
}
