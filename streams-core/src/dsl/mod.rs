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
mod kstream_aggregate;
mod kstream_global_ktable_join;
mod kstream_kstream_join;
mod kstream_ktable_join;
mod kstream_session_window_aggregate;
mod kstream_window_aggregate;
mod ktable;
mod ktable_aggregate;
mod ktable_ktable_join;
mod options;
mod suppress;
mod windowed;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

pub use grouped::{KGroupedStream, KGroupedTable};
pub use kstream::{BranchedKStream, KStream};
pub use ktable::{GlobalKTable, KTable};
pub use suppress::{BufferConfig, BufferFull, Suppressed, SuppressionBuffer};
pub use windowed::{SessionWindowedKStream, TimeWindowedKStream, WindowedBy};

pub use options::StreamJoined;
pub use options::{
    Consumed, DEFAULT_CACHE_BYTES, Grouped, Materialized, Named, Produced, Repartitioned, StoreType,
};

use crate::error::{Result, StreamsError, TopologyError};
use crate::processor::{ProcessResult, Processor, ProcessorContext};
use crate::record::Record;
use crate::serde::{SerdeRef, default_serde};
use crate::topology::{TopicName, Topology};

/// Types that can flow through a topology: any `Clone + Send + 'static` type.
///
/// ```
/// use streams_core::dsl::Data;
///
/// fn flows<T: Data>() {}
/// flows::<String>();
/// flows::<(u32, Vec<String>)>();
/// ```
pub trait Data: Clone + Send + 'static {}

impl<T: Clone + Send + 'static> Data for T {}

pub use crate::record::Change;

pub(crate) struct BuilderState {
    pub(crate) topology: Topology,
    counter: usize,
    error: Option<StreamsError>,
    /// The grace period of each windowed aggregation, by its node: what
    /// `suppress(until_window_closes)` downstream waits for.
    pub(crate) window_graces: std::collections::HashMap<String, i64>,
}

pub(crate) type Shared = Rc<RefCell<BuilderState>>;

impl BuilderState {
    fn new() -> Self {
        BuilderState {
            topology: Topology::new(),
            counter: 0,
            error: None,
            window_graces: std::collections::HashMap::new(),
        }
    }

    /// The grace period of the nearest windowed aggregation upstream of
    /// `node`, if there is one.
    pub(crate) fn upstream_grace(&self, node: &str) -> Option<i64> {
        let nodes = &self.topology.nodes;
        let mut queue: Vec<usize> = nodes
            .iter()
            .position(|n| n.name == node)
            .into_iter()
            .collect();
        let mut seen = std::collections::HashSet::new();
        while let Some(index) = queue.pop() {
            if !seen.insert(index) {
                continue;
            }
            if let Some(grace) = self.window_graces.get(&nodes[index].name) {
                return Some(*grace);
            }
            queue.extend(
                nodes
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| n.children.contains(&index))
                    .map(|(i, _)| i),
            );
        }
        None
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

    pub(crate) fn fail(&mut self, error: TopologyError) {
        self.record::<()>(Err(error.into()));
    }

    /// `given`, else `T`'s default serde; with neither, records a build
    /// error naming `operation` and returns a stand-in that never runs
    /// (`build` fails first).
    pub(crate) fn serde_or_fail<T: 'static>(
        &mut self,
        given: Option<SerdeRef<T>>,
        operation: &str,
    ) -> SerdeRef<T> {
        if let Some(serde) = given.or_else(default_serde) {
            return serde;
        }
        let type_name = std::any::type_name::<T>();
        self.fail(TopologyError::new(format!(
            "{operation} has no serde for {type_name}, which has no default: give one with the \
             operation's `_with` form (Consumed::with, Produced::with)"
        )));
        Arc::new(NoSerde)
    }
}

/// Stands in for a missing serde in a topology that `build` refuses.
struct NoSerde;

impl<T> crate::serde::Serde<T> for NoSerde {
    fn serialize_into(&self, _: &T, _: &mut Vec<u8>) -> Result<(), crate::serde::SerdeError> {
        Err(crate::serde::SerdeError::new("no serde"))
    }

    fn deserialize(&self, _: &[u8]) -> Result<T, crate::serde::SerdeError> {
        Err(crate::serde::SerdeError::new("no serde"))
    }
}

