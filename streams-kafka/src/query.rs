//! Interactive queries: read-only views over the stores of the local
//! tasks (Kafka Streams' `KafkaStreams#store`), and where every store and
//! key lives across the application's instances (`StreamsMetadata`,
//! `KeyQueryMetadata`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::marker::PhantomData;
use std::sync::{Arc, PoisonError, RwLock};

use super::partitioner::partition_for_key;
use super::{Shared, State};
use streams_core::TaskId;
use streams_core::error::{Result, StreamsError};
use streams_core::state::{KeyValueStoreHandle, StoreInstance, TaskStore, WindowStoreHandle, lock};
use streams_core::window::{Window, Windowed};

/// An instance's endpoint, from its `application.server` (Kafka Streams'
/// `HostInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostInfo {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
}

impl std::fmt::Display for HostInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// One live instance: where it listens, which stores it has and which
/// source partitions it processes (Kafka Streams' `StreamsMetadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamsMetadata {
    /// Its `application.server`.
    pub host_info: HostInfo,
    /// Stores of its tasks, and every global store.
    pub state_store_names: BTreeSet<String>,
    /// Source topic partitions assigned to it.
    pub topic_partitions: BTreeSet<(String, i32)>,
}

/// Where a key of a store lives (Kafka Streams' `KeyQueryMetadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyQueryMetadata {
    /// The instance whose task holds the key.
    pub active_host: HostInfo,
    /// The partition of the key.
    pub partition: i32,
}

/// How a store's keys map to partitions: the sub-topology's source topics
/// and their partition count. Global stores have no sources.
#[derive(Debug, Clone, Default)]
pub(crate) struct StoreSources {
    pub(crate) topics: Vec<String>,
    pub(crate) partitions: i32,
}

/// What queries need to know about the topology once it runs.
#[derive(Debug, Default)]
pub(crate) struct QueryPlan {
    pub(crate) stores: HashMap<String, StoreSources>,
    pub(crate) global_stores: BTreeSet<String>,
}

/// Stores of the local tasks that are running, by store name and task;
/// tasks add theirs once restored and take them out before closing.
#[derive(Default)]
pub(crate) struct LocalStores {
    stores: RwLock<BTreeMap<String, BTreeMap<TaskId, TaskStore>>>,
}

impl LocalStores {
    pub(crate) fn register(&self, task: TaskId, stores: &streams_core::engine::StoreMap) {
        let mut all = self.stores.write().unwrap_or_else(PoisonError::into_inner);
        for (name, store) in stores {
            all.entry(name.clone())
                .or_default()
                .insert(task, store.clone());
        }
    }

    pub(crate) fn deregister(&self, task: TaskId) {
        let mut all = self.stores.write().unwrap_or_else(PoisonError::into_inner);
        for tasks in all.values_mut() {
            tasks.remove(&task);
        }
        all.retain(|_, tasks| !tasks.is_empty());
    }

