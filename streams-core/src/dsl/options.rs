//! Options of DSL operators, named as in Kafka Streams.

use std::sync::Arc;

use crate::serde::{Serde, SerdeRef};
use crate::state::{KeyValueBytesStoreSupplier, KeyValueStoreBuilder, Stores};
use crate::timestamps::TimestampExtractor;
use crate::topology::StreamPartitioner;

/// How a source reads a topic: serdes, timestamps, node name.
///
/// ```
/// use streams_core::StreamsBuilder;
/// use streams_core::dsl::Consumed;
/// use streams_core::serde::{I64Serde, StringSerde};
///
/// let builder = StreamsBuilder::new();
/// let consumed = Consumed::with(StringSerde, I64Serde).with_name("amounts-source");
/// builder.stream_with("amounts", consumed).filter(|_, v| *v > 0).to("positive-amounts");
/// builder.build()?;
/// # Ok::<(), streams_core::StreamsError>(())
/// ```
pub struct Consumed<K, V> {
    pub(crate) keys: SerdeRef<K>,
    pub(crate) values: SerdeRef<V>,
    pub(crate) extractor: Option<Arc<dyn TimestampExtractor<K, V>>>,
    pub(crate) name: Option<String>,
}

impl<K, V> Consumed<K, V> {
    /// Read keys and values with these serdes.
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
    ///     Materialized::named("balances"),
    /// );
    /// balances.to_stream().to("balance-updates");
    /// builder.build()?;
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn with(keys: impl Serde<K> + 'static, values: impl Serde<V> + 'static) -> Self {
        Consumed {
            keys: Arc::new(keys),
            values: Arc::new(values),
            extractor: None,
            name: None,
        }
    }

    /// Take record timestamps from `extractor` instead of the
    /// application's default (`default.timestamp.extractor`): a built-in
    /// of [`crate::timestamps`], or a function of the record and its
    /// partition's time so far through
    /// [`extractor_fn`](crate::timestamps::extractor_fn). For a table, a
    /// tombstone keeps the timestamp it was written with.
    ///
    /// ```
    /// use streams_core::dsl::Consumed;
    /// use streams_core::serde::{I64Serde, StringSerde};
    /// use streams_core::testing::TopologyTestDriver;
    /// use streams_core::timestamps::extractor_fn;
    /// use streams_core::{StreamsBuilder, StreamsConfig};
    ///
    /// // Each value is the time of its event, in ms.
    /// let builder = StreamsBuilder::new();
    /// let consumed = Consumed::with(StringSerde, I64Serde)
    ///     .with_timestamp_extractor(extractor_fn(|event, _| *event.value));
    /// builder.stream_with("events", consumed).to("events-by-time");
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let mut input = driver.create_input_topic("events", StringSerde, I64Serde);
    /// let output = driver.create_output_topic("events-by-time", StringSerde, I64Serde);
    /// input.pipe_input_at("login".into(), 1_000, 5_000);
    /// assert_eq!(output.read_record().timestamp, 1_000);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn with_timestamp_extractor(mut self, extractor: impl TimestampExtractor<K, V>) -> Self {
        self.extractor = Some(Arc::new(extractor));
        self
    }

    /// Name the source node.
    ///
    /// ```
    /// use streams_core::StreamsBuilder;
    /// use streams_core::dsl::Consumed;
    /// use streams_core::serde::StringSerde;
    ///
    /// let builder = StreamsBuilder::new();
    /// let consumed = Consumed::with(StringSerde, StringSerde).with_name("orders-source");
    /// builder.stream_with("orders", consumed).to("orders-copy");
    /// let topology = builder.build()?;
    /// assert_eq!(topology.describe().subtopologies[0].nodes[0].name, "orders-source");
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

/// How a sink writes a topic: serdes, partitioner, node name.
///
/// ```
/// use streams_core::StreamsBuilder;
/// use streams_core::dsl::{KStream, Produced};
/// use streams_core::serde::{StringSerde, U64Serde};
///
/// let builder = StreamsBuilder::new();
/// let lines: KStream<String, String> = builder.stream("lines");
/// lines
///     .map_values(|line| line.len() as u64)
///     .to_with("line-lengths", Produced::with(StringSerde, U64Serde).with_name("lengths-sink"));
/// builder.build()?;
/// # Ok::<(), streams_core::StreamsError>(())
/// ```
pub struct Produced<K, V> {
    pub(crate) keys: SerdeRef<K>,
    pub(crate) values: SerdeRef<V>,
    pub(crate) partitioner: Option<StreamPartitioner<K, V>>,
    pub(crate) name: Option<String>,
}

impl<K, V> Produced<K, V> {
    /// Write keys and values with these serdes.
    ///
    /// ```
    /// use streams_core::StreamsBuilder;
    /// use streams_core::dsl::{KStream, Produced};
    /// use streams_core::serde::{JsonSerde, StringSerde};
    ///
    /// // `Vec<String>` has no default serde: write it as JSON.
    /// let builder = StreamsBuilder::new();
    /// let lines: KStream<String, String> = builder.stream("lines");
    /// lines
    ///     .map_values(|line| line.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
    ///     .to_with("words", Produced::with(StringSerde, JsonSerde::<Vec<String>>::new()));
    /// builder.build()?;
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn with(keys: impl Serde<K> + 'static, values: impl Serde<V> + 'static) -> Self {
        Produced {
            keys: Arc::new(keys),
            values: Arc::new(values),
            partitioner: None,
            name: None,
        }
    }

    /// Choose partitions with `partitioner` (topic, key, value, partition
    /// count); `None` from it falls back to murmur2 of the key.
    ///
    /// ```
    /// use streams_core::StreamsBuilder;
    /// use streams_core::dsl::{KStream, Produced};
    /// use streams_core::serde::StringSerde;
    ///
    /// // Orders of VIP customers go to partition 0, the others by their key's hash.
    /// let builder = StreamsBuilder::new();
    /// let orders: KStream<String, String> = builder.stream("orders");
    /// let produced = Produced::with(StringSerde, StringSerde)
    ///     .with_partitioner(|_topic, customer, _order, _partitions| {
    ///         customer.starts_with("vip-").then_some(0)
    ///     });
    /// orders.to_with("routed-orders", produced);
    /// builder.build()?;
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn with_partitioner(
        mut self,
        partitioner: impl Fn(&str, &K, &V, i32) -> Option<i32> + Send + Sync + 'static,
    ) -> Self {
        self.partitioner = Some(Arc::new(partitioner));
        self
    }

