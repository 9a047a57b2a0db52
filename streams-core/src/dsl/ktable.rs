//! `KTable` and `GlobalKTable`: the latest value per key.

use std::sync::Arc;

use super::kstream::KStream;
use super::ktable_ktable_join::{
    KTableKTableJoin, TableJoiner, inner_joiner, joined_getter, left_joiner, outer_joiner,
};
use super::options::{Consumed, Grouped, Materialized};
use super::{Change, Data, FnProcessor, KGroupedTable, Serdes, Shared};
use crate::error::Result;
use crate::processor::StoreLookup;
use crate::processor::{ProcessResult, ProcessorContext};
use crate::record::Record;
use crate::serde::{Nullable, SerdeRef};
use crate::state::StoreBuilder;
use crate::topology::TopicName;

/// Looks up a table's current value for a key, inside a task.
pub(crate) type Getter<K, V> = Box<dyn Fn(&K) -> Result<Option<V>> + Send>;

/// Makes a table's value getter for a task, from the stores it reads.
pub(crate) struct ValueGetterSupplier<K, V> {
    pub(crate) stores: Vec<String>,
    pub(crate) make: Arc<dyn Fn(&StoreLookup<'_>) -> Result<Getter<K, V>> + Send + Sync>,
}

impl<K, V> Clone for ValueGetterSupplier<K, V> {
    fn clone(&self) -> Self {
        ValueGetterSupplier {
            stores: self.stores.clone(),
            make: self.make.clone(),
        }
    }
}

impl<K: Data, V: Data> ValueGetterSupplier<K, V> {
    /// Reads the store `name` directly.
    pub(crate) fn store(name: &str) -> Self {
        let store = name.to_owned();
        ValueGetterSupplier {
            stores: vec![name.to_owned()],
            make: Arc::new(move |lookup| {
                let handle = lookup.key_value_store::<K, V>(&store)?;
                Ok(Box::new(move |key: &K| handle.get(key)))
            }),
        }
    }

    /// This getter's answers, transformed by `f` (given the key).
    pub(crate) fn map<V2: Data>(
        &self,
        f: Arc<dyn Fn(&K, V) -> Option<V2> + Send + Sync>,
    ) -> ValueGetterSupplier<K, V2> {
        let make = self.make.clone();
        ValueGetterSupplier {
            stores: self.stores.clone(),
            make: Arc::new(move |lookup| {
                let inner = make(lookup)?;
                let f = f.clone();
                Ok(Box::new(move |key: &K| {
                    Ok(inner(key)?.and_then(|v| f(key, v)))
                }))
            }),
        }
    }
}

/// A changelog stream seen as a table: the latest value per key (Kafka
/// Streams' `KTable`). Downstream operators receive each update with the
/// value it replaced, so aggregations can subtract it.
///
/// ```
/// use streams_core::StreamsBuilder;
/// use streams_core::dsl::{Consumed, Materialized};
/// use streams_core::serde::{I64Serde, StringSerde};
///
/// let builder = StreamsBuilder::new();
/// let balances = builder.table(
///     "balances",
///     Consumed::with(StringSerde, I64Serde),
///     Materialized::named("balances").in_memory(),
/// );
/// balances.filter(|_, balance| *balance < 0).to_stream().to("overdrawn-accounts");
/// builder.build()?;
/// # Ok::<(), streams_core::StreamsError>(())
/// ```
pub struct KTable<K, V> {
    pub(crate) state: Shared,
    pub(crate) node: String,
    pub(crate) serdes: Serdes<K, V>,
    pub(crate) getter: ValueGetterSupplier<K, V>,
    pub(crate) store: Option<String>,
}

impl<K, V> Clone for KTable<K, V> {
    fn clone(&self) -> Self {
        KTable {
            state: self.state.clone(),
            node: self.node.clone(),
            serdes: self.serdes.clone(),
            getter: self.getter.clone(),
            store: self.store.clone(),
        }
    }
}

/// The processor that keeps a table in its store and forwards changes.
pub(crate) fn materialize<K: Data, V: Data>(
    store: String,
) -> impl Fn() -> FnProcessor<
    Box<
        dyn FnMut(Record<K, Option<V>>, &mut ProcessorContext<'_, K, Change<V>>) -> ProcessResult
            + Send,
    >,
> + Send
+ Sync
+ 'static {
    move || {
        let store = store.clone();
        let mut handle = None;
        FnProcessor::new(Box::new(
            move |r: Record<K, Option<V>>, ctx: &mut ProcessorContext<'_, K, Change<V>>| {
                if handle.is_none() {
                    handle = Some(ctx.key_value_store::<K, V>(&store)?);
                }
                let handle = handle.as_ref().expect("set above");
                let old = match &r.value {
                    Some(value) => {
                        let old = handle.get(&r.key)?;
                        handle.put(&r.key, value)?;
                        old
                    }
                    None => handle.delete(&r.key)?,
                };
                if old.is_none() && r.value.is_none() {
                    // Deleting a key the table never had changes nothing.
                    return Ok(());
                }
                let change = Change {
                    new: r.value.clone(),
                    old,
                };
                ctx.forward(r.with_value(change))?;
                Ok(())
            },
        ))
    }
}

