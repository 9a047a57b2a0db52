//! The topology: a graph of sources, processors and sinks with the state
//! stores they use. It is plain data: nothing in it talks to Kafka, so the
//! same topology runs on the broker and in the
//! [`TopologyTestDriver`](crate::testing::TopologyTestDriver).
//!
//! Build one with the Processor API here, or with the DSL
//! ([`StreamsBuilder`](crate::StreamsBuilder)), which produces the same thing.
//! Errors (a parent that does not exist, types that do not line up, a topic
//! read twice) are reported when the node is added.

mod describe;
mod nodes;

use std::any::TypeId;
use std::collections::BTreeSet;
use std::marker::PhantomData;
use std::sync::Arc;

pub use describe::{
    GlobalStoreDescription, NodeDescription, SubtopologyDescription, TopologyDescription,
};
pub use nodes::SinkTopic;
pub(crate) use nodes::{ErasedSource, SinkNode, SourceError, SourceNode};

use crate::error::{Result, TopologyError};
use crate::processor::{ErasedProcessor, ProcessorAdapter, ProcessorSupplier};
use crate::record::Record;
use crate::serde::{Serde, SerdeRef};
use crate::state::StoreBuilder;
use crate::timestamps::AnyTimestampExtractor;

pub use crate::timestamps::TimestampExtractor;

/// Chooses a sink's partition: given the topic, key, value and the topic's
/// partition count; `None` falls back to the default (murmur2 of the key).
pub type StreamPartitioner<K, V> = Arc<dyn Fn(&str, &K, &V, i32) -> Option<i32> + Send + Sync>;

/// Chooses a sink's topic per record.
pub type TopicNameExtractor<K, V> = Arc<dyn Fn(&K, &V) -> String + Send + Sync>;

/// A topic as the topology names it: one of the user's, or an internal one
/// that the runtime names `<application.id>-<name>` and creates.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TopicName {
    /// A topic the user names.
    External(String),
    /// An internal topic (repartition), prefixed with the application id.
    Internal(String),
}

impl TopicName {
    /// The topic's name in the cluster for application `application_id`.
    pub fn resolve(&self, application_id: &str) -> String {
        match self {
            TopicName::External(name) => name.clone(),
            TopicName::Internal(name) => format!("{application_id}-{name}"),
        }
    }

    /// The name as written in the topology.
    pub fn raw(&self) -> &str {
        match self {
            TopicName::External(name) | TopicName::Internal(name) => name,
        }
    }
}

/// The record type a node takes or forwards, for checking the wiring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordType {
    id: TypeId,
    name: &'static str,
}

impl RecordType {
    pub(crate) fn of<K: 'static, V: 'static>() -> Self {
        RecordType {
            id: TypeId::of::<Record<K, V>>(),
            name: std::any::type_name::<(K, V)>(),
        }
    }
}

/// Makes a task's source node, given the application's default extractor.
pub(crate) type SourceFactory =
    Arc<dyn Fn(&str, &AnyTimestampExtractor) -> Box<dyn ErasedSource> + Send + Sync>;
pub(crate) type ProcessorFactory = Arc<dyn Fn(&str) -> Box<dyn ErasedProcessor> + Send + Sync>;

pub(crate) enum NodeKind {
    Source {
        topics: Vec<TopicName>,
        factory: SourceFactory,
    },
    Processor {
        factory: ProcessorFactory,
    },
    Sink {
        topic: String,
        factory: ProcessorFactory,
    },
}

pub(crate) struct NodeDef {
    pub(crate) name: String,
    pub(crate) kind: NodeKind,
    pub(crate) parents: Vec<usize>,
    pub(crate) children: Vec<usize>,
    pub(crate) stores: Vec<String>,
    pub(crate) output: Option<RecordType>,
    /// Part of a global store's update path, read on every instance.
    pub(crate) global: bool,
}

pub(crate) struct StoreDef {
    pub(crate) builder: Arc<dyn StoreBuilder>,
    /// For a global store: the topic it is read from.
    pub(crate) global_topic: Option<String>,
}

