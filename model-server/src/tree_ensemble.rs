//! The ONNX-ML tree-ensemble operators (`TreeEnsembleRegressor` and
//! `TreeEnsembleClassifier`, `ai.onnx.ml` opsets 1 to 3), registered in
//! tract's ONNX operator registry in place of tract's own.
//!
//! tract 0.23 has no regressor, and its classifier scans the leaf table
//! from the start at every leaf it reaches and builds an error value to
//! tell a leaf from a branch (about 9 ms a row for a 50-tree forest). Here
//! every tree is a flat array of nodes walked from its root, a leaf points
//! at its own slice of weights, and a row costs one walk per tree. The
//! semantics follow the ONNX-ML specification as onnxruntime implements
//! it: every node mode, missing values (NaN) sent the true way when the
//! node says so, the four aggregate functions, base values, the five post
//! transforms, and the class with the highest score (the first of equals)
//! as the label.

use std::sync::Arc;

use crate::onnx_ml::{PostTransform, rows_of, score_rows, with_scores};
use crate::tract_model::RowPredictor;

use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::bail;
use tract_onnx::tract_core::internal::{
    EvalContext, EvalOp, Op, StaticName, TypedOp, as_op, op_as_typed_op, op_out_of_plan,
};
use tract_onnx::tract_hir::internal::{
    Expansion, InferenceOp, InferenceResult, Solver, TensorProxy, check_input_arity,
    check_output_arity, expand,
};

/// How a branch compares a feature with its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Leaf,
    Leq,
    Lt,
    Gte,
    Gt,
    Eq,
    Neq,
}

/// One node: a branch (feature, threshold, children as absolute indices)
/// or a leaf (`yes..no` is its range in the weights table).
#[derive(Debug, Clone, Copy)]
struct Node {
    mode: Mode,
    missing_true: bool,
    feature: u32,
    threshold: f32,
    yes: u32,
    no: u32,
}

/// How the leaf weights of all trees combine per target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Aggregate {
    Sum,
    Average,
    Min,
    Max,
}

/// A parsed tree ensemble; `labels` is set for a classifier.
#[derive(Debug)]
pub(crate) struct Ensemble {
    roots: Vec<u32>,
    nodes: Vec<Node>,
    weights: Vec<(u32, f32)>,
    n_targets: usize,
    n_features: usize,
    aggregate: Aggregate,
    base_values: Vec<f32>,
    post: PostTransform,
    labels: Option<Vec<i64>>,
}