/// One topic or many, as [`StreamsBuilder::stream`] reads them: a `&str`,
/// a `String`, or a slice, array or `Vec` of either.
///
/// ```
/// use streams_core::StreamsBuilder;
/// use streams_core::dsl::KStream;
///
/// let builder = StreamsBuilder::new();
/// let regions = vec!["clicks-eu".to_string(), "clicks-us".to_string()];
/// let clicks: KStream<String, String> = builder.stream(&regions);
/// clicks.to("clicks");
/// let topology = builder.build()?;
/// assert_eq!(topology.describe().subtopologies[0].nodes[0].topics, regions);
/// # Ok::<(), streams_core::StreamsError>(())
/// ```
pub trait Topics {
    /// The topic names.
    ///
    /// ```
    /// use streams_core::dsl::Topics;
    ///
    /// assert_eq!("orders".into_topics(), ["orders"]);
    /// assert_eq!(["orders-eu", "orders-us"].into_topics(), ["orders-eu", "orders-us"]);
    /// ```
    fn into_topics(self) -> Vec<String>;
}

impl Topics for &str {
    fn into_topics(self) -> Vec<String> {
        vec![self.to_owned()]
    }
}

impl Topics for String {
    fn into_topics(self) -> Vec<String> {
        vec![self]
    }
}

impl Topics for &String {
    fn into_topics(self) -> Vec<String> {
        vec![self.clone()]
    }
}

impl<T: AsRef<str>> Topics for &[T] {
    fn into_topics(self) -> Vec<String> {
        self.iter().map(|t| t.as_ref().to_owned()).collect()
    }
}

impl<T: AsRef<str>, const N: usize> Topics for [T; N] {
    fn into_topics(self) -> Vec<String> {
        self.iter().map(|t| t.as_ref().to_owned()).collect()
    }
}

impl<T: AsRef<str>, const N: usize> Topics for &[T; N] {
    fn into_topics(self) -> Vec<String> {
        self.iter().map(|t| t.as_ref().to_owned()).collect()
    }
}

impl<T: AsRef<str>> Topics for Vec<T> {
    fn into_topics(self) -> Vec<String> {
        self.iter().map(|t| t.as_ref().to_owned()).collect()
    }
}

impl<T: AsRef<str>> Topics for &Vec<T> {
    fn into_topics(self) -> Vec<String> {
        self.iter().map(|t| t.as_ref().to_owned()).collect()
    }
}

