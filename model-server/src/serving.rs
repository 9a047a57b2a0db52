//! The serving topology. Models arrive on `models` (with any key or none:
//! the descriptor's data type decides) and are read by a global store on
//! every instance, so a model published once serves every partition of
//! `mdata`; the global thread builds them, off the scoring path, and swaps
//! them in under a short lock. Records
//! arrive on `mdata`; each is scored with the current model of its data
//! type and reported on `mscores`, served or not. Serving statistics per
//! data type live in a store whose kind is the variant's.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use proto::{ModelDescriptor, ServingResult, WineRecord};
use rustc_hash::{FxHashMap, FxHashSet};
use streams_core::processor::{ProcessResult, Processor, ProcessorContext};
use streams_core::serde::{
    BytesSerde, Nullable, ProtobufSerde, Serde, SerdeError, StringSerde, UnitSerde,
};
use streams_core::state::{
    KeyValueStoreHandle, StateRestoreCallback, StateStore, StoreBuilder, StoreError, StoreHandle,
    StoreInstance, Write,
};
use streams_core::{Record, Result as StreamsResult, Topology};

use crate::console::{Rejection, Rejections};
use crate::http::ServingMetrics;
use crate::model::{ModelError, ModelLimits, ServedModel, build, served_score};
use crate::stats::{ModelToServeStats, StatsSerde};

/// Wine records in.
pub const DATA_TOPIC: &str = "mdata";
/// Model descriptors in (the original client writes them with no key).
pub const MODELS_TOPIC: &str = "models";
/// A `ServingResult` out for every record.
pub const SCORES_TOPIC: &str = "mscores";
/// The global store of current models.
pub const MODELS_STORE: &str = "models";
/// The store of serving statistics, keyed by data type.
pub const STATS_STORE: &str = "model-stats";

/// Wine records as protobuf, decoded by [`proto::wire`]: what
/// `ProtobufSerde` reads and the errors it gives, at a fraction of the
/// cost (decoding is done once per record).
#[derive(Debug, Clone, Copy, Default)]
pub struct WineRecordSerde;

impl Serde<WineRecord> for WineRecordSerde {
    fn serialize_into(&self, record: &WineRecord, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        ProtobufSerde::new().serialize_into(record, out)
    }
    fn deserialize(&self, bytes: &[u8]) -> Result<WineRecord, SerdeError> {
        proto::wire::decode_wine_record(bytes)
            .map_err(|e| SerdeError::new(format!("protobuf: {e}")))
    }
}

/// Serving results as protobuf, encoded by [`proto::wire`]: the bytes
/// `ProtobufSerde` writes, in one pass rather than two.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServingResultSerde;

impl Serde<ServingResult> for ServingResultSerde {
    fn serialize_into(&self, result: &ServingResult, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        proto::wire::encode_serving_result(result, out);
        Ok(())
    }
    fn deserialize(&self, bytes: &[u8]) -> Result<ServingResult, SerdeError> {
        ProtobufSerde::new().deserialize(bytes)
    }
}

/// Where serving statistics are kept, as in the original's three
/// variants. Named `memory`, `standard` and `custom`, or by the
/// original's one-letter options (`m`, `s`, `c`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum StoreVariant {
    /// An in-memory store without a changelog: lost on restart.
    #[value(
        alias = "m",
        help = "Processor API, in memory, lost on restart (or `m`)"
    )]
    Memory,
    /// A RocksDB store with a changelog and a record cache (written back
    /// at each commit): survives restarts. The default.
    #[default]
    #[value(alias = "s", help = "DSL, RocksDB with a changelog (or `s`)")]
    Standard,
    /// This application's own store ([`StatsStore`]): in memory, with a
    /// snapshot per data type logged at each commit and restored at start.
    #[value(
        alias = "c",
        help = "DSL, this application's store: in memory, a snapshot logged at each \
                commit and restored at start (or `c`)"
    )]
    Custom,
}

impl std::str::FromStr for StoreVariant {
    type Err = String;
    /// As on the command line: a name or a one-letter option.
    fn from_str(s: &str) -> Result<Self, String> {
        <Self as clap::ValueEnum>::from_str(s, false)
            .map_err(|_| format!("unknown store `{s}`: use memory, standard or custom (m, s or c)"))
    }
}

/// A model serving a data type on this instance.
#[derive(Clone)]
pub struct Installed {
    /// The model.
    pub model: Arc<ServedModel>,
    /// When it started serving on this instance, in ms since the epoch.
    pub since: i64,
    /// Which publication of the model this is: its descriptor's offset on
    /// the models topic, the same on every instance. Statistics of one
    /// publication merge across instances; a model republished under the
    /// same name starts new ones.
    pub version: i64,
}

