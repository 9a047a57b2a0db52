//! `Topology::describe()`: the printable form of a topology.

use std::fmt;

use super::{NodeKind, Topology};

/// One node as `describe()` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeDescription {
    /// "Source", "Processor" or "Sink".
    pub kind: &'static str,
    /// The node's name.
    pub name: String,
    /// Topics read (source) or written (sink).
    pub topics: Vec<String>,
    /// Stores the node is connected to.
    pub stores: Vec<String>,
    /// Names of the children.
    pub successors: Vec<String>,
    /// Names of the parents.
    pub predecessors: Vec<String>,
}

/// A sub-topology: its id and nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubtopologyDescription {
    /// The id; tasks are named `<id>_<partition>`.
    pub id: u32,
    /// Nodes in the order they were added.
    pub nodes: Vec<NodeDescription>,
}

/// A global store with its source and processor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalStoreDescription {
    /// The store's name.
    pub store: String,
    /// The topic it reads.
    pub topic: String,
    /// Its source and processor nodes.
    pub nodes: Vec<NodeDescription>,
}

/// What a topology is made of, printable like Kafka Streams'
/// `TopologyDescription`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologyDescription {
    /// The sub-topologies.
    pub subtopologies: Vec<SubtopologyDescription>,
    /// The global stores.
    pub global_stores: Vec<GlobalStoreDescription>,
}

fn node_description(topology: &Topology, index: usize) -> NodeDescription {
    let node = &topology.nodes[index];
    let names = |indices: &[usize]| {
        indices
            .iter()
            .map(|&i| topology.nodes[i].name.clone())
            .collect()
    };
    let (kind, topics) = match &node.kind {
        NodeKind::Source { topics, .. } => (
            "Source",
            topics.iter().map(|t| t.raw().to_owned()).collect(),
        ),
        NodeKind::Processor { .. } => ("Processor", Vec::new()),
        NodeKind::Sink { topic, .. } => ("Sink", vec![topic.clone()]),
    };
    NodeDescription {
        kind,
        name: node.name.clone(),
        topics,
        stores: node.stores.clone(),
        successors: names(&node.children),
        predecessors: names(&node.parents),
    }
}

pub(super) fn describe(topology: &Topology) -> TopologyDescription {
    let subtopologies = topology
        .subtopologies()
        .into_iter()
        .map(|s| SubtopologyDescription {
            id: s.id,
            nodes: s
                .nodes
                .iter()
                .map(|&i| node_description(topology, i))
                .collect(),
        })
        .collect();
    let global_nodes = topology.global_nodes();
    let global_stores = topology
        .stores
        .iter()
        .filter_map(|store| {
            let topic = store.global_topic.clone()?;
            let name = store.builder.name().to_owned();
            let processor = *global_nodes
                .iter()
                .find(|&&i| topology.nodes[i].stores.contains(&name))?;
            let source = topology.nodes[processor].parents[0];
            Some(GlobalStoreDescription {
                store: name,
                topic,
                nodes: vec![
                    node_description(topology, source),
                    node_description(topology, processor),
                ],
            })
        })
        .collect();
    TopologyDescription {
        subtopologies,
        global_stores,
    }
}

impl fmt::Display for NodeDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            "Source" => writeln!(
                f,
                "    Source: {} (topics: [{}])",
                self.name,
                self.topics.join(", ")
            )?,
            "Sink" => writeln!(
                f,
                "    Sink: {} (topic: {})",
                self.name,
                self.topics.join(", ")
            )?,
            _ => writeln!(
                f,
                "    Processor: {} (stores: [{}])",
                self.name,
                self.stores.join(", ")
            )?,
        }
        if !self.successors.is_empty() {
            writeln!(f, "      --> {}", self.successors.join(", "))?;
        } else if self.kind != "Sink" {
            writeln!(f, "      --> none")?;
        }
        if !self.predecessors.is_empty() {
            writeln!(f, "      <-- {}", self.predecessors.join(", "))?;
        } else if self.kind != "Source" {
            writeln!(f, "      <-- none")?;
        }
        Ok(())
    }
}

impl fmt::Display for TopologyDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Topologies:")?;
        for sub in &self.subtopologies {
            writeln!(f, "   Sub-topology: {}", sub.id)?;
            for node in &sub.nodes {
                write!(f, "{node}")?;
            }
        }
        for (i, global) in self.global_stores.iter().enumerate() {
            writeln!(
                f,
                "   Sub-topology: {} for global store (will not generate tasks)",
                self.subtopologies.len() + i
            )?;
            for node in &global.nodes {
                write!(f, "{node}")?;
            }
        }
        Ok(())
    }
}