    fn of(&self, name: &str) -> Vec<TaskStore> {
        self.stores
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .map(|tasks| tasks.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Names of the stores of running local tasks.
    pub(crate) fn names(&self) -> BTreeSet<String> {
        self.stores
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }
}

/// Whether store `name` is a global store; an error when the topology has
/// no such store.
pub(crate) fn is_global_store(shared: &Shared, name: &str) -> Result<bool> {
    let plan = shared.query_plan();
    if plan.global_stores.contains(name) {
        Ok(true)
    } else if plan.stores.contains_key(name) {
        Ok(false)
    } else {
        Err(StreamsError::StoreAccess {
            name: name.to_owned(),
            message: "no such store in the topology".into(),
        })
    }
}

/// The local instances of store `name` that may be read now: the global
/// one, or those of the running tasks (a retriable error while the
/// application rebalances).
pub(crate) fn queryable_stores(
    shared: &Shared,
    name: &str,
    global: bool,
) -> Result<Vec<TaskStore>> {
    if global {
        return Ok(shared.global_store(name).into_iter().collect());
    }
    match shared.state() {
        State::Running => Ok(shared.local_stores.of(name)),
        State::Rebalancing => Err(StreamsError::InvalidState(format!(
            "store `{name}` cannot be queried while the application is rebalancing; retry later"
        ))),
        other => Err(StreamsError::InvalidState(format!(
            "store `{name}` cannot be queried in state {other:?}"
        ))),
    }
}

/// Store `name` as queries reach it: its local instances, the global one
/// or the running tasks', whatever kind of store it is.
#[derive(Clone)]
struct LocalView {
    shared: Arc<Shared>,
    name: String,
    global: bool,
}

impl LocalView {
    fn new(shared: Arc<Shared>, name: &str) -> Result<Self> {
        let global = is_global_store(&shared, name)?;
        Ok(LocalView {
            shared,
            name: name.to_owned(),
            global,
        })
    }

    /// The instances that may be read now (an error while rebalancing).
    fn stores(&self) -> Result<Vec<TaskStore>> {
        queryable_stores(&self.shared, &self.name, self.global)
    }

    /// The instances there are now, whatever the state: typed access is
    /// checked on them when a view is made, not only on its first query.
    fn running(&self) -> Vec<TaskStore> {
        match self.global {
            true => self.shared.global_store(&self.name).into_iter().collect(),
            false => self.shared.local_stores.of(&self.name),
        }
    }
}

/// A read-only view over one store in every local task (or over a global
/// store), as Kafka Streams' composite `ReadOnlyKeyValueStore`. Each call
/// sees the tasks running at that moment; during a rebalance calls fail
/// with a retriable error ([`StreamsError::is_retriable`]) instead of
/// reading a store that is being closed or restored.
pub struct ReadOnlyKeyValueView<K, V> {
    view: LocalView,
    types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> std::fmt::Debug for ReadOnlyKeyValueView<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadOnlyKeyValueView")
            .field("name", &self.view.name)
            .finish()
    }
}

impl<K, V> Clone for ReadOnlyKeyValueView<K, V> {
    fn clone(&self) -> Self {
        ReadOnlyKeyValueView {
            view: self.view.clone(),
            types: PhantomData,
        }
    }
}

impl<K: 'static, V: 'static> ReadOnlyKeyValueView<K, V> {
    pub(crate) fn new(shared: Arc<Shared>, name: &str) -> Result<Self> {
        let view = ReadOnlyKeyValueView {
            view: LocalView::new(shared, name)?,
            types: PhantomData,
        };
        for store in view.view.running() {
            view.typed(&store)?;
        }
        Ok(view)
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        &self.view.name
    }

    fn stores(&self) -> Result<Vec<TaskStore>> {
        self.view.stores()
    }

    fn typed(&self, store: &TaskStore) -> Result<KeyValueStoreHandle<K, V>> {
        store.key_value()
    }