/// Builds a topology with the DSL. Keys and values of common types
/// (strings, integers, `()`, bytes, and `Option`s of them) get default
/// serdes; the `_with` forms of operations take explicit ones.
///
/// ```
/// use streams_core::StreamsBuilder;
/// use streams_core::dsl::KStream;
///
/// let builder = StreamsBuilder::new();
/// let words: KStream<String, String> = builder.stream("in");
/// words
///     .filter(|_, v| !v.is_empty())
///     .map_values(|v| v.to_uppercase())
///     .to("out");
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
    ///
    /// ```
    /// use streams_core::StreamsBuilder;
    ///
    /// let builder = StreamsBuilder::new();
    /// let topology = builder.build()?;
    /// assert!(topology.describe().subtopologies.is_empty());
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn new() -> Self {
        StreamsBuilder {
            state: Rc::new(RefCell::new(BuilderState::new())),
        }
    }

    /// A stream of the records of `topics` (one topic or many), read with
    /// the default serdes of `K` and `V`.
    ///
    /// ```
    /// use streams_core::StreamsBuilder;
    /// use streams_core::dsl::KStream;
    ///
    /// let builder = StreamsBuilder::new();
    /// let one: KStream<String, i64> = builder.stream("amounts");
    /// let many: KStream<(), String> = builder.stream(["lines-a", "lines-b"]);
    /// # drop((one, many));
    /// builder.build()?;
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn stream<K: Data, V: Data>(&self, topics: impl Topics) -> KStream<K, V> {
        let (keys, values) = {
            let mut st = self.state.borrow_mut();
            (
                st.serde_or_fail(None, "stream()"),
                st.serde_or_fail(None, "stream()"),
            )
        };
        let consumed = Consumed {
            keys,
            values,
            extractor: None,
            name: None,
        };
        self.stream_with(topics, consumed)
    }

    /// A stream of the records of `topics`, read as `consumed` says.
    ///
    /// ```
    /// use streams_core::StreamsBuilder;
    /// use streams_core::dsl::Consumed;
    /// use streams_core::serde::{JsonSerde, StringSerde};
    ///
    /// #[derive(Clone, serde::Serialize, serde::Deserialize)]
    /// struct Order { amount: u32 }
    ///
    /// let builder = StreamsBuilder::new();
    /// builder
    ///     .stream_with("orders", Consumed::with(StringSerde, JsonSerde::<Order>::new()))
    ///     .map_values(|order| i64::from(order.amount))
    ///     .to("amounts");
    /// builder.build()?;
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn stream_with<K: Data, V: Data>(
        &self,
        topics: impl Topics,
        consumed: Consumed<K, V>,
    ) -> KStream<K, V> {
        let topics = topics
            .into_topics()
            .into_iter()
            .map(TopicName::External)
            .collect();
        KStream::source(self.state.clone(), topics, consumed)
    }

    /// A table of the latest value per key of `topic` (a null value deletes
    /// the key), kept in a store named by `materialized`.
    ///
    /// ```
    /// use streams_core::dsl::{Consumed, Materialized};
    /// use streams_core::serde::StringSerde;
    /// use streams_core::testing::TopologyTestDriver;
    /// use streams_core::{StreamsBuilder, StreamsConfig};
    ///
    /// let builder = StreamsBuilder::new();
    /// let users = builder.table(
    ///     "users",
    ///     Consumed::with(StringSerde, StringSerde),
    ///     Materialized::named("users").in_memory(),
    /// );
    /// assert_eq!(users.queryable_store_name(), Some("users"));
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let mut input = driver.create_input_topic("users", StringSerde, StringSerde);
    /// input.pipe_input("u1".into(), "ann".into());
    /// input.pipe_input("u1".into(), "anne".into());
    /// input.pipe_input("u2".into(), "bob".into());
    /// input.pipe_tombstone("u2".into());
    /// let store = driver.key_value_store::<String, String>("users")?;
    /// assert_eq!(store.get(&"u1".into())?, Some("anne".into()));
    /// assert_eq!(store.get(&"u2".into())?, None);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
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
    ///
    /// ```
    /// use streams_core::dsl::{Consumed, Materialized};
    /// use streams_core::serde::StringSerde;
    /// use streams_core::testing::TopologyTestDriver;
    /// use streams_core::{StreamsBuilder, StreamsConfig};
    ///
    /// let builder = StreamsBuilder::new();
    /// let products = builder.global_table(
    ///     "products",
    ///     Consumed::with(StringSerde, StringSerde),
    ///     Materialized::named("products").in_memory(),
    /// );
    /// assert_eq!(products.queryable_store_name(), "products");
    /// let topology = builder.build()?;
    /// assert_eq!(topology.describe().global_stores[0].topic, "products");
    /// let driver = TopologyTestDriver::new(topology, StreamsConfig::new("app"))?;
    /// let mut input = driver.create_input_topic("products", StringSerde, StringSerde);
    /// input.pipe_input("p1".into(), "pen".into());
    /// let store = driver.key_value_store::<String, String>("products")?;
    /// assert_eq!(store.get(&"p1".into())?, Some("pen".into()));
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
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
    ///
    /// ```
    /// use streams_core::dsl::Consumed;
    /// use streams_core::processor::{ProcessResult, Processor, ProcessorContext};
    /// use streams_core::serde::StringSerde;
    /// use streams_core::state::Stores;
    /// use streams_core::testing::TopologyTestDriver;
    /// use streams_core::{Record, StreamsBuilder, StreamsConfig};
    ///
    /// /// Keeps the store `rates` from its topic.
    /// struct RatesLoader;
    ///
    /// impl Processor<String, String, (), ()> for RatesLoader {
    ///     fn process(
    ///         &mut self,
    ///         record: Record<String, String>,
    ///         ctx: &mut ProcessorContext<'_, (), ()>,
    ///     ) -> ProcessResult {
    ///         let rates = ctx.key_value_store::<String, String>("rates")?;
    ///         rates.put(&record.key, &record.value)?;
    ///         Ok(())
    ///     }
    /// }
    ///
    /// let builder = StreamsBuilder::new();
    /// let rates = Stores::in_memory_key_value_store("rates");
    /// let store = Stores::key_value_store_builder(rates, StringSerde, StringSerde);
    /// builder.add_global_store(
    ///     store.with_logging_disabled(),
    ///     "rates",
    ///     Consumed::with(StringSerde, StringSerde),
    ///     || RatesLoader,
    /// );
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let mut input = driver.create_input_topic("rates", StringSerde, StringSerde);
    /// input.pipe_input("eur".into(), "1.1".into());
    /// let rates = driver.key_value_store::<String, String>("rates")?;
    /// assert_eq!(rates.get(&"eur".into())?, Some("1.1".into()));
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
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
        let result = st
            .topology
            .add_global_store(
                builder,
                &source,
                consumed.keys,
                consumed.values,
                topic,
                &processor,
                supplier,
            )
            .map(|_| ());
        st.record(result);
        self
    }

    /// Adds a state store for processors added with [`KStream::process`].
    ///
    /// ```
    /// use streams_core::dsl::KStream;
    /// use streams_core::processor::{ProcessResult, Processor, ProcessorContext};
    /// use streams_core::serde::{I64Serde, StringSerde};
    /// use streams_core::state::Stores;
    /// use streams_core::testing::TopologyTestDriver;
    /// use streams_core::{Record, StreamsBuilder, StreamsConfig};
    ///
    /// /// Forwards how many visits each user made so far, kept in the store `visits`.
    /// struct CountVisits;
    ///
    /// impl Processor<String, String, String, i64> for CountVisits {
    ///     fn process(
    ///         &mut self,
    ///         record: Record<String, String>,
    ///         ctx: &mut ProcessorContext<'_, String, i64>,
    ///     ) -> ProcessResult {
    ///         let visits = ctx.key_value_store::<String, i64>("visits")?;
    ///         let count = visits.get(&record.key)?.unwrap_or(0) + 1;
    ///         visits.put(&record.key, &count)?;
    ///         ctx.forward(record.with_value(count))?;
    ///         Ok(())
    ///     }
    /// }
    ///
    /// let builder = StreamsBuilder::new();
    /// builder.add_state_store(Stores::key_value_store_builder(
    ///     Stores::in_memory_key_value_store("visits"),
    ///     StringSerde,
    ///     I64Serde,
    /// ));
    /// let pages: KStream<String, String> = builder.stream("page-views");
    /// pages.process(|| CountVisits, &["visits"]).to("visit-counts");
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let mut input = driver.create_input_topic("page-views", StringSerde, StringSerde);
    /// let output = driver.create_output_topic("visit-counts", StringSerde, I64Serde);
    /// input.pipe_input("ann".into(), "/home".into());
    /// input.pipe_input("ann".into(), "/cart".into());
    /// assert_eq!(output.read_values_to_list(), [1, 2]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn add_state_store(&self, builder: impl crate::state::StoreBuilder) -> &Self {
        let mut state = self.state.borrow_mut();
        let result = state.topology.add_state_store(builder, &[]).map(|_| ());
        state.record(result);
        self
    }

    /// The topology, or the first mistake made while building it. The
    /// builder is empty afterwards.
    ///
    /// ```
    /// use streams_core::StreamsBuilder;
    /// use streams_core::dsl::KStream;
    ///
    /// let builder = StreamsBuilder::new();
    /// let orders: KStream<String, String> = builder.stream("orders");
    /// orders.to("orders-copy");
    /// let topology = builder.build()?;
    /// assert_eq!(topology.describe().subtopologies[0].nodes.len(), 2);
    ///
    /// // `Vec<String>` has no default serde: the mistake is reported here.
    /// let lists: KStream<String, Vec<String>> = builder.stream("lists");
    /// # drop(lists);
    /// assert!(builder.build().is_err());
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
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
    /// No serdes known: the defaults for the types, where they have one.
    pub(crate) fn defaults() -> Self {
        Serdes {
            keys: default_serde(),
            values: default_serde(),
        }
    }

    /// The same serdes for an operator's output types, where those types
    /// are unchanged (a `select_key` from `String` to `String` keeps the key
    /// serde); the defaults of the new types where they differ.
    pub(crate) fn retype<K2: 'static, V2: 'static>(&self) -> Serdes<K2, V2> {
        Serdes {
            keys: retype(self.keys.clone()),
            values: retype(self.values.clone()),
        }
    }
}