/// A descriptor waiting to be built.
struct Pending {
    descriptor: ModelDescriptor,
    /// Since when it served before a restart, for a descriptor read back
    /// from the store's file; `None`: since it is installed.
    since: Option<i64>,
    version: i64,
}

/// The descriptor behind a current model, as the store's file keeps it.
struct Accepted {
    descriptor: Vec<u8>,
    since: i64,
    version: i64,
}

/// Keys that disagree with their descriptor's data type are logged once
/// each, up to this many (the keys come from anyone who can write).
const MAX_WARNED_KEYS: usize = 1_000;

/// The current model of every data type, with what it rejected.
///
/// Persistent, as Kafka Streams' persistent global stores are: each data
/// type's current descriptor is kept in a file in the store's directory,
/// written when the store is flushed, and the global task's checkpoint
/// records how far the models topic was read. At start the store reads the
/// file back, the global thread reads only what was published since, and
/// only the last descriptor of each data type is built: descriptors read
/// before the store's first flush (the global thread flushes once caught
/// up) wait, and a later one of the same data type replaces an earlier one
/// unbuilt.
pub struct ModelStore {
    models: FxHashMap<String, Installed>,
    /// Counts installs, so that scorers notice a swap with one atomic read
    /// rather than locking the store for every record.
    generation: Arc<AtomicU64>,
    rejected: u64,
    /// The last rejections, with their reasons, for the console.
    rejections: Rejections,
    builds: u64,
    limits: ModelLimits,
    pending: BTreeMap<String, Pending>,
    caught_up: bool,
    accepted: BTreeMap<String, Accepted>,
    dirty: bool,
    /// The store's file; `None` keeps nothing on disk.
    file: Option<PathBuf>,
    warned_keys: FxHashSet<Vec<u8>>,
    open: bool,
}

impl ModelStore {
    /// An empty store building models within `limits`, keeping its file
    /// at `file` (none when `None`).
    fn new(limits: ModelLimits, file: Option<PathBuf>) -> Self {
        ModelStore {
            models: FxHashMap::default(),
            generation: Arc::default(),
            rejected: 0,
            rejections: Rejections::default(),
            builds: 0,
            limits,
            pending: BTreeMap::new(),
            caught_up: false,
            accepted: BTreeMap::new(),
            dirty: false,
            file,
            warned_keys: FxHashSet::default(),
            open: true,
        }
    }

    /// The current model for `data_type`.
    pub fn current(&self, data_type: &str) -> Option<Installed> {
        self.models.get(data_type).cloned()
    }

    /// Every current model.
    pub fn all(&self) -> Vec<Installed> {
        self.models.values().cloned().collect()
    }

    /// Descriptors that did not become models.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// The last descriptors rejected, with why, oldest first.
    pub fn rejections(&self) -> Vec<Rejection> {
        self.rejections.all()
    }

    /// Models built (or tried) since this store was opened.
    pub fn builds(&self) -> u64 {
        self.builds
    }

    /// Takes a descriptor read at `version`: before the store is caught
    /// up it waits (replacing an earlier one of its data type); after, it
    /// is handed back for the caller to build outside the store's lock.
    fn offer(&mut self, descriptor: ModelDescriptor, version: i64) -> Option<ModelDescriptor> {
        if self.caught_up {
            return Some(descriptor);
        }
        self.pending.insert(
            descriptor.data_type.clone(),
            Pending {
                descriptor,
                since: None,
                version,
            },
        );
        None
    }

    /// Installs what a build of `descriptor` gave, or counts its
    /// rejection; returns the model it replaces, for the caller to drop
    /// after the store's lock is released.
    fn finish(
        &mut self,
        descriptor: &ModelDescriptor,
        built: Result<ServedModel, ModelError>,
        since: i64,
        version: i64,
    ) -> Option<Arc<ServedModel>> {
        self.builds += 1;
        let model = match built {
            Ok(model) => Arc::new(model),
            Err(error) => {
                self.reject(version, &error);
                return None;
            }
        };
        log_install(&model);
        self.accepted.insert(
            model.data_type.clone(),
            Accepted {
                descriptor: prost::Message::encode_to_vec(descriptor),
                since,
                version,
            },
        );
        self.dirty = true;
        let replaced = self
            .models
            .insert(
                model.data_type.clone(),
                Installed {
                    model,
                    since,
                    version,
                },
            )
            .map(|old| old.model);
        // After the insert: a scorer that sees the new count finds the new
        // model.
        self.generation.fetch_add(1, Ordering::Release);
        replaced
    }

