//! Window and session stores in a topology: their byte-store suppliers,
//! their builders, and typed handles for processors and queries.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use state_stores::{
    CachingSessionStore, CachingWindowStore, ChangeLoggingSessionStore, ChangeLoggingWindowStore,
    ChangelogSink, InMemorySessionStore, InMemoryWindowStore, RocksDbSessionStore,
    RocksDbWindowStore, SessionStore, StateRestoreCallback, WindowStore,
};

use super::{StoreBuilder, StoreContext, StoreHandle, StoreInstance, lock};
use crate::error::{Result, StreamsError};
use crate::serde::SerdeRef;
use crate::window::{Window, Windowed};

/// A window store that can also be restored from its changelog.
pub trait RestorableWindowStore: WindowStore + StateRestoreCallback + Send {}

impl<T: WindowStore + StateRestoreCallback + Send> RestorableWindowStore for T {}

/// A session store that can also be restored from its changelog.
pub trait RestorableSessionStore: SessionStore + StateRestoreCallback + Send {}

impl<T: SessionStore + StateRestoreCallback + Send> RestorableSessionStore for T {}

/// Makes the byte window store of each task (Kafka Streams'
/// `WindowBytesStoreSupplier`).
pub trait WindowBytesStoreSupplier: Send + Sync + 'static {
    /// The store's name.
    fn name(&self) -> &str;
    /// Whether it keeps data on disk.
    fn persistent(&self) -> bool;
    /// How long windows are kept, in ms, counted back from the latest
    /// window start the store has seen.
    fn retention_period(&self) -> i64;
    /// The size of the windows it holds, in ms (a fetch's windows end at
    /// their start plus this).
    fn window_size(&self) -> i64;
    /// Whether every put is kept, even to the same key and window (for
    /// stream-stream joins).
    fn retain_duplicates(&self) -> bool;
    /// One task's byte store.
    fn get(&self, ctx: &StoreContext<'_>) -> Result<Box<dyn RestorableWindowStore>>;
}

/// Makes the byte session store of each task (Kafka Streams'
/// `SessionBytesStoreSupplier`).
pub trait SessionBytesStoreSupplier: Send + Sync + 'static {
    /// The store's name.
    fn name(&self) -> &str;
    /// Whether it keeps data on disk.
    fn persistent(&self) -> bool;
    /// How long sessions are kept after they end, in ms.
    fn retention_period(&self) -> i64;
    /// One task's byte store.
    fn get(&self, ctx: &StoreContext<'_>) -> Result<Box<dyn RestorableSessionStore>>;
}

pub(crate) use crate::window::millis;

pub(crate) struct WindowSupplier {
    pub(crate) name: String,
    pub(crate) persistent: bool,
    pub(crate) retention: i64,
    pub(crate) size: i64,
    pub(crate) duplicates: bool,
}

impl WindowSupplier {
    pub(crate) fn new(
        name: String,
        persistent: bool,
        retention: Duration,
        size: Duration,
        duplicates: bool,
    ) -> Result<Self> {
        let (retention, size) = (
            millis("retention", retention)?,
            millis("window size", size)?,
        );
        if size < 1 || retention < size {
            return Err(StreamsError::Config(format!(
                "the window store `{name}` keeps windows of {size} ms for {retention} ms: the size must be at least 1 ms and the retention at least the size"
            )));
        }
        Ok(WindowSupplier {
            name,
            persistent,
            retention,
            size,
            duplicates,
        })
    }
}

impl WindowBytesStoreSupplier for WindowSupplier {
    fn name(&self) -> &str {
        &self.name
    }
    fn persistent(&self) -> bool {
        self.persistent
    }
    fn retention_period(&self) -> i64 {
        self.retention
    }
    fn window_size(&self) -> i64 {
        self.size
    }
    fn retain_duplicates(&self) -> bool {
        self.duplicates
    }
    fn get(&self, ctx: &StoreContext<'_>) -> Result<Box<dyn RestorableWindowStore>> {
        let (name, dir, retention) = (self.name.clone(), ctx.store_dir(&self.name), self.retention);
        Ok(match (self.persistent, self.duplicates) {
            (true, false) => Box::new(RocksDbWindowStore::open(name, dir, retention)?),
            (true, true) => Box::new(RocksDbWindowStore::open_with_duplicates(
                name, dir, retention,
            )?),
            (false, false) => Box::new(InMemoryWindowStore::new(name, retention)),
            (false, true) => Box::new(InMemoryWindowStore::new_with_duplicates(name, retention)),
        })
    }
}