/// `serde` if `B` is `A`, else `B`'s default serde.
fn retype<A: 'static, B: 'static>(serde: Option<SerdeRef<A>>) -> Option<SerdeRef<B>> {
    let Some(serde) = serde else {
        return default_serde();
    };
    let boxed: Box<dyn std::any::Any> = Box::new(serde);
    boxed
        .downcast::<SerdeRef<B>>()
        .ok()
        .map(|b| *b)
        .or_else(default_serde)
}

/// Test drivers for the DSL's processors, one at a time.
#[cfg(test)]
pub(crate) mod test_support {
    use std::sync::Arc;

    use super::Change;
    use crate::processor::{ProcessResult, Processor, ProcessorContext};
    use crate::serde::{ChangeSerde, Serde, default_serde};
    use crate::state::Stores;
    use crate::testing::TopologyTestDriver;
    use crate::{StreamsConfig, Topology};

    /// A driver for the processor `make` gives, between the topic `in` and
    /// the topic `out` (its changes), with an in-memory store `agg` of keys
    /// and aggregates.
    pub(crate) fn one_processor<K, VIn, VA, P>(
        keys: impl Serde<K> + Clone + 'static,
        values: impl Serde<VIn> + 'static,
        aggregates: impl Serde<VA> + Clone + 'static,
        make: impl Fn() -> P + Send + Sync + 'static,
    ) -> TopologyTestDriver
    where
        K: Clone + Send + 'static,
        VIn: Clone + Send + 'static,
        VA: Clone + Send + 'static,
        P: Processor<K, VIn, K, Change<VA>> + 'static,
    {
        let mut topology = Topology::new();
        let store = Stores::key_value_store_builder(
            Stores::in_memory_key_value_store("agg"),
            keys.clone(),
            aggregates.clone(),
        )
        .with_logging_disabled();
        topology
            .add_source("source", keys.clone(), values, &["in"])
            .and_then(|t| t.add_processor("processor", make, &["source"]))
            .and_then(|t| t.add_state_store(store, &["processor"]))
            .and_then(|t| {
                t.add_sink(
                    "sink",
                    "out",
                    keys,
                    ChangeSerde::new(Arc::new(aggregates)),
                    &["processor"],
                )
            })
            .expect("a valid topology");
        TopologyTestDriver::new(topology, StreamsConfig::new("test")).expect("a driver")
    }