    /// Name the sink node.
    ///
    /// ```
    /// use streams_core::StreamsBuilder;
    /// use streams_core::dsl::{KStream, Produced};
    /// use streams_core::serde::StringSerde;
    ///
    /// let builder = StreamsBuilder::new();
    /// let orders: KStream<String, String> = builder.stream("orders");
    /// let produced = Produced::with(StringSerde, StringSerde).with_name("copy-sink");
    /// orders.to_with("orders-copy", produced);
    /// let topology = builder.build()?;
    /// assert_eq!(topology.describe().subtopologies[0].nodes[1].name, "copy-sink");
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

/// How a grouping repartitions: serdes for the repartition topic, and its name.
///
/// ```
/// use streams_core::StreamsBuilder;
/// use streams_core::dsl::{Grouped, KStream};
/// use streams_core::serde::StringSerde;
///
/// let builder = StreamsBuilder::new();
/// let words: KStream<(), String> = builder.stream("words");
/// let grouped = Grouped::with(StringSerde, StringSerde).with_name("by-word");
/// words.group_by_with(|_, w| w, grouped).count().to_stream().to("word-counts");
/// let topology = builder.build()?;
/// assert_eq!(topology.repartition_topics()[0].0, "by-word-repartition");
/// # Ok::<(), streams_core::StreamsError>(())
/// ```
pub struct Grouped<K, V> {
    pub(crate) keys: Option<SerdeRef<K>>,
    pub(crate) values: Option<SerdeRef<V>>,
    pub(crate) name: Option<String>,
}

impl<K, V> Default for Grouped<K, V> {
    fn default() -> Self {
        Grouped {
            keys: None,
            values: None,
            name: None,
        }
    }
}

impl<K, V> Grouped<K, V> {
    /// Use these serdes (the stream's own, when it knows them, otherwise).
    ///
    /// ```
    /// use streams_core::StreamsBuilder;
    /// use streams_core::dsl::{Grouped, KStream};
    /// use streams_core::serde::{JsonSerde, StringSerde};
    ///
    /// // Page views per (user, page): a key with no default serde.
    /// let builder = StreamsBuilder::new();
    /// let views: KStream<String, String> = builder.stream("page-views");
    /// views
    ///     .group_by_with(|user, page| (user, page), Grouped::with(JsonSerde::new(), StringSerde))
    ///     .count()
    ///     .to_stream()
    ///     .map(|(user, page), views| (format!("{user} {page}"), views))
    ///     .to("views-per-page");
    /// builder.build()?;
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn with(keys: impl Serde<K> + 'static, values: impl Serde<V> + 'static) -> Self {
        Grouped {
            keys: Some(Arc::new(keys)),
            values: Some(Arc::new(values)),
            name: None,
        }
    }

    /// Name the grouping: its repartition topic is `<name>-repartition`.
    ///
    /// ```
    /// use streams_core::StreamsBuilder;
    /// use streams_core::dsl::{Grouped, KStream};
    ///
    /// let builder = StreamsBuilder::new();
    /// let words: KStream<(), String> = builder.stream("words");
    /// words.group_by_with(|_, w| w, Grouped::named("by-word")).count();
    /// let topology = builder.build()?;
    /// assert_eq!(topology.repartition_topics()[0].0, "by-word-repartition");
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn named(name: impl Into<String>) -> Self {
        Grouped {
            name: Some(name.into()),
            ..Self::default()
        }
    }

    /// Set the name.
    ///
    /// ```
    /// use streams_core::StreamsBuilder;
    /// use streams_core::dsl::{Grouped, KStream};
    /// use streams_core::serde::StringSerde;
    ///
    /// let builder = StreamsBuilder::new();
    /// let clicks: KStream<String, String> = builder.stream("clicks");
    /// let grouped = Grouped::with(StringSerde, StringSerde).with_name("by-page");
    /// clicks.group_by_with(|_, page| page, grouped).count();
    /// let topology = builder.build()?;
    /// assert_eq!(topology.repartition_topics()[0].0, "by-page-repartition");
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Set the key serde.
    ///
    /// ```
    /// use streams_core::StreamsBuilder;
    /// use streams_core::dsl::{Grouped, KStream};
    /// use streams_core::serde::JsonSerde;
    ///
    /// // Clicks per (user, page): the grouping key needs a serde, the values keep theirs.
    /// let builder = StreamsBuilder::new();
    /// let clicks: KStream<String, String> = builder.stream("clicks");
    /// let grouped = Grouped::named("by-user-and-page").with_key_serde(JsonSerde::new());
    /// clicks.group_by_with(|user, page| (user, page), grouped).count();
    /// builder.build()?;
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn with_key_serde(mut self, keys: impl Serde<K> + 'static) -> Self {
        self.keys = Some(Arc::new(keys));
        self
    }

