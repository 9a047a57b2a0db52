//! State stores in a topology: how they are built per task ([`Stores`],
//! [`StoreBuilder`]), and how processors reach them ([`KeyValueStoreHandle`],
//! [`StoreHandle`]).
//!
//! A store belongs to one task (one partition). Handles lock the store for
//! each call, so interactive queries can read it while the task runs.

use std::any::Any;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

pub use state_stores::{
    CachingKeyValueStore, ChangeLoggingKeyValueStore, ChangelogSink, InMemoryKeyValueStore,
    KeyValueStore, ReadOnlyKeyValueStore, RestorableKeyValueStore, RocksDbStore,
    StateRestoreCallback, StateStore, StoreError, TypedKeyValueStore, Write,
};

use crate::TaskId;
use crate::error::{Result, StreamsError};
use crate::serde::SerdeRef;

/// The logging and caching options every store builder has (its
/// `logging` and `cache_bytes` fields).
macro_rules! logging_and_caching_options {
    () => {
        /// Do not write a changelog: the store starts empty after a restart
        /// (unless it is persistent and its files survive).
        pub fn with_logging_disabled(mut self) -> Self {
            self.logging = false;
            self
        }

        /// Write a changelog (the default).
        pub fn with_logging_enabled(mut self) -> Self {
            self.logging = true;
            self
        }

        /// Put a record cache of `max_bytes` in front of the store, so
        /// repeated writes to a key (or window, or session) between commits
        /// reach the store and its changelog once. A window store that
        /// keeps duplicates takes no cache.
        pub fn with_caching_enabled(mut self, max_bytes: usize) -> Self {
            self.cache_bytes = Some(max_bytes);
            self
        }
    };
}

mod windowed;

pub use windowed::{
    RestorableSessionStore, RestorableWindowStore, SessionBytesStoreSupplier, SessionStoreBuilder,
    SessionStoreHandle, WindowBytesStoreSupplier, WindowStoreBuilder, WindowStoreHandle,
};

/// What a store builder gets to build one task's instance.
#[derive(Debug, Clone)]
pub struct StoreContext<'a> {
    /// The application's id.
    pub application_id: &'a str,
    /// The task the store belongs to.
    pub task: TaskId,
    /// The task's state directory (`state.dir/<application.id>/<task>`).
    pub task_dir: &'a Path,
}

impl StoreContext<'_> {
    /// Where a persistent store of this name keeps its files.
    pub fn store_dir(&self, name: &str) -> PathBuf {
        self.task_dir.join("rocksdb").join(name)
    }
}

/// A store that is not a key-value store: anything that has a life cycle
/// and can be restored from its changelog.
pub trait CustomStore: StateStore + StateRestoreCallback + Any {}

impl<T: StateStore + StateRestoreCallback + Any> CustomStore for T {}

/// One task's instance of a store.
pub enum StoreInstance {
    /// A key-value store (with its logging and caching layers).
    KeyValue(Box<dyn RestorableKeyValueStore>),
    /// A window store (with its logging and caching layers).
    Window(Box<dyn RestorableWindowStore>),
    /// A session store (with its logging and caching layers).
    Session(Box<dyn RestorableSessionStore>),
    /// A store of the application's own kind.
    Custom(Box<dyn CustomStore>),
}

impl StoreInstance {
    /// The store's life cycle.
    pub fn state_store(&mut self) -> &mut dyn StateStore {
        match self {
            StoreInstance::KeyValue(store) => &mut **store,
            StoreInstance::Window(store) => &mut **store,
            StoreInstance::Session(store) => &mut **store,
            StoreInstance::Custom(store) => &mut **store,
        }
    }

    /// Applies a changelog batch.
    pub fn restore_batch(&mut self, records: &[Write<'_>]) -> state_stores::Result<()> {
        match self {
            StoreInstance::KeyValue(store) => store.restore_batch(records),
            StoreInstance::Window(store) => store.restore_batch(records),
            StoreInstance::Session(store) => store.restore_batch(records),
            StoreInstance::Custom(store) => store.restore_batch(records),
        }
    }
}

/// Builds a store for each task that uses it (Kafka Streams' `StoreBuilder`).
pub trait StoreBuilder: Send + Sync + 'static {
    /// The store's name, unique in the topology.
    fn name(&self) -> &str;
    /// Whether changes go to a changelog topic `<application.id>-<name>-changelog`.
    fn logging_enabled(&self) -> bool;
    /// Whether the store keeps data on disk.
    fn persistent(&self) -> bool;
    /// Builds one task's instance. `changelog` is given when logging is
    /// enabled; the builder wraps its store so every change reaches it.
    fn build(
        &self,
        ctx: &StoreContext<'_>,
        changelog: Option<Box<dyn ChangelogSink>>,
    ) -> Result<StoreInstance>;
    /// For typed access: the key and value serdes as an
    /// `(SerdeRef<K>, SerdeRef<V>)` behind `Any`; `None` for custom stores.
    fn serdes(&self) -> Option<Arc<dyn Any + Send + Sync>> {
        None
    }
}

