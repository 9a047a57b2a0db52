//! The serving topology. Models arrive on `models` (keyed by data type)
//! and are read by a global store on every instance, so a model published
//! once serves every partition of `mdata`; the global thread builds them,
//! off the scoring path, and swaps them in under a short lock. Records
//! arrive on `mdata`; each is scored with the current model of its data
//! type and reported on `mscores`, served or not. Serving statistics per
//! data type live in a store whose kind is the variant's.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use proto::{ModelDescriptor, ServingResult, WineRecord};
use streams_core::processor::{ProcessResult, Processor, ProcessorContext};
use streams_core::serde::{JsonSerde, ProtobufSerde, StringSerde, UnitSerde};
use streams_core::state::{
    StateRestoreCallback, StateStore, StoreBuilder, StoreError, StoreInstance, Write,
};
use streams_core::{Record, Result as StreamsResult, Topology};

use crate::model::{ServedModel, build};
use crate::stats::ModelToServeStats;

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

/// Where serving statistics are kept, as in the original's three
/// variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreVariant {
    /// An in-memory store without a changelog: lost on restart.
    Memory,
    /// A RocksDB store with a changelog: survives restarts.
    Standard,
}

/// The current model of every data type, with what it rejected.
#[derive(Default)]
pub struct ModelStore {
    models: HashMap<String, (Arc<ServedModel>, i64)>,
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

    /// Swaps in `model` for its data type.
    fn install(&mut self, model: ServedModel, since: i64) {
        log::info!(
            "serving model {} ({}) for data type {}",
            model.name,
            model.kind.as_str_name(),
            model.data_type
        );
        self.models
            .insert(model.data_type.clone(), (Arc::new(model), since));
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
                    Ok(model) => self.install(model, 0),
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

/// Builds each arriving descriptor (on the global thread) and swaps the
/// model in.
struct ModelUpdater;

impl Processor<String, ModelDescriptor, (), ()> for ModelUpdater {
    fn process(
        &mut self,
        record: Record<String, ModelDescriptor>,
        ctx: &mut ProcessorContext<'_, (), ()>,
    ) -> ProcessResult {
        let built = build(&record.value);
        let now = ctx.current_system_time();
        ctx.state_store(MODELS_STORE)?
            .with(|store: &mut ModelStore| match built {
                Ok(model) => store.install(model, now),
                Err(error) => store.reject(&error),
            })?;
        Ok(())
    }
}

/// Scores each record with the current model of its data type.
struct Scorer;

impl Processor<(), WineRecord, (), ServingResult> for Scorer {
    fn process(
        &mut self,
        record: Record<(), WineRecord>,
        ctx: &mut ProcessorContext<'_, (), ServingResult>,
    ) -> ProcessResult {
        let wine = &record.value;
        let (partition, offset) = ctx
            .record_metadata()
            .map_or((-1, -1), |m| (m.partition, m.offset));
        // The lock is held only to clone the model's Arc.
        let current = ctx
            .state_store(MODELS_STORE)?
            .with(|store: &mut ModelStore| store.current(&wine.data_type))?;
        let mut result = ServingResult {
            data_type: wine.data_type.clone(),
            partition,
            offset,
            ts: record.timestamp,
            ..ServingResult::default()
        };
        if let Some((model, since)) = current {
            let started = Instant::now();
            let score = model.model.score(wine);
            let elapsed = started.elapsed();
            result.model = model.name.clone();
            result.duration_ns = elapsed.as_nanos() as i64;
            if let Some(value) = score {
                result.result = value;
                result.served = true;
                let stats = ctx.key_value_store::<String, ModelToServeStats>(STATS_STORE)?;
                let mut current = match stats.get(&wine.data_type)? {
                    Some(s) if s.name == model.name && s.since == since => s,
                    _ => ModelToServeStats::new(&model, since),
                };
                current.record(elapsed.as_secs_f64() * 1e3);
                stats.put(&wine.data_type, &current)?;
            }
        }
        ctx.forward(Record::new((), result, record.timestamp))?;
        Ok(())
    }
}

/// The serving topology with statistics kept as `variant` says.
pub fn topology(variant: StoreVariant) -> StreamsResult<Topology> {
    use streams_core::state::Stores;
    let supplier = match variant {
        StoreVariant::Memory => Stores::in_memory_key_value_store(STATS_STORE),
        StoreVariant::Standard => Stores::persistent_key_value_store(STATS_STORE),
    };
    let mut stats = Stores::key_value_store_builder(
        supplier,
        StringSerde,
        JsonSerde::<ModelToServeStats>::new(),
    );
    if variant == StoreVariant::Memory {
        stats = stats.with_logging_disabled();
    }
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
        .add_source(
            "data-source",
            UnitSerde,
            ProtobufSerde::<WineRecord>::new(),
            &[DATA_TOPIC],
        )?
        .add_processor("scorer", || Scorer, &["data-source"])?
        .add_state_store(stats, &["scorer"])?
        .add_sink(
            "scores-sink",
            SCORES_TOPIC,
            UnitSerde,
            ProtobufSerde::<ServingResult>::new(),
            &["scorer"],
        )?;
    Ok(topology)
}