    /// Counts the descriptor at `version` (its offset; -1 when unknown)
    /// as rejected, and keeps why.
    fn reject(&mut self, version: i64, reason: &dyn std::fmt::Display) {
        self.rejected += 1;
        log::warn!("model rejected, the previous one keeps serving: {reason}");
        self.rejections.push(version, reason.to_string());
    }

    /// Logs, once per key, a key that names another data type than its
    /// descriptor: the descriptor's field decides.
    fn check_key(&mut self, key: Option<&[u8]>, data_type: &str) {
        let Some(key) = key else { return };
        if key == data_type.as_bytes()
            || self.warned_keys.len() >= MAX_WARNED_KEYS
            || !self.warned_keys.insert(key.to_vec())
        {
            return;
        }
        log::warn!(
            "a model descriptor's key `{}` is not its data type `{data_type}`: the key is ignored",
            String::from_utf8_lossy(key)
        );
    }

    /// Builds what waited for the store to catch up, each data type's last.
    fn build_pending(&mut self) {
        for (_, pending) in std::mem::take(&mut self.pending) {
            let built = build(&pending.descriptor, &self.limits);
            let since = pending.since.unwrap_or_else(now_ms);
            let _replaced = self.finish(&pending.descriptor, built, since, pending.version);
        }
    }

    /// Writes each data type's current descriptor to the store's file.
    fn write_file(&self, path: &Path) -> Result<(), StoreError> {
        let mut out = FILE_MAGIC.to_vec();
        for (data_type, accepted) in &self.accepted {
            for bytes in [data_type.as_bytes(), &accepted.descriptor] {
                out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
                out.extend_from_slice(bytes);
            }
            out.extend_from_slice(&accepted.since.to_le_bytes());
            out.extend_from_slice(&accepted.version.to_le_bytes());
        }
        let io = |action, source| StoreError::Io {
            action,
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io("creating the directory of", e))?;
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, &out).map_err(|e| io("writing", e))?;
        std::fs::rename(&tmp, path).map_err(|e| io("replacing", e))
    }

    /// Reads the store's file back: its descriptors wait to be built.
    fn read_file(&mut self, path: &Path) -> Result<(), StoreError> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(StoreError::Io {
                    action: "reading",
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let corrupt = || StoreError::Io {
            action: "reading",
            path: path.to_owned(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "not a models file of this version; delete the state directory to read the models topic from the start",
            ),
        };
        let mut rest = bytes.strip_prefix(FILE_MAGIC).ok_or_else(corrupt)?;
        let mut entries = Vec::new();
        while !rest.is_empty() {
            let mut take = |n: u64| -> Result<&[u8], StoreError> {
                let n = usize::try_from(n)
                    .ok()
                    .filter(|&n| n <= rest.len())
                    .ok_or_else(corrupt)?;
                let (head, tail) = rest.split_at(n);
                rest = tail;
                Ok(head)
            };
            let len = u64::from_le_bytes(take(8)?.try_into().expect("8 bytes"));
            let data_type = String::from_utf8(take(len)?.to_vec()).map_err(|_| corrupt())?;
            let len = u64::from_le_bytes(take(8)?.try_into().expect("8 bytes"));
            let descriptor =
                <ModelDescriptor as prost::Message>::decode(take(len)?).map_err(|_| corrupt())?;
            let since = i64::from_le_bytes(take(8)?.try_into().expect("8 bytes"));
            let version = i64::from_le_bytes(take(8)?.try_into().expect("8 bytes"));
            entries.push((data_type, descriptor, since, version));
        }
        for (data_type, descriptor, since, version) in entries {
            self.pending.insert(
                data_type,
                Pending {
                    descriptor,
                    since: Some(since),
                    version,
                },
            );
        }
        Ok(())
    }
}

/// The first bytes of the models store's file (its format's version).
const FILE_MAGIC: &[u8] = b"model-store 1\n";

impl StateStore for ModelStore {
    fn name(&self) -> &str {
        MODELS_STORE
    }
    fn persistent(&self) -> bool {
        self.file.is_some()
    }
    fn is_open(&self) -> bool {
        self.open
    }
    /// The first flush marks the store caught up: what waited is built.
    /// Every flush writes the current descriptors down if they changed.
    fn flush(&mut self) -> Result<(), StoreError> {
        if !self.caught_up {
            self.caught_up = true;
            self.build_pending();
        }
        if self.dirty {
            if let Some(path) = &self.file {
                self.write_file(path)?;
            }
            self.dirty = false;
        }
        Ok(())
    }
    fn close(&mut self) -> Result<(), StoreError> {
        self.open = false;
        Ok(())
    }
}