pub(crate) struct SessionSupplier {
    pub(crate) name: String,
    pub(crate) persistent: bool,
    pub(crate) retention: i64,
}

impl SessionBytesStoreSupplier for SessionSupplier {
    fn name(&self) -> &str {
        &self.name
    }
    fn persistent(&self) -> bool {
        self.persistent
    }
    fn retention_period(&self) -> i64 {
        self.retention
    }
    fn get(&self, ctx: &StoreContext<'_>) -> Result<Box<dyn RestorableSessionStore>> {
        Ok(if self.persistent {
            Box::new(RocksDbSessionStore::open(
                self.name.clone(),
                ctx.store_dir(&self.name),
                self.retention,
            )?)
        } else {
            Box::new(InMemorySessionStore::new(self.name.clone(), self.retention))
        })
    }
}

/// What a window or session store's typed handle needs: its serdes and,
/// for windows, their size.
pub(crate) struct WindowedSerdes<K, V> {
    pub(crate) keys: SerdeRef<K>,
    pub(crate) values: SerdeRef<V>,
    pub(crate) window_size: i64,
    /// Whether stored values carry the timestamp of their latest record
    /// first (8 bytes, big-endian), as Kafka Streams' timestamped window
    /// stores keep them: the DSL's windowed aggregations do.
    pub(crate) timestamped: bool,
}

/// Builds a typed window store: the supplier's byte store, optionally
/// logged to a changelog (Kafka Streams' `WindowStoreBuilder`).
pub struct WindowStoreBuilder<K, V> {
    supplier: Arc<dyn WindowBytesStoreSupplier>,
    keys: SerdeRef<K>,
    values: SerdeRef<V>,
    logging: bool,
    cache_bytes: Option<usize>,
    timestamped: bool,
}

impl<K: 'static, V: 'static> WindowStoreBuilder<K, V> {
    /// A builder with logging on and caching off.
    pub fn new(
        supplier: Arc<dyn WindowBytesStoreSupplier>,
        keys: SerdeRef<K>,
        values: SerdeRef<V>,
    ) -> Self {
        WindowStoreBuilder {
            supplier,
            keys,
            values,
            logging: true,
            cache_bytes: None,
            timestamped: false,
        }
    }

    /// Keep each value with the timestamp of its latest record, as Kafka
    /// Streams' `timestampedWindowStoreBuilder` does (stored and logged as
    /// the timestamp, 8 bytes big-endian, then the value). Plain reads
    /// through [`WindowStoreHandle`] see the values alone.
    pub fn timestamped(mut self) -> Self {
        self.timestamped = true;
        self
    }

    logging_and_caching_options!();
}

impl<K: 'static, V: 'static> StoreBuilder for WindowStoreBuilder<K, V> {
    fn name(&self) -> &str {
        self.supplier.name()
    }
    fn logging_enabled(&self) -> bool {
        self.logging
    }
    fn persistent(&self) -> bool {
        self.supplier.persistent()
    }
    fn build(
        &self,
        ctx: &StoreContext<'_>,
        changelog: Option<Box<dyn ChangelogSink>>,
    ) -> Result<StoreInstance> {
        let mut store = self.supplier.get(ctx)?;
        if let Some(sink) = changelog {
            store = Box::new(ChangeLoggingWindowStore::new(store, sink));
        }
        // A cache would fold duplicates together.
        if let Some(bytes) = self.cache_bytes
            && !self.supplier.retain_duplicates()
        {
            store = Box::new(CachingWindowStore::new(store, bytes));
        }
        Ok(StoreInstance::Window(store))
    }
    fn serdes(&self) -> Option<Arc<dyn Any + Send + Sync>> {
        Some(Arc::new(WindowedSerdes {
            keys: self.keys.clone(),
            values: self.values.clone(),
            window_size: self.supplier.window_size(),
            timestamped: self.timestamped,
        }))
    }
}

