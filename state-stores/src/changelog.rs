//! Change logging and restoration.
//!
//! [`ChangeLoggingKeyValueStore`] wraps any key-value store and reports every
//! write and delete to a [`ChangelogSink`]. The runtime's sink sends them to
//! the store's compacted changelog topic; this crate knows nothing of Kafka.
//! After a crash, the runtime reads the changelog back and hands it to the
//! store in batches through [`StateRestoreCallback::restore_batch`], which
//! writes to the inner store without logging the changes a second time.

use crate::store::{KeyValueIterator, Write};
use crate::{BoxError, KeyValueStore, ReadOnlyKeyValueStore, Result, StoreError};

/// Where a logged store reports its changes: one call per write, `None` for
/// a delete. Implementations should be cheap per call (buffer, then send);
/// the runtime flushes them before it commits.
pub trait ChangelogSink: Send {
    /// Records that `key` now has `value` (`None`: deleted).
    fn log_change(&mut self, key: &[u8], value: Option<&[u8]>)
    -> std::result::Result<(), BoxError>;
}

impl<F> ChangelogSink for F
where
    F: FnMut(&[u8], Option<&[u8]>) -> std::result::Result<(), BoxError> + Send,
{
    fn log_change(
        &mut self,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> std::result::Result<(), BoxError> {
        self(key, value)
    }
}

/// Sends one change of store `store` to `sink`; a refusal is a
/// [`StoreError::Changelog`] naming the store. Every logged store writes
/// through it.
pub(crate) fn log_change(
    sink: &mut dyn ChangelogSink,
    store: &str,
    key: &[u8],
    value: Option<&[u8]>,
) -> Result<()> {
    sink.log_change(key, value)
        .map_err(|source| StoreError::Changelog {
            store: store.to_owned(),
            source,
        })
}

/// Applies changelog records to a store while it is being restored.
/// As Kafka Streams' `StateRestoreCallback`, but batch-only.
pub trait StateRestoreCallback {
    /// Applies a batch of changelog records, in order: `Some` puts, `None` deletes.
    fn restore_batch(&mut self, records: &[Write<'_>]) -> Result<()>;
}

/// A key-value store that can also be restored from its changelog.
pub trait RestorableKeyValueStore: KeyValueStore + StateRestoreCallback {}

impl<S: KeyValueStore + StateRestoreCallback + ?Sized> RestorableKeyValueStore for S {}

impl<S: StateRestoreCallback + ?Sized> StateRestoreCallback for Box<S> {
    fn restore_batch(&mut self, records: &[Write<'_>]) -> Result<()> {
        (**self).restore_batch(records)
    }
}

impl<S: StateRestoreCallback + ?Sized> StateRestoreCallback for &mut S {
    fn restore_batch(&mut self, records: &[Write<'_>]) -> Result<()> {
        (**self).restore_batch(records)
    }
}

impl StateRestoreCallback for crate::InMemoryKeyValueStore {
    fn restore_batch(&mut self, records: &[Write<'_>]) -> Result<()> {
        restore_key_value_batch(self, records)
    }
}

impl StateRestoreCallback for crate::RocksDbStore {
    fn restore_batch(&mut self, records: &[Write<'_>]) -> Result<()> {
        restore_key_value_batch(self, records)
    }
}

/// Restores a plain key-value store: one batched write per changelog batch.
pub fn restore_key_value_batch<S: KeyValueStore + ?Sized>(
    store: &mut S,
    records: &[Write<'_>],
) -> Result<()> {
    store.put_all(records)
}

/// A key-value store whose every change is also reported to a [`ChangelogSink`].
pub struct ChangeLoggingKeyValueStore<S> {
    inner: S,
    sink: Box<dyn ChangelogSink>,
}

impl<S: KeyValueStore> ChangeLoggingKeyValueStore<S> {
    /// Wraps `inner`, reporting its changes to `sink`.
    pub fn new(inner: S, sink: Box<dyn ChangelogSink>) -> Self {
        ChangeLoggingKeyValueStore { inner, sink }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Unwraps the store.
    pub fn into_inner(self) -> S {
        self.inner
    }

    fn log(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        log_change(&mut *self.sink, self.inner.name(), key, value)
    }
}

impl<S: KeyValueStore> StateRestoreCallback for ChangeLoggingKeyValueStore<S> {
    fn restore_batch(&mut self, records: &[Write<'_>]) -> Result<()> {
        restore_key_value_batch(&mut self.inner, records)
    }
}

crate::store::state_store_via_inner!(ChangeLoggingKeyValueStore over KeyValueStore);

impl<S: KeyValueStore> ReadOnlyKeyValueStore for ChangeLoggingKeyValueStore<S> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.inner.get(key)
    }
    fn get_into(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        self.inner.get_into(key, out)
    }
    fn range(&self, from: Option<&[u8]>, to: Option<&[u8]>) -> Result<KeyValueIterator<'_>> {
        self.inner.range(from, to)
    }
    fn reverse_range(
        &self,
        from: Option<&[u8]>,
        to: Option<&[u8]>,
    ) -> Result<KeyValueIterator<'_>> {
        self.inner.reverse_range(from, to)
    }
    fn prefix_scan(&self, prefix: &[u8]) -> Result<KeyValueIterator<'_>> {
        self.inner.prefix_scan(prefix)
    }
    fn approximate_num_entries(&self) -> Result<u64> {
        self.inner.approximate_num_entries()
    }
}

impl<S: KeyValueStore> KeyValueStore for ChangeLoggingKeyValueStore<S> {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.inner.put(key, value)?;
        self.log(key, Some(value))
    }

    fn put_if_absent(&mut self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>> {
        let existing = self.inner.put_if_absent(key, value)?;
        if existing.is_none() {
            self.log(key, Some(value))?;
        }
        Ok(existing)
    }

    fn put_all(&mut self, writes: &[Write<'_>]) -> Result<()> {
        self.inner.put_all(writes)?;
        self.log_all(writes)
    }

    fn delete(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let old = self.inner.delete(key)?;
        // Logged even when the key was absent, as Kafka Streams does: the
        // tombstone is harmless and keeps the changelog compactable.
        self.log(key, None)?;
        Ok(old)
    }

    fn log_all(&mut self, writes: &[Write<'_>]) -> Result<()> {
        for (key, value) in writes {
            self.log(key, *value)?;
        }
        Ok(())
    }

    fn put_all_logged(&mut self, writes: &[Write<'_>]) -> Result<()> {
        self.inner.put_all(writes)
    }
}