/// Makes the byte store of each task (Kafka Streams' `KeyValueBytesStoreSupplier`).
pub trait KeyValueBytesStoreSupplier: Send + Sync + 'static {
    /// The store's name.
    fn name(&self) -> &str;
    /// Whether it keeps data on disk.
    fn persistent(&self) -> bool;
    /// One task's byte store.
    fn get(&self, ctx: &StoreContext<'_>) -> Result<Box<dyn RestorableKeyValueStore>>;
}

struct InMemorySupplier(String);

impl KeyValueBytesStoreSupplier for InMemorySupplier {
    fn name(&self) -> &str {
        &self.0
    }
    fn persistent(&self) -> bool {
        false
    }
    fn get(&self, _: &StoreContext<'_>) -> Result<Box<dyn RestorableKeyValueStore>> {
        Ok(Box::new(InMemoryKeyValueStore::new(self.0.clone())))
    }
}

struct RocksDbSupplier(String);

impl KeyValueBytesStoreSupplier for RocksDbSupplier {
    fn name(&self) -> &str {
        &self.0
    }
    fn persistent(&self) -> bool {
        true
    }
    fn get(&self, ctx: &StoreContext<'_>) -> Result<Box<dyn RestorableKeyValueStore>> {
        Ok(Box::new(RocksDbStore::open(
            self.0.clone(),
            ctx.store_dir(&self.0),
        )?))
    }
}

/// Factories for the built-in stores, named as in Kafka Streams.
#[derive(Debug)]
pub struct Stores;

impl Stores {
    /// A RocksDB byte store named `name`.
    pub fn persistent_key_value_store(
        name: impl Into<String>,
    ) -> Arc<dyn KeyValueBytesStoreSupplier> {
        Arc::new(RocksDbSupplier(name.into()))
    }

    /// An in-memory byte store named `name`.
    pub fn in_memory_key_value_store(
        name: impl Into<String>,
    ) -> Arc<dyn KeyValueBytesStoreSupplier> {
        Arc::new(InMemorySupplier(name.into()))
    }

    /// A RocksDB window store named `name`, keeping windows of
    /// `window_size` for `retention` (at least the size), in time segments
    /// that are dropped whole when they expire. With `retain_duplicates`,
    /// every put is kept (as stream-stream joins need).
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_core::state::Stores;
    ///
    /// let minute = Duration::from_secs(60);
    /// let supplier = Stores::persistent_window_store("clicks", 10 * minute, minute, false)?;
    /// assert_eq!((supplier.retention_period(), supplier.window_size()), (600_000, 60_000));
    /// assert!(Stores::persistent_window_store("bad", minute, 2 * minute, false).is_err());
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn persistent_window_store(
        name: impl Into<String>,
        retention: std::time::Duration,
        window_size: std::time::Duration,
        retain_duplicates: bool,
    ) -> Result<Arc<dyn WindowBytesStoreSupplier>> {
        Ok(Arc::new(windowed::WindowSupplier::new(
            name.into(),
            true,
            retention,
            window_size,
            retain_duplicates,
        )?))
    }

    /// An in-memory window store named `name`; see
    /// [`Stores::persistent_window_store`].
    pub fn in_memory_window_store(
        name: impl Into<String>,
        retention: std::time::Duration,
        window_size: std::time::Duration,
        retain_duplicates: bool,
    ) -> Result<Arc<dyn WindowBytesStoreSupplier>> {
        Ok(Arc::new(windowed::WindowSupplier::new(
            name.into(),
            false,
            retention,
            window_size,
            retain_duplicates,
        )?))
    }

    /// A RocksDB session store named `name`, keeping sessions for
    /// `retention` after they end.
    pub fn persistent_session_store(
        name: impl Into<String>,
        retention: std::time::Duration,
    ) -> Result<Arc<dyn SessionBytesStoreSupplier>> {
        Ok(Arc::new(windowed::SessionSupplier {
            name: name.into(),
            persistent: true,
            retention: windowed::millis("retention", retention)?,
        }))
    }