impl<K: Data, V: Data> KTable<K, V> {
    pub(crate) fn source(
        state: Shared,
        topic: &str,
        consumed: Consumed<K, V>,
        materialized: Materialized<K, V>,
    ) -> Self {
        let (source, node, store) = {
            let mut st = state.borrow_mut();
            let source = consumed
                .name
                .clone()
                .unwrap_or_else(|| st.next_name("KSTREAM-SOURCE-"));
            let node = st.next_name("KTABLE-SOURCE-");
            let store = materialized
                .name
                .clone()
                .unwrap_or_else(|| st.next_name(&format!("{topic}-STATE-STORE-")));
            (source, node, store)
        };
        let keys = materialized
            .keys
            .clone()
            .unwrap_or_else(|| consumed.keys.clone());
        let values = materialized
            .values
            .clone()
            .unwrap_or_else(|| consumed.values.clone());
        let nullable: SerdeRef<Option<V>> = Arc::new(Nullable(consumed.values.clone()));
        let extractor = consumed.extractor.clone().map(|own| {
            Arc::new(crate::timestamps::TableTimestamps(own))
                as Arc<dyn crate::timestamps::TimestampExtractor<K, Option<V>>>
        });
        {
            let mut st = state.borrow_mut();
            let builder: Arc<dyn StoreBuilder> =
                Arc::new(materialized.builder(&store, keys.clone(), values.clone()));
            let result = st
                .topology
                .add_source_node(
                    &source,
                    vec![TopicName::External(topic.to_owned())],
                    consumed.keys.clone(),
                    nullable,
                    extractor,
                )
                .and_then(|()| {
                    st.topology
                        .add_processor(&node, materialize::<K, V>(store.clone()), &[&source])
                        .map(|_| ())
                })
                .and_then(|()| st.topology.add_state_store(builder, &[&node]).map(|_| ()));
            st.record(result);
        }
        KTable {
            state,
            node,
            serdes: Serdes {
                keys: Some(keys),
                values: Some(values),
            },
            getter: ValueGetterSupplier::store(&store),
            store: Some(store),
        }
    }

    /// The store holding this table's values, for interactive queries
    /// (`None` for tables computed on the fly, like a filter's result).
    ///
    /// ```
    /// use streams_core::StreamsBuilder;
    /// use streams_core::dsl::{Consumed, Materialized};
    /// use streams_core::serde::{I64Serde, StringSerde};
    ///
    /// let builder = StreamsBuilder::new();
    /// let balances = builder.table(
    ///     "balances",
    ///     Consumed::with(StringSerde, I64Serde),
    ///     Materialized::named("balances").in_memory(),
    /// );
    /// assert_eq!(balances.queryable_store_name(), Some("balances"));
    /// assert_eq!(balances.filter(|_, balance| *balance < 0).queryable_store_name(), None);
    /// builder.build()?;
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn queryable_store_name(&self) -> Option<&str> {
        self.store.as_deref()
    }