    /// The value of `key` in whichever local task holds it.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        for store in self.stores()? {
            if let Some(value) = self.typed(&store)?.get(key)? {
                return Ok(Some(value));
            }
        }
        Ok(None)
    }

    /// Entries with `from <= key <= to`: each task's in key order, task
    /// after task (as Kafka Streams' composite store).
    pub fn range(&self, from: Option<&K>, to: Option<&K>) -> Result<Vec<(K, V)>> {
        self.collect(|store| store.range(from, to))
    }

    /// One page of every local task's entries, ascending by serialized
    /// key across tasks: at most `limit` (at least 1) entries with
    /// `from <= key`, and the key to continue from when there are more.
    /// Each task's store is locked for one page at a time, never for a
    /// whole scan.
    pub fn page(&self, from: Option<&K>, limit: usize) -> Result<(Vec<(K, V)>, Option<K>)> {
        let limit = limit.max(1);
        let mut found: Vec<(Vec<u8>, K, V)> = Vec::new();
        for store in self.stores()? {
            let typed = self.typed(&store)?;
            // One more than a page: whether more follow.
            for (key, value) in typed.range_page(from, limit + 1)? {
                found.push((typed.serialize_key(&key)?, key, value));
            }
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        let mut rest = found.split_off(limit.min(found.len()));
        let next = (!rest.is_empty()).then(|| rest.swap_remove(0).1);
        Ok((found.into_iter().map(|(_, k, v)| (k, v)).collect(), next))
    }

    /// Entries whose serialized key starts with the serialized `prefix`.
    pub fn prefix_scan<P>(
        &self,
        prefix: &P,
        prefix_serde: &dyn state_stores::Serde<P>,
    ) -> Result<Vec<(K, V)>> {
        self.collect(|store| store.prefix_scan(prefix, prefix_serde))
    }

    /// Every entry of every local task.
    pub fn all(&self) -> Result<Vec<(K, V)>> {
        self.collect(KeyValueStoreHandle::all)
    }

    /// An estimate of the number of entries, summed over local tasks.
    pub fn approximate_num_entries(&self) -> Result<u64> {
        let mut total = 0;
        for store in self.stores()? {
            total += self.typed(&store)?.approximate_num_entries()?;
        }
        Ok(total)
    }

    fn collect(
        &self,
        scan: impl Fn(&KeyValueStoreHandle<K, V>) -> Result<Vec<(K, V)>>,
    ) -> Result<Vec<(K, V)>> {
        let mut out = Vec::new();
        for store in self.stores()? {
            out.extend(scan(&self.typed(&store)?)?);
        }
        Ok(out)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoreKind {
    KeyValue,
    Window,
    Session,
    Custom,
}

impl StoreKind {
    fn of(store: &TaskStore) -> StoreKind {
        match &*lock(&store.handle.cell) {
            StoreInstance::KeyValue(_) => StoreKind::KeyValue,
            StoreInstance::Window(_) => StoreKind::Window,
            StoreInstance::Session(_) => StoreKind::Session,
            StoreInstance::Custom(_) => StoreKind::Custom,
        }
    }

    fn noun(self) -> &'static str {
        match self {
            StoreKind::KeyValue => "a key-value store",
            StoreKind::Window => "a window store",
            StoreKind::Session => "a session store",
            StoreKind::Custom => "a custom store",
        }
    }
}

/// An error unless `store` is of kind `kind`. Window and session stores
/// keep serdes of one type, so typed access alone does not tell them
/// apart: without this check a view over the wrong kind would fail only
/// on its first query.
fn expect_kind(store: &TaskStore, name: &str, kind: StoreKind) -> Result<()> {
    match StoreKind::of(store) {
        found if found == kind => Ok(()),
        found => Err(StreamsError::StoreAccess {
            name: name.to_owned(),
            message: format!("is {}, not {}", found.noun(), kind.noun()),
        }),
    }
}

/// The first task's non-empty answer, else an empty one: a key lives in one
/// task, so that is its answer (Kafka Streams' composite window and
/// session stores do the same).
fn first_found<T>(
    stores: Vec<TaskStore>,
    mut fetch: impl FnMut(&TaskStore) -> Result<Vec<T>>,
) -> Result<Vec<T>> {
    for store in stores {
        let found = fetch(&store)?;
        if !found.is_empty() {
            return Ok(found);
        }
    }
    Ok(Vec::new())
}

/// A read-only view over one window store in every local task, as Kafka
/// Streams' composite `ReadOnlyWindowStore` (what
/// `QueryableStoreTypes.windowStore()` gives). Times are ms since the
/// epoch; a window is named by its start. Calls fail with a retriable
/// error during a rebalance, as [`ReadOnlyKeyValueView`]'s do.
///
/// ```no_run
/// # fn demo(streams: &streams_kafka::KafkaStreams) -> streams_core::Result<()> {
/// let clicks = streams.window_store::<String, i64>("clicks-per-minute")?;
/// for (start, count) in clicks.fetch(&"ann".to_owned(), 0, i64::MAX)? {
///     println!("ann: {count} clicks in the minute from {start}");
/// }
/// # Ok(()) }
/// ```
pub struct ReadOnlyWindowView<K, V> {
    view: LocalView,
    types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> std::fmt::Debug for ReadOnlyWindowView<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadOnlyWindowView")
            .field("name", &self.view.name)
            .finish()
    }
}

