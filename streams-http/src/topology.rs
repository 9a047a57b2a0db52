//! The topology as the console shows it: a JSON form of
//! [`TopologyDescription`] and a diagram laid out here, on the server, as
//! SVG (no layout code runs in the browser).
//!
//! The diagram draws each sub-topology, and each global store with its
//! source and processor, as a box of its own, side by side. Inside a box,
//! rows go down the data's way: the topics a source reads, the source,
//! then each processor one row below its lowest parent, sinks, and the
//! topics they write. A store sits at the right end of the row of the
//! first processor connected to it, joined to each of its processors by a
//! dashed line. Every element carries its name in a `data-` attribute
//! (`data-topic`, `data-name`, `data-store`) as well as in its text, and
//! the drawing uses presentation attributes only (no `<style>`), so it
//! renders the same alone and inlined in a page.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Value, json};
use streams_core::topology::{NodeDescription, TopologyDescription};

/// The JSON form of `description`: `{"subtopologies": [{"id", "nodes"}],
/// "globalStores": [{"id", "store", "topic", "nodes"}]}`, each node
/// `{"kind", "name", "topics", "stores", "successors", "predecessors"}`
/// as `describe()` has them. Global stores are numbered after the
/// sub-topologies, as `describe()`'s text numbers them.
pub fn topology_json(description: &TopologyDescription) -> Value {
    let nodes = |nodes: &[NodeDescription]| -> Vec<Value> {
        nodes
            .iter()
            .map(|node| {
                json!({
                    "kind": node.kind,
                    "name": node.name,
                    "topics": node.topics,
                    "stores": node.stores,
                    "successors": node.successors,
                    "predecessors": node.predecessors,
                })
            })
            .collect()
    };
    let first_global = description.subtopologies.len();
    json!({
        "subtopologies": description
            .subtopologies
            .iter()
            .map(|sub| json!({ "id": sub.id, "nodes": nodes(&sub.nodes) }))
            .collect::<Vec<_>>(),
        "globalStores": description
            .global_stores
            .iter()
            .enumerate()
            .map(|(i, global)| {
                json!({
                    "id": first_global + i,
                    "store": global.store,
                    "topic": global.topic,
                    "nodes": nodes(&global.nodes),
                })
            })
            .collect::<Vec<_>>(),
    })
}

/// What a box of the diagram holds.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ItemKind {
    /// A topic read by a source (above it) or written by a sink (below).
    Topic,
    /// A source, processor or sink; the string is `describe()`'s kind.
    Node(&'static str),
    /// A state store.
    Store,
}

#[derive(Debug, Clone)]
struct Item {
    kind: ItemKind,
    label: String,
    row: usize,
    width: f64,
    x: f64,
    y: f64,
}

/// An edge between items: data flow (an arrow) or a store's connection
/// (dashed, no arrow).
#[derive(Debug, Clone, Copy)]
struct Edge {
    from: usize,
    to: usize,
    store: bool,
}

/// One box: a sub-topology or a global store.
#[derive(Debug)]
struct Cluster {
    title: String,
    items: Vec<Item>,
    edges: Vec<Edge>,
    width: f64,
    height: f64,
}

// Sizes, in pixels, for 12 px monospace text.
const CHAR_WIDTH: f64 = 7.4;
const ITEM_HEIGHT: f64 = 44.0;
const TOPIC_HEIGHT: f64 = 28.0;
const ROW_GAP: f64 = 34.0;
const ITEM_GAP: f64 = 26.0;
const PADDING: f64 = 18.0;
const TITLE_HEIGHT: f64 = 30.0;
const CLUSTER_GAP: f64 = 28.0;
const MIN_WIDTH: f64 = 96.0;
/// Labels longer than this are cut, with the whole name in a `<title>`.
const MAX_LABEL: usize = 48;

fn label_width(label: &str) -> f64 {
    let chars = label.chars().count().min(MAX_LABEL + 1) as f64;
    (chars * CHAR_WIDTH + 24.0).max(MIN_WIDTH)
}

fn short(label: &str) -> String {
    if label.chars().count() <= MAX_LABEL {
        return label.to_owned();
    }
    let mut cut: String = label.chars().take(MAX_LABEL).collect();
    cut.push('…');
    cut
}

