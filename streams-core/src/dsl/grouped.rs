//! Grouped streams and tables, and their aggregations.

use std::sync::Arc;

use super::kstream::KStream;
use super::kstream_aggregate::{KStreamAggregate, StreamStep};
use super::ktable::{KTable, ValueGetterSupplier};
use super::ktable_aggregate::{KTableAggregate, TableStep};
use super::options::{Grouped, Materialized};
use super::{Change, Data, Serdes, Shared};
use crate::error::TopologyError;
use crate::processor::Processor;
use crate::serde::{I64Serde, SerdeRef, default_serde};
use crate::state::StoreBuilder;

/// A stream grouped by key, ready to aggregate (Kafka Streams'
/// `KGroupedStream`). A key change before the grouping is repartitioned
/// through an internal topic when the aggregation is added.
///
/// ```
/// use streams_core::StreamsBuilder;
/// use streams_core::dsl::{KGroupedStream, KStream};
///
/// let builder = StreamsBuilder::new();
/// let emails: KStream<(), String> = builder.stream("emails");
/// let by_domain: KGroupedStream<String, String> =
///     emails.group_by(|_, email| email.split('@').nth(1).unwrap_or_default().to_owned());
/// by_domain.count().to_stream().to("emails-per-domain");
/// let topology = builder.build()?;
/// assert_eq!(topology.describe().subtopologies.len(), 2, "the repartition splits the topology");
/// # Ok::<(), streams_core::StreamsError>(())
/// ```
pub struct KGroupedStream<K, V> {
    pub(crate) stream: KStream<K, V>,
    name: Option<String>,
}

impl<K, V> Clone for KGroupedStream<K, V> {
    fn clone(&self) -> Self {
        KGroupedStream {
            stream: self.stream.clone(),
            name: self.name.clone(),
        }
    }
}

/// What an aggregation adds: its store, and the table it makes (keys,
/// values and how to read them back).
pub(crate) struct Aggregation<K, VA> {
    pub(crate) store: String,
    pub(crate) builder: Arc<dyn StoreBuilder>,
    pub(crate) keys: SerdeRef<K>,
    pub(crate) values: SerdeRef<VA>,
    pub(crate) getter: ValueGetterSupplier<K, VA>,
}

/// Adds the store of an aggregation and the processor `make` gives, which
/// keeps it, returning the resulting table.
#[allow(clippy::too_many_arguments)]
fn add_aggregation<K, VIn, VA, P>(
    state: &Shared,
    parent: &str,
    prefix: &str,
    store: &str,
    builder: Arc<dyn StoreBuilder>,
    make: impl Fn() -> P + Send + Sync + 'static,
    keys: SerdeRef<K>,
    values: SerdeRef<VA>,
) -> KTable<K, VA>
where
    K: Data,
    VIn: Data,
    VA: Data,
    P: Processor<K, VIn, K, Change<VA>> + 'static,
{
    add_aggregation_of(
        state,
        parent,
        prefix,
        make,
        Aggregation {
            store: store.to_owned(),
            builder,
            keys,
            values,
            getter: ValueGetterSupplier::store(store),
        },
    )
}

/// Adds an aggregation's store and the processor `make` gives (from keys
/// `KIn` to the table's keys `K`), returning the resulting table.
pub(crate) fn add_aggregation_of<KIn, K, VIn, VA, P>(
    state: &Shared,
    parent: &str,
    prefix: &str,
    make: impl Fn() -> P + Send + Sync + 'static,
    aggregation: Aggregation<K, VA>,
) -> KTable<K, VA>
where
    KIn: Data,
    K: Data,
    VIn: Data,
    VA: Data,
    P: Processor<KIn, VIn, K, Change<VA>> + 'static,
{
    let Aggregation {
        store,
        builder,
        keys,
        values,
        getter,
    } = aggregation;
    let store = store.as_str();
    let mut st = state.borrow_mut();
    let name = st.next_name(prefix);
    let result = st
        .topology
        .add_processor(&name, make, &[parent])
        .map(|_| ())
        .and_then(|_| st.topology.add_state_store(builder, &[]).map(|_| ()))
        .and_then(|()| {
            st.topology
                .connect_processor_and_state_stores(&name, &[store])
                .map(|_| ())
        });
    st.record(result);
    KTable {
        state: state.clone(),
        node: name,
        serdes: Serdes {
            keys: Some(keys),
            values: Some(values),
        },
        getter,
        store: Some(store.to_owned()),
    }
}