    /// Set the value serde.
    ///
    /// ```
    /// use streams_core::StreamsBuilder;
    /// use streams_core::dsl::{Grouped, KStream};
    /// use streams_core::serde::JsonSerde;
    ///
    /// // Lines regrouped by their first word: the values crossing the repartition topic are
    /// // `Vec<String>`, which has no default serde.
    /// let builder = StreamsBuilder::new();
    /// let lines: KStream<(), String> = builder.stream("lines");
    /// let grouped = Grouped::named("by-first-word").with_value_serde(JsonSerde::new());
    /// lines
    ///     .map_values(|line| line.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
    ///     .group_by_with(|_, words| words.first().cloned().unwrap_or_default(), grouped)
    ///     .count();
    /// builder.build()?;
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn with_value_serde(mut self, values: impl Serde<V> + 'static) -> Self {
        self.values = Some(Arc::new(values));
        self
    }
}

/// An explicit repartition: serdes, topic name and partition count.
///
/// ```
/// use streams_core::StreamsBuilder;
/// use streams_core::dsl::{KStream, Repartitioned};
/// use streams_core::serde::StringSerde;
///
/// let builder = StreamsBuilder::new();
/// let orders: KStream<String, String> = builder.stream("orders");
/// let repartitioned = Repartitioned::with(StringSerde, StringSerde)
///     .with_name("by-customer")
///     .with_number_of_partitions(6);
/// orders
///     .select_key(|_, order| order.split(':').next().unwrap_or_default().to_owned())
///     .repartition(repartitioned)
///     .to("orders-by-customer");
/// let topology = builder.build()?;
/// assert_eq!(topology.repartition_topics(), [("by-customer-repartition".to_string(), Some(6))]);
/// # Ok::<(), streams_core::StreamsError>(())
/// ```
pub struct Repartitioned<K, V> {
    pub(crate) keys: Option<SerdeRef<K>>,
    pub(crate) values: Option<SerdeRef<V>>,
    pub(crate) name: Option<String>,
    pub(crate) partitions: Option<i32>,
}

impl<K, V> Default for Repartitioned<K, V> {
    fn default() -> Self {
        Repartitioned {
            keys: None,
            values: None,
            name: None,
            partitions: None,
        }
    }
}

impl<K, V> Repartitioned<K, V> {
    /// Use these serdes.
    ///
    /// ```
    /// use streams_core::StreamsBuilder;
    /// use streams_core::dsl::{KStream, Repartitioned};
    /// use streams_core::serde::{JsonSerde, StringSerde};
    ///
    /// // `Vec<String>` values have no default serde: the repartition topic needs one.
    /// let builder = StreamsBuilder::new();
    /// let lines: KStream<String, String> = builder.stream("lines");
    /// lines
    ///     .map_values(|line| line.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
    ///     .repartition(Repartitioned::with(StringSerde, JsonSerde::new()))
    ///     .map_values(|words| words.len() as i64)
    ///     .to("word-counts-per-line");
    /// builder.build()?;
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn with(keys: impl Serde<K> + 'static, values: impl Serde<V> + 'static) -> Self {
        Repartitioned {
            keys: Some(Arc::new(keys)),
            values: Some(Arc::new(values)),
            ..Self::default()
        }
    }

    /// Name the topic `<name>-repartition`.
    ///
    /// ```
    /// use streams_core::StreamsBuilder;
    /// use streams_core::dsl::{KStream, Repartitioned};
    /// use streams_core::serde::StringSerde;
    ///
    /// let builder = StreamsBuilder::new();
    /// let clicks: KStream<String, String> = builder.stream("clicks");
    /// clicks
    ///     .repartition(Repartitioned::with(StringSerde, StringSerde).with_name("clicks-by-user"))
    ///     .to("clicks-copy");
    /// let topology = builder.build()?;
    /// assert_eq!(topology.repartition_topics()[0].0, "clicks-by-user-repartition");
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Create the topic with this many partitions (default: as many as the
    /// input topics have).
    ///
    /// ```
    /// use streams_core::StreamsBuilder;
    /// use streams_core::dsl::{KStream, Repartitioned};
    /// use streams_core::serde::StringSerde;
    ///
    /// let builder = StreamsBuilder::new();
    /// let clicks: KStream<String, String> = builder.stream("clicks");
    /// let repartitioned =
    ///     Repartitioned::with(StringSerde, StringSerde).with_number_of_partitions(12);
    /// clicks.repartition(repartitioned).to("clicks-copy");
    /// let topology = builder.build()?;
    /// assert_eq!(topology.repartition_topics()[0].1, Some(12));
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn with_number_of_partitions(mut self, partitions: i32) -> Self {
        self.partitions = Some(partitions);
        self
    }
}

/// Names a processor node.
///
/// ```
/// use streams_core::StreamsBuilder;
/// use streams_core::dsl::{KStream, Named};
///
/// let builder = StreamsBuilder::new();
/// let amounts: KStream<String, i64> = builder.stream("amounts");
/// let branches = amounts
///     .split(Some(Named::new("amounts-")))
///     .branch(|_, v| *v < 0, "refunds")
///     .default_branch("payments");
/// branches["amounts-refunds"].to("refunds");
/// let topology = builder.build()?;
/// let nodes = &topology.describe().subtopologies[0].nodes;
/// assert!(nodes.iter().any(|node| node.name == "amounts-refunds"));
/// # Ok::<(), streams_core::StreamsError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named(pub(crate) String);

impl Named {
    /// The name `name`.
    ///
    /// ```
    /// use streams_core::StreamsBuilder;
    /// use streams_core::dsl::{KStream, Named};
    ///
    /// let builder = StreamsBuilder::new();
    /// let events: KStream<String, String> = builder.stream("events");
    /// let branches = events
    ///     .split(Some(Named::new("events-")))
    ///     .branch(|kind, _| kind == "click", "clicks")
    ///     .no_default_branch();
    /// assert!(branches.contains_key("events-clicks"));
    /// # drop(branches);
    /// builder.build()?;
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn new(name: impl Into<String>) -> Self {
        Named(name.into())
    }
}

/// The kind of store a [`Materialized`] makes: [`Materialized::persistent`] and
/// [`Materialized::in_memory`] choose the first two, [`Materialized::from_supplier`] the third.
///
/// ```
/// use streams_core::dsl::StoreType;
/// use streams_core::state::Stores;
///
/// fn kind(store_type: &StoreType) -> String {
///     match store_type {
///         StoreType::RocksDb => "RocksDB".to_owned(),
///         StoreType::InMemory => "in memory".to_owned(),
///         StoreType::Supplier(supplier) => format!("custom ({})", supplier.name()),
///     }
/// }
/// let custom = StoreType::Supplier(Stores::in_memory_key_value_store("counts"));
/// assert_eq!(kind(&custom), "custom (counts)");
/// ```
#[derive(Clone)]
pub enum StoreType {
    /// RocksDB on disk (the default, as in Kafka Streams).
    RocksDb,
    /// An ordered map in memory.
    InMemory,
    /// A supplier of your own.
    Supplier(Arc<dyn KeyValueBytesStoreSupplier>),
}

/// The store a table or aggregation lives in: name, kind, serdes, logging.
///
/// ```
/// use streams_core::StreamsBuilder;
/// use streams_core::dsl::{KStream, Materialized};
///
/// let builder = StreamsBuilder::new();
/// let words: KStream<(), String> = builder.stream("words");
/// let counts = words
///     .group_by(|_, w| w)
///     .count_with(Materialized::named("word-counts").in_memory().with_caching_disabled());
/// assert_eq!(counts.queryable_store_name(), Some("word-counts"));
/// builder.build()?;
/// # Ok::<(), streams_core::StreamsError>(())
/// ```
pub struct Materialized<K, V> {
    pub(crate) name: Option<String>,
    pub(crate) store_type: StoreType,
    pub(crate) keys: Option<SerdeRef<K>>,
    pub(crate) values: Option<SerdeRef<V>>,
    pub(crate) logging: bool,
    pub(crate) cache_bytes: Option<usize>,
    /// A windowed store's retention; see `Materialized::with_retention`.
    pub(crate) retention: Option<std::time::Duration>,
}

/// The record cache in front of each task's instance of a DSL store,
/// unless [`Materialized::with_caching_disabled`]: repeated writes to a
/// key between commits reach the store and its changelog once (Kafka
/// Streams caches DSL stores by default too). It changes nothing a reader
/// or a downstream processor sees.
///
/// ```
/// use streams_core::StreamsBuilder;
/// use streams_core::dsl::{DEFAULT_CACHE_BYTES, KStream, Materialized};
///
/// assert_eq!(DEFAULT_CACHE_BYTES, 1 << 20);
/// let builder = StreamsBuilder::new();
/// let words: KStream<(), String> = builder.stream("words");
/// let bigger_cache = Materialized::named("counts").with_caching_enabled(4 * DEFAULT_CACHE_BYTES);
/// words.group_by(|_, w| w).count_with(bigger_cache);
/// builder.build()?;
/// # Ok::<(), streams_core::StreamsError>(())
/// ```
pub const DEFAULT_CACHE_BYTES: usize = 1 << 20;

impl<K, V> Default for Materialized<K, V> {
    fn default() -> Self {
        Materialized {
            name: None,
            store_type: StoreType::RocksDb,
            keys: None,
            values: None,
            logging: true,
            cache_bytes: Some(DEFAULT_CACHE_BYTES),
            retention: None,
        }
    }
}

impl<K: 'static, V: 'static> Materialized<K, V> {
    /// A store named `name` (queryable by that name).
    ///
    /// ```
    /// use streams_core::dsl::{KStream, Materialized};
    /// use streams_core::serde::{StringSerde, UnitSerde};
    /// use streams_core::testing::TopologyTestDriver;
    /// use streams_core::{StreamsBuilder, StreamsConfig};
    ///
    /// let builder = StreamsBuilder::new();
    /// let words: KStream<(), String> = builder.stream("words");
    /// words.group_by(|_, w| w).count_with(Materialized::named("word-counts"));
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let mut input = driver.create_input_topic("words", UnitSerde, StringSerde);
    /// input.pipe_value_list(["a".to_string(), "b".into(), "a".into()]);
    /// let counts = driver.key_value_store::<String, i64>("word-counts")?;
    /// assert_eq!(counts.get(&"a".into())?, Some(2));
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn named(name: impl Into<String>) -> Self {
        Materialized {
            name: Some(name.into()),
            ..Self::default()
        }
    }

