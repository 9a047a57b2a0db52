//! ONNX and TensorFlow models, run by tract.
//!
//! Both are loaded once into an optimised plan for a batch of one record
//! (the server scores each record as it arrives), keeping only the first
//! output, the prediction: a classifier's probabilities are never read.
//! A plan that is one of our own operators on the input (a tree ensemble,
//! a linear regressor) scores a row straight from the record's features;
//! any other runs through tract's plan, with a small pool of run states
//! so that several stream threads score with one model at once without
//! each call allocating the plan's buffers anew.
//!
//! The ONNX-ML tree ensembles and linear regressor run on our own
//! operators ([`crate::tree_ensemble`], [`crate::linear`]).

use std::sync::{Arc, Mutex};

use proto::WineRecord;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::{TractErrorContext as _, TypedOp, bail};

use crate::model::Model;

/// How a plan's first output becomes the predicted quality.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Output {
    /// A real number (a regressor's `variable`).
    Value,
    /// An integer class label (a classifier's `label`).
    Label,
    /// The index of the largest of several scores (the TensorFlow graph's
    /// nine sigmoid outputs, one per quality).
    ArgMax,
}

/// One of our operators, scoring a row without tract's tensors.
pub(crate) trait RowPredictor: Send + Sync {
    /// The operator's first output for one row, as a prediction (a
    /// regressor's first target, a classifier's label); `None` for a row
    /// of the wrong width.
    fn predict(&self, row: &[f32]) -> Option<f64>;
}

/// How a model is evaluated.
enum Runner {
    /// The optimised plan is this one operator of ours on the input. A
    /// plan's bookkeeping per run (tensors for the input and every output,
    /// value slots, a session) costs several times what a tree ensemble
    /// or a linear model does.
    Row(Arc<dyn RowPredictor>),
    /// Any other plan, with idle run states reused so that a call
    /// allocates only its input.
    Plan(Mutex<Vec<TypedSimpleState>>),
}

/// A model tract runs.
pub(crate) struct TractModel {
    plan: Arc<TypedSimplePlan>,
    runner: Runner,
    output: Output,
}

impl TractModel {
    fn new(mut model: InferenceModel, argmax: bool) -> TractResult<Self> {
        // The prediction is the first output; tract prunes what only the
        // others need.
        let first = *model
            .output_outlets()?
            .first()
            .context("the model has no output")?;
        model.select_output_outlets(&[first])?;
        // tract indexes the inputs unchecked; and the server feeds one.
        let inputs = model.input_outlets()?.len();
        if inputs != 1 {
            bail!("the model has {inputs} inputs, not one (the features)");
        }
        let model = model
            .with_input_fact(0, f32::fact([1, proto::FEATURE_NAMES.len()]).into())?
            .into_optimized()?;
        check_sizes(&model)?;
        let out = model.output_fact(0)?.datum_type;
        let output = if argmax {
            Output::ArgMax
        } else if out.is_integer() || out == DatumType::TDim {
            // tract may carry an integer label computed from constants
            // (an ArgMax into a class table) as a dimension value.
            Output::Label
        } else if out.is_float() {
            Output::Value
        } else {
            bail!("the first output is of type {out:?}, neither a number nor a class label");
        };
        let row = single_operator(&model).and_then(|op| {
            crate::tree_ensemble::row_predictor(op).or_else(|| crate::linear::row_predictor(op))
        });
        let plan = model.into_runnable()?;
        let runner = match row {
            Some(row) if row_matches_plan(&*row, &plan, output)? => Runner::Row(row),
            _ => Runner::Plan(Mutex::new(Vec::new())),
        };
        Ok(Self {
            plan,
            runner,
            output,
        })
    }

    /// Whether this model skips tract's plan.
    #[cfg(test)]
    fn is_direct(&self) -> bool {
        matches!(self.runner, Runner::Row(_))
    }

    fn run(&self, record: &WineRecord) -> TractResult<f64> {
        let features = record.features().map(|f| f as f32);
        let outputs = match &self.runner {
            Runner::Row(row) => return row.predict(&features).context("wrong row width"),
            Runner::Plan(states) => {
                let input = Tensor::from_shape(&[1, features.len()], &features)?;
                let pooled = states.lock().map_or(None, |mut s| s.pop());
                let mut state = match pooled {
                    Some(state) => state,
                    None => self.plan.spawn()?,
                };
                let outputs = state.run(tvec!(input.into()));
                if let Ok(mut states) = states.lock() {
                    states.push(state);
                }
                outputs?
            }
        };
        prediction(self.output, outputs.first().context("no output")?)
    }
}