impl StateRestoreCallback for ModelStore {
    /// Global stores are refilled by their processor; a direct restore
    /// takes each descriptor as the processor does.
    fn restore_batch(&mut self, records: &[Write<'_>]) -> Result<(), StoreError> {
        for (_, value) in records {
            let Some(bytes) = value else { continue };
            match <ModelDescriptor as prost::Message>::decode(*bytes) {
                Ok(descriptor) => {
                    if let Some(descriptor) = self.offer(descriptor, -1) {
                        let built = build(&descriptor, &self.limits);
                        let _replaced = self.finish(&descriptor, built, now_ms(), -1);
                    }
                }
                Err(error) => self.reject(-1, &format!("undecodable model descriptor: {error}")),
            }
        }
        Ok(())
    }
}

struct ModelStoreBuilder {
    limits: ModelLimits,
}

impl StoreBuilder for ModelStoreBuilder {
    fn name(&self) -> &str {
        MODELS_STORE
    }
    fn logging_enabled(&self) -> bool {
        false
    }
    fn persistent(&self) -> bool {
        true
    }
    fn build(
        &self,
        ctx: &streams_core::state::StoreContext<'_>,
        _: Option<Box<dyn streams_core::ChangelogSink>>,
    ) -> StreamsResult<StoreInstance> {
        let file = ctx.task_dir.join(MODELS_STORE).join("descriptors");
        let mut store = ModelStore::new(self.limits.clone(), Some(file.clone()));
        store.read_file(&file)?;
        Ok(StoreInstance::Custom(Box::new(store)))
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn log_install(model: &ServedModel) {
    log::info!(
        "serving model {} ({}) for data type {}",
        model.name,
        model.kind.as_str_name(),
        model.data_type
    );
}

/// Takes each arriving descriptor (on the global thread) to the models
/// store: it is built here, with no lock held, and swapped in under the
/// store's lock, which scoring takes only to clone the current model.
/// Keys and values are read as bytes: the original client writes no key,
/// and a descriptor that cannot be decoded is a rejection, counted.
struct ModelUpdater;

impl Processor<Option<Vec<u8>>, Option<Vec<u8>>, (), ()> for ModelUpdater {
    fn process(
        &mut self,
        record: Record<Option<Vec<u8>>, Option<Vec<u8>>>,
        ctx: &mut ProcessorContext<'_, (), ()>,
    ) -> ProcessResult {
        let version = ctx.record_metadata().map_or(-1, |m| m.offset);
        let now = ctx.current_system_time();
        let store = ctx.state_store(MODELS_STORE)?;
        let Some(bytes) = record.value else {
            log::warn!("a model descriptor with no value (offset {version}) is ignored");
            return Ok(());
        };
        let descriptor = match <ModelDescriptor as prost::Message>::decode(bytes.as_slice()) {
            Ok(descriptor) => descriptor,
            Err(error) => {
                let reason = format!("undecodable model descriptor at offset {version}: {error}");
                store.with(|store: &mut ModelStore| store.reject(version, &reason))?;
                return Ok(());
            }
        };
        let (descriptor, limits) = store.with(|store: &mut ModelStore| {
            store.check_key(record.key.as_deref(), &descriptor.data_type);
            (store.offer(descriptor, version), store.limits.clone())
        })?;
        let Some(descriptor) = descriptor else {
            return Ok(());
        };
        let building = Instant::now();
        let built = build(&descriptor, &limits);
        // It serves from now on: the record's wall-clock time plus the build's.
        let since = now + building.elapsed().as_millis() as i64;
        let _replaced = store
            .with(|store: &mut ModelStore| store.finish(&descriptor, built, since, version))?;
        Ok(())
    }
}

/// Serving statistics per data type, for the `custom` variant: kept in
/// memory, with the entries changed since the last commit written to the
/// changelog when the task commits (a snapshot per data type, not a change
/// per record), and rebuilt from the changelog when a task starts.
pub struct StatsStore {
    stats: BTreeMap<String, ModelToServeStats>,
    dirty: BTreeSet<String>,
    changelog: Option<Box<dyn streams_core::ChangelogSink>>,
    open: bool,
}

impl StatsStore {
    /// The statistics of `data_type`'s current model.
    pub fn get(&self, data_type: &str) -> Option<&ModelToServeStats> {
        self.stats.get(data_type)
    }

    /// The statistics of every data type.
    pub fn all(&self) -> Vec<ModelToServeStats> {
        self.stats.values().cloned().collect()
    }

    fn record(&mut self, current: &Installed, millis: f64) {
        let Installed {
            model,
            since,
            version,
        } = current;
        let entry = self
            .stats
            .entry(model.data_type.clone())
            .or_insert_with(|| ModelToServeStats::new(model, *since, *version));
        entry.continue_or_restart(model, *since, *version);
        entry.record(millis);
        if !self.dirty.contains(&model.data_type) {
            self.dirty.insert(model.data_type.clone());
        }
    }
}

impl StateStore for StatsStore {
    fn name(&self) -> &str {
        STATS_STORE
    }
    fn persistent(&self) -> bool {
        false
    }
    fn is_open(&self) -> bool {
        self.open
    }
    fn flush(&mut self) -> Result<(), StoreError> {
        let Some(sink) = self.changelog.as_mut() else {
            self.dirty.clear();
            return Ok(());
        };
        while let Some(key) = self.dirty.first().cloned() {
            if let Some(stats) = self.stats.get(&key) {
                let value = serde_json::to_vec(stats).map_err(|e| StoreError::Serde {
                    store: STATS_STORE.into(),
                    source: streams_core::serde::SerdeError::new(e.to_string()),
                })?;
                sink.log_change(key.as_bytes(), Some(&value))
                    .map_err(|source| StoreError::Changelog {
                        store: STATS_STORE.into(),
                        source,
                    })?;
            }
            self.dirty.remove(&key);
        }
        Ok(())
    }
    fn close(&mut self) -> Result<(), StoreError> {
        self.open = false;
        Ok(())
    }
}

impl StateRestoreCallback for StatsStore {
    fn restore_batch(&mut self, records: &[Write<'_>]) -> Result<(), StoreError> {
        for (key, value) in records {
            let key = String::from_utf8_lossy(key).into_owned();
            match value.map(serde_json::from_slice::<ModelToServeStats>) {
                Some(Ok(stats)) => {
                    self.stats.insert(key, stats);
                }
                None => {
                    self.stats.remove(&key);
                }
                // Written by another version: start this type afresh.
                Some(Err(error)) => {
                    log::warn!("statistics of {key} in the changelog are unreadable: {error}");
                    self.stats.remove(&key);
                }
            }
        }
        Ok(())
    }
}

struct StatsStoreBuilder;

impl StoreBuilder for StatsStoreBuilder {
    fn name(&self) -> &str {
        STATS_STORE
    }
    fn logging_enabled(&self) -> bool {
        true
    }
    fn persistent(&self) -> bool {
        false
    }
    fn build(
        &self,
        _: &streams_core::state::StoreContext<'_>,
        changelog: Option<Box<dyn streams_core::ChangelogSink>>,
    ) -> StreamsResult<StoreInstance> {
        Ok(StoreInstance::Custom(Box::new(StatsStore {
            stats: BTreeMap::new(),
            dirty: BTreeSet::new(),
            changelog,
            open: true,
        })))
    }
}

/// The `standard` store's record cache: one small entry per data type.
const STATS_CACHE_BYTES: usize = 1 << 20;

/// Scores each record with the current model of its data type.
struct Scorer {
    variant: StoreVariant,
    metrics: Arc<ServingMetrics>,
    /// The statistics this task last wrote, per data type. The scorer is
    /// the only writer of its task's store and a task gets a new scorer,
    /// so what it wrote is what the store holds: reading it back (and
    /// decoding it) for every record would be wasted work.
    written: FxHashMap<String, ModelToServeStats>,
    /// The stores, taken once in `init` (as Kafka Streams processors do)
    /// rather than looked up for every record.
    models: Option<StoreHandle>,
    stats: Option<StatsHandle>,
    /// The models store's install count, and the models this scorer
    /// looked up since it last changed: a record's model costs one atomic
    /// read unless a swap happened.
    generation: Arc<AtomicU64>,
    seen_generation: u64,
    current: FxHashMap<String, Installed>,
    /// Times each scoring: the CPU's time-stamp counter where it is
    /// reliable (a fifth of what `Instant` costs here), the monotonic
    /// clock elsewhere.
    clock: quanta::Clock,
}

/// The statistics store as the variant keeps it.
enum StatsHandle {
    KeyValue(KeyValueStoreHandle<String, ModelToServeStats>),
    Custom(StoreHandle),
}

/// Counts one scoring by `current` that took `millis` in the statistics.
fn count(
    stats: &StatsHandle,
    written: &mut FxHashMap<String, ModelToServeStats>,
    current: &Installed,
    millis: f64,
) -> ProcessResult {
    let stats = match stats {
        StatsHandle::Custom(store) => {
            store.with(|store: &mut StatsStore| store.record(current, millis))?;
            return Ok(());
        }
        StatsHandle::KeyValue(stats) => stats,
    };
    let Installed {
        model,
        since,
        version,
    } = current;
    let (since, version) = (*since, *version);
    let current = match written.get_mut(&model.data_type) {
        Some(current) => current,
        // Restored from the changelog, or nothing yet.
        None => {
            let stored = stats
                .get(&model.data_type)?
                .unwrap_or_else(|| ModelToServeStats::new(model, since, version));
            written.entry(model.data_type.clone()).or_insert(stored)
        }
    };
    current.continue_or_restart(model, since, version);
    current.record(millis);
    stats.put(&model.data_type, current)?;
    Ok(())
}

impl Scorer {
    /// The current model of `data_type` and since when it serves, from
    /// what this scorer looked up before unless a swap happened since.
    fn current_model(&mut self, data_type: &str) -> StreamsResult<Option<Installed>> {
        let generation = self.generation.load(Ordering::Acquire);
        if generation != self.seen_generation {
            self.current.clear();
            self.seen_generation = generation;
        }
        if let Some(current) = self.current.get(data_type) {
            return Ok(Some(current.clone()));
        }
        // The store's lock is held only to clone the model's Arc. Only a
        // lookup that finds it held waits, and only that wait is timed.
        let models = self.models.as_ref().expect("init takes the stores");
        let lookup = |store: &mut ModelStore| store.current(data_type);
        let found = match models.try_with(lookup) {
            Some(found) => found?,
            None => {
                let waiting = Instant::now();
                let found = models.with(lookup)?;
                let waited = waiting.elapsed().as_nanos() as u64;
                self.metrics
                    .longest_lookup_ns
                    .fetch_max(waited, Ordering::Relaxed);
                if waited > 1_000_000 {
                    self.metrics.slow_lookups.fetch_add(1, Ordering::Relaxed);
                }
                found
            }
        };
        if let Some(found) = &found {
            self.current.insert(data_type.to_owned(), found.clone());
        }
        Ok(found)
    }
}

impl Processor<(), WineRecord, (), ServingResult> for Scorer {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, (), ServingResult>) -> ProcessResult {
        let models = ctx.state_store(MODELS_STORE)?;
        self.generation = models.with(|store: &mut ModelStore| store.generation.clone())?;
        // `current` starts empty: the first record of each type looks up.
        self.seen_generation = self.generation.load(Ordering::Acquire);
        self.models = Some(models);
        self.stats = Some(match self.variant {
            StoreVariant::Custom => StatsHandle::Custom(ctx.state_store(STATS_STORE)?),
            _ => StatsHandle::KeyValue(ctx.key_value_store(STATS_STORE)?),
        });
        Ok(())
    }

    fn process(
        &mut self,
        record: Record<(), WineRecord>,
        ctx: &mut ProcessorContext<'_, (), ServingResult>,
    ) -> ProcessResult {
        let Record {
            value: mut wine,
            timestamp,
            ..
        } = record;
        let (partition, offset) = ctx
            .record_metadata()
            .map_or((-1, -1), |m| (m.partition, m.offset));
        let current = self.current_model(&wine.data_type)?;
        let mut result = ServingResult {
            partition,
            offset,
            ts: timestamp,
            ..ServingResult::default()
        };
        let model = current.as_ref().map(|c| &*c.model);
        if let (Some(millis), Some(current)) =
            (score_into(model, &wine, &self.clock, &mut result), &current)
        {
            let stats = self.stats.as_ref().expect("init takes the stores");
            count(stats, &mut self.written, current, millis)?;
        }
        let counter = match result.served {
            true => &self.metrics.served,
            false => &self.metrics.not_served,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        // The record is done with: its data type moves to the result.
        result.data_type = std::mem::take(&mut wine.data_type);
        ctx.forward(Record::new((), result, timestamp))?;
        Ok(())
    }
}

/// Scores `wine` with `model`, the current model of its data type if there
/// is one, into `result` (its model, score, duration, and whether it was
/// served, or why not). Returns the scoring time in milliseconds when the
/// record was served, for the statistics. Every engine scores through this.
pub fn score_into(
    model: Option<&ServedModel>,
    wine: &WineRecord,
    clock: &quanta::Clock,
    result: &mut ServingResult,
) -> Option<f64> {
    let Some(model) = model else {
        result.reason = format!("no model for data type `{}`", wine.data_type);
        return None;
    };
    let started = clock.raw();
    let score = model.model.score(wine);
    let nanos = clock.delta_as_nanos(started, clock.raw());
    result.model = model.name.clone();
    result.duration_ns = nanos as i64;
    match served_score(score) {
        Ok(value) => {
            result.result = value;
            result.served = true;
            Some(nanos as f64 / 1e6)
        }
        Err(reason) => {
            result.reason = reason;
            None
        }
    }
}

/// How the serving topology is made.
#[derive(Debug, Clone, Default)]
pub struct ServingOptions {
    /// Where statistics are kept.
    pub variant: StoreVariant,
    /// What a model descriptor may make the server read and do.
    pub limits: ModelLimits,
    /// Counts served and unserved records.
    pub metrics: Arc<ServingMetrics>,
}

/// The serving topology with statistics kept as `variant` says: `memory`
/// is built with the Processor API, `standard` and `custom` with the DSL.
/// All three read the same topics and write the same results.
pub fn topology(variant: StoreVariant) -> StreamsResult<Topology> {
    topology_with(ServingOptions {
        variant,
        ..ServingOptions::default()
    })
}

/// The serving topology as `options` say.
pub fn topology_with(options: ServingOptions) -> StreamsResult<Topology> {
    use streams_core::dsl::{Consumed, Produced, StreamsBuilder};
    use streams_core::state::Stores;
    let ServingOptions {
        variant,
        limits,
        metrics,
    } = options;
    // Keys and values as bytes: see `ModelUpdater`.
    let descriptors = || (Nullable(BytesSerde), Nullable(BytesSerde));
    // Calibrated once (it takes a moment), then copied to each scorer.
    let clock = quanta::Clock::new();
    let scorer = move || Scorer {
        variant,
        metrics: metrics.clone(),
        written: FxHashMap::default(),
        models: None,
        stats: None,
        generation: Arc::default(),
        seen_generation: 0,
        current: FxHashMap::default(),
        clock: clock.clone(),
    };
    if variant == StoreVariant::Memory {
        let stats = Stores::key_value_store_builder(
            Stores::in_memory_key_value_store(STATS_STORE),
            StringSerde,
            StatsSerde,
        )
        .with_logging_disabled();
        let mut topology = Topology::new();
        let (keys, values) = descriptors();
        topology
            .add_global_store(
                ModelStoreBuilder { limits },
                "models-source",
                keys,
                values,
                MODELS_TOPIC,
                "model-updater",
                || ModelUpdater,
            )?
            .add_source("data-source", UnitSerde, WineRecordSerde, &[DATA_TOPIC])?
            .add_processor("scorer", scorer, &["data-source"])?
            .add_state_store(stats, &["scorer"])?
            .add_sink(
                "scores-sink",
                SCORES_TOPIC,
                UnitSerde,
                ServingResultSerde,
                &["scorer"],
            )?;
        return Ok(topology);
    }
    let builder = StreamsBuilder::new();
    let (keys, values) = descriptors();
    builder.add_global_store(
        ModelStoreBuilder { limits },
        MODELS_TOPIC,
        Consumed::with(keys, values),
        || ModelUpdater,
    );
    match variant {
        StoreVariant::Custom => builder.add_state_store(StatsStoreBuilder),
        // A record cache, as Kafka Streams gives DSL stores: every record
        // updates its data type's entry, and between two commits those
        // updates reach RocksDB and the changelog once.
        _ => builder.add_state_store(
            Stores::key_value_store_builder(
                Stores::persistent_key_value_store(STATS_STORE),
                StringSerde,
                StatsSerde,
            )
            .with_caching_enabled(STATS_CACHE_BYTES),
        ),
    };
    builder
        .stream_with([DATA_TOPIC], Consumed::with(UnitSerde, WineRecordSerde))
        .process(scorer, &[STATS_STORE])
        .to_with(SCORES_TOPIC, Produced::with(UnitSerde, ServingResultSerde));
    builder.build()
}

/// This instance's serving statistics, one entry per data type (merged
/// over its tasks, which each count the records of their partitions).
pub fn local_stats(
    streams: &streams_kafka::KafkaStreams,
    variant: StoreVariant,
) -> StreamsResult<Vec<ModelToServeStats>> {
    let entries: Vec<ModelToServeStats> = if variant == StoreVariant::Custom {
        streams
            .query_custom_store(STATS_STORE, |s: &mut StatsStore| s.all())?
            .into_iter()
            .flatten()
            .collect()
    } else {
        streams
            .store::<String, ModelToServeStats>(STATS_STORE)?
            .all()?
            .into_iter()
            .map(|(_, v)| v)
            .collect()
    };
    Ok(crate::stats::merge_all(entries))
}

/// The models this instance serves now (every instance has them all).
pub fn current_models(streams: &streams_kafka::KafkaStreams) -> StreamsResult<Vec<Installed>> {
    let mut models: Vec<_> = streams
        .query_custom_store(MODELS_STORE, |s: &mut ModelStore| s.all())?
        .into_iter()
        .flatten()
        .collect();
    models.sort_by(|a, b| a.model.data_type.cmp(&b.model.data_type));
    Ok(models)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::{MessageContent, ModelType};

    fn descriptor(name: &str, data_type: &str, stem: &str) -> ModelDescriptor {
        let path = format!(
            "{}/../data/models/pmml/{stem}.pmml",
            env!("CARGO_MANIFEST_DIR")
        );
        ModelDescriptor {
            name: name.into(),
            description: String::new(),
            data_type: data_type.into(),
            modeltype: ModelType::Pmml as i32,
            message_content: Some(MessageContent::Data(std::fs::read(path).unwrap())),
        }
    }

    fn current(store: &ModelStore, data_type: &str) -> Option<(String, i64, i64)> {
        store
            .current(data_type)
            .map(|i| (i.model.name.clone(), i.since, i.version))
    }

    #[test]
    fn a_replay_builds_each_data_types_last_descriptor_and_a_restart_reads_them_back() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("models").join("descriptors");
        let mut store = ModelStore::new(ModelLimits::default(), Some(file.clone()));
        // Read before the store is caught up: nothing is built yet.
        for (i, stem) in [
            "winequalityLinearRegression",
            "winequalityDesisionTreeRegression",
        ]
        .iter()
        .cycle()
        .take(50)
        .enumerate()
        {
            let offered = store.offer(descriptor(&format!("m{i}"), "wine", stem), i as i64);
            assert!(offered.is_none());
        }
        store.offer(descriptor("r", "red", "winequalityLinearRegression"), 50);
        // A rejected last descriptor: the one before it is not built either
        // (it was superseded), and the data type has no model.
        store.offer(descriptor("x", "white", "winequalityLinearRegression"), 51);
        let mut broken = descriptor("y", "white", "winequalityLinearRegression");
        broken.message_content = Some(MessageContent::Data(b"<PMML".to_vec()));
        store.offer(broken, 52);
        assert_eq!(store.builds(), 0);
        assert!(current(&store, "wine").is_none());
        store.flush().unwrap();
        assert_eq!((store.builds(), store.rejected()), (3, 1));
        let (name, since, version) = current(&store, "wine").unwrap();
        assert_eq!((name.as_str(), version), ("m49", 49));
        assert!(since > 1_600_000_000_000, "ms since the epoch: {since}");
        assert!(current(&store, "white").is_none());
        // Caught up: a descriptor now comes back to be built by the caller.
        assert!(
            store
                .offer(descriptor("m50", "wine", "winequalityLinearRegression"), 53)
                .is_some()
        );

        // A restart: the file gives back each data type's current model,
        // with its time and publication, built once each.
        let mut restarted = ModelStore::new(ModelLimits::default(), Some(file.clone()));
        restarted.read_file(&file).unwrap();
        restarted.flush().unwrap();
        assert_eq!(restarted.builds(), 2);
        assert_eq!(current(&restarted, "wine").unwrap(), (name, since, version));
        assert_eq!(current(&restarted, "red").unwrap().2, 50);

        // A damaged file is a clear error, not a silent loss of models.
        std::fs::write(&file, b"model-store 1\nrubbish").unwrap();
        let mut damaged = ModelStore::new(ModelLimits::default(), Some(file.clone()));
        let error = damaged.read_file(&file).unwrap_err();
        assert!(
            error.to_string().contains("delete the state directory"),
            "{error}"
        );
        std::fs::write(&file, b"something else").unwrap();
        assert!(damaged.read_file(&file).is_err());
    }

    #[test]
    fn a_key_that_disagrees_is_logged_once_and_ignored() {
        let mut store = ModelStore::new(ModelLimits::default(), None);
        store.check_key(Some(b"red"), "wine");
        store.check_key(Some(b"red"), "wine");
        store.check_key(Some(&[0xff]), "wine");
        store.check_key(Some(b"wine"), "wine");
        store.check_key(None, "wine");
        assert_eq!(store.warned_keys.len(), 2);
        for i in 0..2 * MAX_WARNED_KEYS {
            store.check_key(Some(format!("k{i}").as_bytes()), "wine");
        }
        assert_eq!(store.warned_keys.len(), MAX_WARNED_KEYS);
    }
}