    /// A store with these serdes and a generated name.
    ///
    /// ```
    /// use streams_core::StreamsBuilder;
    /// use streams_core::dsl::{KStream, Materialized};
    /// use streams_core::serde::{JsonSerde, StringSerde};
    ///
    /// // The pages each user visited: `Vec<String>` has no default serde.
    /// let builder = StreamsBuilder::new();
    /// let visits: KStream<String, String> = builder.stream("visits");
    /// visits.group_by_key().aggregate(
    ///     Vec::new,
    ///     |_, page, mut pages: Vec<String>| {
    ///         pages.push(page);
    ///         pages
    ///     },
    ///     Materialized::with(StringSerde, JsonSerde::new()),
    /// );
    /// builder.build()?;
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn with(keys: impl Serde<K> + 'static, values: impl Serde<V> + 'static) -> Self {
        Materialized {
            keys: Some(Arc::new(keys)),
            values: Some(Arc::new(values)),
            ..Self::default()
        }
    }

    /// A store made by `supplier`, named as it is.
    ///
    /// ```
    /// use streams_core::StreamsBuilder;
    /// use streams_core::dsl::{KStream, Materialized};
    /// use streams_core::state::Stores;
    ///
    /// let builder = StreamsBuilder::new();
    /// let words: KStream<(), String> = builder.stream("words");
    /// let supplier = Stores::in_memory_key_value_store("word-counts");
    /// let counts = words.group_by(|_, w| w).count_with(Materialized::from_supplier(supplier));
    /// assert_eq!(counts.queryable_store_name(), Some("word-counts"));
    /// let topology = builder.build()?;
    /// assert!(!topology.store_builder("word-counts").unwrap().persistent());
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn from_supplier(supplier: Arc<dyn KeyValueBytesStoreSupplier>) -> Self {
        Materialized {
            name: Some(supplier.name().to_owned()),
            store_type: StoreType::Supplier(supplier),
            ..Self::default()
        }
    }

    /// Set the key serde.
    ///
    /// ```
    /// use streams_core::StreamsBuilder;
    /// use streams_core::dsl::{Consumed, Materialized};
    /// use streams_core::serde::{I64Serde, JsonSerde, StringSerde};
    ///
    /// // Sales per store, keyed `country/city/store`, summed per (country, city): a key with
    /// // no default serde.
    /// let builder = StreamsBuilder::new();
    /// let sales = builder.table(
    ///     "store-sales",
    ///     Consumed::with(StringSerde, I64Serde),
    ///     Materialized::named("store-sales"),
    /// );
    /// let per_city = sales
    ///     .group_by(|store, amount| {
    ///         let mut parts = store.split('/').map(str::to_owned);
    ///         let city = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    ///         (city, *amount)
    ///     })
    ///     .reduce(
    ///         |sum, amount| sum + amount,
    ///         |sum, amount| sum - amount,
    ///         Materialized::named("sales-per-city").with_key_serde(JsonSerde::new()),
    ///     );
    /// assert_eq!(per_city.queryable_store_name(), Some("sales-per-city"));
    /// builder.build()?;
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn with_key_serde(mut self, keys: impl Serde<K> + 'static) -> Self {
        self.keys = Some(Arc::new(keys));
        self
    }