/// Builds a typed session store: the supplier's byte store, optionally
/// logged to a changelog (Kafka Streams' `SessionStoreBuilder`).
pub struct SessionStoreBuilder<K, V> {
    supplier: Arc<dyn SessionBytesStoreSupplier>,
    keys: SerdeRef<K>,
    values: SerdeRef<V>,
    logging: bool,
    cache_bytes: Option<usize>,
}

impl<K: 'static, V: 'static> SessionStoreBuilder<K, V> {
    /// A builder with logging on and caching off.
    pub fn new(
        supplier: Arc<dyn SessionBytesStoreSupplier>,
        keys: SerdeRef<K>,
        values: SerdeRef<V>,
    ) -> Self {
        SessionStoreBuilder {
            supplier,
            keys,
            values,
            logging: true,
            cache_bytes: None,
        }
    }

    logging_and_caching_options!();
}

impl<K: 'static, V: 'static> StoreBuilder for SessionStoreBuilder<K, V> {
    fn name(&self) -> &str {
        self.supplier.name()
    }
    fn logging_enabled(&self) -> bool {
        self.logging
    }
    fn persistent(&self) -> bool {
        self.supplier.persistent()
    }
    fn build(
        &self,
        ctx: &StoreContext<'_>,
        changelog: Option<Box<dyn ChangelogSink>>,
    ) -> Result<StoreInstance> {
        let mut store = self.supplier.get(ctx)?;
        if let Some(sink) = changelog {
            store = Box::new(ChangeLoggingSessionStore::new(store, sink));
        }
        if let Some(bytes) = self.cache_bytes {
            store = Box::new(CachingSessionStore::new(store, bytes));
        }
        Ok(StoreInstance::Session(store))
    }
    fn serdes(&self) -> Option<Arc<dyn Any + Send + Sync>> {
        Some(Arc::new(WindowedSerdes {
            keys: self.keys.clone(),
            values: self.values.clone(),
            window_size: 0,
            timestamped: false,
        }))
    }
}

fn typed_serdes<'a, K: 'static, V: 'static>(
    handle: &StoreHandle,
    serdes: &'a (dyn Any + Send + Sync),
    kind: &str,
) -> Result<&'a WindowedSerdes<K, V>> {
    serdes
        .downcast_ref::<WindowedSerdes<K, V>>()
        .ok_or_else(|| {
            handle.access_error(format!(
                "asked for as a {kind} store of {} to {}, which is not what it is",
                std::any::type_name::<K>(),
                std::any::type_name::<V>()
            ))
        })
}

fn serialize<T>(serde: &SerdeRef<T>, value: &T, store: &str) -> Result<Vec<u8>> {
    serde
        .serialize(value)
        .map_err(|e| StreamsError::StoreAccess {
            name: store.to_owned(),
            message: format!("serializing: {e}"),
        })
}

fn deserialize<T>(serde: &SerdeRef<T>, bytes: &[u8], store: &str) -> Result<T> {
    serde
        .deserialize(bytes)
        .map_err(|e| StreamsError::StoreAccess {
            name: store.to_owned(),
            message: format!("reading a stored entry: {e}"),
        })
}

/// Typed access to one task's window store (Kafka Streams' `WindowStore`
/// as a processor or a query sees it). Cheap to clone; each call locks the
/// store briefly, and fetches return their entries collected.
pub struct WindowStoreHandle<K, V> {
    handle: StoreHandle,
    keys: SerdeRef<K>,
    values: SerdeRef<V>,
    size: i64,
    timestamped: bool,
}

impl<K, V> Clone for WindowStoreHandle<K, V> {
    fn clone(&self) -> Self {
        WindowStoreHandle {
            handle: self.handle.clone(),
            keys: self.keys.clone(),
            values: self.values.clone(),
            size: self.size,
            timestamped: self.timestamped,
        }
    }
}

impl<K: 'static, V: 'static> WindowStoreHandle<K, V> {
    pub(crate) fn new(handle: StoreHandle, serdes: &(dyn Any + Send + Sync)) -> Result<Self> {
        let s = typed_serdes::<K, V>(&handle, serdes, "window")?;
        Ok(WindowStoreHandle {
            keys: s.keys.clone(),
            values: s.values.clone(),
            size: s.window_size,
            timestamped: s.timestamped,
            handle,
        })
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        &self.handle.name
    }

    /// The size of the store's windows, in ms.
    pub fn window_size(&self) -> i64 {
        self.size
    }

