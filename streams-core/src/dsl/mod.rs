//! The DSL: [`StreamsBuilder`], [`KStream`], [`KTable`], grouping and
//! aggregation. It builds the same [`Topology`](crate::Topology) as the
//! Processor API, with generated node names in Kafka Streams' style
//! (`KSTREAM-FILTER-0000000001`) unless you name them.
//!
//! Changing a key (`map`, `select_key`, `flat_map`, `group_by`) marks the
//! stream for repartitioning; the next grouping or join inserts a
//! repartition topic, as Kafka Streams does.
//!
//! Mistakes found while building (a missing serde for a repartition, a
//! name used twice) are kept, and [`StreamsBuilder::build`] reports the
//! first one.

mod grouped;
mod kstream;
mod ktable;
mod options;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

pub use grouped::{KGroupedStream, KGroupedTable};
pub use kstream::{BranchedKStream, KStream};
pub use ktable::{GlobalKTable, KTable};
pub use options::{
    Consumed, DEFAULT_CACHE_BYTES, Grouped, Materialized, Named, Produced, Repartitioned, StoreType,
};

use crate::error::{Result, StreamsError};
use crate::processor::{ProcessResult, Processor, ProcessorContext};
use crate::record::Record;
use crate::serde::SerdeRef;
use crate::topology::{TopicName, Topology};

/// Types that can flow through a topology.
pub trait Data: Clone + Send + 'static {}

impl<T: Clone + Send + 'static> Data for T {}

pub use crate::record::Change;

pub(crate) struct BuilderState {
    pub(crate) topology: Topology,
    counter: usize,
    error: Option<StreamsError>,
}

pub(crate) type Shared = Rc<RefCell<BuilderState>>;

impl BuilderState {
    fn new() -> Self {
        BuilderState {
            topology: Topology::new(),
            counter: 0,
            error: None,
        }
    }

    pub(crate) fn next_name(&mut self, prefix: &str) -> String {
        let name = format!("{prefix}{:010}", self.counter);
        self.counter += 1;
        name
    }

    /// Keeps the first error; later ones are usually its consequences.
    pub(crate) fn record<T>(&mut self, result: Result<T>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                if self.error.is_none() {
                    self.error = Some(error);
                }
                None
            }
        }
    }

    pub(crate) fn fail(&mut self, message: String) {
        self.record::<()>(Err(StreamsError::Topology(message)));
    }
}

/// Builds a topology with the DSL.
///
/// ```
/// use streams_core::{StreamsBuilder, dsl::{Consumed, Produced}};
/// use streams_core::serde::StringSerde;
///
/// let builder = StreamsBuilder::new();
/// builder
///     .stream(&["in"], Consumed::with(StringSerde, StringSerde))
///     .filter(|_, v| !v.is_empty())
///     .map_values(|v| v.to_uppercase())
///     .to("out", Produced::with(StringSerde, StringSerde));
/// let topology = builder.build()?;
/// assert_eq!(topology.describe().subtopologies.len(), 1);
/// # Ok::<(), streams_core::StreamsError>(())
/// ```
#[derive(Clone)]
pub struct StreamsBuilder {
    state: Shared,
}

impl Default for StreamsBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for StreamsBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamsBuilder").finish_non_exhaustive()
    }
}