    /// Set the value serde.
    ///
    /// ```
    /// use streams_core::dsl::{KStream, Materialized};
    /// use streams_core::serde::StringSerde;
    /// use streams_core::testing::TopologyTestDriver;
    /// use streams_core::{StreamsBuilder, StreamsConfig, serde::JsonSerde};
    ///
    /// // The pages each user visited, in order: the store keeps them as JSON.
    /// let builder = StreamsBuilder::new();
    /// let visits: KStream<String, String> = builder.stream("visits");
    /// visits.group_by_key().aggregate(
    ///     Vec::new,
    ///     |_, page, mut pages: Vec<String>| {
    ///         pages.push(page);
    ///         pages
    ///     },
    ///     Materialized::named("pages").with_value_serde(JsonSerde::new()),
    /// );
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let mut input = driver.create_input_topic("visits", StringSerde, StringSerde);
    /// input.pipe_input("ann".into(), "/home".into());
    /// input.pipe_input("ann".into(), "/cart".into());
    /// let pages = driver.key_value_store::<String, Vec<String>>("pages")?;
    /// assert_eq!(pages.get(&"ann".into())?, Some(vec!["/home".to_string(), "/cart".into()]));
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn with_value_serde(mut self, values: impl Serde<V> + 'static) -> Self {
        self.values = Some(Arc::new(values));
        self
    }

    /// Keep the store in memory.
    ///
    /// ```
    /// use streams_core::StreamsBuilder;
    /// use streams_core::dsl::{KStream, Materialized};
    ///
    /// let builder = StreamsBuilder::new();
    /// let words: KStream<(), String> = builder.stream("words");
    /// words.group_by(|_, w| w).count_with(Materialized::named("counts").in_memory());
    /// let topology = builder.build()?;
    /// assert!(!topology.store_builder("counts").unwrap().persistent());
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn in_memory(mut self) -> Self {
        self.store_type = StoreType::InMemory;
        self
    }

    /// Keep the store in RocksDB (the default).
    ///
    /// ```
    /// use streams_core::StreamsBuilder;
    /// use streams_core::dsl::{KStream, Materialized};
    ///
    /// let builder = StreamsBuilder::new();
    /// let words: KStream<(), String> = builder.stream("words");
    /// words.group_by(|_, w| w).count_with(Materialized::named("counts").persistent());
    /// let topology = builder.build()?;
    /// assert!(topology.store_builder("counts").unwrap().persistent());
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn persistent(mut self) -> Self {
        self.store_type = StoreType::RocksDb;
        self
    }

    /// Do not write a changelog.
    ///
    /// ```
    /// use streams_core::StreamsBuilder;
    /// use streams_core::dsl::{KStream, Materialized};
    ///
    /// let builder = StreamsBuilder::new();
    /// let words: KStream<(), String> = builder.stream("words");
    /// words.group_by(|_, w| w).count_with(Materialized::named("counts").with_logging_disabled());
    /// let topology = builder.build()?;
    /// assert!(!topology.store_builder("counts").unwrap().logging_enabled());
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn with_logging_disabled(mut self) -> Self {
        self.logging = false;
        self
    }

    /// Put a write cache of `max_bytes` in front of the store (the
    /// default is [`DEFAULT_CACHE_BYTES`]).
    ///
    /// ```
    /// use streams_core::StreamsBuilder;
    /// use streams_core::dsl::{KStream, Materialized};
    ///
    /// let builder = StreamsBuilder::new();
    /// let words: KStream<(), String> = builder.stream("words");
    /// let small_cache = Materialized::named("counts").with_caching_enabled(64 * 1024);
    /// words.group_by(|_, w| w).count_with(small_cache).to_stream().to("word-counts");
    /// builder.build()?;
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn with_caching_enabled(mut self, max_bytes: usize) -> Self {
        self.cache_bytes = Some(max_bytes);
        self
    }

    /// No write cache: every write reaches the store and its changelog at
    /// once.
    ///
    /// ```
    /// use streams_core::StreamsBuilder;
    /// use streams_core::dsl::{KStream, Materialized};
    ///
    /// let builder = StreamsBuilder::new();
    /// let words: KStream<(), String> = builder.stream("words");
    /// let uncached = Materialized::named("counts").with_caching_disabled();
    /// words.group_by(|_, w| w).count_with(uncached).to_stream().to("word-counts");
    /// builder.build()?;
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn with_caching_disabled(mut self) -> Self {
        self.cache_bytes = None;
        self
    }

