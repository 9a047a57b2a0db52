//! The serving topology. Models arrive on `models` (keyed by data type)
//! and are read by a global store on every instance, so a model published
//! once serves every partition of `mdata`; the global thread builds them,
//! off the scoring path, and swaps them in under a short lock. Records
//! arrive on `mdata`; each is scored with the current model of its data
//! type and reported on `mscores`, served or not. Serving statistics per
//! data type live in a store whose kind is the variant's.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use proto::{ModelDescriptor, ServingResult, WineRecord};
use rustc_hash::FxHashMap;
use streams_core::processor::{ProcessResult, Processor, ProcessorContext};
use streams_core::serde::{ProtobufSerde, Serde, SerdeError, StringSerde, UnitSerde};
use streams_core::state::{
    KeyValueStoreHandle, StateRestoreCallback, StateStore, StoreBuilder, StoreError, StoreHandle,
    StoreInstance, Write,
};
use streams_core::{Record, Result as StreamsResult, Topology};

use crate::http::ServingMetrics;
use crate::model::{ServedModel, build};
use crate::stats::{ModelToServeStats, StatsSerde};

/// Wine records in.
pub const DATA_TOPIC: &str = "mdata";
/// Model descriptors in, keyed by data type.
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
/// variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreVariant {
    /// An in-memory store without a changelog: lost on restart.
    Memory,
    /// A RocksDB store with a changelog and a record cache (written back
    /// at each commit): survives restarts.
    Standard,
    /// This application's own store ([`StatsStore`]): in memory, with a
    /// snapshot per data type logged at each commit and restored at start.
    Custom,
}

impl std::str::FromStr for StoreVariant {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "memory" => Ok(StoreVariant::Memory),
            "standard" => Ok(StoreVariant::Standard),
            "custom" => Ok(StoreVariant::Custom),
            other => Err(format!(
                "unknown store `{other}`: use memory, standard or custom"
            )),
        }
    }
}

/// The current model of every data type, with what it rejected.
#[derive(Default)]
pub struct ModelStore {
    models: FxHashMap<String, (Arc<ServedModel>, i64)>,
    /// Counts installs, so that scorers notice a swap with one atomic read
    /// rather than locking the store for every record.
    generation: Arc<AtomicU64>,
    rejected: u64,
    open: bool,
}

impl ModelStore {
    /// The current model for `data_type`, and since when it serves.
    pub fn current(&self, data_type: &str) -> Option<(Arc<ServedModel>, i64)> {
        self.models.get(data_type).cloned()
    }

    /// Every current model.
    pub fn all(&self) -> Vec<Arc<ServedModel>> {
        self.models.values().map(|(m, _)| m.clone()).collect()
    }

    /// Descriptors that did not become models.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Swaps in `model` for its data type; returns the model it replaces,
    /// for the caller to drop after the store's lock is released.
    fn install(&mut self, model: Arc<ServedModel>, since: i64) -> Option<Arc<ServedModel>> {
        let replaced = self
            .models
            .insert(model.data_type.clone(), (model, since))
            .map(|(old, _)| old);
        // After the insert: a scorer that sees the new count finds the new
        // model.
        self.generation.fetch_add(1, Ordering::Release);
        replaced
    }

    fn reject(&mut self, reason: &dyn std::fmt::Display) {
        self.rejected += 1;
        log::warn!("model rejected, the previous one keeps serving: {reason}");
    }
}