impl Ensemble {
    /// Parses a `TreeEnsembleRegressor` or `TreeEnsembleClassifier` node.
    fn parse(node: &NodeProto, classifier: bool) -> TractResult<Self> {
        let op = &node.op_type;
        let ints = |name: &str| -> TractResult<Vec<i64>> {
            Ok(node.get_attr_opt_vec::<i64>(name)?.unwrap_or_default())
        };
        let floats = |name: &str| -> TractResult<Vec<f32>> {
            if node.get_attr_opt_tvec::<f32>(name)?.is_none()
                && node
                    .attribute
                    .iter()
                    .any(|a| a.name == format!("{name}_as_tensor"))
            {
                bail!("{op}: {name}_as_tensor (double precision) is not supported; export float32");
            }
            Ok(node.get_attr_opt_vec::<f32>(name)?.unwrap_or_default())
        };
        let (labels, n_targets, prefix) = if classifier {
            if node
                .get_attr_opt_tvec::<&str>("classlabels_strings")?
                .is_some()
            {
                bail!("{op}: string class labels are not supported (the prediction is a number)");
            }
            let labels = ints("classlabels_int64s")?;
            let n = labels.len();
            (Some(labels), n, "class")
        } else {
            let n: i64 = node.get_attr_opt("n_targets")?.unwrap_or(1);
            let Ok(n) = usize::try_from(n) else {
                bail!("{op}: n_targets is {n}");
            };
            (None, n, "target")
        };
        if n_targets == 0 {
            bail!("{op}: no targets or classes");
        }
        let aggregate = match node.get_attr_opt::<&str>("aggregate_function")? {
            None | Some("SUM") => Aggregate::Sum,
            Some("AVERAGE") => Aggregate::Average,
            Some("MIN") => Aggregate::Min,
            Some("MAX") => Aggregate::Max,
            Some(other) => bail!("{op}: unknown aggregate_function {other}"),
        };
        let post = PostTransform::parse(node)?;
        let base_values = floats("base_values")?;
        if !base_values.is_empty() && base_values.len() != n_targets {
            bail!(
                "{op}: {} base values for {n_targets} targets",
                base_values.len()
            );
        }

        let tree_ids = ints("nodes_treeids")?;
        let node_ids = ints("nodes_nodeids")?;
        let features = ints("nodes_featureids")?;
        let true_ids = ints("nodes_truenodeids")?;
        let false_ids = ints("nodes_falsenodeids")?;
        let thresholds = floats("nodes_values")?;
        let modes = node
            .get_attr_opt_vec::<&str>("nodes_modes")?
            .unwrap_or_default();
        let n = tree_ids.len();
        let mut missing = ints("nodes_missing_value_tracks_true")?;
        if missing.is_empty() {
            missing = vec![0; n];
        }
        if n == 0 {
            bail!("{op}: no nodes");
        }
        for (name, len) in [
            ("nodes_nodeids", node_ids.len()),
            ("nodes_featureids", features.len()),
            ("nodes_truenodeids", true_ids.len()),
            ("nodes_falsenodeids", false_ids.len()),
            ("nodes_values", thresholds.len()),
            ("nodes_modes", modes.len()),
            ("nodes_missing_value_tracks_true", missing.len()),
        ] {
            if len != n {
                bail!("{op}: {name} has {len} entries where nodes_treeids has {n}");
            }
        }
        let leaf_trees = ints(&format!("{prefix}_treeids"))?;
        let leaf_nodes = ints(&format!("{prefix}_nodeids"))?;
        let leaf_targets = ints(&format!("{prefix}_ids"))?;
        let leaf_weights = floats(&format!("{prefix}_weights"))?;
        let m = leaf_trees.len();
        if leaf_nodes.len() != m || leaf_targets.len() != m || leaf_weights.len() != m {
            bail!("{op}: the {prefix}_* attributes differ in length");
        }
        // Every row's scores take `n_targets` floats, so a declared count
        // must be backed by the model's own data: a target gets a weight
        // or a base value (and the classifier's come from its labels).
        if !classifier && n_targets > m.max(base_values.len()) {
            bail!(
                "{op}: n_targets is {n_targets}, more than the {m} target weights and {} base values",
                base_values.len()
            );
        }
        // Nodes and weights are indexed with u32.
        if u32::try_from(n).is_err() || u32::try_from(m).is_err() {
            bail!("{op}: {n} nodes and {m} weights, too many");
        }
        if let Some(t) = leaf_targets
            .iter()
            .find(|&&t| t < 0 || t as usize >= n_targets)
        {
            bail!("{op}: {prefix} id {t} is outside the {n_targets} targets");
        }
        if classifier && n_targets == 2 && leaf_targets.iter().all(|&t| t == leaf_targets[0]) {
            bail!("{op}: binary classifiers with one score column are not supported");
        }

        // Nodes in (tree, node id) order; ids index within their tree.
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&i| (tree_ids[i], node_ids[i]));
        let mut index = std::collections::HashMap::with_capacity(n);
        for (row, &i) in order.iter().enumerate() {
            if index.insert((tree_ids[i], node_ids[i]), row).is_some() {
                bail!(
                    "{op}: node {} of tree {} appears twice",
                    node_ids[i],
                    tree_ids[i]
                );
            }
        }
        let mut by_leaf: Vec<usize> = (0..m).collect();
        by_leaf.sort_by_key(|&i| (leaf_trees[i], leaf_nodes[i]));