impl Cluster {
    /// Lays out `nodes` (one sub-topology, or a global store's source and
    /// processor) in rows.
    fn layout(title: String, nodes: &[NodeDescription]) -> Cluster {
        let mut items: Vec<Item> = Vec::new();
        let mut edges = Vec::new();
        let add = |items: &mut Vec<Item>, kind: ItemKind, label: &str| {
            items.push(Item {
                kind,
                label: label.to_owned(),
                row: 0,
                width: label_width(label),
                x: 0.0,
                y: 0.0,
            });
            items.len() - 1
        };
        // Nodes first, so that item `i` is node `i`.
        for node in nodes {
            add(&mut items, ItemKind::Node(node.kind), &node.name);
        }
        let index: BTreeMap<&str, usize> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.as_str(), i))
            .collect();
        // A node's row: one below its lowest parent (sources on row 1,
        // under their topics). Relaxed as often as there are nodes, which
        // settles any acyclic graph and stops on a cyclic one.
        let mut rows = vec![1usize; nodes.len()];
        for _ in 0..nodes.len() {
            let mut changed = false;
            for (i, node) in nodes.iter().enumerate() {
                let row = node
                    .predecessors
                    .iter()
                    .filter_map(|p| index.get(p.as_str()))
                    .map(|&p| rows[p] + 1)
                    .max()
                    .unwrap_or(1);
                if row > rows[i] {
                    rows[i] = row;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        for (i, node) in nodes.iter().enumerate() {
            items[i].row = rows[i];
            for successor in &node.successors {
                if let Some(&to) = index.get(successor.as_str()) {
                    edges.push(Edge {
                        from: i,
                        to,
                        store: false,
                    });
                }
            }
        }
        let mut stores: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, node) in nodes.iter().enumerate() {
            for topic in &node.topics {
                let topic_item = add(&mut items, ItemKind::Topic, topic);
                let (from, to, row) = match node.kind {
                    "Sink" => (i, topic_item, rows[i] + 1),
                    _ => (topic_item, i, rows[i] - 1),
                };
                items[topic_item].row = row;
                edges.push(Edge {
                    from,
                    to,
                    store: false,
                });
            }
            for store in &node.stores {
                let store_item = *stores.entry(store.as_str()).or_insert_with(|| {
                    let item = add(&mut items, ItemKind::Store, store);
                    items[item].row = rows[i];
                    item
                });
                edges.push(Edge {
                    from: i,
                    to: store_item,
                    store: true,
                });
            }
        }
        let mut cluster = Cluster {
            title,
            items,
            edges,
            width: 0.0,
            height: 0.0,
        };
        cluster.place();
        cluster
    }

    /// Gives every item its position: rows top to bottom; in a row, items
    /// ordered by where their parents are (stores last), then the row
    /// centred in the box.
    fn place(&mut self) {
        let rows = self.items.iter().map(|i| i.row).max().unwrap_or(0) + 1;
        let mut row_items: Vec<Vec<usize>> = vec![Vec::new(); rows];
        for (i, item) in self.items.iter().enumerate() {
            row_items[item.row].push(i);
        }
        let mut y = TITLE_HEIGHT + PADDING;
        let mut widest: f64 = 0.0;
        for members in &mut row_items {
            // The mean centre of each item's parents placed so far.
            let parent_x = |i: usize, items: &[Item]| -> f64 {
                let centres: Vec<f64> = self
                    .edges
                    .iter()
                    .filter(|e| e.to == i && !e.store && items[e.from].row < items[i].row)
                    .map(|e| items[e.from].x + items[e.from].width / 2.0)
                    .collect();
                match centres.len() {
                    0 => f64::MAX / 2.0,
                    n => centres.iter().sum::<f64>() / n as f64,
                }
            };
            let mut sorted: Vec<(bool, f64, usize)> = members
                .iter()
                .map(|&i| {
                    let store = self.items[i].kind == ItemKind::Store;
                    (store, parent_x(i, &self.items), i)
                })
                .collect();
            sorted.sort_by(|a, b| {
                (a.0, a.1)
                    .partial_cmp(&(b.0, b.1))
                    .unwrap_or(std::cmp::Ordering::Equal)
                    .then(a.2.cmp(&b.2))
            });
            *members = sorted.into_iter().map(|(_, _, i)| i).collect();
            let mut x = PADDING;
            for &i in members.iter() {
                let item = &mut self.items[i];
                item.x = x;
                item.y = y + (ITEM_HEIGHT - Self::item_height(item)) / 2.0;
                x += item.width + ITEM_GAP;
            }
            widest = widest.max(x - ITEM_GAP + PADDING);
            if !members.is_empty() {
                y += ITEM_HEIGHT + ROW_GAP;
            }
        }
        self.width = widest.max(label_width(&self.title) + 2.0 * PADDING);
        // Centre each row.
        for members in &row_items {
            let Some((&first, &last)) = members.first().zip(members.last()) else {
                continue;
            };
            let used = self.items[last].x + self.items[last].width - self.items[first].x;
            let shift = (self.width - used) / 2.0 - PADDING;
            for &i in members {
                self.items[i].x += shift;
            }
        }
        self.height = y - ROW_GAP + PADDING;
    }

    fn item_height(item: &Item) -> f64 {
        match item.kind {
            ItemKind::Topic => TOPIC_HEIGHT,
            _ => ITEM_HEIGHT,
        }
    }

    /// The box's SVG, its top left corner at (`left`, 0).
    fn svg(&self, out: &mut String, left: f64) {
        let _ = write!(
            out,
            r##"<g class="topo-cluster" data-title="{title}" transform="translate({left:.1},0)"><rect x="0.5" y="0.5" width="{w:.1}" height="{h:.1}" rx="8" fill="#f7f9fc" stroke="#b8c4d6"/><text x="{tx}" y="21" font-size="13" font-weight="bold" fill="#2d3b50">{title}</text>"##,
            title = escape(&self.title),
            w = self.width - 1.0,
            h = self.height - 1.0,
            tx = PADDING,
        );
        for edge in &self.edges {
            let (from, to) = (&self.items[edge.from], &self.items[edge.to]);
            if edge.store {
                // From the processor's side nearer the store, level.
                let (x1, x2) = if to.x >= from.x {
                    (from.x + from.width, to.x)
                } else {
                    (from.x, to.x + to.width)
                };
                let y1 = from.y + Self::item_height(from) / 2.0;
                let y2 = to.y + Self::item_height(to) / 2.0;
                let _ = write!(
                    out,
                    r##"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" stroke="#8a6d3b" stroke-width="1.4" stroke-dasharray="5 4"/>"##
                );
            } else {
                let x1 = from.x + from.width / 2.0;
                let y1 = from.y + Self::item_height(from);
                let x2 = to.x + to.width / 2.0;
                let y2 = to.y - 2.0;
                let mid = (y1 + y2) / 2.0;
                let _ = write!(
                    out,
                    r##"<path d="M{x1:.1},{y1:.1} C{x1:.1},{mid:.1} {x2:.1},{mid:.1} {x2:.1},{y2:.1}" fill="none" stroke="#5b6b82" stroke-width="1.4" marker-end="url(#topo-arrow)"/>"##
                );
            }
        }
        for item in &self.items {
            item_svg(out, item);
        }
        out.push_str("</g>");
    }
}