    fn change_node<V2: Data>(
        &self,
        prefix: &str,
        f: Arc<dyn Fn(&K, Change<V>) -> Option<Change<V2>> + Send + Sync>,
        getter: ValueGetterSupplier<K, V2>,
        serdes: Serdes<K, V2>,
    ) -> KTable<K, V2> {
        let name = {
            let mut st = self.state.borrow_mut();
            let name = st.next_name(prefix);
            let supplier = move || {
                let f = f.clone();
                FnProcessor::new(
                    move |r: Record<K, Change<V>>,
                          ctx: &mut ProcessorContext<'_, K, Change<V2>>| {
                        if let Some(change) = f(&r.key, r.value) {
                            ctx.forward(Record {
                                key: r.key,
                                value: change,
                                timestamp: r.timestamp,
                                headers: r.headers,
                            })?;
                        }
                        Ok(())
                    },
                )
            };
            let result = st
                .topology
                .add_processor(&name, supplier, &[&self.node])
                .map(|_| ());
            st.record(result);
            name
        };
        KTable {
            state: self.state.clone(),
            node: name,
            serdes,
            getter,
            store: None,
        }
    }

    /// The rows for which `predicate` holds. A row that stops matching is
    /// deleted downstream.
    ///
    /// ```
    /// use streams_core::dsl::{Consumed, Materialized};
    /// use streams_core::serde::{I64Serde, Nullable, StringSerde};
    /// use streams_core::testing::TopologyTestDriver;
    /// use streams_core::{StreamsBuilder, StreamsConfig};
    ///
    /// let builder = StreamsBuilder::new();
    /// let balances = builder.table(
    ///     "balances",
    ///     Consumed::with(StringSerde, I64Serde),
    ///     Materialized::named("balances").in_memory(),
    /// );
    /// balances.filter(|_, balance| *balance < 0).to_stream().to("overdrawn");
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let mut input = driver.create_input_topic("balances", StringSerde, I64Serde);
    /// let output = driver.create_output_topic("overdrawn", StringSerde, Nullable(I64Serde));
    /// input.pipe_input("ann".into(), -5);
    /// input.pipe_input("ann".into(), 10); // no longer overdrawn: a delete
    /// input.pipe_input("bob".into(), 20); // never matched: nothing
    /// let overdrawn = output.read_key_values_to_list();
    /// assert_eq!(overdrawn, [("ann".into(), Some(-5)), ("ann".into(), None)]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn filter(
        &self,
        predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static,
    ) -> KTable<K, V> {
        let predicate = Arc::new(predicate);
        let p = predicate.clone();
        let apply = Arc::new(move |k: &K, change: Change<V>| {
            let new = change.new.filter(|v| p(k, v));
            let old = change.old.filter(|v| p(k, v));
            (new.is_some() || old.is_some()).then_some(Change { new, old })
        });
        let getter = self
            .getter
            .map(Arc::new(move |k: &K, v: V| predicate(k, &v).then_some(v)));
        self.change_node("KTABLE-FILTER-", apply, getter, self.serdes.clone())
    }

    /// The rows for which `predicate` does not hold.
    ///
    /// ```
    /// use streams_core::dsl::{Consumed, Materialized};
    /// use streams_core::serde::{I64Serde, Nullable, StringSerde};
    /// use streams_core::testing::TopologyTestDriver;
    /// use streams_core::{StreamsBuilder, StreamsConfig};
    ///
    /// let builder = StreamsBuilder::new();
    /// let balances = builder.table(
    ///     "balances",
    ///     Consumed::with(StringSerde, I64Serde),
    ///     Materialized::named("balances").in_memory(),
    /// );
    /// balances.filter_not(|_, balance| *balance == 0).to_stream().to("non-zero");
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let mut input = driver.create_input_topic("balances", StringSerde, I64Serde);
    /// let output = driver.create_output_topic("non-zero", StringSerde, Nullable(I64Serde));
    /// input.pipe_input("ann".into(), 0);
    /// input.pipe_input("bob".into(), 3);
    /// assert_eq!(output.read_key_values_to_list(), [("bob".into(), Some(3))]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn filter_not(
        &self,
        predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static,
    ) -> KTable<K, V> {
        self.filter(move |k, v| !predicate(k, v))
    }

    /// Each row's value transformed.
    ///
    /// ```
    /// use streams_core::dsl::{Consumed, Materialized};
    /// use streams_core::serde::{Nullable, StringSerde};
    /// use streams_core::testing::TopologyTestDriver;
    /// use streams_core::{StreamsBuilder, StreamsConfig};
    ///
    /// let builder = StreamsBuilder::new();
    /// let names = builder.table(
    ///     "names",
    ///     Consumed::with(StringSerde, StringSerde),
    ///     Materialized::named("names").in_memory(),
    /// );
    /// names.map_values(|name| name.to_uppercase()).to_stream().to("upper-names");
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let mut input = driver.create_input_topic("names", StringSerde, StringSerde);
    /// let output = driver.create_output_topic("upper-names", StringSerde, Nullable(StringSerde));
    /// input.pipe_input("u1".into(), "ann".into());
    /// input.pipe_tombstone("u1".into());
    /// assert_eq!(output.read_values_to_list(), [Some("ANN".into()), None]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn map_values<V2: Data>(
        &self,
        mapper: impl Fn(&V) -> V2 + Send + Sync + 'static,
    ) -> KTable<K, V2> {
        let mapper = Arc::new(mapper);
        let m = mapper.clone();
        let apply = Arc::new(move |_: &K, change: Change<V>| {
            Some(Change {
                new: change.new.as_ref().map(|v| m(v)),
                old: change.old.as_ref().map(|v| m(v)),
            })
        });
        let getter = self
            .getter
            .map(Arc::new(move |_: &K, v: V| Some(mapper(&v))));
        self.change_node(
            "KTABLE-MAPVALUES-",
            apply,
            getter,
            Serdes {
                keys: self.serdes.keys.clone(),
                values: None,
            },
        )
    }

    /// The table's updates as a stream: the new value, or `None` for a delete.
    ///
    /// ```
    /// use streams_core::dsl::{Consumed, Materialized};
    /// use streams_core::serde::{I64Serde, Nullable, StringSerde};
    /// use streams_core::testing::TopologyTestDriver;
    /// use streams_core::{StreamsBuilder, StreamsConfig};
    ///
    /// let builder = StreamsBuilder::new();
    /// let balances = builder.table(
    ///     "balances",
    ///     Consumed::with(StringSerde, I64Serde),
    ///     Materialized::named("balances").in_memory(),
    /// );
    /// balances.to_stream().to("balance-updates");
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let mut input = driver.create_input_topic("balances", StringSerde, I64Serde);
    /// let output = driver.create_output_topic("balance-updates", StringSerde, Nullable(I64Serde));
    /// input.pipe_input("ann".into(), 1);
    /// input.pipe_input("ann".into(), 2);
    /// input.pipe_tombstone("ann".into());
    /// assert_eq!(output.read_values_to_list(), [Some(1), Some(2), None]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn to_stream(&self) -> KStream<K, Option<V>> {
        let mut st = self.state.borrow_mut();
        let name = st.next_name("KTABLE-TOSTREAM-");
        let supplier = || {
            FnProcessor::new(
                |r: Record<K, Change<V>>, ctx: &mut ProcessorContext<'_, K, Option<V>>| {
                    ctx.forward(Record {
                        key: r.key,
                        value: r.value.new,
                        timestamp: r.timestamp,
                        headers: r.headers,
                    })?;
                    Ok(())
                },
            )
        };
        let result = st
            .topology
            .add_processor(&name, supplier, &[&self.node])
            .map(|_| ());
        st.record(result);
        let values: Option<SerdeRef<Option<V>>> = self
            .serdes
            .values
            .clone()
            .map(|v| Arc::new(Nullable(v)) as SerdeRef<Option<V>>);
        KStream {
            state: self.state.clone(),
            node: name,
            serdes: Serdes {
                keys: self.serdes.keys.clone(),
                values,
            },
            repartition_required: false,
        }
    }

    /// Wires a table-table join of any kind: one processor per side, each
    /// joining its table's changes with the other table's current value,
    /// and a merge node both forward through. Names follow Kafka Streams:
    /// `KTABLE-MERGE-`, `KTABLE-JOINTHIS-`, `KTABLE-JOINOTHER-`, for every
    /// kind of join.
    fn table_join<VO: Data, VR: Data>(
        &self,
        other: &KTable<K, VO>,
        joiner: TableJoiner<V, VO, VR>,
    ) -> KTable<K, VR> {
        let (merge, this_side, other_side) = {
            let mut st = self.state.borrow_mut();
            (
                st.next_name("KTABLE-MERGE-"),
                st.next_name("KTABLE-JOINTHIS-"),
                st.next_name("KTABLE-JOINOTHER-"),
            )
        };
        let (this_getter, other_getter) = (self.getter.clone(), other.getter.clone());
        let j = joiner.clone();
        let this_supplier = move || KTableKTableJoin::this_side(other_getter.clone(), j.clone());
        let j = joiner.clone();
        let other_supplier = move || KTableKTableJoin::other_side(this_getter.clone(), j.clone());
        let merge_supplier = || {
            FnProcessor::new(
                |r: Record<K, Change<VR>>, ctx: &mut ProcessorContext<'_, K, Change<VR>>| {
                    Ok(ctx.forward(r)?)
                },
            )
        };
        {
            let mut st = self.state.borrow_mut();
            // Each side reads the other table's stores.
            let this_reads: Vec<&str> = other.getter.stores.iter().map(String::as_str).collect();
            let other_reads: Vec<&str> = self.getter.stores.iter().map(String::as_str).collect();
            let t = &mut st.topology;
            let result = t
                .add_processor(&this_side, this_supplier, &[&self.node])
                .map(|_| ())
                .and_then(|()| {
                    t.add_processor(&other_side, other_supplier, &[&other.node])
                        .map(|_| ())
                })
                .and_then(|()| {
                    t.add_processor(&merge, merge_supplier, &[&this_side, &other_side])
                        .map(|_| ())
                })
                .and_then(|()| {
                    t.connect_processor_and_state_stores(&this_side, &this_reads)
                        .map(|_| ())
                })
                .and_then(|()| {
                    t.connect_processor_and_state_stores(&other_side, &other_reads)
                        .map(|_| ())
                });
            st.record(result);
        }
        let getter = joined_getter(&self.getter, &other.getter, joiner);
        KTable {
            state: self.state.clone(),
            node: merge,
            serdes: Serdes {
                keys: self.serdes.keys.clone(),
                values: None,
            },
            getter,
            store: None,
        }
    }

    /// The rows whose key is in both tables, joined. Both tables' topics
    /// must be co-partitioned.
    ///
    /// ```
    /// use streams_core::dsl::{Consumed, Materialized};
    /// use streams_core::serde::{Nullable, StringSerde};
    /// use streams_core::testing::TopologyTestDriver;
    /// use streams_core::{StreamsBuilder, StreamsConfig};
    ///
    /// let builder = StreamsBuilder::new();
    /// let strings = || Consumed::with(StringSerde, StringSerde);
    /// let names = builder.table("names", strings(), Materialized::named("names").in_memory());
    /// let emails = builder.table("emails", strings(), Materialized::named("emails").in_memory());
    /// names.join(&emails, |name, email| format!("{name} <{email}>")).to_stream().to("contacts");
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let mut name_input = driver.create_input_topic("names", StringSerde, StringSerde);
    /// let mut email_input = driver.create_input_topic("emails", StringSerde, StringSerde);
    /// let output = driver.create_output_topic("contacts", StringSerde, Nullable(StringSerde));
    /// name_input.pipe_input("u1".into(), "ann".into());
    /// email_input.pipe_input("u1".into(), "ann@example.com".into());
    /// name_input.pipe_tombstone("u1".into());
    /// let contacts = output.read_values_to_list();
    /// assert_eq!(contacts, [Some("ann <ann@example.com>".into()), None]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn join<VO: Data, VR: Data>(
        &self,
        other: &KTable<K, VO>,
        joiner: impl Fn(&V, &VO) -> VR + Send + Sync + 'static,
    ) -> KTable<K, VR> {
        self.table_join(other, inner_joiner(joiner))
    }

    /// Every row of this table, joined with the other's row or `None`.
    ///
    /// ```
    /// use streams_core::dsl::{Consumed, Materialized};
    /// use streams_core::serde::{Nullable, StringSerde};
    /// use streams_core::testing::TopologyTestDriver;
    /// use streams_core::{StreamsBuilder, StreamsConfig};
    ///
    /// let builder = StreamsBuilder::new();
    /// let strings = || Consumed::with(StringSerde, StringSerde);
    /// let names = builder.table("names", strings(), Materialized::named("names").in_memory());
    /// let emails = builder.table("emails", strings(), Materialized::named("emails").in_memory());
    /// names
    ///     .left_join(&emails, |name, email| {
    ///         format!("{name} <{}>", email.map_or("?", String::as_str))
    ///     })
    ///     .to_stream()
    ///     .to("contacts");
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let mut name_input = driver.create_input_topic("names", StringSerde, StringSerde);
    /// let mut email_input = driver.create_input_topic("emails", StringSerde, StringSerde);
    /// let output = driver.create_output_topic("contacts", StringSerde, Nullable(StringSerde));
    /// name_input.pipe_input("u1".into(), "ann".into());
    /// email_input.pipe_input("u1".into(), "ann@example.com".into());
    /// name_input.pipe_tombstone("u1".into());
    /// let contacts = output.read_values_to_list();
    /// assert_eq!(contacts, [Some("ann <?>".into()), Some("ann <ann@example.com>".into()), None]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn left_join<VO: Data, VR: Data>(
        &self,
        other: &KTable<K, VO>,
        joiner: impl Fn(&V, Option<&VO>) -> VR + Send + Sync + 'static,
    ) -> KTable<K, VR> {
        self.table_join(other, left_joiner(joiner))
    }

    /// Every row of either table, joined with the other table's row for
    /// the key; the joiner gets `None` for a table that has none (Kafka
    /// Streams' `KTable#outerJoin`). The joined row is deleted only when
    /// neither table has the key any more. Both tables' topics must be
    /// co-partitioned. Each update carries the joined row it replaces, so
    /// a downstream aggregation stays right.
    ///
    /// ```
    /// use streams_core::dsl::{Consumed, Materialized};
    /// use streams_core::serde::{Nullable, StringSerde};
    /// use streams_core::testing::TopologyTestDriver;
    /// use streams_core::{StreamsBuilder, StreamsConfig};
    ///
    /// let builder = StreamsBuilder::new();
    /// let strings = || Consumed::with(StringSerde, StringSerde);
    /// let names = builder.table("names", strings(), Materialized::named("names").in_memory());
    /// let emails = builder.table("emails", strings(), Materialized::named("emails").in_memory());
    /// names
    ///     .outer_join(&emails, |name, email| {
    ///         let or_unknown = |v: Option<&String>| v.map_or("?", String::as_str).to_owned();
    ///         format!("{} <{}>", or_unknown(name), or_unknown(email))
    ///     })
    ///     .to_stream()
    ///     .to("contacts");
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let mut name_input = driver.create_input_topic("names", StringSerde, StringSerde);
    /// let mut email_input = driver.create_input_topic("emails", StringSerde, StringSerde);
    /// let output = driver.create_output_topic("contacts", StringSerde, Nullable(StringSerde));
    /// email_input.pipe_input("u1".into(), "ann@example.com".into()); // no name yet
    /// name_input.pipe_input("u1".into(), "ann".into());
    /// name_input.pipe_tombstone("u1".into()); // the email is still there
    /// email_input.pipe_tombstone("u1".into()); // both gone: a delete
    /// let contacts = output.read_values_to_list();
    /// assert_eq!(
    ///     contacts,
    ///     [
    ///         Some("? <ann@example.com>".into()),
    ///         Some("ann <ann@example.com>".into()),
    ///         Some("? <ann@example.com>".into()),
    ///         None,
    ///     ]
    /// );
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn outer_join<VO: Data, VR: Data>(
        &self,
        other: &KTable<K, VO>,
        joiner: impl Fn(Option<&V>, Option<&VO>) -> VR + Send + Sync + 'static,
    ) -> KTable<K, VR> {
        self.table_join(other, outer_joiner(joiner))
    }

    /// Regroups the rows by a new key and value, for aggregations that
    /// subtract a row's old value from its old group when it changes; the
    /// repartition topic uses the new types' default serdes.
    ///
    /// ```
    /// use streams_core::dsl::{Consumed, Materialized};
    /// use streams_core::serde::{Nullable, I64Serde, StringSerde};
    /// use streams_core::testing::TopologyTestDriver;
    /// use streams_core::{StreamsBuilder, StreamsConfig};
    ///
    /// // People per city, kept right as people move.
    /// let builder = StreamsBuilder::new();
    /// let homes = builder.table(
    ///     "homes",
    ///     Consumed::with(StringSerde, StringSerde),
    ///     Materialized::named("homes").in_memory(),
    /// );
    /// homes.group_by(|_, city| (city.clone(), ())).count().to_stream().to("people-per-city");
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let mut input = driver.create_input_topic("homes", StringSerde, StringSerde);
    /// let output = driver.create_output_topic("people-per-city", StringSerde, Nullable(I64Serde));
    /// input.pipe_input("ann".into(), "paris".into());
    /// input.pipe_input("bob".into(), "paris".into());
    /// input.pipe_input("ann".into(), "rome".into()); // leaves paris, then joins rome
    /// let counts = output.read_key_values_to_list();
    /// assert_eq!(
    ///     counts,
    ///     [
    ///         ("paris".into(), Some(1)),
    ///         ("paris".into(), Some(2)),
    ///         ("paris".into(), Some(1)),
    ///         ("rome".into(), Some(1)),
    ///     ]
    /// );
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn group_by<K2: Data, V2: Data>(
        &self,
        selector: impl Fn(&K, &V) -> (K2, V2) + Send + Sync + 'static,
    ) -> KGroupedTable<K2, V2> {
        self.group_by_with(selector, Grouped::default())
    }

    /// [`KTable::group_by`] with the serdes and name of `grouped`.
    ///
    /// ```
    /// use streams_core::StreamsBuilder;
    /// use streams_core::dsl::{Consumed, Grouped, Materialized};
    /// use streams_core::serde::{I64Serde, StringSerde};
    ///
    /// let builder = StreamsBuilder::new();
    /// let homes = builder.table(
    ///     "homes",
    ///     Consumed::with(StringSerde, StringSerde),
    ///     Materialized::named("homes"),
    /// );
    /// let grouped = Grouped::with(StringSerde, I64Serde).with_name("by-city");
    /// homes.group_by_with(|_, city| (city.clone(), 1_i64), grouped).count();
    /// let topology = builder.build()?;
    /// assert_eq!(topology.repartition_topics()[0].0, "by-city-repartition");
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn group_by_with<K2: Data, V2: Data>(
        &self,
        selector: impl Fn(&K, &V) -> (K2, V2) + Send + Sync + 'static,
        grouped: Grouped<K2, V2>,
    ) -> KGroupedTable<K2, V2> {
        let selector = Arc::new(selector);
        let name = {
            let mut st = self.state.borrow_mut();
            let name = st.next_name("KTABLE-SELECT-");
            let supplier = move || {
                let selector = selector.clone();
                FnProcessor::new(
                    move |r: Record<K, Change<V>>,
                          ctx: &mut ProcessorContext<'_, K2, Change<V2>>| {
                        // The old row leaves its group first, then the new row joins its own.
                        if let Some(old) = &r.value.old {
                            let (key, value) = selector(&r.key, old);
                            let change = Change {
                                new: None,
                                old: Some(value),
                            };
                            ctx.forward(Record {
                                key,
                                value: change,
                                timestamp: r.timestamp,
                                headers: r.headers.clone(),
                            })?;
                        }
                        if let Some(new) = &r.value.new {
                            let (key, value) = selector(&r.key, new);
                            let change = Change {
                                new: Some(value),
                                old: None,
                            };
                            ctx.forward(Record {
                                key,
                                value: change,
                                timestamp: r.timestamp,
                                headers: r.headers,
                            })?;
                        }
                        Ok(())
                    },
                )
            };
            let result = st
                .topology
                .add_processor(&name, supplier, &[&self.node])
                .map(|_| ());
            st.record(result);
            name
        };
        KGroupedTable::new(self.state.clone(), name, grouped)
    }
}