        let mut roots = Vec::new();
        let mut nodes = Vec::with_capacity(n);
        let mut weights = Vec::with_capacity(m);
        let mut next = 0;
        let mut current = None;
        for &i in &order {
            let tree = tree_ids[i];
            // A tree's root is its first node (the lowest id).
            if current != Some(tree) {
                current = Some(tree);
                roots.push(nodes.len() as u32);
            }
            let mode = match modes[i] {
                "LEAF" => Mode::Leaf,
                "BRANCH_LEQ" => Mode::Leq,
                "BRANCH_LT" => Mode::Lt,
                "BRANCH_GTE" => Mode::Gte,
                "BRANCH_GT" => Mode::Gt,
                "BRANCH_EQ" => Mode::Eq,
                "BRANCH_NEQ" => Mode::Neq,
                other => bail!("{op}: unknown node mode {other}"),
            };
            let child = |id: i64| -> TractResult<u32> {
                match index.get(&(tree, id)) {
                    Some(&row) => Ok(row as u32),
                    None => bail!(
                        "{op}: node {} of tree {tree} points to a missing node {id}",
                        node_ids[i]
                    ),
                }
            };
            let node = if mode == Mode::Leaf {
                let first = weights.len() as u32;
                while let Some(&l) = by_leaf.get(next) {
                    if (leaf_trees[l], leaf_nodes[l]) != (tree, node_ids[i]) {
                        break;
                    }
                    weights.push((leaf_targets[l] as u32, leaf_weights[l]));
                    next += 1;
                }
                Node {
                    mode,
                    missing_true: false,
                    feature: 0,
                    threshold: 0.0,
                    yes: first,
                    no: weights.len() as u32,
                }
            } else {
                let Ok(feature) = u32::try_from(features[i]) else {
                    bail!("{op}: feature id {} is out of range", features[i]);
                };
                Node {
                    mode,
                    missing_true: missing[i] != 0,
                    feature,
                    threshold: thresholds[i],
                    yes: child(true_ids[i])?,
                    no: child(false_ids[i])?,
                }
            };
            nodes.push(node);
        }
        if next != m {
            bail!("{op}: a {prefix} weight belongs to a node that is not a leaf");
        }
        // A child must come after its parent in the same tree (as node ids
        // numbered from the root down do): a walk then only moves forward,
        // so no hostile tree can make it loop, and it takes at most as many
        // steps as its tree has nodes.
        for (row, node) in nodes.iter().enumerate() {
            if node.mode != Mode::Leaf && (node.yes as usize <= row || node.no as usize <= row) {
                bail!("{op}: the trees are not ordered from the root down (node {row})");
            }
        }
        let n_features = nodes
            .iter()
            .filter(|n| n.mode != Mode::Leaf)
            .map(|n| n.feature as usize + 1)
            .max()
            .unwrap_or(0);
        Ok(Self {
            roots,
            nodes,
            weights,
            n_targets,
            n_features,
            aggregate,
            base_values,
            post,
            labels,
        })
    }

    /// The leaf a row reaches in the tree rooted at `root`.
    #[inline]
    fn leaf(&self, root: u32, row: &[f32]) -> &Node {
        let mut node = &self.nodes[root as usize];
        loop {
            let x = row[node.feature as usize];
            let t = node.threshold;
            let go_yes = match node.mode {
                Mode::Leaf => return node,
                Mode::Leq => x <= t,
                Mode::Lt => x < t,
                Mode::Gte => x >= t,
                Mode::Gt => x > t,
                Mode::Eq => x == t,
                Mode::Neq => x != t,
            } || (node.missing_true && x.is_nan());
            node = &self.nodes[if go_yes { node.yes } else { node.no } as usize];
        }
    }

    /// Scores one row into `out` (`n_targets` long) and returns the index
    /// of the highest score before the post transform (the label's).
    fn score(&self, row: &[f32], out: &mut [f32]) -> usize {
        let (init, has) = match self.aggregate {
            Aggregate::Min => (f32::INFINITY, true),
            Aggregate::Max => (f32::NEG_INFINITY, true),
            _ => (0.0, false),
        };
        out.fill(init);
        for &root in &self.roots {
            let leaf = self.leaf(root, row);
            for &(target, weight) in &self.weights[leaf.yes as usize..leaf.no as usize] {
                let o = &mut out[target as usize];
                *o = match self.aggregate {
                    Aggregate::Sum | Aggregate::Average => *o + weight,
                    Aggregate::Min => o.min(weight),
                    Aggregate::Max => o.max(weight),
                };
            }
        }
        for (i, o) in out.iter_mut().enumerate() {
            if has && o.is_infinite() {
                *o = 0.0; // no tree gave this target a weight
            }
            if self.aggregate == Aggregate::Average {
                *o /= self.roots.len() as f32;
            }
            if let Some(b) = self.base_values.get(i) {
                *o += b;
            }
        }
        let mut best = 0;
        for (i, &o) in out.iter().enumerate() {
            if o > out[best] {
                best = i;
            }
        }
        self.post.apply(out);
        best
    }
}

impl RowPredictor for Ensemble {
    fn predict(&self, row: &[f32]) -> Option<f64> {
        if row.len() < self.n_features {
            return None;
        }
        Some(with_scores(self.n_targets, |out| {
            let best = self.score(row, out);
            match &self.labels {
                Some(labels) => labels[best] as f64,
                None => f64::from(out[0]),
            }
        }))
    }
}

/// The operator as tract runs it: [N, features] in; a regressor gives
/// [N, targets] scores, a classifier [N] labels and [N, classes] scores.
#[derive(Debug, Clone)]
struct TreeEnsembleOp(Arc<Ensemble>);

impl PartialEq for TreeEnsembleOp {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for TreeEnsembleOp {}

impl TreeEnsembleOp {
    fn name(&self) -> &'static str {
        if self.0.labels.is_some() {
            "TreeEnsembleClassifier"
        } else {
            "TreeEnsembleRegressor"
        }
    }
}

impl Op for TreeEnsembleOp {
    fn name(&self) -> StaticName {
        TreeEnsembleOp::name(self).into()
    }

    op_as_typed_op!();
}

impl EvalOp for TreeEnsembleOp {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext<'_>, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let e = &*self.0;
        let features = |width| {
            if width < e.n_features {
                bail!(
                    "{}: rows have {width} features, the trees use {}",
                    self.name(),
                    e.n_features
                );
            }
            Ok(())
        };
        let (scores, best) = score_rows(
            self.name(),
            &inputs[0],
            e.n_targets,
            features,
            |row, out| e.score(row, out),
        )?;
        Ok(match &e.labels {
            None => tvec!(scores),
            Some(labels) => {
                let labels: Vec<i64> = best.iter().map(|&b| labels[b]).collect();
                tvec!(tensor1(&labels).into_tvalue(), scores)
            }
        })
    }
}

impl TypedOp for TreeEnsembleOp {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let n = rows_of(self.name(), inputs)?;
        let scores = f32::fact([n.clone(), self.0.n_targets.to_dim()]);
        Ok(match self.0.labels {
            None => tvec!(scores),
            Some(_) => tvec!(i64::fact([n]), scores),
        })
    }

    as_op!();
}