/// The most elements one tensor of a plan may hold, and all its tensors
/// of known shape together. A wine model needs a few thousand; a hostile
/// graph can have tract make a tensor of any size (an `Expand` or a `Tile`
/// to a constant shape), allocated at every run.
const MAX_TENSOR: usize = 1 << 24;
const MAX_TENSORS: usize = 1 << 26;

/// Refuses a plan whose tensors of known shape are too large.
fn check_sizes(model: &TypedModel) -> TractResult<()> {
    let mut total = 0usize;
    for node in model.nodes() {
        for output in &node.outputs {
            // A shape that depends on the data is known only at run time.
            let Some(shape) = output.fact.shape.as_concrete() else {
                continue;
            };
            match shape.iter().try_fold(1usize, |v, &d| v.checked_mul(d)) {
                Some(volume) if volume <= MAX_TENSOR => total = total.saturating_add(volume),
                _ => bail!(
                    "node {} makes a tensor of shape {shape:?}, over {MAX_TENSOR} elements",
                    node.name
                ),
            }
        }
    }
    if total > MAX_TENSORS {
        bail!("the model's tensors hold {total} elements, over {MAX_TENSORS}");
    }
    Ok(())
}

/// The operator of a plan that is one node on the model's input, giving
/// the model's output.
fn single_operator(model: &TypedModel) -> Option<&dyn TypedOp> {
    let inputs = model.input_outlets().ok()?;
    let outputs = model.output_outlets().ok()?;
    let [node] = model
        .nodes()
        .iter()
        .filter(|n| !inputs.iter().any(|i| i.node == n.id))
        .collect::<Vec<_>>()[..]
    else {
        return None;
    };
    let wired = node.inputs == inputs && outputs == [OutletId::new(node.id, 0)];
    wired.then_some(&*node.op)
}

/// Whether `row` predicts what the plan does for a row of zeros: a check
/// that the shortcut reads the output the plan would.
fn row_matches_plan(
    row: &dyn RowPredictor,
    plan: &Arc<TypedSimplePlan>,
    output: Output,
) -> TractResult<bool> {
    let zeros = [0f32; proto::FEATURE_NAMES.len()];
    let input = Tensor::from_shape(&[1, zeros.len()], &zeros)?;
    let expected = plan.spawn()?.run(tvec!(input.into()))?;
    let expected = prediction(output, expected.first().context("no output")?)?;
    Ok(row.predict(&zeros) == Some(expected))
}

/// The predicted quality in a first output of the given kind.
fn prediction(output: Output, first: &Tensor) -> TractResult<f64> {
    Ok(match output {
        // The usual types are read in place: a cast copies the tensor.
        Output::Value if first.datum_type() == f32::datum_type() => {
            let view = first.to_plain_array_view::<f32>()?;
            f64::from(*view.iter().next().context("empty output")?)
        }
        Output::Value => {
            // A double-precision model works too.
            let value = first.cast_to::<f64>()?;
            let view = value.to_plain_array_view::<f64>()?;
            *view.iter().next().context("empty output")?
        }
        Output::Label if first.datum_type() == i64::datum_type() => {
            let view = first.to_plain_array_view::<i64>()?;
            *view.iter().next().context("empty output")? as f64
        }
        Output::Label => {
            let label = first.cast_to::<i64>()?;
            let view = label.to_plain_array_view::<i64>()?;
            *view.iter().next().context("empty output")? as f64
        }
        Output::ArgMax => {
            let view = first.to_plain_array_view::<f32>()?;
            let mut best: Option<(usize, f32)> = None;
            for (i, &v) in view.iter().enumerate() {
                // The first of equal maxima wins, as in numpy's argmax.
                if best.is_none_or(|(_, b)| v > b) {
                    best = Some((i, v));
                }
            }
            best.context("empty output")?.0 as f64
        }
    })
}

impl Model for TractModel {
    fn score(&self, record: &WineRecord) -> Option<f64> {
        // tract's operators can panic on a graph it accepted (a hostile
        // model's shapes): that is this record's failure, not the thread's.
        // A run state in use is dropped in the unwind, never pooled again.
        match unpanicked(|| self.run(record)) {
            Ok(Ok(v)) if v.is_finite() => Some(v),
            Ok(Ok(_)) => None,
            Ok(Err(e)) => {
                log::debug!("tract model failed to score a record: {e:#}");
                None
            }
            Err(panic) => {
                log::warn!("tract panicked scoring a record: {panic}");
                None
            }
        }
    }
}