impl StreamsBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        StreamsBuilder {
            state: Rc::new(RefCell::new(BuilderState::new())),
        }
    }

    /// A stream of the records of `topics`.
    pub fn stream<K: Data, V: Data>(
        &self,
        topics: &[&str],
        consumed: Consumed<K, V>,
    ) -> KStream<K, V> {
        let topics = topics
            .iter()
            .map(|t| TopicName::External((*t).to_owned()))
            .collect();
        KStream::source(self.state.clone(), topics, consumed)
    }

    /// A table of the latest value per key of `topic` (a null value deletes
    /// the key), kept in a store named by `materialized`.
    pub fn table<K: Data, V: Data>(
        &self,
        topic: &str,
        consumed: Consumed<K, V>,
        materialized: Materialized<K, V>,
    ) -> KTable<K, V> {
        KTable::source(self.state.clone(), topic, consumed, materialized)
    }

    /// A table of `topic` read in full on every instance, for joins by any
    /// key without co-partitioning.
    pub fn global_table<K: Data, V: Data>(
        &self,
        topic: &str,
        consumed: Consumed<K, V>,
        materialized: Materialized<K, V>,
    ) -> GlobalKTable<K, V> {
        GlobalKTable::source(self.state.clone(), topic, consumed, materialized)
    }

    /// Adds a global store of any kind (custom stores included): every
    /// instance reads all of `topic`, and each record goes to the processor
    /// `supplier` makes, which keeps the store, as Kafka Streams'
    /// `addGlobalStore`. The store must not be logged: `topic` is its
    /// changelog.
    pub fn add_global_store<K: Data, V: Data, S>(
        &self,
        builder: impl crate::state::StoreBuilder,
        topic: &str,
        consumed: Consumed<K, V>,
        supplier: S,
    ) -> &Self
    where
        S: crate::processor::ProcessorSupplier<K, V, (), ()>,
    {
        let mut st = self.state.borrow_mut();
        let source = consumed
            .name
            .clone()
            .unwrap_or_else(|| st.next_name("KSTREAM-SOURCE-"));
        let processor = st.next_name("KTABLE-SOURCE-");
        let result = st.topology.add_global_store_inner(
            Arc::new(builder),
            &source,
            consumed.keys,
            consumed.values,
            topic,
            &processor,
            supplier,
        );
        st.record(result);
        self
    }

    /// Adds a state store for processors added with [`KStream::process`].
    pub fn add_state_store(&self, builder: impl crate::state::StoreBuilder) -> &Self {
        let mut state = self.state.borrow_mut();
        let result = state.topology.add_store(Arc::new(builder), None);
        state.record(result);
        self
    }

    /// The topology, or the first mistake made while building it. The
    /// builder is empty afterwards.
    pub fn build(&self) -> Result<Topology> {
        let state = std::mem::replace(&mut *self.state.borrow_mut(), BuilderState::new());
        match state.error {
            Some(error) => Err(error),
            None => Ok(state.topology),
        }
    }
}

/// A processor made of a closure, for the DSL's operators.
pub(crate) struct FnProcessor<F> {
    f: F,
}

impl<F> FnProcessor<F> {
    /// The bound lets closures leave their return type to inference.
    pub(crate) fn new<KIn, VIn, KOut, VOut>(f: F) -> Self
    where
        F: FnMut(Record<KIn, VIn>, &mut ProcessorContext<'_, KOut, VOut>) -> ProcessResult + Send,
    {
        FnProcessor { f }
    }
}

impl<F, KIn, VIn, KOut, VOut> Processor<KIn, VIn, KOut, VOut> for FnProcessor<F>
where
    F: FnMut(Record<KIn, VIn>, &mut ProcessorContext<'_, KOut, VOut>) -> ProcessResult + Send,
{
    fn process(
        &mut self,
        record: Record<KIn, VIn>,
        ctx: &mut ProcessorContext<'_, KOut, VOut>,
    ) -> ProcessResult {
        (self.f)(record, ctx)
    }
}

/// Serdes a stream or table knows, carried through operators that keep types.
pub(crate) struct Serdes<K, V> {
    pub(crate) keys: Option<SerdeRef<K>>,
    pub(crate) values: Option<SerdeRef<V>>,
}

impl<K, V> Clone for Serdes<K, V> {
    fn clone(&self) -> Self {
        Serdes {
            keys: self.keys.clone(),
            values: self.values.clone(),
        }
    }
}

impl<K: 'static, V: 'static> Serdes<K, V> {
    pub(crate) fn none() -> Self {
        Serdes {
            keys: None,
            values: None,
        }
    }

    /// The same serdes for an operator's output types, where those types
    /// are unchanged (a `select_key` from `String` to `String` keeps the key
    /// serde); `None` where they differ.
    pub(crate) fn retype<K2: 'static, V2: 'static>(&self) -> Serdes<K2, V2> {
        Serdes {
            keys: retype(self.keys.clone()),
            values: retype(self.values.clone()),
        }
    }
}

fn retype<A: 'static, B: 'static>(serde: Option<SerdeRef<A>>) -> Option<SerdeRef<B>> {
    let boxed: Box<dyn std::any::Any> = Box::new(serde?);
    boxed.downcast::<SerdeRef<B>>().ok().map(|b| *b)
}