    /// An in-memory session store named `name`, keeping sessions for
    /// `retention` after they end.
    pub fn in_memory_session_store(
        name: impl Into<String>,
        retention: std::time::Duration,
    ) -> Result<Arc<dyn SessionBytesStoreSupplier>> {
        Ok(Arc::new(windowed::SessionSupplier {
            name: name.into(),
            persistent: false,
            retention: windowed::millis("retention", retention)?,
        }))
    }

    /// A builder of typed window stores over `supplier`: logged, not cached.
    pub fn window_store_builder<K: 'static, V: 'static>(
        supplier: Arc<dyn WindowBytesStoreSupplier>,
        keys: impl state_stores::Serde<K> + 'static,
        values: impl state_stores::Serde<V> + 'static,
    ) -> WindowStoreBuilder<K, V> {
        WindowStoreBuilder::new(supplier, Arc::new(keys), Arc::new(values))
    }

    /// A builder of typed session stores over `supplier`: logged, not cached.
    pub fn session_store_builder<K: 'static, V: 'static>(
        supplier: Arc<dyn SessionBytesStoreSupplier>,
        keys: impl state_stores::Serde<K> + 'static,
        values: impl state_stores::Serde<V> + 'static,
    ) -> SessionStoreBuilder<K, V> {
        SessionStoreBuilder::new(supplier, Arc::new(keys), Arc::new(values))
    }

    /// A builder of typed key-value stores over `supplier`: logged, not cached.
    pub fn key_value_store_builder<K: 'static, V: 'static>(
        supplier: Arc<dyn KeyValueBytesStoreSupplier>,
        keys: impl state_stores::Serde<K> + 'static,
        values: impl state_stores::Serde<V> + 'static,
    ) -> KeyValueStoreBuilder<K, V> {
        KeyValueStoreBuilder::new(supplier, Arc::new(keys), Arc::new(values))
    }
}

/// A shared builder builds as the one it shares (the DSL keeps builders
/// behind an `Arc`).
impl StoreBuilder for Arc<dyn StoreBuilder> {
    fn name(&self) -> &str {
        (**self).name()
    }

    fn logging_enabled(&self) -> bool {
        (**self).logging_enabled()
    }

    fn persistent(&self) -> bool {
        (**self).persistent()
    }

    fn build(
        &self,
        ctx: &StoreContext<'_>,
        changelog: Option<Box<dyn ChangelogSink>>,
    ) -> Result<StoreInstance> {
        (**self).build(ctx, changelog)
    }

    fn serdes(&self) -> Option<Arc<dyn Any + Send + Sync>> {
        (**self).serdes()
    }
}

/// Builds a typed key-value store: the supplier's byte store, optionally
/// logged to a changelog and cached.
pub struct KeyValueStoreBuilder<K, V> {
    supplier: Arc<dyn KeyValueBytesStoreSupplier>,
    keys: SerdeRef<K>,
    values: SerdeRef<V>,
    logging: bool,
    cache_bytes: Option<usize>,
}

impl<K: 'static, V: 'static> KeyValueStoreBuilder<K, V> {
    /// A builder with logging on and caching off.
    pub fn new(
        supplier: Arc<dyn KeyValueBytesStoreSupplier>,
        keys: SerdeRef<K>,
        values: SerdeRef<V>,
    ) -> Self {
        KeyValueStoreBuilder {
            supplier,
            keys,
            values,
            logging: true,
            cache_bytes: None,
        }
    }

    logging_and_caching_options!();
}

impl<K: 'static, V: 'static> StoreBuilder for KeyValueStoreBuilder<K, V> {
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
            store = Box::new(ChangeLoggingKeyValueStore::new(store, sink));
        }
        if let Some(max_bytes) = self.cache_bytes {
            store = Box::new(CachingKeyValueStore::new(store, max_bytes));
        }
        Ok(StoreInstance::KeyValue(store))
    }
    fn serdes(&self) -> Option<Arc<dyn Any + Send + Sync>> {
        Some(Arc::new((self.keys.clone(), self.values.clone())))
    }
}

/// A shared, lockable store instance.
/// A store shared by its task and its queries.
pub type StoreCell = Arc<Mutex<StoreInstance>>;

/// Locks a store.
pub fn lock(cell: &StoreCell) -> MutexGuard<'_, StoreInstance> {
    // A panic while a store was locked leaves it usable: stores keep no
    // invariants across calls that a panic could break half-way.
    cell.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Untyped access to one task's store, for stores of any kind.
#[derive(Clone)]
pub struct StoreHandle {
    pub(crate) name: Arc<str>,
    /// The store.
    pub cell: StoreCell,
}

impl std::fmt::Debug for StoreHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreHandle")
            .field("name", &self.name)
            .finish()
    }
}