/// A sub-topology: nodes connected through parent links or shared stores.
/// Each runs as one task per input partition.
#[derive(Debug, Clone)]
pub struct Subtopology {
    /// Its number, in order of its first node.
    pub id: u32,
    /// Its nodes, as indices into the topology.
    pub nodes: Vec<usize>,
    /// The topics its sources read.
    pub source_topics: Vec<TopicName>,
    /// The stores its nodes use.
    pub stores: Vec<String>,
}

/// A processing graph: sources, processors, sinks and state stores.
///
/// ```
/// use streams_core::{Topology, Record};
/// use streams_core::processor::{Processor, ProcessorContext, ProcessResult};
/// use streams_core::serde::StringSerde;
///
/// struct Upper;
/// impl Processor<String, String> for Upper {
///     fn process(&mut self, r: Record<String, String>, ctx: &mut ProcessorContext<'_, String, String>) -> ProcessResult {
///         let upper = r.value.to_uppercase();
///         ctx.forward(r.with_value(upper))?;
///         Ok(())
///     }
/// }
///
/// let mut topology = Topology::new();
/// topology
///     .add_source("in", StringSerde, StringSerde, &["words"])?
///     .add_processor("upper", || Upper, &["in"])?
///     .add_sink("out", "shouted", StringSerde, StringSerde, &["upper"])?;
/// println!("{}", topology.describe());
/// # Ok::<(), streams_core::StreamsError>(())
/// ```
#[derive(Default)]
pub struct Topology {
    pub(crate) nodes: Vec<NodeDef>,
    pub(crate) stores: Vec<StoreDef>,
    /// Internal repartition topics (unprefixed) with a partition count when
    /// one was asked for.
    pub(crate) repartition_topics: Vec<(String, Option<i32>)>,
}

impl std::fmt::Debug for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.describe())
    }
}

fn topology_error<T>(error: TopologyError) -> Result<T> {
    Err(error.into())
}

impl Topology {
    /// An empty topology.
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn node_index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    fn check_new_name(&self, name: &str) -> Result<()> {
        if name.is_empty() {
            return topology_error(TopologyError::at_node(name, "node names must not be empty"));
        }
        if self.node_index(name).is_some() {
            return topology_error(TopologyError::at_node(
                name,
                format!("a node named `{name}` already exists"),
            ));
        }
        Ok(())
    }

    fn parents(&self, child: &str, parents: &[&str], input: RecordType) -> Result<Vec<usize>> {
        if parents.is_empty() {
            return topology_error(TopologyError::at_node(
                child,
                format!("`{child}` needs at least one parent"),
            ));
        }
        let mut indices = Vec::with_capacity(parents.len());
        for parent in parents {
            let Some(index) = self.node_index(parent) else {
                return topology_error(TopologyError::at_node(
                    child,
                    format!("parent `{parent}` of `{child}` does not exist (add it first)"),
                ));
            };
            let node = &self.nodes[index];
            if matches!(node.kind, NodeKind::Sink { .. }) {
                return topology_error(TopologyError::at_node(
                    child,
                    format!("`{parent}` is a sink and cannot be the parent of `{child}`"),
                ));
            }
            if node.global {
                return topology_error(TopologyError::at_node(
                    child,
                    format!("`{parent}` belongs to a global store and cannot have children"),
                ));
            }
            if let Some(output) = node.output
                && output != input
            {
                return topology_error(TopologyError::at_node(
                    child,
                    format!(
                        "`{child}` takes records of {} but its parent `{parent}` forwards {}",
                        input.name, output.name
                    ),
                ));
            }
            indices.push(index);
        }
        Ok(indices)
    }

    fn push_node(&mut self, node: NodeDef) -> usize {
        let index = self.nodes.len();
        for &parent in &node.parents {
            self.nodes[parent].children.push(index);
        }
        self.nodes.push(node);
        index
    }

    fn source_topics(&self) -> impl Iterator<Item = &TopicName> {
        self.nodes
            .iter()
            .filter_map(|n| match &n.kind {
                NodeKind::Source { topics, .. } => Some(topics.iter()),
                _ => None,
            })
            .flatten()
    }