/// A table read in full on every instance (Kafka Streams' `GlobalKTable`),
/// for stream joins on any key.
///
/// ```
/// use streams_core::StreamsBuilder;
/// use streams_core::dsl::{Consumed, KStream, Materialized};
/// use streams_core::serde::StringSerde;
///
/// // Orders keyed by order id, with the id of the product ordered as value.
/// let builder = StreamsBuilder::new();
/// let products = builder.global_table(
///     "products",
///     Consumed::with(StringSerde, StringSerde),
///     Materialized::named("products"),
/// );
/// let orders: KStream<String, String> = builder.stream("orders");
/// orders
///     .join_global(&products, |_, product| product.clone(), |_, name| name.clone())
///     .to("ordered-product-names");
/// builder.build()?;
/// # Ok::<(), streams_core::StreamsError>(())
/// ```
pub struct GlobalKTable<K, V> {
    pub(crate) store: String,
    _types: std::marker::PhantomData<fn(K, V)>,
}

impl<K, V> Clone for GlobalKTable<K, V> {
    fn clone(&self) -> Self {
        GlobalKTable {
            store: self.store.clone(),
            _types: std::marker::PhantomData,
        }
    }
}

impl<K: Data, V: Data> GlobalKTable<K, V> {
    pub(crate) fn source(
        state: Shared,
        topic: &str,
        consumed: Consumed<K, V>,
        materialized: Materialized<K, V>,
    ) -> Self {
        let mut st = state.borrow_mut();
        let source = consumed
            .name
            .clone()
            .unwrap_or_else(|| st.next_name("KSTREAM-SOURCE-"));
        let node = st.next_name("KTABLE-SOURCE-");
        let store = materialized
            .name
            .clone()
            .unwrap_or_else(|| st.next_name(&format!("{topic}-STATE-STORE-")));
        let keys = materialized
            .keys
            .clone()
            .unwrap_or_else(|| consumed.keys.clone());
        let values = materialized
            .values
            .clone()
            .unwrap_or_else(|| consumed.values.clone());
        // The topic is the global store's changelog: no second one.
        let builder = materialized
            .builder(&store, keys, values)
            .with_logging_disabled();
        let nullable: SerdeRef<Option<V>> = Arc::new(Nullable(consumed.values.clone()));
        let store_name = store.clone();
        let supplier = move || {
            let store = store_name.clone();
            let mut handle = None;
            FnProcessor::new(
                move |r: Record<K, Option<V>>, ctx: &mut ProcessorContext<'_, (), ()>| {
                    if handle.is_none() {
                        handle = Some(ctx.key_value_store::<K, V>(&store)?);
                    }
                    let handle = handle.as_ref().expect("set above");
                    match &r.value {
                        Some(value) => handle.put(&r.key, value)?,
                        None => drop(handle.delete(&r.key)?),
                    }
                    Ok(())
                },
            )
        };
        let result = st
            .topology
            .add_global_store(
                builder,
                &source,
                consumed.keys,
                nullable,
                topic,
                &node,
                supplier,
            )
            .map(|_| ());
        st.record(result);
        GlobalKTable {
            store,
            _types: std::marker::PhantomData,
        }
    }

    /// The store holding the table, for interactive queries.
    ///
    /// ```
    /// use streams_core::StreamsBuilder;
    /// use streams_core::dsl::{Consumed, Materialized};
    /// use streams_core::serde::StringSerde;
    ///
    /// let builder = StreamsBuilder::new();
    /// let consumed = Consumed::with(StringSerde, StringSerde);
    /// let products = builder.global_table("products", consumed, Materialized::named("products"));
    /// assert_eq!(products.queryable_store_name(), "products");
    /// builder.build()?;
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn queryable_store_name(&self) -> &str {
        &self.store
    }
}