/// The operator as the ONNX parser sees it, before typing.
#[derive(Debug, Clone)]
struct TreeEnsembleExpansion(TreeEnsembleOp);

impl Expansion for TreeEnsembleExpansion {
    fn name(&self) -> StaticName {
        self.0.name().into()
    }

    fn nboutputs(&self) -> TractResult<usize> {
        Ok(if self.0.0.labels.is_some() { 2 } else { 1 })
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        let classifier = self.0.0.labels.is_some();
        check_output_arity(outputs, if classifier { 2 } else { 1 })?;
        let scores = &outputs[if classifier { 1 } else { 0 }];
        s.equals(&scores.datum_type, DatumType::F32)?;
        s.equals(&scores.rank, 2)?;
        s.equals(&scores.shape[1], self.0.0.n_targets.to_dim())?;
        if classifier {
            s.equals(&outputs[0].datum_type, DatumType::I64)?;
            s.equals(&outputs[0].rank, 1)?;
            s.equals(&outputs[0].shape[0], &scores.shape[0])?;
        }
        // A row, or a batch of rows, as `score_rows` reads them.
        let name = self.0.name();
        s.given(&inputs[0].rank, move |s, rank| match rank {
            1 => s.equals(&scores.shape[0], 1.to_dim()),
            2 => s.equals(&scores.shape[0], &inputs[0].shape[0]),
            _ => bail!("{name}: input of rank {rank}, not 1 or 2"),
        })
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        model.wire_node(prefix, self.0.clone(), inputs)
    }
}

fn regressor(
    _ctx: &tract_onnx::model::ParsingContext<'_>,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let ensemble = Ensemble::parse(node, false)?;
    Ok((
        expand(TreeEnsembleExpansion(TreeEnsembleOp(Arc::new(ensemble)))),
        vec![],
    ))
}

fn classifier(
    _ctx: &tract_onnx::model::ParsingContext<'_>,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let ensemble = Ensemble::parse(node, true)?;
    Ok((
        expand(TreeEnsembleExpansion(TreeEnsembleOp(Arc::new(ensemble)))),
        vec![],
    ))
}

/// The row predictor behind `op`, if it is one of ours.
pub(crate) fn row_predictor(op: &dyn TypedOp) -> Option<Arc<dyn RowPredictor>> {
    op.downcast_ref::<TreeEnsembleOp>()
        .map(|op| op.0.clone() as Arc<dyn RowPredictor>)
}