/// Runs `f`, returning a panic's message as an error: tract has panicking
/// paths (`unimplemented!`, out-of-range indexing) that a malformed model
/// reaches.
fn unpanicked<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_owned())
    })
}

/// The most operators a model may have, counting those of its subgraphs.
/// tract's optimisation takes time more than linear in them (a chain of
/// 4,000 takes a second, of 20,000 twenty), where a wine model has a few
/// dozen; a 64 MiB file holds millions.
const MAX_NODES: usize = 4096;

/// Loads a model with `read`, then builds it; a panic in tract is an error.
fn load(
    kind: &str,
    read: impl FnOnce() -> TractResult<InferenceModel>,
    argmax: bool,
) -> Result<TractModel, String> {
    unpanicked(|| read().and_then(|m| TractModel::new(m, argmax)))
        .map_err(|panic| format!("tract panicked reading this {kind} model: {panic}"))?
        .map_err(|e| format!("{e:#}"))
}

/// Refuses a model of more than `MAX_NODES` operators.
fn check_nodes(nodes: usize) -> TractResult<()> {
    if nodes > MAX_NODES {
        bail!("the model has {nodes} operators, over {MAX_NODES}");
    }
    Ok(())
}

/// The operators of an ONNX graph and of the graphs in their attributes
/// (the branches of an `If`, the body of a `Loop`), counted without
/// recursing.
fn onnx_nodes(graph: &tract_onnx::pb::GraphProto) -> usize {
    let mut count = 0;
    let mut graphs = vec![graph];
    while let Some(graph) = graphs.pop() {
        count += graph.node.len();
        for attribute in graph.node.iter().flat_map(|n| &n.attribute) {
            graphs.extend(attribute.g.iter().chain(&attribute.graphs));
        }
    }
    count
}

/// Loads an ONNX model (input float32 `[N, 11]` in the CSV's column order).
pub(crate) fn onnx(bytes: &[u8]) -> Result<TractModel, String> {
    let mut framework = tract_onnx::onnx();
    crate::tree_ensemble::register(&mut framework);
    crate::linear::register(&mut framework);
    let read = || {
        let proto = framework
            .proto_model_for_read(&mut &bytes[..])
            .context("Reading proto model")?;
        check_nodes(proto.graph.as_ref().map_or(0, onnx_nodes))?;
        framework
            .model_for_proto_model(&proto)
            .context("Translating proto model to model")
    };
    load("ONNX", read, false)
}

/// Loads a frozen TensorFlow graph whose output scores each quality
/// (input float32 `[1, 11]`; the prediction is the index of the largest).
pub(crate) fn tensorflow(bytes: &[u8]) -> Result<TractModel, String> {
    let framework = tract_tensorflow::tensorflow();
    let read = || {
        let graph = framework
            .proto_model_for_read(&mut &bytes[..])
            .context("Reading proto model")?;
        // tract reads the graph's nodes only, not a function library.
        check_nodes(graph.node.len())?;
        framework
            .model_for_proto_model(&graph)
            .context("Translating proto model to model")
    };
    load("TensorFlow", read, true)
}

/// ONNX models put together in tests, node by node.
#[cfg(test)]
pub(crate) mod test_onnx {
    use prost::Message as _;
    use tract_onnx::pb::tensor_shape_proto::{Dimension, dimension};
    use tract_onnx::pb::{
        AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
        TensorShapeProto, TypeProto, ValueInfoProto, type_proto,
    };