    /// Makes processors that put each record into the store `store`, as a
    /// table's or a global store's source does.
    pub(crate) fn store_writer<K, V>(store: &str) -> impl Fn() -> StoreWriter<K, V> + Send + Sync
    where
        K: Clone + Send + 'static,
        V: Clone + Send + 'static,
    {
        let store = store.to_owned();
        move || StoreWriter {
            store: store.clone(),
            handle: None,
        }
    }

    /// See [`store_writer`].
    pub(crate) struct StoreWriter<K, V> {
        store: String,
        handle: Option<crate::state::KeyValueStoreHandle<K, V>>,
    }

    impl<K, V> Processor<K, V, (), ()> for StoreWriter<K, V>
    where
        K: Clone + Send + 'static,
        V: Clone + Send + 'static,
    {
        fn init(&mut self, ctx: &mut ProcessorContext<'_, (), ()>) -> ProcessResult {
            self.handle = Some(ctx.key_value_store(&self.store)?);
            Ok(())
        }

        fn process(
            &mut self,
            r: crate::Record<K, V>,
            _ctx: &mut ProcessorContext<'_, (), ()>,
        ) -> ProcessResult {
            let handle = self.handle.as_ref().expect("init looks the store up");
            handle.put(&r.key, &r.value)?;
            Ok(())
        }
    }

    /// The changes written to `out` so far: key, new value, old value.
    pub(crate) fn changes<K: 'static, V: 'static>(
        driver: &TopologyTestDriver,
    ) -> Vec<(K, Option<V>, Option<V>)> {
        let keys = default_serde::<K>().expect("a key type with a default serde");
        let values = default_serde::<V>().expect("a value type with a default serde");
        driver
            .create_output_topic("out", keys, ChangeSerde::new(values))
            .read_records_to_list()
            .into_iter()
            .map(|r| (r.key, r.value.new, r.value.old))
            .collect()
    }
}