    fn with<R>(
        &self,
        f: impl FnOnce(&mut dyn RestorableWindowStore) -> state_stores::Result<R>,
    ) -> Result<R> {
        match &mut *lock(&self.handle.cell) {
            StoreInstance::Window(store) => Ok(f(&mut **store)?),
            _ => Err(self.handle.access_error("is not a window store".into())),
        }
    }

    /// Puts `value` (`None`: deletes) for `key` in the window starting at
    /// `window_start`. A write to a window older than the retention is
    /// ignored. In a timestamped store the value's timestamp is unknown
    /// (-1), as Kafka Streams writes through a plain view.
    pub fn put(&self, key: &K, value: Option<&V>, window_start: i64) -> Result<()> {
        self.put_timestamped(key, value.map(|v| (v, -1)), window_start)
    }

    /// Puts `value` with the timestamp of its latest record (`None`:
    /// deletes). The timestamp is kept only by a timestamped store.
    pub fn put_timestamped(
        &self,
        key: &K,
        value: Option<(&V, i64)>,
        window_start: i64,
    ) -> Result<()> {
        let key = serialize(&self.keys, key, self.name())?;
        let value = value
            .map(|(v, timestamp)| {
                let mut out = Vec::new();
                if self.timestamped {
                    out.extend_from_slice(&timestamp.to_be_bytes());
                }
                self.values
                    .serialize_into(v, &mut out)
                    .map_err(|e| self.handle.access_error(format!("serializing: {e}")))?;
                Ok::<_, StreamsError>(out)
            })
            .transpose()?;
        self.with(|s| s.put(&key, value.as_deref(), window_start))
    }

    /// A stored value and its timestamp (-1 in a store that keeps none).
    fn value(&self, bytes: &[u8]) -> Result<(V, i64)> {
        if !self.timestamped {
            return Ok((deserialize(&self.values, bytes, self.name())?, -1));
        }
        let Some((timestamp, value)) = bytes.split_first_chunk::<8>() else {
            return Err(self.handle.access_error(format!(
                "a timestamped value has at least 8 bytes, not {}",
                bytes.len()
            )));
        };
        Ok((
            deserialize(&self.values, value, self.name())?,
            i64::from_be_bytes(*timestamp),
        ))
    }

    /// The value of `key` in the window starting at `window_start`.
    pub fn fetch(&self, key: &K, window_start: i64) -> Result<Option<V>> {
        Ok(self.fetch_timestamped(key, window_start)?.map(|(v, _)| v))
    }

    /// The value of `key` in the window starting at `window_start`, with
    /// the timestamp of its latest record (-1 when the store keeps none).
    pub fn fetch_timestamped(&self, key: &K, window_start: i64) -> Result<Option<(V, i64)>> {
        let key = serialize(&self.keys, key, self.name())?;
        self.with(|s| s.fetch(&key, window_start))?
            .map(|bytes| self.value(&bytes))
            .transpose()
    }

    /// `key`'s windows starting from `from` to `to` (inclusive), earliest
    /// first, as (window start, value).
    pub fn fetch_range(&self, key: &K, from: i64, to: i64) -> Result<Vec<(i64, V)>> {
        Ok(self
            .fetch_range_timestamped(key, from, to)?
            .into_iter()
            .map(|(start, value, _)| (start, value))
            .collect())
    }

    /// [`WindowStoreHandle::fetch_range`] with each value's timestamp.
    pub fn fetch_range_timestamped(
        &self,
        key: &K,
        from: i64,
        to: i64,
    ) -> Result<Vec<(i64, V, i64)>> {
        let key = serialize(&self.keys, key, self.name())?;
        let entries: Vec<state_stores::WindowedKeyValue> =
            self.with(|s| s.fetch_range(&key, from, to)?.collect())?;
        entries
            .into_iter()
            .map(|((_, start), bytes)| {
                let (value, timestamp) = self.value(&bytes)?;
                Ok((start, value, timestamp))
            })
            .collect()
    }

    /// Every key's windows starting from `from` to `to` (inclusive), by
    /// start, then key.
    pub fn fetch_all(&self, from: i64, to: i64) -> Result<Vec<(Windowed<K>, V)>> {
        let entries = self.with(|s| s.fetch_all(from, to)?.collect())?;
        self.typed(entries)
    }

