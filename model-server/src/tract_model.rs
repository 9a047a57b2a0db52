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
        let model = model
            .with_input_fact(0, f32::fact([1, proto::FEATURE_NAMES.len()]).into())?
            .into_optimized()?;
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
        match self.run(record) {
            Ok(v) if v.is_finite() => Some(v),
            Ok(_) => None,
            Err(e) => {
                log::debug!("tract model failed to score a record: {e:#}");
                None
            }
        }
    }
}

/// Loads an ONNX model (input float32 `[N, 11]` in the CSV's column order).
pub(crate) fn onnx(bytes: &[u8]) -> Result<TractModel, String> {
    let mut framework = tract_onnx::onnx();
    crate::tree_ensemble::register(&mut framework);
    crate::linear::register(&mut framework);
    framework
        .model_for_read(&mut &bytes[..])
        .and_then(|m| TractModel::new(m, false))
        .map_err(|e| format!("{e:#}"))
}

/// Loads a frozen TensorFlow graph whose output scores each quality
/// (input float32 `[1, 11]`; the prediction is the index of the largest).
pub(crate) fn tensorflow(bytes: &[u8]) -> Result<TractModel, String> {
    tract_tensorflow::tensorflow()
        .model_for_read(&mut &bytes[..])
        .and_then(|m| TractModel::new(m, true))
        .map_err(|e| format!("{e:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(file: &str) -> TractModel {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../data/models")
            .join(file);
        let bytes = std::fs::read(&path).unwrap();
        if file.ends_with(".pb") {
            tensorflow(&bytes).unwrap()
        } else {
            onnx(&bytes).unwrap()
        }
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
                let record = WineRecord::from_features(
                    [x, 0.5, 0.3, 2.0, 0.08, 15.0, 40.0, 0.997, 3.3, 0.6, 8.0 + x],
                    "test",
                    0,
                );
                let (row, planned) = (model.run(&record).unwrap(), plan.run(&record).unwrap());
                assert_eq!(row, planned, "{file} at {x}");
            }
        }
    }
}