    /// Adds a source node named `name` reading `topics` with the given serdes.
    pub fn add_source<K, V>(
        &mut self,
        name: &str,
        keys: impl Serde<K> + 'static,
        values: impl Serde<V> + 'static,
        topics: &[&str],
    ) -> Result<&mut Self>
    where
        K: Clone + Send + 'static,
        V: Clone + Send + 'static,
    {
        let topics = topics
            .iter()
            .map(|t| TopicName::External((*t).to_owned()))
            .collect();
        self.push_source(name, topics, Arc::new(keys), Arc::new(values), None, false)?;
        Ok(self)
    }

    /// Adds a source node whose records' timestamps come from `extractor`
    /// instead of the application's default (see [`crate::timestamps`]).
    ///
    /// ```
    /// use streams_core::Topology;
    /// use streams_core::serde::{I64Serde, StringSerde};
    /// use streams_core::timestamps::UsePartitionTimeOnInvalidTimestamp;
    ///
    /// let mut topology = Topology::new();
    /// topology
    ///     .add_source_with_timestamps(
    ///         "in",
    ///         StringSerde,
    ///         I64Serde,
    ///         UsePartitionTimeOnInvalidTimestamp,
    ///         &["readings"],
    ///     )?
    ///     .add_sink("out", "readings-copy", StringSerde, I64Serde, &["in"])?;
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn add_source_with_timestamps<K, V>(
        &mut self,
        name: &str,
        keys: impl Serde<K> + 'static,
        values: impl Serde<V> + 'static,
        extractor: impl TimestampExtractor<K, V>,
        topics: &[&str],
    ) -> Result<&mut Self>
    where
        K: Clone + Send + 'static,
        V: Clone + Send + 'static,
    {
        let topics = topics
            .iter()
            .map(|t| TopicName::External((*t).to_owned()))
            .collect();
        self.push_source(
            name,
            topics,
            Arc::new(keys),
            Arc::new(values),
            Some(Arc::new(extractor)),
            false,
        )?;
        Ok(self)
    }