    /// Every window the store keeps.
    pub fn all(&self) -> Result<Vec<(Windowed<K>, V)>> {
        self.fetch_all(i64::MIN, i64::MAX)
    }

    fn typed(&self, entries: Vec<state_stores::WindowedKeyValue>) -> Result<Vec<(Windowed<K>, V)>> {
        entries
            .into_iter()
            .map(|((key, start), bytes)| {
                let window = Window::new(start, start.saturating_add(self.size));
                Ok((
                    Windowed::new(deserialize(&self.keys, &key, self.name())?, window),
                    self.value(&bytes)?.0,
                ))
            })
            .collect()
    }
}

/// Typed access to one task's session store (Kafka Streams'
/// `SessionStore`). Sessions are keys with their window: start and end,
/// both inclusive.
pub struct SessionStoreHandle<K, V> {
    handle: StoreHandle,
    keys: SerdeRef<K>,
    values: SerdeRef<V>,
}

impl<K, V> Clone for SessionStoreHandle<K, V> {
    fn clone(&self) -> Self {
        SessionStoreHandle {
            handle: self.handle.clone(),
            keys: self.keys.clone(),
            values: self.values.clone(),
        }
    }
}

impl<K: 'static, V: 'static> SessionStoreHandle<K, V> {
    pub(crate) fn new(handle: StoreHandle, serdes: &(dyn Any + Send + Sync)) -> Result<Self> {
        let s = typed_serdes::<K, V>(&handle, serdes, "session")?;
        Ok(SessionStoreHandle {
            keys: s.keys.clone(),
            values: s.values.clone(),
            handle,
        })
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        &self.handle.name
    }

    fn with<R>(
        &self,
        f: impl FnOnce(&mut dyn RestorableSessionStore) -> state_stores::Result<R>,
    ) -> Result<R> {
        match &mut *lock(&self.handle.cell) {
            StoreInstance::Session(store) => Ok(f(&mut **store)?),
            _ => Err(self.handle.access_error("is not a session store".into())),
        }
    }

    /// Puts `value` for the session `session`.
    pub fn put(&self, session: &Windowed<K>, value: &V) -> Result<()> {
        let key = serialize(&self.keys, &session.key, self.name())?;
        let value = serialize(&self.values, value, self.name())?;
        let Window { start, end } = session.window;
        self.with(|s| s.put(&key, start, end, Some(&value)))
    }

    /// Removes the session `session`.
    pub fn remove(&self, session: &Windowed<K>) -> Result<()> {
        let key = serialize(&self.keys, &session.key, self.name())?;
        let Window { start, end } = session.window;
        self.with(|s| s.put(&key, start, end, None))
    }

    /// The value of `key`'s session from `start` to `end`.
    pub fn fetch_session(&self, key: &K, start: i64, end: i64) -> Result<Option<V>> {
        let key = serialize(&self.keys, key, self.name())?;
        self.with(|s| s.fetch_session(&key, start, end))?
            .map(|bytes| deserialize(&self.values, &bytes, self.name()))
            .transpose()
    }

    /// `key`'s sessions that end at or after `earliest_end` and start at or
    /// before `latest_start`: those a record could merge with.
    pub fn find_sessions(
        &self,
        key: &K,
        earliest_end: i64,
        latest_start: i64,
    ) -> Result<Vec<(Windowed<K>, V)>> {
        let key = serialize(&self.keys, key, self.name())?;
        let entries =
            self.with(|s| s.find_sessions(&key, earliest_end, latest_start)?.collect())?;
        self.typed(entries)
    }

    /// Every session of `key` the store keeps, earliest first.
    pub fn fetch(&self, key: &K) -> Result<Vec<(Windowed<K>, V)>> {
        let key = serialize(&self.keys, key, self.name())?;
        let entries = self.with(|s| s.fetch(&key)?.collect())?;
        self.typed(entries)
    }

    fn typed(&self, entries: Vec<state_stores::SessionKeyValue>) -> Result<Vec<(Windowed<K>, V)>> {
        entries
            .into_iter()
            .map(|((key, start, end), value)| {
                Ok((
                    Windowed::new(
                        deserialize(&self.keys, &key, self.name())?,
                        Window::new(start, end),
                    ),
                    deserialize(&self.values, &value, self.name())?,
                ))
            })
            .collect()
    }
}