fn item_svg(out: &mut String, item: &Item) {
    let label = escape(&short(&item.label));
    let full = escape(&item.label);
    let (x, y, w) = (item.x, item.y, item.width);
    let cx = x + w / 2.0;
    match &item.kind {
        ItemKind::Topic => {
            let h = TOPIC_HEIGHT;
            let _ = write!(
                out,
                r##"<g class="topo-topic" data-topic="{full}"><title>topic {full}</title><path d="M{x0:.1},{y:.1} H{x1:.1} L{x2:.1},{ym:.1} L{x1:.1},{yb:.1} H{x0:.1} L{x3:.1},{ym:.1} Z" fill="#e8f1ff" stroke="#4a78c2"/><text x="{cx:.1}" y="{ty:.1}" text-anchor="middle" fill="#1f4d94">{label}</text></g>"##,
                x0 = x + 8.0,
                x1 = x + w - 8.0,
                x2 = x + w,
                x3 = x,
                ym = y + h / 2.0,
                yb = y + h,
                ty = y + h / 2.0 + 4.0,
            );
        }
        ItemKind::Store => {
            let h = ITEM_HEIGHT;
            let ry = 5.0;
            let _ = write!(
                out,
                r##"<g class="topo-store" data-store="{full}"><title>store {full}</title><path d="M{x:.1},{yt:.1} A{rx:.1},{ry} 0 0 0 {xr:.1},{yt:.1} V{yb:.1} A{rx:.1},{ry} 0 0 1 {x:.1},{yb:.1} Z" fill="#fdf3e1" stroke="#b07d2b"/><path d="M{x:.1},{yt:.1} A{rx:.1},{ry} 0 0 1 {xr:.1},{yt:.1}" fill="none" stroke="#b07d2b"/><text x="{cx:.1}" y="{ky:.1}" text-anchor="middle" font-size="10" fill="#8a6d3b">store</text><text x="{cx:.1}" y="{ty:.1}" text-anchor="middle" fill="#5c4415">{label}</text></g>"##,
                rx = w / 2.0,
                xr = x + w,
                yt = y + ry,
                yb = y + h - ry,
                ky = y + 19.0,
                ty = y + 33.0,
            );
        }
        ItemKind::Node(kind) => {
            let (fill, stroke) = match *kind {
                "Source" => ("#e6f4ea", "#3c8c57"),
                "Sink" => ("#fbe9e7", "#c0583f"),
                _ => ("#ffffff", "#5b6b82"),
            };
            let _ = write!(
                out,
                r##"<g class="topo-node" data-kind="{kind}" data-name="{full}"><title>{kind} {full}</title><rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h}" rx="6" fill="{fill}" stroke="{stroke}" stroke-width="1.4"/><text x="{cx:.1}" y="{ky:.1}" text-anchor="middle" font-size="10" fill="#5b6b82">{kind}</text><text x="{cx:.1}" y="{ty:.1}" text-anchor="middle" fill="#1d2633">{label}</text></g>"##,
                h = ITEM_HEIGHT,
                ky = y + 16.0,
                ty = y + 32.0,
            );
        }
    }
}