impl<K, V> Clone for ReadOnlyWindowView<K, V> {
    fn clone(&self) -> Self {
        ReadOnlyWindowView {
            view: self.view.clone(),
            types: PhantomData,
        }
    }
}

impl<K: 'static, V: 'static> ReadOnlyWindowView<K, V> {
    pub(crate) fn new(shared: Arc<Shared>, name: &str) -> Result<Self> {
        let view = LocalView::new(shared, name)?;
        for store in view.running() {
            store.window::<K, V>()?;
            expect_kind(&store, name, StoreKind::Window)?;
        }
        Ok(ReadOnlyWindowView {
            view,
            types: PhantomData,
        })
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        &self.view.name
    }

    fn handles(&self) -> Result<Vec<WindowStoreHandle<K, V>>> {
        self.view.stores()?.iter().map(TaskStore::window).collect()
    }

    /// The value of `key` in the window starting at `window_start` (Kafka
    /// Streams' `fetch(key, time)`).
    pub fn fetch_window(&self, key: &K, window_start: i64) -> Result<Option<V>> {
        for store in self.handles()? {
            if let Some(value) = store.fetch(key, window_start)? {
                return Ok(Some(value));
            }
        }
        Ok(None)
    }

    /// `key`'s windows that start from `from` to `to` (both inclusive),
    /// earliest first, as (window start, value): Kafka Streams'
    /// `fetch(key, timeFrom, timeTo)`. Empty when `from > to`.
    pub fn fetch(&self, key: &K, from: i64, to: i64) -> Result<Vec<(i64, V)>> {
        first_found(self.view.stores()?, |store| {
            store.window::<K, V>()?.fetch_range(key, from, to)
        })
    }

    /// [`fetch`](Self::fetch) with each whole window: its start and its
    /// end, the start plus the store's window size.
    pub fn fetch_windows(&self, key: &K, from: i64, to: i64) -> Result<Vec<(Window, V)>> {
        first_found(self.view.stores()?, |store| {
            let store = store.window::<K, V>()?;
            let size = store.window_size();
            Ok(store
                .fetch_range(key, from, to)?
                .into_iter()
                .map(|(start, value)| (Window::new(start, start.saturating_add(size)), value))
                .collect())
        })
    }

    /// Every key's windows that start from `from` to `to` (inclusive): each
    /// task's by start then key, task after task (as Kafka Streams'
    /// composite store).
    pub fn fetch_all(&self, from: i64, to: i64) -> Result<Vec<(Windowed<K>, V)>> {
        let mut out = Vec::new();
        for store in self.handles()? {
            out.extend(store.fetch_all(from, to)?);
        }
        Ok(out)
    }

    /// Every window of every local task.
    pub fn all(&self) -> Result<Vec<(Windowed<K>, V)>> {
        self.fetch_all(i64::MIN, i64::MAX)
    }
}

/// A read-only view over one session store in every local task, as Kafka
/// Streams' composite `ReadOnlySessionStore` (what
/// `QueryableStoreTypes.sessionStore()` gives). A session is a key with its
/// window, whose start and end (its first and last record's times) are
/// both inclusive. Calls fail with a retriable error during a rebalance.
///
/// ```no_run
/// # fn demo(streams: &streams_kafka::KafkaStreams) -> streams_core::Result<()> {
/// let sessions = streams.session_store::<String, i64>("sessions")?;
/// for (session, count) in sessions.fetch(&"ann".to_owned())? {
///     let (start, end) = (session.window.start, session.window.end);
///     println!("ann: {count} clicks from {start} to {end}");
/// }
/// # Ok(()) }
/// ```
pub struct ReadOnlySessionView<K, V> {
    view: LocalView,
    types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> std::fmt::Debug for ReadOnlySessionView<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadOnlySessionView")
            .field("name", &self.view.name)
            .finish()
    }
}