impl StoreHandle {
    /// The store's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `f` on the store as its own type `S` (a custom store).
    pub fn with<S: Any, R>(&self, f: impl FnOnce(&mut S) -> R) -> Result<R> {
        self.downcast(&mut lock(&self.cell), f)
    }

    /// [`StoreHandle::with`] if no other thread holds the store now, else
    /// `None` without waiting: a caller can then time the wait it chooses
    /// to make, and read no clock when there is none.
    pub fn try_with<S: Any, R>(&self, f: impl FnOnce(&mut S) -> R) -> Option<Result<R>> {
        let mut guard = match self.cell.try_lock() {
            Ok(guard) => guard,
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        Some(self.downcast(&mut guard, f))
    }

    fn downcast<S: Any, R>(
        &self,
        instance: &mut StoreInstance,
        f: impl FnOnce(&mut S) -> R,
    ) -> Result<R> {
        let any: &mut dyn Any = match instance {
            StoreInstance::Custom(store) => &mut **store,
            StoreInstance::KeyValue(_) | StoreInstance::Window(_) | StoreInstance::Session(_) => {
                return Err(self.access_error(format!(
                    "is a built-in store, not a {}",
                    std::any::type_name::<S>()
                )));
            }
        };
        match any.downcast_mut::<S>() {
            Some(store) => Ok(f(store)),
            None => Err(self.access_error(format!("is not a {}", std::any::type_name::<S>()))),
        }
    }

    /// Runs `f` on the store as a byte key-value store.
    pub fn with_key_value<R>(
        &self,
        f: impl FnOnce(&mut dyn RestorableKeyValueStore) -> R,
    ) -> Result<R> {
        match &mut *lock(&self.cell) {
            StoreInstance::KeyValue(store) => Ok(f(&mut **store)),
            _ => Err(self.access_error("is not a key-value store".into())),
        }
    }

    pub(crate) fn access_error(&self, message: String) -> StreamsError {
        StreamsError::StoreAccess {
            name: self.name.to_string(),
            message,
        }
    }
}

/// Typed access to one task's key-value store. Cheap to clone; each call
/// locks the store briefly. Scans return their entries collected.
pub struct KeyValueStoreHandle<K, V> {
    handle: StoreHandle,
    keys: SerdeRef<K>,
    values: SerdeRef<V>,
}

impl<K, V> Clone for KeyValueStoreHandle<K, V> {
    fn clone(&self) -> Self {
        KeyValueStoreHandle {
            handle: self.handle.clone(),
            keys: self.keys.clone(),
            values: self.values.clone(),
        }
    }
}

impl<K: 'static, V: 'static> KeyValueStoreHandle<K, V> {
    pub(crate) fn new(handle: StoreHandle, serdes: &(dyn Any + Send + Sync)) -> Result<Self> {
        let Some((keys, values)) = serdes.downcast_ref::<(SerdeRef<K>, SerdeRef<V>)>() else {
            return Err(StreamsError::StoreAccess {
                name: handle.name.to_string(),
                message: format!(
                    "asked for as a store of {} to {}, which are not its types",
                    std::any::type_name::<K>(),
                    std::any::type_name::<V>()
                ),
            });
        };
        Ok(KeyValueStoreHandle {
            keys: keys.clone(),
            values: values.clone(),
            handle,
        })
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        &self.handle.name
    }

    /// Runs `f` on a typed view of the locked store.
    fn typed<R>(
        &self,
        f: impl FnOnce(
            &mut TypedKeyValueStore<
                &mut dyn RestorableKeyValueStore,
                K,
                V,
                &(dyn state_stores::Serde<K> + 'static),
                &(dyn state_stores::Serde<V> + 'static),
            >,
        ) -> state_stores::Result<R>,
    ) -> Result<R> {
        // Borrowed serdes: cloning the Arcs cost two atomic increments and
        // two decrements on every get and put.
        let (keys, values) = (&*self.keys, &*self.values);
        self.handle
            .with_key_value(|store| f(&mut TypedKeyValueStore::borrowing(store, keys, values)))?
            .map_err(Into::into)
    }

    /// The value of `key`.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        self.typed(|s| s.get(key))
    }

    /// Sets `key` to `value`.
    pub fn put(&self, key: &K, value: &V) -> Result<()> {
        self.typed(|s| s.put(key, value))
    }

    /// Sets `key` to `value` unless it has one; returns the existing value.
    pub fn put_if_absent(&self, key: &K, value: &V) -> Result<Option<V>> {
        self.typed(|s| s.put_if_absent(key, value))
    }

    /// Applies puts and deletes (`None`) as one batch.
    pub fn put_all(&self, entries: &[(K, Option<V>)]) -> Result<()> {
        self.typed(|s| s.put_all(entries))
    }

    /// Removes `key`; returns its value.
    pub fn delete(&self, key: &K) -> Result<Option<V>> {
        self.typed(|s| s.delete(key))
    }

    /// Entries with `from <= key <= to`, ascending by serialized key.
    pub fn range(&self, from: Option<&K>, to: Option<&K>) -> Result<Vec<(K, V)>> {
        self.typed(|s| s.range(from, to)?.collect())
    }

    /// At most `limit` entries with `from <= key`, ascending by
    /// serialized key: the store is locked for this page only.
    pub fn range_page(&self, from: Option<&K>, limit: usize) -> Result<Vec<(K, V)>> {
        self.typed(|s| s.range(from, None)?.take(limit).collect())
    }

    /// `key` as the store serializes it (and orders it).
    pub fn serialize_key(&self, key: &K) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.keys
            .serialize_into(key, &mut out)
            .map_err(|e| StreamsError::StoreAccess {
                name: self.handle.name.to_string(),
                message: format!("serializing a key: {e}"),
            })?;
        Ok(out)
    }