    /// The graph input `X`: float32 `[1, 11]`, as the server feeds.
    pub(crate) fn input() -> ValueInfoProto {
        let dims = [1, 11].map(|d| Dimension {
            value: Some(dimension::Value::DimValue(d)),
            ..Dimension::default()
        });
        ValueInfoProto {
            name: "X".into(),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: 1,
                    shape: Some(TensorShapeProto { dim: dims.to_vec() }),
                })),
                ..TypeProto::default()
            }),
            ..ValueInfoProto::default()
        }
    }

    /// A graph output (of no declared type).
    pub(crate) fn output(name: &str) -> ValueInfoProto {
        ValueInfoProto {
            name: name.into(),
            ..ValueInfoProto::default()
        }
    }

    pub(crate) fn node(
        op: &str,
        inputs: &[&str],
        outputs: &[&str],
        attribute: Vec<AttributeProto>,
    ) -> NodeProto {
        NodeProto {
            op_type: op.into(),
            input: inputs.iter().map(|&i| i.into()).collect(),
            output: outputs.iter().map(|&o| o.into()).collect(),
            attribute,
            ..NodeProto::default()
        }
    }

    /// A float32 tensor of `dims`.
    pub(crate) fn floats(name: &str, dims: &[i64], values: &[f32]) -> TensorProto {
        TensorProto {
            name: name.into(),
            dims: dims.to_vec(),
            data_type: 1,
            float_data: values.to_vec(),
            ..TensorProto::default()
        }
    }

    /// An int64 tensor of `dims`.
    pub(crate) fn int64s(name: &str, dims: &[i64], values: &[i64]) -> TensorProto {
        TensorProto {
            name: name.into(),
            dims: dims.to_vec(),
            data_type: 7,
            int64_data: values.to_vec(),
            ..TensorProto::default()
        }
    }

    /// A graph on `X` (when `with_input`) giving `outputs`.
    pub(crate) fn graph(
        with_input: bool,
        node: Vec<NodeProto>,
        initializer: Vec<TensorProto>,
        outputs: &[&str],
    ) -> GraphProto {
        GraphProto {
            node,
            initializer,
            input: if with_input { vec![input()] } else { vec![] },
            output: outputs.iter().map(|o| output(o)).collect(),
            ..GraphProto::default()
        }
    }

    /// The model file of `graph` (ONNX opset 13, ONNX-ML opset 3).
    pub(crate) fn model(graph: GraphProto) -> Vec<u8> {
        let opset = |domain: &str, version| OperatorSetIdProto {
            domain: domain.into(),
            version,
        };
        ModelProto {
            ir_version: 8,
            opset_import: vec![opset("", 13), opset("ai.onnx.ml", 3)],
            graph: Some(graph),
            ..ModelProto::default()
        }
        .encode_to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::test_onnx::*;
    use super::*;
    use prop::sample::Index;
    use proptest::prelude::*;
    use prost::Message as _;
    use std::time::{Duration, Instant};
    use tract_onnx::pb::AttributeProto;
    use tract_onnx::pb::attribute_proto::AttributeType;

    /// Every model file in `data/models/` that tract reads.
    const FILES: [&str; 11] = [
        "onnx/wine_decision_tree_classifier.onnx",
        "onnx/wine_decision_tree_regression.onnx",
        "onnx/wine_gradient_boosting_classifier.onnx",
        "onnx/wine_gradient_boosting_regression.onnx",
        "onnx/wine_linear_classifier.onnx",
        "onnx/wine_linear_regression.onnx",
        "onnx/wine_mlp_classifier.onnx",
        "onnx/wine_mlp_regression.onnx",
        "onnx/wine_random_forest_classifier.onnx",
        "onnx/wine_random_forest_regression.onnx",
        "tensorflow/optimized_WineQuality.pb",
    ];

    fn read(file: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../data/models")
            .join(file);
        std::fs::read(&path).unwrap()
    }

    /// Loads `bytes` as the kind of model `file` is.
    fn load_as(file: &str, bytes: &[u8]) -> Result<TractModel, String> {
        if file.ends_with(".pb") {
            tensorflow(bytes)
        } else {
            onnx(bytes)
        }
    }

    fn load(file: &str) -> TractModel {
        load_as(file, &read(file)).unwrap()
    }

    fn record(x: f64) -> WineRecord {
        WineRecord::from_features(
            [x, 0.5, 0.3, 2.0, 0.08, 15.0, 40.0, 0.997, 3.3, 0.6, 8.0 + x],
            "test",
            0,
        )
    }

    /// How long loading (and scoring) a hostile model may take here; the
    /// server bounds a build with its own timeout besides.
    const BOUND: Duration = Duration::from_secs(20);

    /// Loads `bytes` as `file`'s kind and, if that works, scores records
    /// with extreme values: neither may panic, and both finish in time.
    fn load_and_score(file: &str, bytes: &[u8]) -> Result<(), TestCaseError> {
        let start = Instant::now();
        if let Ok(model) = load_as(file, bytes) {
            for x in [0.0, -1e30, f64::NAN, f64::INFINITY] {
                let _ = model.score(&record(x));
            }
        }
        let took = start.elapsed();
        prop_assert!(took < BOUND, "{file}: took {took:?}");
        Ok(())
    }

    #[test]
    fn single_operator_models_skip_the_plan() {
        for (file, direct) in [
            ("onnx/wine_decision_tree_regression.onnx", true),
            ("onnx/wine_random_forest_classifier.onnx", true),
            ("onnx/wine_gradient_boosting_regression.onnx", true),
            ("onnx/wine_linear_regression.onnx", true),
            ("onnx/wine_mlp_regression.onnx", false),
            ("onnx/wine_linear_classifier.onnx", false),
            ("tensorflow/optimized_WineQuality.pb", false),
        ] {
            assert_eq!(load(file).is_direct(), direct, "{file}");
        }
    }

    #[test]
    fn row_predictors_score_as_the_plan_does() {
        for file in [
            "onnx/wine_random_forest_regression.onnx",
            "onnx/wine_gradient_boosting_classifier.onnx",
            "onnx/wine_linear_regression.onnx",
        ] {
            let model = load(file);
            assert!(model.is_direct(), "{file}");
            let plan = TractModel {
                plan: model.plan.clone(),
                runner: Runner::Plan(Mutex::new(Vec::new())),
                output: model.output,
            };
            for i in 0..50 {
                let x = i as f64 / 10.0;
                let record = record(x);
                let (row, planned) = (model.run(&record).unwrap(), plan.run(&record).unwrap());
                assert_eq!(row, planned, "{file} at {x}");
            }
        }
    }

    #[test]
    fn a_panic_in_tract_is_an_error() {
        // tract indexes its map of tensor names with the graph's output
        // names unchecked: an output nothing computes panics inside it.
        let bytes = model(graph(
            true,
            vec![node("Relu", &["X"], &["Y"], vec![])],
            vec![],
            &["nowhere"],
        ));
        let err = onnx(&bytes).err().unwrap();
        assert!(err.contains("tract panicked"), "{err}");
    }

    /// A regressor of one tree that is a single leaf (it reads no feature).
    fn leaf_regressor(input: &str) -> tract_onnx::pb::NodeProto {
        let ints = |name: &str, v: &[i64]| AttributeProto {
            name: name.into(),
            r#type: AttributeType::Ints as i32,
            ints: v.to_vec(),
            ..AttributeProto::default()
        };
        let floats = |name: &str, v: &[f32]| AttributeProto {
            name: name.into(),
            r#type: AttributeType::Floats as i32,
            floats: v.to_vec(),
            ..AttributeProto::default()
        };
        let mut attribute = vec![
            ints("nodes_treeids", &[0]),
            ints("nodes_nodeids", &[0]),
            ints("nodes_featureids", &[0]),
            ints("nodes_truenodeids", &[0]),
            ints("nodes_falsenodeids", &[0]),
            floats("nodes_values", &[0.0]),
            ints("target_treeids", &[0]),
            ints("target_nodeids", &[0]),
            ints("target_ids", &[0]),
            floats("target_weights", &[6.0]),
        ];
        attribute.push(AttributeProto {
            name: "nodes_modes".into(),
            r#type: AttributeType::Strings as i32,
            strings: vec![b"LEAF".to_vec()],
            ..AttributeProto::default()
        });
        node("TreeEnsembleRegressor", &[input], &["Y"], attribute)
    }

    #[test]
    fn our_operators_refuse_inputs_they_cannot_read() {
        assert_eq!(
            onnx(&model(graph(
                true,
                vec![leaf_regressor("X")],
                vec![],
                &["Y"]
            )))
            .unwrap()
            .score(&record(1.0)),
            Some(6.0)
        );
        // A scalar, a 3-D tensor, and rows of no features (a count of
        // rows bounded by no data) fed from constants.
        for (dims, values) in [
            (vec![], vec![1.0]),
            (vec![1, 1, 1], vec![1.0]),
            (vec![1_000_000_000_000, 0], vec![]),
        ] {
            let bytes = model(graph(
                true,
                vec![leaf_regressor("C")],
                vec![floats("C", &dims, &values)],
                &["Y"],
            ));
            match onnx(&bytes) {
                Err(err) => assert!(!err.contains("panicked"), "{dims:?}: {err}"),
                Ok(model) => assert_eq!(model.score(&record(1.0)), None, "{dims:?}"),
            }
        }
    }

    #[test]
    fn plans_with_huge_tensors_are_refused() {
        // X broadcast or tiled to shapes it would allocate at every run.
        for (op, shape) in [("Expand", [1 << 30, 11]), ("Tile", [1 << 20, 1 << 10])] {
            let bytes = model(graph(
                true,
                vec![node(op, &["X", "S"], &["Y"], vec![])],
                vec![int64s("S", &[2], &shape)],
                &["Y"],
            ));
            let err = onnx(&bytes).err().unwrap();
            assert!(err.contains("over 16777216 elements"), "{op}: {err}");
        }
        // Up to the limit is fine.
        let bytes = model(graph(
            true,
            vec![node("Expand", &["X", "S"], &["Y"], vec![])],
            vec![int64s("S", &[2], &[1000, 11])],
            &["Y"],
        ));
        assert!(onnx(&bytes).is_ok());
    }

    /// An `If` on a constant condition nested `depth` deep, the innermost
    /// branch a `Relu` of `X`.
    fn nested_ifs(depth: usize) -> Vec<u8> {
        let leaf = |out: &str| {
            graph(
                false,
                vec![node("Relu", &["X"], &[out], vec![])],
                vec![],
                &[out],
            )
        };
        let mut inner = leaf("Y0");
        for level in 1..=depth {
            let out = format!("Y{level}");
            let branch = |name: &str, g| AttributeProto {
                name: name.into(),
                r#type: AttributeType::Graph as i32,
                g: Some(g),
                ..AttributeProto::default()
            };
            let node = node(
                "If",
                &["cond"],
                &[&out],
                vec![
                    branch("then_branch", inner),
                    branch("else_branch", leaf(&out)),
                ],
            );
            inner = graph(false, vec![node], vec![], &[&out]);
        }
        let mut top = inner;
        top.input = vec![input()];
        top.initializer = vec![tract_onnx::pb::TensorProto {
            name: "cond".into(),
            data_type: 9, // BOOL
            int32_data: vec![1],
            ..tract_onnx::pb::TensorProto::default()
        }];
        model(top)
    }

    #[test]
    fn nested_subgraphs_do_not_overflow_a_build_threads_stack() {
        // prost refuses messages nested over 100 deep, three per `If`
        // level; below that tract parses each level recursively. The
        // build thread has the default 2 MiB stack: run on one like it.
        for depth in [1, 10, 30, 40, 200] {
            let bytes = nested_ifs(depth);
            let result = std::thread::Builder::new()
                .stack_size(2 << 20)
                .spawn(move || {
                    let start = Instant::now();
                    let ok = onnx(&bytes).map(|m| m.score(&record(-2.0)));
                    (ok, start.elapsed())
                })
                .unwrap()
                .join()
                .unwrap();
            assert!(result.1 < BOUND, "{depth}: {:?}", result.1);
            if depth <= 10 {
                assert_eq!(result.0, Ok(Some(0.0)), "{depth}");
            }
        }
    }

    /// A chain of `length` `Relu`s from `X`.
    fn chain(length: usize) -> Vec<u8> {
        let names: Vec<String> = (0..=length)
            .map(|i| if i == 0 { "X".into() } else { format!("t{i}") })
            .collect();
        let nodes = names
            .windows(2)
            .map(|w| node("Relu", &[&w[0]], &[&w[1]], vec![]))
            .collect();
        model(graph(true, nodes, vec![], &[&names[length]]))
    }

    #[test]
    fn models_of_too_many_operators_are_refused() {
        // The longest chain allowed loads on a build thread's stack in
        // bounded time (tract walks graphs, it does not recurse).
        let bytes = chain(MAX_NODES);
        let (score, took) = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                let start = Instant::now();
                let score = onnx(&bytes).map(|m| m.score(&record(-2.0)));
                (score, start.elapsed())
            })
            .unwrap()
            .join()
            .unwrap();
        assert!(took < BOUND, "{took:?}");
        assert_eq!(score, Ok(Some(0.0)));
        // One more is refused before tract sees it, and so are operators
        // hidden in subgraphs.
        let err = onnx(&chain(MAX_NODES + 1)).err().unwrap();
        assert!(err.contains("4097 operators, over 4096"), "{err}");
        let mut body = tract_onnx::pb::ModelProto::decode(&*chain(MAX_NODES))
            .unwrap()
            .graph
            .unwrap();
        body.input.clear();
        let branch = |name: &str, g| AttributeProto {
            name: name.into(),
            r#type: AttributeType::Graph as i32,
            g: Some(g),
            ..AttributeProto::default()
        };
        let out = format!("t{MAX_NODES}");
        let node = node(
            "If",
            &["cond"],
            &[&out],
            vec![
                branch("then_branch", body.clone()),
                branch("else_branch", body),
            ],
        );
        let err = onnx(&model(graph(true, vec![node], vec![], &[&out])))
            .err()
            .unwrap();
        assert!(err.contains("8193 operators, over 4096"), "{err}");
    }

    /// Values that size or index things, for edits.
    fn number() -> impl Strategy<Value = i64> {
        prop_oneof![
            -2i64..16,
            Just(1 << 31),
            Just(4_000_000_000),
            Just(1 << 40),
            Just(i64::MAX),
            Just(i64::MIN),
        ]
    }

    /// One edit of a decoded model: which kind, where (`at`, then `inner`
    /// within it, then `pick` a value or a place), and the numbers to put.
    #[derive(Debug, Clone)]
    struct Edit {
        what: u8,
        at: Index,
        inner: Index,
        pick: Index,
        number: i64,
        float: f32,
    }

    fn edits() -> impl Strategy<Value = Vec<Edit>> {
        let edit = (
            0u8..12,
            any::<Index>(),
            any::<Index>(),
            any::<Index>(),
            number(),
            proptest::num::f32::ANY,
        )
            .prop_map(|(what, at, inner, pick, number, float)| Edit {
                what,
                at,
                inner,
                pick,
                number,
                float,
            });
        prop::collection::vec(edit, 1..6)
    }

    /// The item `at` picks in `items`, if there is one.
    fn item<'v, T>(items: &'v mut [T], at: &Index) -> Option<&'v mut T> {
        if items.is_empty() {
            None
        } else {
            Some(&mut items[at.index(items.len())])
        }
    }

    /// Operators to turn an ONNX node into: those of our models, and ones
    /// whose attributes or inputs size what they make.
    const ONNX_OPS: [&str; 24] = [
        "Sub",
        "Div",
        "Cast",
        "MatMul",
        "Add",
        "Relu",
        "Softmax",
        "ArgMax",
        "ArrayFeatureExtractor",
        "Reshape",
        "LinearClassifier",
        "LinearRegressor",
        "Normalizer",
        "TreeEnsembleRegressor",
        "TreeEnsembleClassifier",
        "Gemm",
        "Concat",
        "Gather",
        "Transpose",
        "Squeeze",
        "Unsqueeze",
        "Flatten",
        "ReduceSum",
        "TopK",
    ];

    const STRINGS: [&str; 6] = ["LEAF", "BRANCH_LT", "SOFTMAX", "PROBIT", "MAX", ""];

    /// `bytes` (an ONNX model) with `edits` made to its decoded fields.
    fn edit_onnx(bytes: &[u8], edits: &[Edit]) -> Vec<u8> {
        let mut model = tract_onnx::pb::ModelProto::decode(bytes).unwrap();
        let g = model.graph.as_mut().unwrap();
        for e in edits {
            let names: Vec<String> = (g.node.iter().flat_map(|n| n.output.clone()))
                .chain(g.initializer.iter().map(|t| t.name.clone()))
                .chain(g.input.iter().map(|i| i.name.clone()))
                .collect();
            let name = names[e.pick.index(names.len())].clone();
            let len = g.node.len();
            let Some(node) = item(&mut g.node, &e.at) else {
                break;
            };
            let attribute = item(&mut node.attribute, &e.inner);
            let tensor = item(&mut g.initializer, &e.at);
            match (e.what, attribute, tensor) {
                (0, ..) => node.op_type = ONNX_OPS[e.pick.index(ONNX_OPS.len())].into(),
                (1, Some(a), _) => {
                    a.i = e.number;
                    if let Some(i) = item(&mut a.ints, &e.pick) {
                        *i = e.number;
                    }
                }
                (2, Some(a), _) => {
                    a.f = e.float;
                    if let Some(f) = item(&mut a.floats, &e.pick) {
                        *f = e.float;
                    }
                }
                (3, Some(a), _) => {
                    let s = STRINGS[e.pick.index(STRINGS.len())].as_bytes();
                    a.s = s.to_vec();
                    if let Some(v) = item(&mut a.strings, &e.pick) {
                        *v = s.to_vec();
                    }
                }
                (4, _, Some(t)) => match item(&mut t.dims, &e.inner) {
                    Some(d) => *d = e.number,
                    None => t.dims.push(e.number),
                },
                (5, _, Some(t)) => {
                    t.raw_data.truncate(t.raw_data.len() / 2);
                    t.float_data.truncate(t.float_data.len() / 2);
                    t.int64_data.truncate(t.int64_data.len() / 2);
                }
                (6, _, Some(t)) => t.data_type = e.number.rem_euclid(24) as i32,
                (7, ..) => {
                    if let Some(i) = item(&mut node.input, &e.inner) {
                        *i = name;
                    }
                }
                (8, ..) => {
                    if let Some(o) = item(&mut node.output, &e.inner) {
                        *o = name;
                    }
                }
                (9, ..) => {
                    g.node.remove(e.at.index(len));
                }
                (10, Some(_), _) => {
                    node.attribute.remove(e.inner.index(node.attribute.len()));
                }
                (11, ..) => {
                    if let Some(o) = item(&mut g.output, &e.inner) {
                        o.name = name;
                    }
                }
                _ => {}
            }
        }
        model.encode_to_vec()
    }

    /// Operators to turn a TensorFlow node into.
    const TF_OPS: [&str; 16] = [
        "MatMul",
        "BiasAdd",
        "Relu",
        "Sigmoid",
        "Identity",
        "Const",
        "Placeholder",
        "Reshape",
        "ConcatV2",
        "GatherV2",
        "Fill",
        "Tile",
        "Pack",
        "Sum",
        "Softmax",
        "StridedSlice",
    ];

    /// `bytes` (a TensorFlow graph) with `edits` made to its decoded fields.
    fn edit_tensorflow(bytes: &[u8], edits: &[Edit]) -> Vec<u8> {
        use tract_tensorflow::tfpb::tensorflow::{GraphDef, attr_value::Value};
        let mut graph = GraphDef::decode(bytes).unwrap();
        for e in edits {
            let names: Vec<String> = graph.node.iter().map(|n| n.name.clone()).collect();
            let name = names[e.pick.index(names.len())].clone();
            let len = graph.node.len();
            let Some(node) = item(&mut graph.node, &e.at) else {
                break;
            };
            let mut keys: Vec<String> = node.attr.keys().cloned().collect();
            keys.sort();
            let value = item(&mut keys, &e.inner)
                .and_then(|k| node.attr.get_mut(k))
                .and_then(|a| a.value.as_mut());
            match (e.what, value) {
                (0, _) => node.op = TF_OPS[e.pick.index(TF_OPS.len())].into(),
                (1, Some(v)) => *v = Value::I(e.number),
                (2, Some(v)) => *v = Value::F(e.float),
                (3, Some(v)) => *v = Value::Type(e.number.rem_euclid(30) as i32),
                (4, Some(Value::Tensor(t))) => {
                    let shape = t.tensor_shape.as_mut();
                    if let Some(d) = shape.and_then(|s| item(&mut s.dim, &e.pick)) {
                        d.size = e.number;
                    }
                }
                (5, Some(Value::Tensor(t))) => {
                    t.tensor_content.truncate(t.tensor_content.len() / 2);
                    t.float_val.truncate(t.float_val.len() / 2);
                    t.int_val.truncate(t.int_val.len() / 2);
                }
                (6, Some(Value::Tensor(t))) => t.dtype = e.number.rem_euclid(30) as i32,
                (7 | 8, _) => {
                    if let Some(i) = item(&mut node.input, &e.inner) {
                        *i = name;
                    }
                }
                (9, _) => {
                    graph.node.remove(e.at.index(len));
                }
                (10, Some(Value::List(l))) => {
                    if let Some(i) = item(&mut l.i, &e.pick) {
                        *i = e.number;
                    }
                }
                (11, Some(Value::Shape(s))) => {
                    if let Some(d) = item(&mut s.dim, &e.pick) {
                        d.size = e.number;
                    }
                }
                _ => {}
            }
        }
        graph.encode_to_vec()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        #[test]
        fn models_with_edited_fields_never_panic(file in 0..FILES.len(), edits in edits()) {
            let file = FILES[file];
            let bytes = if file.ends_with(".pb") {
                edit_tensorflow(&read(file), &edits)
            } else {
                edit_onnx(&read(file), &edits)
            };
            load_and_score(file, &bytes)?;
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
            load_and_score("any.onnx", &bytes)?;
            load_and_score("any.pb", &bytes)?;
        }

        #[test]
        fn mutated_models_never_panic(
            file in 0..FILES.len(),
            cut in any::<prop::sample::Index>(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 0..8),
        ) {
            let file = FILES[file];
            let mut bytes = read(file);
            for (at, value, how) in edits {
                let at = at.index(bytes.len());
                match how {
                    0 => bytes[at] ^= 1 << (value % 8),
                    1 => bytes[at] = value,
                    _ => bytes.insert(at, value),
                }
            }
            // A quarter of the cases end the file early (most such files
            // are refused as they are decoded).
            bytes.truncate(cut.index(bytes.len() * 4));
            load_and_score(file, &bytes)?;
        }
    }
}