impl<K: Data, V: Data> KGroupedStream<K, V> {
    pub(crate) fn new(stream: &KStream<K, V>, grouped: Grouped<K, V>) -> Self {
        let mut stream = stream.clone();
        if grouped.keys.is_some() {
            stream.serdes.keys = grouped.keys;
        }
        if grouped.values.is_some() {
            stream.serdes.values = grouped.values;
        }
        KGroupedStream {
            stream,
            name: grouped.name,
        }
    }

    /// The store name, and the stream repartitioned first if its key changed.
    pub(crate) fn prepare<VA>(
        &self,
        materialized: &Materialized<K, VA>,
        prefix: &str,
    ) -> (String, KStream<K, V>) {
        let store = match &materialized.name {
            Some(name) => name.clone(),
            None => self.stream.state.borrow_mut().next_name(prefix),
        };
        let input = if self.stream.repartition_required {
            let base = self.name.clone().unwrap_or_else(|| store.clone());
            self.stream.through_repartition_topic(
                &base,
                self.stream.serdes.keys.clone(),
                self.stream.serdes.values.clone(),
                None,
                "an aggregation",
            )
        } else {
            self.stream.clone()
        };
        (store, input)
    }

    fn aggregate_with<VA: Data>(
        &self,
        materialized: Materialized<K, VA>,
        default_values: Option<SerdeRef<VA>>,
        step: StreamStep<K, V, VA>,
    ) -> KTable<K, VA> {
        let (store, input) = self.prepare(&materialized, "KSTREAM-AGGREGATE-STATE-STORE-");
        let state = &self.stream.state;
        let keys = materialized
            .keys
            .clone()
            .or_else(|| input.serdes.keys.clone());
        let values = materialized
            .values
            .clone()
            .or(default_values)
            .or_else(default_serde);
        let (Some(keys), Some(values)) = (keys, values) else {
            state.borrow_mut().fail(TopologyError::new(format!(
                "the store `{store}` of an aggregation needs a key serde and a value serde: give them with Materialized::with"
            )));
            return KTable {
                state: state.clone(),
                node: input.node.clone(),
                serdes: Serdes::defaults(),
                getter: ValueGetterSupplier::store(&store),
                store: None,
            };
        };
        let builder: Arc<dyn StoreBuilder> =
            Arc::new(materialized.builder(&store, keys.clone(), values.clone()));
        let name = store.clone();
        add_aggregation(
            state,
            &input.node,
            "KSTREAM-AGGREGATE-",
            &store,
            builder,
            move || KStreamAggregate::new(&name, step.clone()),
            keys,
            values,
        )
    }

    /// Counts records per key in the store `materialized` describes.
    ///
    /// # Examples
    /// ```
    /// # use streams_core::{StreamsBuilder, dsl::{Consumed, Grouped, Materialized}, serde::{StringSerde, UnitSerde}};
    /// let builder = StreamsBuilder::new();
    /// let counts = builder.stream_with(&["words"], Consumed::with(UnitSerde, StringSerde))
    ///     .group_by_with(|_, word| word.clone(), Grouped::with(StringSerde, StringSerde))
    ///     .count_with(Materialized::named("counts").in_memory());
    /// assert_eq!(counts.queryable_store_name(), Some("counts"));
    /// # drop(counts); builder.build().unwrap();
    /// ```
    pub fn count_with(&self, materialized: Materialized<K, i64>) -> KTable<K, i64> {
        self.aggregate_with(
            materialized,
            Some(Arc::new(I64Serde)),
            Arc::new(|_, _, count| count.unwrap_or(0) + 1),
        )
    }

    /// Counts records per key in a store with a generated name (RocksDB,
    /// cached and logged), as Kafka Streams' `count()`.
    ///
    /// ```
    /// use streams_core::StreamsBuilder;
    /// use streams_core::dsl::KStream;
    ///
    /// let builder = StreamsBuilder::new();
    /// let words: KStream<(), String> = builder.stream("words");
    /// words.group_by(|_, w| w).count().to_stream().to("counts");
    /// builder.build()?;
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn count(&self) -> KTable<K, i64> {
        self.count_with(Materialized::default())
    }