    /// Entries with `from <= key <= to`, descending by serialized key.
    pub fn reverse_range(&self, from: Option<&K>, to: Option<&K>) -> Result<Vec<(K, V)>> {
        self.typed(|s| s.reverse_range(from, to)?.collect())
    }

    /// Entries whose serialized key starts with the serialized `prefix`.
    pub fn prefix_scan<P>(
        &self,
        prefix: &P,
        prefix_serde: &dyn state_stores::Serde<P>,
    ) -> Result<Vec<(K, V)>> {
        self.typed(|s| s.prefix_scan(prefix, prefix_serde)?.collect())
    }

    /// Every entry.
    pub fn all(&self) -> Result<Vec<(K, V)>> {
        self.typed(|s| s.all()?.collect())
    }

    /// An estimate of the number of entries.
    pub fn approximate_num_entries(&self) -> Result<u64> {
        self.typed(|s| s.approximate_num_entries())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use state_stores::InMemoryKeyValueStore;

    #[test]
    fn try_with_runs_on_a_free_store_and_gives_up_on_a_held_one() {
        let store = InMemoryKeyValueStore::new("numbers");
        let handle = StoreHandle {
            name: "numbers".into(),
            cell: Arc::new(Mutex::new(StoreInstance::Custom(Box::new(store)))),
        };
        let name = |s: &mut InMemoryKeyValueStore| s.name().to_owned();
        assert_eq!(handle.try_with(name).unwrap().unwrap(), "numbers");
        let held = lock(&handle.cell);
        std::thread::scope(|s| {
            let other = s.spawn(|| handle.try_with(name).map(|r| r.is_ok()));
            assert_eq!(other.join().unwrap(), None, "held by this thread");
        });
        drop(held);
        assert!(
            handle.try_with(|_: &mut String| ()).unwrap().is_err(),
            "the wrong type is an error, as with `with`"
        );
        assert_eq!(handle.with(name).unwrap(), "numbers");
    }
}

/// A store of a task, as the task and its queries see it.
#[derive(Clone)]
pub struct TaskStore {
    /// The store itself.
    pub handle: StoreHandle,
    /// A key-value store's serdes (type-erased); `None` for custom stores.
    pub serdes: Option<Arc<dyn Any + Send + Sync>>,
    /// The changelog topic, when the store is logged.
    pub changelog: Option<String>,
    /// Whether the store keeps its data on disk.
    pub persistent: bool,
}

impl TaskStore {
    /// The store as a typed key-value store.
    pub fn key_value<K: 'static, V: 'static>(&self) -> Result<KeyValueStoreHandle<K, V>> {
        let Some(serdes) = &self.serdes else {
            return Err(self.handle.access_error("is not a key-value store".into()));
        };
        KeyValueStoreHandle::new(self.handle.clone(), &**serdes)
    }

    /// The store as a typed window store.
    pub fn window<K: 'static, V: 'static>(&self) -> Result<WindowStoreHandle<K, V>> {
        let Some(serdes) = &self.serdes else {
            return Err(self.handle.access_error("is not a window store".into()));
        };
        WindowStoreHandle::new(self.handle.clone(), &**serdes)
    }

    /// The store as a typed session store.
    pub fn session<K: 'static, V: 'static>(&self) -> Result<SessionStoreHandle<K, V>> {
        let Some(serdes) = &self.serdes else {
            return Err(self.handle.access_error("is not a session store".into()));
        };
        SessionStoreHandle::new(self.handle.clone(), &**serdes)
    }
}