    /// The store builder, given the name to use and serdes to fall back on.
    pub(crate) fn builder(
        &self,
        name: &str,
        keys: SerdeRef<K>,
        values: SerdeRef<V>,
    ) -> KeyValueStoreBuilder<K, V> {
        let supplier = match &self.store_type {
            StoreType::RocksDb => Stores::persistent_key_value_store(name),
            StoreType::InMemory => Stores::in_memory_key_value_store(name),
            StoreType::Supplier(supplier) => supplier.clone(),
        };
        let mut builder = KeyValueStoreBuilder::new(supplier, keys, values);
        if !self.logging {
            builder = builder.with_logging_disabled();
        }
        if let Some(bytes) = self.cache_bytes {
            builder = builder.with_caching_enabled(bytes);
        }
        builder
    }
}

/// How a stream-stream join keeps its records (Kafka Streams'
/// `StreamJoined`): the serdes of the key and of both sides' values, the
/// suppliers (or the kind) of the two window stores, the base name of the
/// stores and of the processors, and whether the stores are logged.
///
/// Unless named, the stores are `KSTREAM-JOINTHIS-<n>-store` and
/// `KSTREAM-JOINOTHER-<n>-store` (`OUTERTHIS`/`OUTEROTHER` for the outer
/// sides of left and outer joins), plus `KSTREAM-OUTERSHARED-<n>-store`
/// for the records of left and outer joins still without a match.
///
/// ```
/// use std::time::Duration;
/// use streams_core::StreamsBuilder;
/// use streams_core::dsl::{KStream, StreamJoined};
/// use streams_core::serde::StringSerde;
/// use streams_core::window::JoinWindows;
///
/// let builder = StreamsBuilder::new();
/// let orders: KStream<String, String> = builder.stream("orders");
/// let payments: KStream<String, String> = builder.stream("payments");
/// let windows = JoinWindows::of_time_difference_with_no_grace(Duration::from_secs(60))?;
/// let joined = StreamJoined::with(StringSerde, StringSerde, StringSerde)
///     .with_store_name("paid")
///     .in_memory();
/// orders
///     .left_join_stream_with(&payments, |o, p| format!("{o}: {}", p.is_some()), windows, joined)
///     .to("orders-paid");
/// let topology = builder.build()?;
/// for store in ["paid-this-join-store", "paid-outer-other-join-store", "paid-left-shared-join-store"] {
///     assert!(!topology.store_builder(store).unwrap().persistent());
/// }
/// # Ok::<(), streams_core::StreamsError>(())
/// ```
pub struct StreamJoined<K, V, VO> {
    pub(crate) keys: Option<SerdeRef<K>>,
    pub(crate) values: Option<SerdeRef<V>>,
    pub(crate) other_values: Option<SerdeRef<VO>>,
    pub(crate) this_supplier: Option<Arc<dyn crate::state::WindowBytesStoreSupplier>>,
    pub(crate) other_supplier: Option<Arc<dyn crate::state::WindowBytesStoreSupplier>>,
    pub(crate) name: Option<String>,
    pub(crate) store_name: Option<String>,
    pub(crate) logging: bool,
    pub(crate) in_memory: bool,
}

impl<K, V, VO> Default for StreamJoined<K, V, VO> {
    fn default() -> Self {
        StreamJoined {
            keys: None,
            values: None,
            other_values: None,
            this_supplier: None,
            other_supplier: None,
            name: None,
            store_name: None,
            logging: true,
            in_memory: false,
        }
    }
}

impl<K: 'static, V: 'static, VO: 'static> StreamJoined<K, V, VO> {
    /// Use these serdes for the key, this stream's values and the other
    /// stream's values (the streams' own, when they know them, otherwise).
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_core::StreamsBuilder;
    /// use streams_core::dsl::{KStream, StreamJoined};
    /// use streams_core::serde::{I64Serde, JsonSerde, StringSerde};
    /// use streams_core::window::JoinWindows;
    ///
    /// // Item lists have no default serde: the join's store keeps them as JSON.
    /// let builder = StreamsBuilder::new();
    /// let carts: KStream<String, String> = builder.stream("carts");
    /// let items: KStream<String, Vec<String>> = builder
    ///     .stream::<String, String>("items")
    ///     .map_values(|line| line.split(',').map(str::to_owned).collect());
    /// let windows = JoinWindows::of_time_difference_with_no_grace(Duration::from_secs(60))?;
    /// carts
    ///     .join_stream_with(
    ///         &items,
    ///         |_, items| items.len() as i64,
    ///         windows,
    ///         StreamJoined::with(StringSerde, StringSerde, JsonSerde::new()),
    ///     )
    ///     .to_with("cart-sizes", streams_core::dsl::Produced::with(StringSerde, I64Serde));
    /// builder.build()?;
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn with(
        keys: impl Serde<K> + 'static,
        values: impl Serde<V> + 'static,
        other_values: impl Serde<VO> + 'static,
    ) -> Self {
        StreamJoined {
            keys: Some(Arc::new(keys)),
            values: Some(Arc::new(values)),
            other_values: Some(Arc::new(other_values)),
            ..Self::default()
        }
    }

    /// Keep each side's records in the window stores these suppliers make,
    /// named as they are. Each must keep duplicates, hold windows of the
    /// join's size (`before + after`) and keep them for that size plus the
    /// grace period, as Kafka Streams requires.
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_core::StreamsBuilder;
    /// use streams_core::dsl::{KStream, StreamJoined};
    /// use streams_core::state::Stores;
    /// use streams_core::window::JoinWindows;
    ///
    /// let builder = StreamsBuilder::new();
    /// let orders: KStream<String, String> = builder.stream("orders");
    /// let payments: KStream<String, String> = builder.stream("payments");
    /// let minute = Duration::from_secs(60);
    /// let windows = JoinWindows::of_time_difference_and_grace(minute, minute)?;
    /// // Windows of before + after = 2 minutes, kept 2 minutes plus the grace period.
    /// let store = |name| Stores::in_memory_window_store(name, 3 * minute, 2 * minute, true);
    /// let joined = StreamJoined::with_store_suppliers(store("orders-seen")?, store("payments-seen")?);
    /// orders.join_stream_with(&payments, |o, p| format!("{o}/{p}"), windows, joined).to("paid");
    /// let topology = builder.build()?;
    /// assert!(topology.store_builder("orders-seen").is_some());
    /// assert!(topology.store_builder("payments-seen").is_some());
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn with_store_suppliers(
        this: Arc<dyn crate::state::WindowBytesStoreSupplier>,
        other: Arc<dyn crate::state::WindowBytesStoreSupplier>,
    ) -> Self {
        StreamJoined {
            this_supplier: Some(this),
            other_supplier: Some(other),
            ..Self::default()
        }
    }

    /// Name the join's stores after `store_name` (Kafka Streams'
    /// `StreamJoined.as`): `<store_name>-this-join-store`,
    /// `<store_name>-other-join-store` (`-outer-this-join`,
    /// `-outer-other-join` for the outer sides) and, for left and outer
    /// joins, `<store_name>-left-shared-join-store` or
    /// `<store_name>-outer-shared-join-store`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_core::StreamsBuilder;
    /// use streams_core::dsl::{KStream, StreamJoined};
    /// use streams_core::window::JoinWindows;
    ///
    /// let builder = StreamsBuilder::new();
    /// let orders: KStream<String, String> = builder.stream("orders");
    /// let payments: KStream<String, String> = builder.stream("payments");
    /// let windows = JoinWindows::of_time_difference_with_no_grace(Duration::from_secs(60))?;
    /// orders
    ///     .outer_join_stream_with(&payments, |o, p| format!("{o:?}/{p:?}"), windows, StreamJoined::named("paid"))
    ///     .to("paid");
    /// let topology = builder.build()?;
    /// for store in ["paid-outer-this-join-store", "paid-outer-other-join-store", "paid-outer-shared-join-store"] {
    ///     assert!(topology.store_builder(store).is_some());
    /// }
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn named(store_name: impl Into<String>) -> Self {
        Self::default().with_store_name(store_name)
    }