    /// Combines the values of each key with `reducer` (the first value is
    /// the start).
    ///
    /// ```
    /// use streams_core::dsl::{KStream, Materialized};
    /// use streams_core::serde::{I64Serde, Nullable, StringSerde};
    /// use streams_core::testing::TopologyTestDriver;
    /// use streams_core::{StreamsBuilder, StreamsConfig};
    ///
    /// let builder = StreamsBuilder::new();
    /// let amounts: KStream<String, i64> = builder.stream("amounts");
    /// amounts
    ///     .group_by_key()
    ///     .reduce(|total, amount| total + amount, Materialized::named("totals").in_memory())
    ///     .to_stream()
    ///     .to("totals");
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let mut input = driver.create_input_topic("amounts", StringSerde, I64Serde);
    /// let output = driver.create_output_topic("totals", StringSerde, Nullable(I64Serde));
    /// input.pipe_key_value_list([("ann".into(), 10), ("bob".into(), 1), ("ann".into(), 5)]);
    /// let totals = output.read_key_values_to_list();
    /// let ann = |total| ("ann".to_string(), Some(total));
    /// assert_eq!(totals, [ann(10), ("bob".into(), Some(1)), ann(15)]);
    /// let store = driver.key_value_store::<String, i64>("totals")?;
    /// assert_eq!(store.get(&"ann".into())?, Some(15));
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn reduce(
        &self,
        reducer: impl Fn(&V, V) -> V + Send + Sync + 'static,
        materialized: Materialized<K, V>,
    ) -> KTable<K, V> {
        let default_values = self.stream.serdes.values.clone();
        self.aggregate_with(
            materialized,
            default_values,
            Arc::new(move |_, value, agg| match agg {
                Some(agg) => reducer(&agg, value),
                None => value,
            }),
        )
    }

    /// Folds the values of each key into an aggregate that starts as
    /// `initializer()`.
    ///
    /// ```
    /// use streams_core::dsl::{KStream, Materialized};
    /// use streams_core::serde::{I64Serde, Nullable, StringSerde};
    /// use streams_core::testing::TopologyTestDriver;
    /// use streams_core::{StreamsBuilder, StreamsConfig};
    ///
    /// // Letters typed per user: string values, an `i64` aggregate.
    /// let builder = StreamsBuilder::new();
    /// let messages: KStream<String, String> = builder.stream("messages");
    /// messages
    ///     .group_by_key()
    ///     .aggregate(
    ///         || 0,
    ///         |_, message, letters| letters + message.len() as i64,
    ///         Materialized::named("letters").in_memory(),
    ///     )
    ///     .to_stream()
    ///     .to("user-letters");
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let mut input = driver.create_input_topic("messages", StringSerde, StringSerde);
    /// let output = driver.create_output_topic("user-letters", StringSerde, Nullable(I64Serde));
    /// input.pipe_input("ann".into(), "hi".into());
    /// input.pipe_input("ann".into(), "there".into());
    /// assert_eq!(output.read_values_to_list(), [Some(2), Some(7)]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn aggregate<VA: Data>(
        &self,
        initializer: impl Fn() -> VA + Send + Sync + 'static,
        aggregator: impl Fn(&K, V, VA) -> VA + Send + Sync + 'static,
        materialized: Materialized<K, VA>,
    ) -> KTable<K, VA> {
        self.aggregate_with(
            materialized,
            None,
            Arc::new(move |k, v, agg| aggregator(k, v, agg.unwrap_or_else(&initializer))),
        )
    }
}

/// A table regrouped by a new key, ready to aggregate (Kafka Streams'
/// `KGroupedTable`). Always repartitioned: rows move between groups.
///
/// ```
/// use streams_core::StreamsBuilder;
/// use streams_core::dsl::{Consumed, KGroupedTable, Materialized};
/// use streams_core::serde::StringSerde;
///
/// let builder = StreamsBuilder::new();
/// let homes = builder.table(
///     "homes",
///     Consumed::with(StringSerde, StringSerde),
///     Materialized::named("homes"),
/// );
/// let by_city: KGroupedTable<String, String> =
///     homes.group_by(|person, city| (city.clone(), person.clone()));
/// by_city.count().to_stream().to("people-per-city");
/// let topology = builder.build()?;
/// assert_eq!(topology.repartition_topics().len(), 1);
/// # Ok::<(), streams_core::StreamsError>(())
/// ```
pub struct KGroupedTable<K, V> {
    state: Shared,
    node: String,
    grouped: Grouped<K, V>,
}

impl<K: Data, V: Data> KGroupedTable<K, V> {
    pub(crate) fn new(state: Shared, node: String, grouped: Grouped<K, V>) -> Self {
        KGroupedTable {
            state,
            node,
            grouped,
        }
    }