impl StateStore for ModelStore {
    fn name(&self) -> &str {
        MODELS_STORE
    }
    fn persistent(&self) -> bool {
        false
    }
    fn is_open(&self) -> bool {
        self.open
    }
    fn flush(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
    fn close(&mut self) -> Result<(), StoreError> {
        self.open = false;
        Ok(())
    }
}

impl StateRestoreCallback for ModelStore {
    /// Global stores are refilled by their processor; a direct restore
    /// decodes and builds just the same.
    fn restore_batch(&mut self, records: &[Write<'_>]) -> Result<(), StoreError> {
        for (_, value) in records {
            let Some(bytes) = value else { continue };
            match <ModelDescriptor as prost::Message>::decode(*bytes) {
                Ok(descriptor) => match build(&descriptor) {
                    Ok(model) => {
                        log_install(&model);
                        self.install(Arc::new(model), 0);
                    }
                    Err(error) => self.reject(&error),
                },
                Err(error) => self.reject(&error),
            }
        }
        Ok(())
    }
}

struct ModelStoreBuilder;

impl StoreBuilder for ModelStoreBuilder {
    fn name(&self) -> &str {
        MODELS_STORE
    }
    fn logging_enabled(&self) -> bool {
        false
    }
    fn persistent(&self) -> bool {
        false
    }
    fn build(
        &self,
        _: &streams_core::state::StoreContext<'_>,
        _: Option<Box<dyn streams_core::ChangelogSink>>,
    ) -> StreamsResult<StoreInstance> {
        Ok(StoreInstance::Custom(Box::new(ModelStore {
            open: true,
            ..ModelStore::default()
        })))
    }
}

fn log_install(model: &ServedModel) {
    log::info!(
        "serving model {} ({}) for data type {}",
        model.name,
        model.kind.as_str_name(),
        model.data_type
    );
}

/// Builds each arriving descriptor (on the global thread) and swaps the
/// model in.
struct ModelUpdater;

impl Processor<String, ModelDescriptor, (), ()> for ModelUpdater {
    fn process(
        &mut self,
        record: Record<String, ModelDescriptor>,
        ctx: &mut ProcessorContext<'_, (), ()>,
    ) -> ProcessResult {
        // Built here, on the global thread, with no lock held; the store's
        // lock (which scoring takes to clone the current model) is held
        // only for the swap, and the replaced model is dropped after it.
        let built = build(&record.value).map(Arc::new);
        if let Ok(model) = &built {
            log_install(model);
        }
        let now = ctx.current_system_time();
        let _replaced =
            ctx.state_store(MODELS_STORE)?
                .with(|store: &mut ModelStore| match built {
                    Ok(model) => store.install(model, now),
                    Err(error) => {
                        store.reject(&error);
                        None
                    }
                })?;
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

    fn record(&mut self, model: &ServedModel, since: i64, millis: f64) {
        let entry = self
            .stats
            .entry(model.data_type.clone())
            .or_insert_with(|| ModelToServeStats::new(model, since));
        entry.continue_or_restart(model, since);
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
    current: FxHashMap<String, (Arc<ServedModel>, i64)>,
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

/// Counts one scoring of `model` that took `millis` in the statistics.
fn count(
    stats: &StatsHandle,
    written: &mut FxHashMap<String, ModelToServeStats>,
    model: &ServedModel,
    since: i64,
    millis: f64,
) -> ProcessResult {
    let stats = match stats {
        StatsHandle::Custom(store) => {
            store.with(|store: &mut StatsStore| store.record(model, since, millis))?;
            return Ok(());
        }
        StatsHandle::KeyValue(stats) => stats,
    };
    let current = match written.get_mut(&model.data_type) {
        Some(current) => current,
        // Restored from the changelog, or nothing yet.
        None => {
            let stored = stats
                .get(&model.data_type)?
                .unwrap_or_else(|| ModelToServeStats::new(model, since));
            written.entry(model.data_type.clone()).or_insert(stored)
        }
    };
    current.continue_or_restart(model, since);
    current.record(millis);
    stats.put(&model.data_type, current)?;
    Ok(())
}

impl Scorer {
    /// The current model of `data_type` and since when it serves, from
    /// what this scorer looked up before unless a swap happened since.
    fn current_model(&mut self, data_type: &str) -> StreamsResult<Option<(Arc<ServedModel>, i64)>> {
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
        if let Some((model, since)) = current {
            let started = self.clock.raw();
            let score = model.model.score(&wine);
            let nanos = self.clock.delta_as_nanos(started, self.clock.raw());
            result.model = model.name.clone();
            result.duration_ns = nanos as i64;
            if let Some(value) = score {
                result.result = value;
                result.served = true;
                let stats = self.stats.as_ref().expect("init takes the stores");
                count(stats, &mut self.written, &model, since, nanos as f64 / 1e6)?;
            }
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

/// The serving topology with statistics kept as `variant` says: `memory`
/// is built with the Processor API, `standard` and `custom` with the DSL.
/// All three read the same topics and write the same results.
pub fn topology(variant: StoreVariant) -> StreamsResult<Topology> {
    topology_with_metrics(variant, Arc::default())
}

/// [`topology`], counting served and unserved records in `metrics`.
pub fn topology_with_metrics(
    variant: StoreVariant,
    metrics: Arc<ServingMetrics>,
) -> StreamsResult<Topology> {
    use streams_core::dsl::{Consumed, Produced, StreamsBuilder};
    use streams_core::state::Stores;
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
        topology
            .add_global_store(
                ModelStoreBuilder,
                "models-source",
                StringSerde,
                ProtobufSerde::<ModelDescriptor>::new(),
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
    builder.add_global_store(
        ModelStoreBuilder,
        MODELS_TOPIC,
        Consumed::with(StringSerde, ProtobufSerde::<ModelDescriptor>::new()),
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
        .stream(&[DATA_TOPIC], Consumed::with(UnitSerde, WineRecordSerde))
        .process(scorer, &[STATS_STORE])
        .to(SCORES_TOPIC, Produced::with(UnitSerde, ServingResultSerde));
    builder.build()
}

/// This instance's serving statistics, one entry per data type (merged
/// over its tasks, which each count the records of their partitions).
pub fn local_stats(
    streams: &streams_core::runtime::KafkaStreams,
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
pub fn current_models(
    streams: &streams_core::runtime::KafkaStreams,
) -> StreamsResult<Vec<(Arc<ServedModel>, i64)>> {
    let mut models: Vec<_> = streams
        .query_custom_store(MODELS_STORE, |s: &mut ModelStore| {
            s.models.values().cloned().collect::<Vec<_>>()
        })?
        .into_iter()
        .flatten()
        .collect();
    models.sort_by(|a, b| a.0.data_type.cmp(&b.0.data_type));
    Ok(models)
}
