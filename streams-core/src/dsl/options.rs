//! Options of DSL operators, named as in Kafka Streams.

use std::sync::Arc;

use crate::serde::{Serde, SerdeRef};
use crate::state::{KeyValueBytesStoreSupplier, KeyValueStoreBuilder, Stores};
use crate::topology::{StreamPartitioner, TimestampExtractor};

/// How a source reads a topic: serdes, timestamps, node name.
pub struct Consumed<K, V> {
    pub(crate) keys: SerdeRef<K>,
    pub(crate) values: SerdeRef<V>,
    pub(crate) extractor: Option<TimestampExtractor<K, V>>,
    pub(crate) name: Option<String>,
}

impl<K, V> Consumed<K, V> {
    /// Read keys and values with these serdes.
    pub fn with(keys: impl Serde<K> + 'static, values: impl Serde<V> + 'static) -> Self {
        Consumed {
            keys: Arc::new(keys),
            values: Arc::new(values),
            extractor: None,
            name: None,
        }
    }

    /// Take record timestamps from `extractor` (given the record and the
    /// partition's stream time) instead of the broker's.
    pub fn with_timestamp_extractor(
        mut self,
        extractor: impl Fn(&crate::Record<K, V>, i64) -> i64 + Send + Sync + 'static,
    ) -> Self {
        self.extractor = Some(Arc::new(extractor));
        self
    }

    /// Name the source node.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

/// How a sink writes a topic: serdes, partitioner, node name.
pub struct Produced<K, V> {
    pub(crate) keys: SerdeRef<K>,
    pub(crate) values: SerdeRef<V>,
    pub(crate) partitioner: Option<StreamPartitioner<K, V>>,
    pub(crate) name: Option<String>,
}

impl<K, V> Produced<K, V> {
    /// Write keys and values with these serdes.
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
    pub fn with_partitioner(
        mut self,
        partitioner: impl Fn(&str, &K, &V, i32) -> Option<i32> + Send + Sync + 'static,
    ) -> Self {
        self.partitioner = Some(Arc::new(partitioner));
        self
    }

    /// Name the sink node.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

/// How a grouping repartitions: serdes for the repartition topic, and its name.
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
    pub fn with(keys: impl Serde<K> + 'static, values: impl Serde<V> + 'static) -> Self {
        Grouped {
            keys: Some(Arc::new(keys)),
            values: Some(Arc::new(values)),
            name: None,
        }
    }

    /// Name the grouping: its repartition topic is `<name>-repartition`.
    pub fn named(name: impl Into<String>) -> Self {
        Grouped {
            name: Some(name.into()),
            ..Self::default()
        }
    }

    /// Set the name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Set the key serde.
    pub fn with_key_serde(mut self, keys: impl Serde<K> + 'static) -> Self {
        self.keys = Some(Arc::new(keys));
        self
    }

    /// Set the value serde.
    pub fn with_value_serde(mut self, values: impl Serde<V> + 'static) -> Self {
        self.values = Some(Arc::new(values));
        self
    }
}

/// An explicit repartition: serdes, topic name and partition count.
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
    pub fn with(keys: impl Serde<K> + 'static, values: impl Serde<V> + 'static) -> Self {
        Repartitioned {
            keys: Some(Arc::new(keys)),
            values: Some(Arc::new(values)),
            ..Self::default()
        }
    }

    /// Name the topic `<name>-repartition`.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Create the topic with this many partitions (default: as many as the
    /// input topics have).
    pub fn with_number_of_partitions(mut self, partitions: i32) -> Self {
        self.partitions = Some(partitions);
        self
    }
}

/// Names a processor node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named(pub(crate) String);

impl Named {
    /// The name `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Named(name.into())
    }
}

/// The kind of store a [`Materialized`] makes.
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
pub struct Materialized<K, V> {
    pub(crate) name: Option<String>,
    pub(crate) store_type: StoreType,
    pub(crate) keys: Option<SerdeRef<K>>,
    pub(crate) values: Option<SerdeRef<V>>,
    pub(crate) logging: bool,
    pub(crate) cache_bytes: Option<usize>,
}

/// The record cache in front of each task's instance of a DSL store,
/// unless [`Materialized::with_caching_disabled`]: repeated writes to a
/// key between commits reach the store and its changelog once (Kafka
/// Streams caches DSL stores by default too). It changes nothing a reader
/// or a downstream processor sees.
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
        }
    }
}

impl<K: 'static, V: 'static> Materialized<K, V> {
    /// A store named `name` (queryable by that name).
    pub fn named(name: impl Into<String>) -> Self {
        Materialized {
            name: Some(name.into()),
            ..Self::default()
        }
    }

    /// A store with these serdes and a generated name.
    pub fn with(keys: impl Serde<K> + 'static, values: impl Serde<V> + 'static) -> Self {
        Materialized {
            keys: Some(Arc::new(keys)),
            values: Some(Arc::new(values)),
            ..Self::default()
        }
    }

    /// A store made by `supplier`, named as it is.
    pub fn from_supplier(supplier: Arc<dyn KeyValueBytesStoreSupplier>) -> Self {
        Materialized {
            name: Some(supplier.name().to_owned()),
            store_type: StoreType::Supplier(supplier),
            ..Self::default()
        }
    }

    /// Set the key serde.
    pub fn with_key_serde(mut self, keys: impl Serde<K> + 'static) -> Self {
        self.keys = Some(Arc::new(keys));
        self
    }

    /// Set the value serde.
    pub fn with_value_serde(mut self, values: impl Serde<V> + 'static) -> Self {
        self.values = Some(Arc::new(values));
        self
    }

    /// Keep the store in memory.
    pub fn in_memory(mut self) -> Self {
        self.store_type = StoreType::InMemory;
        self
    }

    /// Keep the store in RocksDB (the default).
    pub fn persistent(mut self) -> Self {
        self.store_type = StoreType::RocksDb;
        self
    }

    /// Do not write a changelog.
    pub fn with_logging_disabled(mut self) -> Self {
        self.logging = false;
        self
    }

    /// Put a write cache of `max_bytes` in front of the store (the
    /// default is [`DEFAULT_CACHE_BYTES`]).
    pub fn with_caching_enabled(mut self, max_bytes: usize) -> Self {
        self.cache_bytes = Some(max_bytes);
        self
    }

    /// No write cache: every write reaches the store and its changelog at
    /// once.
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