/// Registers both operators, replacing tract's classifier.
pub(crate) fn register(framework: &mut tract_onnx::Onnx) {
    framework
        .op_register
        .insert("TreeEnsembleRegressor", regressor);
    framework
        .op_register
        .insert("TreeEnsembleClassifier", classifier);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Model as _;
    use crate::tract_model::test_onnx::{graph, model};
    use proptest::prelude::*;
    use tract_onnx::pb::AttributeProto;
    use tract_onnx::pb::attribute_proto::AttributeType;

    fn ints(name: &str, values: &[i64]) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: AttributeType::Ints as i32,
            ints: values.to_vec(),
            ..AttributeProto::default()
        }
    }

    fn floats(name: &str, values: &[f32]) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: AttributeType::Floats as i32,
            floats: values.to_vec(),
            ..AttributeProto::default()
        }
    }

    fn strings(name: &str, values: &[&str]) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: AttributeType::Strings as i32,
            strings: values.iter().map(|v| v.as_bytes().to_vec()).collect(),
            ..AttributeProto::default()
        }
    }

    fn string(name: &str, value: &str) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: AttributeType::String as i32,
            s: value.as_bytes().to_vec(),
            ..AttributeProto::default()
        }
    }

    /// A regressor of `trees` copies of one stump on feature 0:
    /// `mode` against 1.0, leaves 10 (true) and 20 (false), a missing
    /// value going the true way.
    fn stumps(trees: i64, mode: &str, extra: Vec<AttributeProto>) -> NodeProto {
        let per_tree = |v: [i64; 3]| -> Vec<i64> { (0..trees).flat_map(|_| v).collect() };
        let tree_ids: Vec<i64> = (0..trees).flat_map(|t| [t, t, t]).collect();
        let leaf_trees: Vec<i64> = (0..trees).flat_map(|t| [t, t]).collect();
        let mut attribute = vec![
            ints("nodes_treeids", &tree_ids),
            ints("nodes_nodeids", &per_tree([0, 1, 2])),
            ints("nodes_featureids", &per_tree([0, 0, 0])),
            ints("nodes_truenodeids", &per_tree([1, 0, 0])),
            ints("nodes_falsenodeids", &per_tree([2, 0, 0])),
            ints("nodes_missing_value_tracks_true", &per_tree([1, 0, 0])),
            floats(
                "nodes_values",
                &(0..trees).flat_map(|_| [1.0, 0.0, 0.0]).collect::<Vec<_>>(),
            ),
            strings(
                "nodes_modes",
                &(0..trees)
                    .flat_map(|_| [mode, "LEAF", "LEAF"])
                    .collect::<Vec<_>>(),
            ),
            ints("target_treeids", &leaf_trees),
            ints(
                "target_nodeids",
                &(0..trees).flat_map(|_| [1, 2]).collect::<Vec<_>>(),
            ),
            ints("target_ids", &vec![0; 2 * trees as usize]),
            floats(
                "target_weights",
                &(0..trees)
                    .flat_map(|t| [10.0 + t as f32, 20.0 + t as f32])
                    .collect::<Vec<_>>(),
            ),
        ];
        attribute.extend(extra);
        NodeProto {
            op_type: "TreeEnsembleRegressor".into(),
            attribute,
            ..NodeProto::default()
        }
    }

    fn predict(node: &NodeProto, x: f32) -> f32 {
        let e = Ensemble::parse(node, false).unwrap();
        let mut out = vec![0.0; e.n_targets];
        e.score(&[x], &mut out);
        out[0]
    }

    #[test]
    fn every_node_mode_compares_as_the_spec_says() {
        for (mode, at_one, below, above) in [
            ("BRANCH_LEQ", 10.0, 10.0, 20.0),
            ("BRANCH_LT", 20.0, 10.0, 20.0),
            ("BRANCH_GTE", 10.0, 20.0, 10.0),
            ("BRANCH_GT", 20.0, 20.0, 10.0),
            ("BRANCH_EQ", 10.0, 20.0, 20.0),
            ("BRANCH_NEQ", 20.0, 10.0, 10.0),
        ] {
            let node = stumps(1, mode, vec![]);
            assert_eq!(predict(&node, 1.0), at_one, "{mode} at 1");
            assert_eq!(predict(&node, 0.5), below, "{mode} below");
            assert_eq!(predict(&node, 1.5), above, "{mode} above");
            // The node sends a missing value the true way.
            assert_eq!(predict(&node, f32::NAN), 10.0, "{mode} NaN");
        }
        let unknown = Ensemble::parse(&stumps(1, "BRANCH_SOMETIMES", vec![]), false);
        assert!(
            unknown
                .unwrap_err()
                .to_string()
                .contains("BRANCH_SOMETIMES")
        );
    }

    #[test]
    fn aggregates_base_values_and_post_transforms() {
        // Three trees below the threshold give 20, 21, 22.
        let at = |extra: Vec<AttributeProto>| predict(&stumps(3, "BRANCH_LEQ", extra), 5.0);
        assert_eq!(at(vec![]), 63.0);
        assert_eq!(at(vec![string("aggregate_function", "AVERAGE")]), 21.0);
        assert_eq!(at(vec![string("aggregate_function", "MIN")]), 20.0);
        assert_eq!(at(vec![string("aggregate_function", "MAX")]), 22.0);
        assert_eq!(at(vec![floats("base_values", &[0.5])]), 63.5);
        let logistic = at(vec![
            floats("base_values", &[-63.0]),
            string("post_transform", "LOGISTIC"),
        ]);
        assert_eq!(logistic, 0.5);
        let wrong = Ensemble::parse(
            &stumps(1, "BRANCH_LEQ", vec![floats("base_values", &[1.0, 2.0])]),
            false,
        );
        assert!(wrong.unwrap_err().to_string().contains("base values"));
    }

    #[test]
    fn malformed_trees_are_refused_with_the_reason() {
        // A child that does not exist.
        let mut node = stumps(1, "BRANCH_LEQ", vec![]);
        node.attribute[3] = ints("nodes_truenodeids", &[7, 0, 0]);
        let err = Ensemble::parse(&node, false).unwrap_err().to_string();
        assert!(err.contains("missing node 7"), "{err}");
        // A loop back to the root.
        let mut node = stumps(1, "BRANCH_LEQ", vec![]);
        node.attribute[3] = ints("nodes_truenodeids", &[0, 0, 0]);
        let err = Ensemble::parse(&node, false).unwrap_err().to_string();
        assert!(err.contains("root down"), "{err}");
        // Attributes of different lengths.
        let mut node = stumps(1, "BRANCH_LEQ", vec![]);
        node.attribute[6] = floats("nodes_values", &[1.0]);
        let err = Ensemble::parse(&node, false).unwrap_err().to_string();
        assert!(err.contains("nodes_values has 1 entries"), "{err}");
    }

    fn int(name: &str, value: i64) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: AttributeType::Int as i32,
            i: value,
            ..AttributeProto::default()
        }
    }

    fn refused(node: &NodeProto, classifier: bool) -> String {
        Ensemble::parse(node, classifier).unwrap_err().to_string()
    }

    #[test]
    fn a_declared_target_count_must_be_backed_by_the_model() {
        // Two weights (one per leaf): up to two targets.
        let targets = |n| stumps(1, "BRANCH_LEQ", vec![int("n_targets", n)]);
        let err = refused(&targets(4_000_000_000), false);
        assert!(err.contains("n_targets is 4000000000"), "{err}");
        assert!(refused(&targets(3), false).contains("2 target weights"));
        assert!(refused(&targets(-1), false).contains("n_targets is -1"));
        assert_eq!(Ensemble::parse(&targets(2), false).unwrap().n_targets, 2);
        // Base values give the targets no weight reaches a value.
        let based = stumps(
            1,
            "BRANCH_LEQ",
            vec![int("n_targets", 3), floats("base_values", &[1.0, 2.0, 3.0])],
        );
        let e = Ensemble::parse(&based, false).unwrap();
        let mut out = [0.0; 3];
        e.score(&[0.0], &mut out);
        assert_eq!(out, [11.0, 2.0, 3.0]);
    }

    #[test]
    fn cyclic_and_backward_trees_are_refused() {
        // A node that is its own child, a loop through a deeper node, and
        // a child of another tree's node id (missing in this tree).
        let chain = |true_ids: &[i64], false_ids: &[i64]| NodeProto {
            op_type: "TreeEnsembleRegressor".into(),
            attribute: vec![
                ints("nodes_treeids", &[0, 0, 0, 0, 1]),
                ints("nodes_nodeids", &[0, 1, 2, 3, 0]),
                ints("nodes_featureids", &[0; 5]),
                ints("nodes_truenodeids", true_ids),
                ints("nodes_falsenodeids", false_ids),
                floats("nodes_values", &[0.0; 5]),
                strings(
                    "nodes_modes",
                    &["BRANCH_LEQ", "BRANCH_LEQ", "BRANCH_LEQ", "LEAF", "LEAF"],
                ),
                ints("target_treeids", &[0, 1]),
                ints("target_nodeids", &[3, 0]),
                ints("target_ids", &[0, 0]),
                floats("target_weights", &[1.0, 2.0]),
            ],
            ..NodeProto::default()
        };
        let fine = chain(&[1, 2, 3, 0, 0], &[3, 3, 3, 0, 0]);
        assert_eq!(predict(&fine, 0.0), 3.0);
        for (true_ids, false_ids) in [
            ([0, 2, 3, 0, 0], [3, 3, 3, 0, 0]),
            ([1, 2, 3, 0, 0], [3, 3, 1, 0, 0]),
            ([1, 1, 3, 0, 0], [3, 3, 3, 0, 0]),
        ] {
            let err = refused(&chain(&true_ids, &false_ids), false);
            assert!(
                err.contains("root down"),
                "{true_ids:?} {false_ids:?}: {err}"
            );
        }
        let err = refused(&chain(&[1, 2, 4, 0, 0], &[3, 3, 3, 0, 0]), false);
        assert!(err.contains("missing node 4"), "{err}");
    }

    #[test]
    fn out_of_range_feature_ids_and_ids_are_refused() {
        let mut node = stumps(1, "BRANCH_LEQ", vec![]);
        node.attribute[2] = ints("nodes_featureids", &[1 << 32, 0, 0]);
        assert!(refused(&node, false).contains("feature id 4294967296"));
        node.attribute[2] = ints("nodes_featureids", &[-1, 0, 0]);
        assert!(refused(&node, false).contains("feature id -1"));
        // A weight for a target beyond the declared ones.
        let mut node = stumps(1, "BRANCH_LEQ", vec![]);
        node.attribute[10] = ints("target_ids", &[0, 1]);
        assert!(refused(&node, false).contains("target id 1 is outside"));
    }

    #[test]
    fn a_deep_tree_is_walked_without_recursion() {
        // A caterpillar: branch i (id 2i) sends x <= i to its leaf (id
        // 2i + 1) and the rest on to branch i + 1; the last leaf is 2k.
        let k: i64 = 200_000;
        let n = 2 * k + 1;
        let is_branch = |id: i64| id % 2 == 0 && id < 2 * k;
        let modes: Vec<&str> = (0..n)
            .map(|id| if is_branch(id) { "BRANCH_LEQ" } else { "LEAF" })
            .collect();
        let leaves: Vec<i64> = (0..n).filter(|&id| !is_branch(id)).collect();
        let node = NodeProto {
            op_type: "TreeEnsembleRegressor".into(),
            attribute: vec![
                ints("nodes_treeids", &vec![0; n as usize]),
                ints("nodes_nodeids", &(0..n).collect::<Vec<_>>()),
                ints("nodes_featureids", &vec![0; n as usize]),
                ints(
                    "nodes_truenodeids",
                    &(0..n)
                        .map(|id| if is_branch(id) { id + 1 } else { 0 })
                        .collect::<Vec<_>>(),
                ),
                ints(
                    "nodes_falsenodeids",
                    &(0..n)
                        .map(|id| if is_branch(id) { id + 2 } else { 0 })
                        .collect::<Vec<_>>(),
                ),
                floats(
                    "nodes_values",
                    &(0..n).map(|id| (id / 2) as f32).collect::<Vec<_>>(),
                ),
                strings("nodes_modes", &modes),
                ints("target_treeids", &vec![0; leaves.len()]),
                ints("target_nodeids", &leaves),
                ints("target_ids", &vec![0; leaves.len()]),
                floats(
                    "target_weights",
                    &leaves.iter().map(|&id| id as f32).collect::<Vec<_>>(),
                ),
            ],
            ..NodeProto::default()
        };
        // On a stack far too small for a recursion this deep.
        let e = std::thread::Builder::new()
            .stack_size(64 << 10)
            .spawn(move || {
                let e = Ensemble::parse(&node, false).unwrap();
                let far = e.predict(&[1e9]);
                (e.predict(&[5.0]), far)
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(e, (Some(11.0), Some(2.0 * k as f64)));
    }

    /// The parts of a random tree ensemble: heap-shaped trees (node j's
    /// children are 2j + 1 and 2j + 2), which `edits` then break at will.
    #[derive(Debug, Clone)]
    struct Random {
        classifier: bool,
        trees: Vec<i64>,
        features: Vec<i64>,
        values: Vec<f32>,
        /// (node, which attribute, value).
        edits: Vec<(prop::sample::Index, u8, i64)>,
        n_targets: i64,
        targets: Vec<i64>,
        weights: Vec<f32>,
        aggregate: &'static str,
        post: &'static str,
        base_values: Vec<f32>,
    }

    const MODES: [&str; 8] = [
        "LEAF",
        "BRANCH_LEQ",
        "BRANCH_LT",
        "BRANCH_GTE",
        "BRANCH_GT",
        "BRANCH_EQ",
        "BRANCH_NEQ",
        "BRANCH_SOMETIMES",
    ];

    fn float() -> impl Strategy<Value = f32> {
        prop_oneof![-4.0f32..4.0, proptest::num::f32::ANY]
    }

    fn random() -> impl Strategy<Value = Random> {
        // Mostly sound parts, so that many ensembles parse and score; now
        // and then one that must be refused.
        let id = prop_oneof![-2i64..12, Just(1 << 32), Just(i64::MIN), Just(i64::MAX)];
        let edits = prop::collection::vec((any::<prop::sample::Index>(), 0u8..8, id.clone()), 1..3);
        (
            (
                any::<bool>(),
                prop::collection::vec(1i64..8, 1..4),
                prop::collection::vec(prop_oneof![6 => 0i64..4, 1 => id], 1..8),
                prop::collection::vec(float(), 1..8),
                prop_oneof![Just(vec![]), edits],
            ),
            (
                prop_oneof![
                    6 => 1i64..4,
                    1 => Just(0),
                    1 => Just(-1),
                    1 => Just(4_000_000_000),
                    1 => Just(i64::MAX)
                ],
                prop::collection::vec(prop_oneof![4 => 0i64..2, 1 => -1i64..4], 1..4),
                prop::collection::vec(float(), 1..4),
                prop_oneof![
                    8 => prop::sample::select(vec!["SUM", "AVERAGE", "MIN", "MAX"]),
                    1 => Just("MEDIAN"),
                ],
                prop::sample::select(vec![
                    "NONE",
                    "SOFTMAX",
                    "LOGISTIC",
                    "SOFTMAX_ZERO",
                    "PROBIT",
                ]),
                prop_oneof![3 => Just(vec![]), 1 => prop::collection::vec(float(), 1..4)],
            ),
        )
            .prop_map(|(a, b)| Random {
                classifier: a.0,
                trees: a.1,
                features: a.2,
                values: a.3,
                edits: a.4,
                n_targets: b.0,
                targets: b.1,
                weights: b.2,
                aggregate: b.3,
                post: b.4,
                base_values: b.5,
            })
    }

    impl Random {
        fn node(&self) -> NodeProto {
            let mut nodes: Vec<[i64; 6]> = Vec::new(); // tree, id, feature, true, false, mode
            for (t, &k) in self.trees.iter().enumerate() {
                for j in 0..k {
                    let branch = 2 * j + 2 < k;
                    let feature = self.features[nodes.len() % self.features.len()];
                    let (yes, no) = if branch {
                        (2 * j + 1, 2 * j + 2)
                    } else {
                        (0, 0)
                    };
                    nodes.push([t as i64, j, feature, yes, no, i64::from(branch)]);
                }
            }
            for (at, what, value) in &self.edits {
                let (at, column) = (at.index(nodes.len()), usize::from(*what).min(5));
                nodes[at][column] = if column == 5 {
                    value.rem_euclid(8)
                } else {
                    *value
                };
            }
            let leaves: Vec<&[i64; 6]> = nodes.iter().filter(|n| n[5] == 0).collect();
            let column = |c: usize| nodes.iter().map(|n| n[c]).collect::<Vec<_>>();
            let modes: Vec<&str> = nodes
                .iter()
                .map(|n| MODES[n[5].rem_euclid(8) as usize])
                .collect();
            let values: Vec<f32> = (0..nodes.len())
                .map(|i| self.values[i % self.values.len()])
                .collect();
            let prefix = if self.classifier { "class" } else { "target" };
            let mut attribute = vec![
                ints("nodes_treeids", &column(0)),
                ints("nodes_nodeids", &column(1)),
                ints("nodes_featureids", &column(2)),
                ints("nodes_truenodeids", &column(3)),
                ints("nodes_falsenodeids", &column(4)),
                ints("nodes_missing_value_tracks_true", &column(1)),
                floats("nodes_values", &values),
                strings("nodes_modes", &modes),
                ints(
                    &format!("{prefix}_treeids"),
                    &leaves.iter().map(|n| n[0]).collect::<Vec<_>>(),
                ),
                ints(
                    &format!("{prefix}_nodeids"),
                    &leaves.iter().map(|n| n[1]).collect::<Vec<_>>(),
                ),
                ints(
                    &format!("{prefix}_ids"),
                    &(0..leaves.len())
                        .map(|i| self.targets[i % self.targets.len()])
                        .collect::<Vec<_>>(),
                ),
                floats(
                    &format!("{prefix}_weights"),
                    &(0..leaves.len())
                        .map(|i| self.weights[i % self.weights.len()])
                        .collect::<Vec<_>>(),
                ),
                string("aggregate_function", self.aggregate),
                string("post_transform", self.post),
            ];
            if !self.base_values.is_empty() {
                attribute.push(floats("base_values", &self.base_values));
            }
            if self.classifier {
                let labels: Vec<i64> = (0..self.n_targets.clamp(0, 5)).map(|l| 10 * l).collect();
                attribute.push(ints("classlabels_int64s", &labels));
            } else {
                attribute.push(int("n_targets", self.n_targets));
            }
            NodeProto {
                op_type: if self.classifier {
                    "TreeEnsembleClassifier"
                } else {
                    "TreeEnsembleRegressor"
                }
                .into(),
                attribute,
                ..NodeProto::default()
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Random ensembles are refused, or parse into trees every walk
        /// of which moves forward, and score any row without panicking,
        /// on our own or in a model tract runs.
        #[test]
        fn random_ensembles_are_refused_or_score(
            random in random(),
            rows in prop::collection::vec(prop::collection::vec(float(), 11), 1..4),
        ) {
            let node = random.node();
            let Ok(e) = Ensemble::parse(&node, random.classifier) else {
                return Ok(());
            };
            prop_assert!(random.classifier || e.n_targets <= e.weights.len().max(e.base_values.len()));
            for (i, n) in e.nodes.iter().enumerate() {
                if n.mode == Mode::Leaf {
                    prop_assert!(n.yes <= n.no && n.no as usize <= e.weights.len());
                } else {
                    prop_assert!(i < n.yes as usize && (n.yes as usize) < e.nodes.len());
                    prop_assert!(i < n.no as usize && (n.no as usize) < e.nodes.len());
                }
            }
            let mut out = vec![0.0; e.n_targets];
            for row in &rows {
                if e.n_features <= row.len() {
                    let best = e.score(row, &mut out);
                    prop_assert!(best < e.n_targets);
                    prop_assert!(e.predict(row).is_some());
                } else {
                    prop_assert!(e.predict(row).is_none());
                }
            }
            // The same operator in a model, read and run by tract.
            let output = if random.classifier { "label" } else { "Y" };
            let mut op = node;
            op.input = vec!["X".into()];
            op.output = if random.classifier {
                vec!["label".into(), "scores".into()]
            } else {
                vec!["Y".into()]
            };
            op.domain = "ai.onnx.ml".into();
            let bytes = model(graph(true, vec![op], vec![], &[output]));
            match crate::tract_model::onnx(&bytes) {
                Ok(m) => {
                    for row in &rows {
                        let features: Vec<f64> = row.iter().map(|&x| f64::from(x)).collect();
                        let record = proto::WineRecord::from_features(
                            features.try_into().unwrap(), "test", 0,
                        );
                        let _ = m.score(&record);
                    }
                }
                Err(err) => prop_assert!(!err.contains("panicked"), "{err}"),
            }
        }
    }

    #[test]
    fn a_classifier_labels_the_first_of_equal_scores() {
        // One stump, two leaves each voting for classes 0 and 2 equally
        // (a tie) or for class 1 alone.
        let node = NodeProto {
            op_type: "TreeEnsembleClassifier".into(),
            attribute: vec![
                ints("nodes_treeids", &[0, 0, 0]),
                ints("nodes_nodeids", &[0, 1, 2]),
                ints("nodes_featureids", &[0, 0, 0]),
                ints("nodes_truenodeids", &[1, 0, 0]),
                ints("nodes_falsenodeids", &[2, 0, 0]),
                floats("nodes_values", &[1.0, 0.0, 0.0]),
                strings("nodes_modes", &["BRANCH_LEQ", "LEAF", "LEAF"]),
                ints("class_treeids", &[0, 0, 0]),
                ints("class_nodeids", &[1, 1, 2]),
                ints("class_ids", &[0, 2, 1]),
                floats("class_weights", &[0.5, 0.5, 1.0]),
                ints("classlabels_int64s", &[3, 4, 5]),
                string("post_transform", "SOFTMAX"),
            ],
            ..NodeProto::default()
        };
        let e = Ensemble::parse(&node, true).unwrap();
        let labels = e.labels.clone().unwrap();
        let mut out = [0.0; 3];
        assert_eq!(labels[e.score(&[0.0], &mut out)], 3);
        assert!((out.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(out[0], out[2]);
        assert_eq!(labels[e.score(&[2.0], &mut out)], 4);
    }
}