/// `description` drawn as an SVG document (see the module's docs).
pub fn topology_svg(description: &TopologyDescription) -> String {
    let mut clusters: Vec<Cluster> = description
        .subtopologies
        .iter()
        .map(|sub| Cluster::layout(format!("Sub-topology {}", sub.id), &sub.nodes))
        .collect();
    let first_global = clusters.len();
    clusters.extend(
        description
            .global_stores
            .iter()
            .enumerate()
            .map(|(i, global)| {
                Cluster::layout(
                    format!(
                        "Sub-topology {} (global store {})",
                        first_global + i,
                        global.store
                    ),
                    &global.nodes,
                )
            }),
    );
    let width = clusters.iter().map(|c| c.width + CLUSTER_GAP).sum::<f64>() - CLUSTER_GAP;
    let height = clusters.iter().map(|c| c.height).fold(0.0, f64::max);
    let (width, height) = match clusters.is_empty() {
        true => (320.0, 60.0),
        false => (width.ceil() + 1.0, height.ceil() + 1.0),
    };
    let mut out = String::new();
    let _ = write!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" class="topology" viewBox="0 0 {width} {height}" width="{width}" height="{height}" font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="12" role="img" aria-label="topology"><title>Topology</title><defs><marker id="topo-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#5b6b82"/></marker></defs>"##
    );
    if clusters.is_empty() {
        out.push_str(r##"<text x="12" y="34" fill="#5b6b82">an empty topology</text>"##);
    }
    let mut left = 0.0;
    for cluster in &clusters {
        cluster.svg(&mut out, left);
        left += cluster.width + CLUSTER_GAP;
    }
    out.push_str("</svg>\n");
    out
}