    /// Set the stores' base name; see [`StreamJoined::named`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_core::StreamsBuilder;
    /// use streams_core::dsl::{KStream, StreamJoined};
    /// use streams_core::serde::StringSerde;
    /// use streams_core::window::JoinWindows;
    ///
    /// let builder = StreamsBuilder::new();
    /// let orders: KStream<String, String> = builder.stream("orders");
    /// let payments: KStream<String, String> = builder.stream("payments");
    /// let windows = JoinWindows::of_time_difference_with_no_grace(Duration::from_secs(60))?;
    /// let joined = StreamJoined::with(StringSerde, StringSerde, StringSerde).with_store_name("paid");
    /// orders.join_stream_with(&payments, |o, p| format!("{o}/{p}"), windows, joined).to("paid");
    /// assert!(builder.build()?.store_builder("paid-other-join-store").is_some());
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn with_store_name(mut self, store_name: impl Into<String>) -> Self {
        self.store_name = Some(store_name.into());
        self
    }

    /// Name the join's processors after `name` (`<name>-this-windowed`,
    /// `<name>-this-join`, `<name>-merge`, …) and, when a side must be
    /// repartitioned first, its topic (`<name>-left-repartition`,
    /// `<name>-right-repartition`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_core::StreamsBuilder;
    /// use streams_core::dsl::{KStream, StreamJoined};
    /// use streams_core::window::JoinWindows;
    ///
    /// let builder = StreamsBuilder::new();
    /// let orders: KStream<String, String> = builder.stream("orders");
    /// let payments: KStream<String, String> = builder.stream("payments");
    /// let windows = JoinWindows::of_time_difference_with_no_grace(Duration::from_secs(60))?;
    /// orders
    ///     .join_stream_with(&payments, |o, p| format!("{o}/{p}"), windows, StreamJoined::default().with_name("pay"))
    ///     .to("paid");
    /// let topology = builder.build()?;
    /// let nodes = &topology.describe().subtopologies[0].nodes;
    /// assert!(nodes.iter().any(|node| node.name == "pay-this-join"));
    /// assert!(nodes.iter().any(|node| node.name == "pay-merge"));
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Set the key serde.
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_core::StreamsBuilder;
    /// use streams_core::dsl::{KStream, StreamJoined};
    /// use streams_core::serde::JsonSerde;
    /// use streams_core::window::JoinWindows;
    ///
    /// // Keyed by (user, page), which has no default serde: the key changed, so both
    /// // sides are repartitioned with it.
    /// let builder = StreamsBuilder::new();
    /// let views: KStream<String, String> = builder.stream("views");
    /// let clicks: KStream<String, String> = builder.stream("clicks");
    /// let by_page = |user: &String, page: &String| (user.clone(), page.clone());
    /// let windows = JoinWindows::of_time_difference_with_no_grace(Duration::from_secs(60))?;
    /// views
    ///     .select_key(by_page)
    ///     .join_stream_with(
    ///         &clicks.select_key(by_page),
    ///         |view, _| view.clone(),
    ///         windows,
    ///         StreamJoined::default().with_key_serde(JsonSerde::new()),
    ///     )
    ///     .map(|(user, _), page| (user, page))
    ///     .to("clicked-views");
    /// assert_eq!(builder.build()?.repartition_topics().len(), 2);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn with_key_serde(mut self, keys: impl Serde<K> + 'static) -> Self {
        self.keys = Some(Arc::new(keys));
        self
    }

    /// Set the serde of this stream's values.
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_core::StreamsBuilder;
    /// use streams_core::dsl::{KStream, StreamJoined};
    /// use streams_core::serde::JsonSerde;
    /// use streams_core::window::JoinWindows;
    ///
    /// let builder = StreamsBuilder::new();
    /// let carts: KStream<String, Vec<String>> = builder
    ///     .stream::<String, String>("carts")
    ///     .map_values(|line| line.split(',').map(str::to_owned).collect());
    /// let checkouts: KStream<String, String> = builder.stream("checkouts");
    /// let windows = JoinWindows::of_time_difference_with_no_grace(Duration::from_secs(60))?;
    /// carts
    ///     .join_stream_with(
    ///         &checkouts,
    ///         |items, at| format!("{} items at {at}", items.len()),
    ///         windows,
    ///         StreamJoined::default().with_value_serde(JsonSerde::new()),
    ///     )
    ///     .to("checked-out");
    /// builder.build()?;
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn with_value_serde(mut self, values: impl Serde<V> + 'static) -> Self {
        self.values = Some(Arc::new(values));
        self
    }

    /// Set the serde of the other stream's values.
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_core::StreamsBuilder;
    /// use streams_core::dsl::{KStream, StreamJoined};
    /// use streams_core::serde::JsonSerde;
    /// use streams_core::window::JoinWindows;
    ///
    /// let builder = StreamsBuilder::new();
    /// let checkouts: KStream<String, String> = builder.stream("checkouts");
    /// let carts: KStream<String, Vec<String>> = builder
    ///     .stream::<String, String>("carts")
    ///     .map_values(|line| line.split(',').map(str::to_owned).collect());
    /// let windows = JoinWindows::of_time_difference_with_no_grace(Duration::from_secs(60))?;
    /// checkouts
    ///     .join_stream_with(
    ///         &carts,
    ///         |at, items| format!("{} items at {at}", items.len()),
    ///         windows,
    ///         StreamJoined::default().with_other_value_serde(JsonSerde::new()),
    ///     )
    ///     .to("checked-out");
    /// builder.build()?;
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn with_other_value_serde(mut self, other_values: impl Serde<VO> + 'static) -> Self {
        self.other_values = Some(Arc::new(other_values));
        self
    }