    fn aggregate_with<VA: Data>(
        &self,
        materialized: Materialized<K, VA>,
        default_values: Option<SerdeRef<VA>>,
        step: TableStep<K, V, VA>,
    ) -> KTable<K, VA> {
        let store = match &materialized.name {
            Some(name) => name.clone(),
            None => self
                .state
                .borrow_mut()
                .next_name("KTABLE-AGGREGATE-STATE-STORE-"),
        };
        let keys = self
            .grouped
            .keys
            .clone()
            .or_else(|| materialized.keys.clone())
            .or_else(default_serde);
        let values = self.grouped.values.clone().or_else(default_serde);
        let (Some(keys), Some(values)) = (keys, values) else {
            self.state.borrow_mut().fail(TopologyError::new(format!(
                "KTable::group_by for `{store}` needs a key serde and a value serde for its repartition topic: \
                 give them with Grouped::with"
            )));
            return KTable {
                state: self.state.clone(),
                node: self.node.clone(),
                serdes: Serdes::defaults(),
                getter: ValueGetterSupplier::store(&store),
                store: None,
            };
        };
        let change_serde: SerdeRef<Change<V>> = Arc::new(crate::serde::ChangeSerde::new(values));
        let selected = KStream::<K, Change<V>> {
            state: self.state.clone(),
            node: self.node.clone(),
            serdes: Serdes {
                keys: Some(keys.clone()),
                values: Some(change_serde.clone()),
            },
            repartition_required: true,
        };
        let base = self.grouped.name.clone().unwrap_or_else(|| store.clone());
        let input = selected.through_repartition_topic(
            &base,
            Some(keys.clone()),
            Some(change_serde),
            None,
            "KTable::group_by",
        );
        let Some(agg_values) = materialized
            .values
            .clone()
            .or(default_values)
            .or_else(default_serde)
        else {
            self.state.borrow_mut().fail(TopologyError::new(format!(
                "the store `{store}` of an aggregation needs a value serde: give it with Materialized::with"
            )));
            return KTable {
                state: self.state.clone(),
                node: input.node,
                serdes: Serdes::defaults(),
                getter: ValueGetterSupplier::store(&store),
                store: None,
            };
        };
        let store_keys = materialized.keys.clone().unwrap_or_else(|| keys.clone());
        let builder: Arc<dyn StoreBuilder> =
            Arc::new(materialized.builder(&store, store_keys, agg_values.clone()));
        let name = store.clone();
        add_aggregation(
            &self.state,
            &input.node,
            "KTABLE-AGGREGATE-",
            &store,
            builder,
            move || KTableAggregate::new(&name, step.clone()),
            keys,
            agg_values,
        )
    }

    /// Counts rows per group in a store with a generated name.
    ///
    /// ```
    /// use streams_core::StreamsBuilder;
    /// use streams_core::dsl::{Consumed, Materialized};
    /// use streams_core::serde::StringSerde;
    ///
    /// let builder = StreamsBuilder::new();
    /// let cities = builder.table("home-city", Consumed::with(StringSerde, StringSerde), Materialized::named("cities"));
    /// cities.group_by(|_, city| (city.clone(), 1_i64)).count().to_stream().to("people-per-city");
    /// builder.build()?;
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn count(&self) -> KTable<K, i64> {
        self.count_with(Materialized::default())
    }

    /// Counts rows per group in the store `materialized` describes.
    ///
    /// ```
    /// use streams_core::dsl::{Consumed, Materialized};
    /// use streams_core::serde::StringSerde;
    /// use streams_core::testing::TopologyTestDriver;
    /// use streams_core::{StreamsBuilder, StreamsConfig};
    ///
    /// let builder = StreamsBuilder::new();
    /// let homes = builder.table(
    ///     "homes",
    ///     Consumed::with(StringSerde, StringSerde),
    ///     Materialized::named("homes").in_memory(),
    /// );
    /// let per_city = homes
    ///     .group_by(|_, city| (city.clone(), ()))
    ///     .count_with(Materialized::named("people-per-city").in_memory());
    /// assert_eq!(per_city.queryable_store_name(), Some("people-per-city"));
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let mut input = driver.create_input_topic("homes", StringSerde, StringSerde);
    /// input.pipe_input("ann".into(), "paris".into());
    /// input.pipe_input("bob".into(), "paris".into());
    /// input.pipe_tombstone("bob".into());
    /// let counts = driver.key_value_store::<String, i64>("people-per-city")?;
    /// assert_eq!(counts.get(&"paris".into())?, Some(1));
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn count_with(&self, materialized: Materialized<K, i64>) -> KTable<K, i64> {
        self.aggregate_with(
            materialized,
            Some(Arc::new(I64Serde)),
            Arc::new(|_, change, count| {
                let mut count = count.unwrap_or(0);
                count -= i64::from(change.old.is_some());
                count += i64::from(change.new.is_some());
                Some(count)
            }),
        )
    }