    /// Adds a source node reading `topics`, external or internal (a
    /// repartition topic the DSL declared), with shared serdes and an
    /// optional timestamp extractor (`None`: the application's default):
    /// the form the DSL builds on.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use streams_core::Topology;
    /// use streams_core::serde::{SerdeRef, StringSerde};
    /// use streams_core::topology::TopicName;
    ///
    /// let strings: SerdeRef<String> = Arc::new(StringSerde);
    /// let mut topology = Topology::new();
    /// topology.add_repartition_topic("by-word-repartition", Some(4))?;
    /// topology.add_source_node(
    ///     "from-repartition",
    ///     vec![TopicName::Internal("by-word-repartition".into())],
    ///     strings.clone(),
    ///     strings,
    ///     None,
    /// )?;
    /// assert_eq!(topology.source_topic_names("app"), ["app-by-word-repartition"]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn add_source_node<K, V>(
        &mut self,
        name: &str,
        topics: Vec<TopicName>,
        keys: SerdeRef<K>,
        values: SerdeRef<V>,
        extractor: Option<Arc<dyn TimestampExtractor<K, V>>>,
    ) -> Result<()>
    where
        K: Clone + Send + 'static,
        V: Clone + Send + 'static,
    {
        self.push_source(name, topics, keys, values, extractor, false)?;
        Ok(())
    }

    fn push_source<K, V>(
        &mut self,
        name: &str,
        topics: Vec<TopicName>,
        keys: SerdeRef<K>,
        values: SerdeRef<V>,
        extractor: Option<Arc<dyn TimestampExtractor<K, V>>>,
        global: bool,
    ) -> Result<usize>
    where
        K: Clone + Send + 'static,
        V: Clone + Send + 'static,
    {
        self.check_new_name(name)?;
        if topics.is_empty() {
            return topology_error(TopologyError::at_node(
                name,
                format!("source `{name}` needs at least one topic"),
            ));
        }
        let known: BTreeSet<&TopicName> = self.source_topics().collect();
        for topic in &topics {
            if topic.raw().is_empty() {
                return topology_error(TopologyError::at_node(
                    name,
                    format!("source `{name}` has an empty topic name"),
                ));
            }
            if known.contains(topic) {
                return topology_error(
                    TopologyError::at_topic(
                        topic.raw(),
                        format!("topic `{}` is already read by another source", topic.raw()),
                    )
                    .with_node(name),
                );
            }
        }
        let factory: SourceFactory =
            Arc::new(move |_node: &str, default: &AnyTimestampExtractor| {
                Box::new(SourceNode::new(
                    keys.clone(),
                    values.clone(),
                    extractor.clone(),
                    default,
                )) as Box<dyn ErasedSource>
            });
        Ok(self.push_node(NodeDef {
            name: name.to_owned(),
            kind: NodeKind::Source { topics, factory },
            parents: Vec::new(),
            children: Vec::new(),
            stores: Vec::new(),
            output: Some(RecordType::of::<K, V>()),
            global,
        }))
    }

    /// Declares an internal repartition topic `name` (created by the
    /// runtime as `<application.id>-<name>`, with `partitions` or as many
    /// as the topics that feed it), as the DSL does before a grouping or
    /// join after a key change; see [`Topology::add_source_node`].
    pub fn add_repartition_topic(&mut self, name: &str, partitions: Option<i32>) -> Result<()> {
        if self.repartition_topics.iter().any(|(n, _)| n == name) {
            return topology_error(TopologyError::at_topic(
                name,
                format!("repartition topic `{name}` is declared twice; name the operations apart"),
            ));
        }
        self.repartition_topics.push((name.to_owned(), partitions));
        Ok(())
    }

    /// Adds a processor node fed by `parents`, creating one processor per
    /// task from `supplier`.
    pub fn add_processor<KIn, VIn, KOut, VOut, S>(
        &mut self,
        name: &str,
        supplier: S,
        parents: &[&str],
    ) -> Result<&mut Self>
    where
        S: ProcessorSupplier<KIn, VIn, KOut, VOut>,
        KIn: 'static,
        VIn: 'static,
        KOut: 'static,
        VOut: 'static,
    {
        self.push_processor(name, supplier, parents, false)?;
        Ok(self)
    }

    fn push_processor<KIn, VIn, KOut, VOut, S>(
        &mut self,
        name: &str,
        supplier: S,
        parents: &[&str],
        global: bool,
    ) -> Result<usize>
    where
        S: ProcessorSupplier<KIn, VIn, KOut, VOut>,
        KIn: 'static,
        VIn: 'static,
        KOut: 'static,
        VOut: 'static,
    {
        self.check_new_name(name)?;
        let input = RecordType::of::<KIn, VIn>();
        let parents = if global {
            // A global store's processor hangs off its own source only.
            let index = self
                .node_index(parents[0])
                .expect("global source added first");
            vec![index]
        } else {
            self.parents(name, parents, input)?
        };
        let supplier = Arc::new(supplier);
        let factory: ProcessorFactory = Arc::new(move |_node: &str| {
            Box::new(ProcessorAdapter {
                processor: supplier.get(),
                _types: PhantomData::<fn(KIn, VIn, KOut, VOut)>,
            }) as Box<dyn ErasedProcessor>
        });
        Ok(self.push_node(NodeDef {
            name: name.to_owned(),
            kind: NodeKind::Processor { factory },
            parents,
            children: Vec::new(),
            stores: Vec::new(),
            output: Some(RecordType::of::<KOut, VOut>()),
            global,
        }))
    }

    /// Adds a sink node writing its parents' records to `topic`.
    pub fn add_sink<K, V>(
        &mut self,
        name: &str,
        topic: &str,
        keys: impl Serde<K> + 'static,
        values: impl Serde<V> + 'static,
        parents: &[&str],
    ) -> Result<&mut Self>
    where
        K: 'static,
        V: 'static,
    {
        let topic = SinkTopic::Fixed(TopicName::External(topic.to_owned()));
        self.add_sink_node(name, topic, Arc::new(keys), Arc::new(values), None, parents)?;
        Ok(self)
    }

    /// Adds a sink node that picks each record's partition with `partitioner`.
    pub fn add_sink_with_partitioner<K, V>(
        &mut self,
        name: &str,
        topic: &str,
        keys: impl Serde<K> + 'static,
        values: impl Serde<V> + 'static,
        partitioner: StreamPartitioner<K, V>,
        parents: &[&str],
    ) -> Result<&mut Self>
    where
        K: 'static,
        V: 'static,
    {
        let topic = SinkTopic::Fixed(TopicName::External(topic.to_owned()));
        self.add_sink_node(
            name,
            topic,
            Arc::new(keys),
            Arc::new(values),
            Some(partitioner),
            parents,
        )?;
        Ok(self)
    }

    /// Adds a sink node that picks each record's topic with `extractor`.
    pub fn add_sink_with_topic_extractor<K, V>(
        &mut self,
        name: &str,
        extractor: TopicNameExtractor<K, V>,
        keys: impl Serde<K> + 'static,
        values: impl Serde<V> + 'static,
        parents: &[&str],
    ) -> Result<&mut Self>
    where
        K: 'static,
        V: 'static,
    {
        self.add_sink_node(
            name,
            SinkTopic::Dynamic(extractor),
            Arc::new(keys),
            Arc::new(values),
            None,
            parents,
        )?;
        Ok(self)
    }

    /// Adds a sink node writing to `topic` (external, internal, or chosen
    /// per record) with shared serdes and an optional partitioner: the form
    /// the DSL builds on.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use streams_core::Topology;
    /// use streams_core::serde::{SerdeRef, StringSerde};
    /// use streams_core::topology::{SinkTopic, TopicName};
    ///
    /// let strings: SerdeRef<String> = Arc::new(StringSerde);
    /// let mut topology = Topology::new();
    /// topology.add_source("in", StringSerde, StringSerde, &["words"])?;
    /// topology.add_repartition_topic("by-word-repartition", None)?;
    /// topology.add_sink_node(
    ///     "to-repartition",
    ///     SinkTopic::Fixed(TopicName::Internal("by-word-repartition".into())),
    ///     strings.clone(),
    ///     strings,
    ///     None,
    ///     &["in"],
    /// )?;
    /// assert_eq!(topology.sink_topic(1), Some("by-word-repartition"));
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn add_sink_node<K: 'static, V: 'static>(
        &mut self,
        name: &str,
        topic: SinkTopic<K, V>,
        keys: SerdeRef<K>,
        values: SerdeRef<V>,
        partitioner: Option<StreamPartitioner<K, V>>,
        parents: &[&str],
    ) -> Result<()> {
        self.check_new_name(name)?;
        let input = RecordType::of::<K, V>();
        let parents = self.parents(name, parents, input)?;
        let description = match &topic {
            SinkTopic::Fixed(TopicName::External(t)) => t.clone(),
            SinkTopic::Fixed(TopicName::Internal(t)) => t.clone(),
            SinkTopic::Dynamic(_) => "<chosen per record>".to_owned(),
        };
        let factory: ProcessorFactory = Arc::new(move |_node: &str| {
            Box::new(SinkNode::new(
                topic.clone(),
                keys.clone(),
                values.clone(),
                partitioner.clone(),
            )) as Box<dyn ErasedProcessor>
        });
        self.push_node(NodeDef {
            name: name.to_owned(),
            kind: NodeKind::Sink {
                topic: description,
                factory,
            },
            parents,
            children: Vec::new(),
            stores: Vec::new(),
            output: None,
            global: false,
        });
        Ok(())
    }

    /// Adds a state store, connected to the named processors.
    pub fn add_state_store(
        &mut self,
        builder: impl StoreBuilder,
        processors: &[&str],
    ) -> Result<&mut Self> {
        self.add_store(Arc::new(builder), None)?;
        let name = self
            .stores
            .last()
            .expect("just added")
            .builder
            .name()
            .to_owned();
        self.connect_processor_and_state_stores_inner(processors, &[&name])?;
        Ok(self)
    }

    fn add_store(
        &mut self,
        builder: Arc<dyn StoreBuilder>,
        global_topic: Option<String>,
    ) -> Result<()> {
        let name = builder.name();
        if name.is_empty() {
            return topology_error(TopologyError::new("store names must not be empty"));
        }
        if self.store_def(name).is_some() {
            return topology_error(TopologyError::new(format!(
                "a state store named `{name}` already exists"
            )));
        }
        self.stores.push(StoreDef {
            builder,
            global_topic,
        });
        Ok(())
    }

    pub(crate) fn store_def(&self, name: &str) -> Option<&StoreDef> {
        self.stores.iter().find(|s| s.builder.name() == name)
    }

    /// Gives the processor `processor` access to already added stores.
    pub fn connect_processor_and_state_stores(
        &mut self,
        processor: &str,
        stores: &[&str],
    ) -> Result<&mut Self> {
        self.connect_processor_and_state_stores_inner(&[processor], stores)?;
        Ok(self)
    }

    fn connect_processor_and_state_stores_inner(
        &mut self,
        processors: &[&str],
        stores: &[&str],
    ) -> Result<()> {
        for store in stores {
            match self.store_def(store) {
                None => {
                    return topology_error(TopologyError::new(format!(
                        "state store `{store}` does not exist (add it first)"
                    )));
                }
                Some(def) if def.global_topic.is_some() => {
                    return topology_error(TopologyError::new(format!(
                        "`{store}` is a global store: every processor can read it without connecting"
                    )));
                }
                Some(_) => {}
            }
        }
        for processor in processors {
            let Some(index) = self.node_index(processor) else {
                return topology_error(TopologyError::at_node(
                    *processor,
                    format!("processor `{processor}` does not exist"),
                ));
            };
            if !matches!(self.nodes[index].kind, NodeKind::Processor { .. }) {
                return topology_error(TopologyError::at_node(
                    *processor,
                    format!("`{processor}` is not a processor and cannot use stores"),
                ));
            }
            for store in stores {
                if !self.nodes[index].stores.iter().any(|s| s == store) {
                    self.nodes[index].stores.push((*store).to_owned());
                }
            }
        }
        Ok(())
    }

    /// Adds a global store: `topic` is read in full, on every instance, by
    /// a source named `source_name` and the processor `processor_name`,
    /// which writes it into the store. Processors of any task can read it.
    /// Its changelog is the topic itself, so the builder should not log.
    #[allow(clippy::too_many_arguments)]
    pub fn add_global_store<K, V, S>(
        &mut self,
        builder: impl StoreBuilder,
        source_name: &str,
        keys: impl Serde<K> + 'static,
        values: impl Serde<V> + 'static,
        topic: &str,
        processor_name: &str,
        supplier: S,
    ) -> Result<&mut Self>
    where
        K: Clone + Send + 'static,
        V: Clone + Send + 'static,
        S: ProcessorSupplier<K, V, (), ()>,
    {
        self.add_global_store_inner(
            Arc::new(builder),
            source_name,
            Arc::new(keys),
            Arc::new(values),
            topic,
            processor_name,
            supplier,
        )?;
        Ok(self)
    }

    #[allow(clippy::too_many_arguments)]
    fn add_global_store_inner<K, V, S>(
        &mut self,
        builder: Arc<dyn StoreBuilder>,
        source_name: &str,
        keys: SerdeRef<K>,
        values: SerdeRef<V>,
        topic: &str,
        processor_name: &str,
        supplier: S,
    ) -> Result<()>
    where
        K: Clone + Send + 'static,
        V: Clone + Send + 'static,
        S: ProcessorSupplier<K, V, (), ()>,
    {
        if builder.logging_enabled() {
            return topology_error(TopologyError::at_topic(
                topic,
                format!(
                    "global store `{}` must not be logged: its topic is its changelog",
                    builder.name()
                ),
            ));
        }
        self.check_new_name(source_name)?;
        self.check_new_name(processor_name)?;
        if source_name == processor_name {
            return topology_error(TopologyError::at_node(
                source_name,
                "a global store's source and processor need different names",
            ));
        }
        let store_name = builder.name().to_owned();
        self.add_store(builder, Some(topic.to_owned()))?;
        self.push_source(
            source_name,
            vec![TopicName::External(topic.to_owned())],
            keys,
            values,
            None,
            true,
        )?;
        let index = self.push_processor(processor_name, supplier, &[source_name], true)?;
        self.nodes[index].stores.push(store_name);
        Ok(())
    }

    /// Groups the non-global nodes into sub-topologies: connected through
    /// parent links or a shared store. Numbered in order of their first node.
    pub fn subtopologies(&self) -> Vec<Subtopology> {
        let n = self.nodes.len();
        let mut parent: Vec<usize> = (0..n).collect();
        fn find(parent: &mut [usize], mut x: usize) -> usize {
            while parent[x] != x {
                parent[x] = parent[parent[x]];
                x = parent[x];
            }
            x
        }
        let union = |parent: &mut Vec<usize>, a: usize, b: usize| {
            let (ra, rb) = (find(parent, a), find(parent, b));
            if ra != rb {
                parent[ra.max(rb)] = ra.min(rb);
            }
        };
        for (i, node) in self.nodes.iter().enumerate() {
            for &p in &node.parents {
                union(&mut parent, i, p);
            }
            for (j, other) in self.nodes.iter().enumerate().skip(i + 1) {
                if node.stores.iter().any(|s| other.stores.contains(s)) {
                    union(&mut parent, i, j);
                }
            }
        }
        let mut groups: Vec<(usize, Subtopology)> = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if node.global {
                continue;
            }
            let root = find(&mut parent, i);
            let position = match groups.iter().position(|(r, _)| *r == root) {
                Some(p) => p,
                None => {
                    let id = groups.len() as u32;
                    groups.push((
                        root,
                        Subtopology {
                            id,
                            nodes: Vec::new(),
                            source_topics: Vec::new(),
                            stores: Vec::new(),
                        },
                    ));
                    groups.len() - 1
                }
            };
            let group = &mut groups[position].1;
            group.nodes.push(i);
            if let NodeKind::Source { topics, .. } = &node.kind {
                group.source_topics.extend(topics.iter().cloned());
            }
            for store in &node.stores {
                if !group.stores.contains(store) {
                    group.stores.push(store.clone());
                }
            }
        }
        groups.into_iter().map(|(_, g)| g).collect()
    }

    /// Nodes of global stores' update paths, with the store and topic.
    pub fn global_nodes(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].global)
            .collect()
    }

    /// The stores node `node` uses.
    pub fn node_stores(&self, node: usize) -> &[String] {
        &self.nodes[node].stores
    }

    /// The topic node `node` writes to, when it is a sink to one topic
    /// (unprefixed for an internal topic).
    pub fn sink_topic(&self, node: usize) -> Option<&str> {
        match &self.nodes[node].kind {
            NodeKind::Sink { topic, .. } => Some(topic),
            _ => None,
        }
    }

    /// Internal repartition topics (unprefixed), with a partition count
    /// where one was asked for.
    pub fn repartition_topics(&self) -> &[(String, Option<i32>)] {
        &self.repartition_topics
    }

    /// The builder of store `name`.
    pub fn store_builder(&self, name: &str) -> Option<&dyn StoreBuilder> {
        self.store_def(name).map(|def| &*def.builder)
    }

    /// Every topic the topology reads, resolved for `application_id`.
    pub fn source_topic_names(&self, application_id: &str) -> Vec<String> {
        self.source_topics()
            .map(|t| t.resolve(application_id))
            .collect()
    }

    /// A printable description of sub-topologies, nodes, stores and topics,
    /// in the form of Kafka Streams' `TopologyDescription`.
    pub fn describe(&self) -> TopologyDescription {
        describe::describe(self)
    }
}