    /// Keep this stream's records in the window store `supplier` makes; see
    /// [`StreamJoined::with_store_suppliers`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_core::StreamsBuilder;
    /// use streams_core::dsl::{KStream, StreamJoined};
    /// use streams_core::state::Stores;
    /// use streams_core::window::JoinWindows;
    ///
    /// let builder = StreamsBuilder::new();
    /// let orders: KStream<String, String> = builder.stream("orders");
    /// let payments: KStream<String, String> = builder.stream("payments");
    /// let minute = Duration::from_secs(60);
    /// let windows = JoinWindows::of_time_difference_with_no_grace(minute)?;
    /// let supplier = Stores::persistent_window_store("orders-seen", 2 * minute, 2 * minute, true)?;
    /// let joined = StreamJoined::default().with_this_store_supplier(supplier);
    /// orders.join_stream_with(&payments, |o, p| format!("{o}/{p}"), windows, joined).to("paid");
    /// assert!(builder.build()?.store_builder("orders-seen").unwrap().persistent());
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn with_this_store_supplier(
        mut self,
        supplier: Arc<dyn crate::state::WindowBytesStoreSupplier>,
    ) -> Self {
        self.this_supplier = Some(supplier);
        self
    }

    /// Keep the other stream's records in the window store `supplier`
    /// makes; see [`StreamJoined::with_store_suppliers`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_core::StreamsBuilder;
    /// use streams_core::dsl::{KStream, StreamJoined};
    /// use streams_core::state::Stores;
    /// use streams_core::window::JoinWindows;
    ///
    /// let builder = StreamsBuilder::new();
    /// let orders: KStream<String, String> = builder.stream("orders");
    /// let payments: KStream<String, String> = builder.stream("payments");
    /// let minute = Duration::from_secs(60);
    /// let windows = JoinWindows::of_time_difference_with_no_grace(minute)?;
    /// let supplier = Stores::in_memory_window_store("payments-seen", 2 * minute, 2 * minute, true)?;
    /// let joined = StreamJoined::default().with_other_store_supplier(supplier);
    /// orders.join_stream_with(&payments, |o, p| format!("{o}/{p}"), windows, joined).to("paid");
    /// assert!(!builder.build()?.store_builder("payments-seen").unwrap().persistent());
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn with_other_store_supplier(
        mut self,
        supplier: Arc<dyn crate::state::WindowBytesStoreSupplier>,
    ) -> Self {
        self.other_supplier = Some(supplier);
        self
    }

    /// Keep the stores this join makes itself in memory.
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_core::StreamsBuilder;
    /// use streams_core::dsl::{KStream, StreamJoined};
    /// use streams_core::window::JoinWindows;
    ///
    /// let builder = StreamsBuilder::new();
    /// let orders: KStream<String, String> = builder.stream("orders");
    /// let payments: KStream<String, String> = builder.stream("payments");
    /// let windows = JoinWindows::of_time_difference_with_no_grace(Duration::from_secs(60))?;
    /// let joined = StreamJoined::named("paid").in_memory();
    /// orders.join_stream_with(&payments, |o, p| format!("{o}/{p}"), windows, joined).to("paid");
    /// assert!(!builder.build()?.store_builder("paid-this-join-store").unwrap().persistent());
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn in_memory(mut self) -> Self {
        self.in_memory = true;
        self
    }

    /// Keep the stores this join makes itself in RocksDB (the default, as
    /// in Kafka Streams).
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_core::StreamsBuilder;
    /// use streams_core::dsl::{KStream, StreamJoined};
    /// use streams_core::window::JoinWindows;
    ///
    /// let builder = StreamsBuilder::new();
    /// let orders: KStream<String, String> = builder.stream("orders");
    /// let payments: KStream<String, String> = builder.stream("payments");
    /// let windows = JoinWindows::of_time_difference_with_no_grace(Duration::from_secs(60))?;
    /// let joined = StreamJoined::named("paid").persistent();
    /// orders.join_stream_with(&payments, |o, p| format!("{o}/{p}"), windows, joined).to("paid");
    /// assert!(builder.build()?.store_builder("paid-this-join-store").unwrap().persistent());
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn persistent(mut self) -> Self {
        self.in_memory = false;
        self
    }

    /// Do not write changelogs for the join's stores.
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_core::StreamsBuilder;
    /// use streams_core::dsl::{KStream, StreamJoined};
    /// use streams_core::window::JoinWindows;
    ///
    /// let builder = StreamsBuilder::new();
    /// let orders: KStream<String, String> = builder.stream("orders");
    /// let payments: KStream<String, String> = builder.stream("payments");
    /// let windows = JoinWindows::of_time_difference_with_no_grace(Duration::from_secs(60))?;
    /// let joined = StreamJoined::named("paid").with_logging_disabled();
    /// orders.left_join_stream_with(&payments, |o, _| o.clone(), windows, joined).to("orders-seen");
    /// let topology = builder.build()?;
    /// assert!(!topology.store_builder("paid-this-join-store").unwrap().logging_enabled());
    /// assert!(!topology.store_builder("paid-left-shared-join-store").unwrap().logging_enabled());
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn with_logging_disabled(mut self) -> Self {
        self.logging = false;
        self
    }

    /// Write changelogs for the join's stores (the default).
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_core::StreamsBuilder;
    /// use streams_core::dsl::{KStream, StreamJoined};
    /// use streams_core::window::JoinWindows;
    ///
    /// let builder = StreamsBuilder::new();
    /// let orders: KStream<String, String> = builder.stream("orders");
    /// let payments: KStream<String, String> = builder.stream("payments");
    /// let windows = JoinWindows::of_time_difference_with_no_grace(Duration::from_secs(60))?;
    /// let joined = StreamJoined::named("paid").with_logging_disabled().with_logging_enabled();
    /// orders.join_stream_with(&payments, |o, p| format!("{o}/{p}"), windows, joined).to("paid");
    /// assert!(builder.build()?.store_builder("paid-other-join-store").unwrap().logging_enabled());
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn with_logging_enabled(mut self) -> Self {
        self.logging = true;
        self
    }
}