    /// Combines each group's rows with `adder`, taking rows that leave the
    /// group out with `subtractor`.
    ///
    /// ```
    /// use streams_core::dsl::{Consumed, Materialized};
    /// use streams_core::serde::{I64Serde, Nullable, StringSerde};
    /// use streams_core::testing::TopologyTestDriver;
    /// use streams_core::{StreamsBuilder, StreamsConfig};
    ///
    /// // The sum of all balances, kept right as balances change.
    /// let builder = StreamsBuilder::new();
    /// let balances = builder.table(
    ///     "balances",
    ///     Consumed::with(StringSerde, I64Serde),
    ///     Materialized::named("balances").in_memory(),
    /// );
    /// balances
    ///     .group_by(|_, balance| ("total".to_string(), *balance))
    ///     .reduce(|sum, b| sum + b, |sum, b| sum - b, Materialized::named("total").in_memory())
    ///     .to_stream()
    ///     .to("total-balance");
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let mut input = driver.create_input_topic("balances", StringSerde, I64Serde);
    /// let output = driver.create_output_topic("total-balance", StringSerde, Nullable(I64Serde));
    /// input.pipe_key_value_list([("ann".into(), 10), ("bob".into(), 5), ("ann".into(), 7)]);
    /// // Ann's old balance leaves the total (15 - 10), then her new one joins it (5 + 7).
    /// assert_eq!(output.read_values_to_list(), [Some(10), Some(15), Some(5), Some(12)]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn reduce(
        &self,
        adder: impl Fn(&V, &V) -> V + Send + Sync + 'static,
        subtractor: impl Fn(&V, &V) -> V + Send + Sync + 'static,
        materialized: Materialized<K, V>,
    ) -> KTable<K, V> {
        let default_values = self.grouped.values.clone();
        self.aggregate_with(
            materialized,
            default_values,
            Arc::new(move |_, change, agg| {
                let mut agg = agg;
                if let Some(old) = &change.old {
                    agg = agg.map(|a| subtractor(&a, old));
                }
                if let Some(new) = change.new {
                    agg = Some(match agg {
                        Some(a) => adder(&a, &new),
                        None => new,
                    });
                }
                agg
            }),
        )
    }

    /// Folds each group's rows into an aggregate that starts as
    /// `initializer()`: `adder` for rows that join, `subtractor` for rows that leave.
    ///
    /// ```
    /// use streams_core::dsl::{Consumed, Materialized};
    /// use streams_core::serde::{I32Serde, StringSerde};
    /// use streams_core::testing::TopologyTestDriver;
    /// use streams_core::{StreamsBuilder, StreamsConfig};
    ///
    /// // The sum of ages of minors and of adults: `i32` ages, `i64` sums.
    /// let builder = StreamsBuilder::new();
    /// let ages = builder.table(
    ///     "ages",
    ///     Consumed::with(StringSerde, I32Serde),
    ///     Materialized::named("ages").in_memory(),
    /// );
    /// ages.group_by(|_, age| (if *age < 18 { "minors" } else { "adults" }.to_string(), *age))
    ///     .aggregate(
    ///         || 0_i64,
    ///         |_, age, sum| sum + i64::from(*age),
    ///         |_, age, sum| sum - i64::from(*age),
    ///         Materialized::named("age-sums").in_memory(),
    ///     );
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let mut input = driver.create_input_topic("ages", StringSerde, I32Serde);
    /// input.pipe_input("ann".into(), 17);
    /// input.pipe_input("bob".into(), 40);
    /// input.pipe_input("ann".into(), 18); // a birthday: ann moves to the adults
    /// let sums = driver.key_value_store::<String, i64>("age-sums")?;
    /// assert_eq!(sums.get(&"minors".into())?, Some(0));
    /// assert_eq!(sums.get(&"adults".into())?, Some(58));
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn aggregate<VA: Data>(
        &self,
        initializer: impl Fn() -> VA + Send + Sync + 'static,
        adder: impl Fn(&K, &V, VA) -> VA + Send + Sync + 'static,
        subtractor: impl Fn(&K, &V, VA) -> VA + Send + Sync + 'static,
        materialized: Materialized<K, VA>,
    ) -> KTable<K, VA> {
        self.aggregate_with(
            materialized,
            None,
            Arc::new(move |k, change, agg| {
                let mut agg = agg.unwrap_or_else(&initializer);
                if let Some(old) = &change.old {
                    agg = subtractor(k, old, agg);
                }
                if let Some(new) = &change.new {
                    agg = adder(k, new, agg);
                }
                Some(agg)
            }),
        )
    }
}