impl<K, V> Clone for ReadOnlySessionView<K, V> {
    fn clone(&self) -> Self {
        ReadOnlySessionView {
            view: self.view.clone(),
            types: PhantomData,
        }
    }
}

impl<K: 'static, V: 'static> ReadOnlySessionView<K, V> {
    pub(crate) fn new(shared: Arc<Shared>, name: &str) -> Result<Self> {
        let view = LocalView::new(shared, name)?;
        for store in view.running() {
            store.session::<K, V>()?;
            expect_kind(&store, name, StoreKind::Session)?;
        }
        Ok(ReadOnlySessionView {
            view,
            types: PhantomData,
        })
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        &self.view.name
    }

    /// Every session of `key` the store keeps, earliest first (Kafka
    /// Streams' `fetch(key)`).
    pub fn fetch(&self, key: &K) -> Result<Vec<(Windowed<K>, V)>> {
        first_found(self.view.stores()?, |store| {
            store.session::<K, V>()?.fetch(key)
        })
    }

    /// `key`'s sessions that end at or after `earliest_end` and start at or
    /// before `latest_start` (Kafka Streams' `findSessions`).
    pub fn find_sessions(
        &self,
        key: &K,
        earliest_end: i64,
        latest_start: i64,
    ) -> Result<Vec<(Windowed<K>, V)>> {
        first_found(self.view.stores()?, |store| {
            store
                .session::<K, V>()?
                .find_sessions(key, earliest_end, latest_start)
        })
    }

    /// The value of `key`'s session from `start` to `end` (Kafka Streams'
    /// `fetchSession`).
    pub fn fetch_session(&self, key: &K, start: i64, end: i64) -> Result<Option<V>> {
        for store in self.view.stores()? {
            if let Some(value) = store.session::<K, V>()?.fetch_session(key, start, end)? {
                return Ok(Some(value));
            }
        }
        Ok(None)
    }
}

/// The instance that holds `key` (serialized) of a store with `sources`,
/// among `instances`: partition by Java's murmur2 (the default
/// partitioner), then the instance assigned that partition of a source.
pub(crate) fn locate_key(
    sources: &StoreSources,
    key: &[u8],
    instances: &[StreamsMetadata],
) -> Option<KeyQueryMetadata> {
    let partition = partition_for_key(key, sources.partitions.max(1));
    instances
        .iter()
        .find(|instance| {
            sources.topics.iter().any(|topic| {
                instance
                    .topic_partitions
                    .contains(&(topic.clone(), partition))
            })
        })
        .map(|instance| KeyQueryMetadata {
            active_host: instance.host_info.clone(),
            partition,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(port: u16, partitions: &[(&str, i32)]) -> StreamsMetadata {
        StreamsMetadata {
            host_info: HostInfo {
                host: "h".into(),
                port,
            },
            state_store_names: BTreeSet::from(["s".to_owned()]),
            topic_partitions: partitions
                .iter()
                .map(|(t, p)| ((*t).to_owned(), *p))
                .collect(),
        }
    }

    #[test]
    fn a_key_is_located_on_the_instance_with_its_partition() {
        let sources = StoreSources {
            topics: vec!["app-s-repartition".into()],
            partitions: 3,
        };
        let instances = [
            instance(1, &[("app-s-repartition", 0), ("app-s-repartition", 2)]),
            instance(2, &[("app-s-repartition", 1)]),
        ];
        for key in ["a", "b", "c", "hello", "world"] {
            let found = locate_key(&sources, key.as_bytes(), &instances).unwrap();
            let partition = partition_for_key(key.as_bytes(), 3);
            assert_eq!(found.partition, partition);
            let expected = if partition == 1 { 2 } else { 1 };
            assert_eq!(found.active_host.port, expected, "{key}");
        }
        // A partition nobody holds (mid-rebalance) has no answer.
        assert!(
            locate_key(&sources, b"a", &instances[1..]).is_none() || {
                partition_for_key(b"a", 3) == 1
            }
        );
    }
}