/// `text` escaped for XML text and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters are not allowed in XML 1.0.
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use streams_core::StreamsBuilder;
    use streams_core::dsl::{Consumed, KStream, Materialized};
    use streams_core::serde::StringSerde;

    fn word_count() -> TopologyDescription {
        let builder = StreamsBuilder::new();
        let lines: KStream<(), String> = builder.stream("lines");
        lines
            .flat_map_values(|line| {
                line.split_whitespace()
                    .map(str::to_lowercase)
                    .collect::<Vec<_>>()
            })
            .group_by(|_, word| word)
            .count_with(Materialized::named("word-counts"))
            .to_stream()
            .to("counts");
        builder.build().unwrap().describe()
    }

    /// Every `<tag ...>` opened is closed, in order (a cheap well-formedness
    /// check: the drawing has no comments, CDATA or self-closing tricks
    /// beyond `/>`).
    fn balanced(svg: &str) -> bool {
        let mut open: Vec<&str> = Vec::new();
        for tag in svg.split('<').skip(1) {
            let tag = tag.split('>').next().unwrap_or_default();
            if let Some(name) = tag.strip_prefix('/') {
                if open.pop() != Some(name.trim()) {
                    return false;
                }
            } else if !tag.ends_with('/') {
                open.push(tag.split_whitespace().next().unwrap_or_default());
            }
        }
        open.is_empty()
    }

    #[test]
    fn the_diagram_names_every_topic_node_and_store_and_is_well_formed() {
        let description = word_count();
        let svg = topology_svg(&description);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(balanced(&svg), "{svg}");
        // A repartition: two sub-topologies, each a box.
        assert_eq!(description.subtopologies.len(), 2);
        assert_eq!(svg.matches("class=\"topo-cluster\"").count(), 2);
        for sub in &description.subtopologies {
            for node in &sub.nodes {
                assert!(
                    svg.contains(&format!("data-name=\"{}\"", node.name)),
                    "{}",
                    node.name
                );
                for topic in &node.topics {
                    assert!(svg.contains(&format!("data-topic=\"{topic}\"")), "{topic}");
                }
            }
        }
        assert!(svg.contains("data-topic=\"lines\""));
        assert!(svg.contains("data-topic=\"counts\""));
        assert_eq!(svg.matches("data-store=\"word-counts\"").count(), 1);
        assert!(svg.contains(">word-counts</text>"));
    }

    #[test]
    fn rows_follow_the_data_and_stores_sit_beside_their_processor() {
        let description = word_count();
        let cluster = Cluster::layout("s".into(), &description.subtopologies[1].nodes);
        let find = |kind: ItemKind, label: &str| {
            cluster
                .items
                .iter()
                .find(|i| i.kind == kind && i.label == label)
                .unwrap_or_else(|| panic!("{label}"))
        };
        let source = cluster
            .items
            .iter()
            .find(|i| i.kind == ItemKind::Node("Source"))
            .unwrap();
        let topic = cluster
            .items
            .iter()
            .find(|i| i.kind == ItemKind::Topic && i.row == 0)
            .unwrap();
        assert!(topic.y < source.y, "a source's topic is above it");
        let store = find(ItemKind::Store, "word-counts");
        let aggregate = cluster
            .items
            .iter()
            .find(|i| i.kind == ItemKind::Node("Processor") && i.row == store.row)
            .unwrap();
        assert!(store.x > aggregate.x, "the store is right of its processor");
        let sink_topic = find(ItemKind::Topic, "counts");
        assert!(sink_topic.row > store.row);
        // Nothing overlaps within a row.
        for a in &cluster.items {
            for b in &cluster.items {
                if std::ptr::eq(a, b) || a.row != b.row {
                    continue;
                }
                assert!(a.x + a.width <= b.x || b.x + b.width <= a.x);
            }
        }
    }

    #[test]
    fn names_are_escaped_and_long_ones_cut() {
        let builder = StreamsBuilder::new();
        let long = "x".repeat(80);
        builder
            .stream_with(["a<b&\"c\""], Consumed::with(StringSerde, StringSerde))
            .to(&long);
        let svg = topology_svg(&builder.build().unwrap().describe());
        assert!(balanced(&svg), "{svg}");
        assert!(svg.contains("data-topic=\"a&lt;b&amp;&quot;c&quot;\""));
        assert!(svg.contains(&format!("data-topic=\"{long}\"")));
        assert!(svg.contains(&format!(">{}…</text>", "x".repeat(MAX_LABEL))));
    }

    #[test]
    fn the_json_form_has_what_describe_has() {
        let description = word_count();
        let json = topology_json(&description);
        let subs = json["subtopologies"].as_array().unwrap();
        assert_eq!(subs.len(), 2);
        assert_eq!(subs[0]["nodes"][0]["kind"], "Source");
        assert_eq!(subs[0]["nodes"][0]["topics"], json!(["lines"]));
        let aggregate = subs[1]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["stores"] == json!(["word-counts"]))
            .unwrap();
        assert_eq!(aggregate["kind"], "Processor");
        assert!(json["globalStores"].as_array().unwrap().is_empty());
        let empty = topology_svg(&StreamsBuilder::new().build().unwrap().describe());
        assert!(empty.contains("an empty topology") && balanced(&empty));
    }
}
