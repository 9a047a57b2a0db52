//! ONNX and TensorFlow models, run by tract.
//!
//! Both are loaded once into an optimised plan for a batch of one record
//! (the server scores each record as it arrives). A small pool of run
//! states lets several stream threads score with one model at once
//! without each call allocating the plan's buffers anew.
//!
//! The ONNX-ML tree ensembles run on our own operators
//! ([`crate::tree_ensemble`]).

use std::sync::{Arc, Mutex};

use proto::WineRecord;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::{TractErrorContext as _, bail};

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

/// A model tract runs.
pub(crate) struct TractModel {
    plan: Arc<TypedSimplePlan>,
    output: Output,
    /// Idle run states, reused so that a call allocates only its input.
    states: Mutex<Vec<TypedSimpleState>>,
}

impl TractModel {
    fn new(model: InferenceModel, argmax: bool) -> TractResult<Self> {
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
        Ok(Self {
            plan: model.into_runnable()?,
            output,
            states: Mutex::new(Vec::new()),
        })
    }

    fn run(&self, record: &WineRecord) -> TractResult<f64> {
        let features = record.features().map(|f| f as f32);
        let input = Tensor::from_shape(&[1, features.len()], &features)?;
        let pooled = self.states.lock().map_or(None, |mut s| s.pop());
        let mut state = match pooled {
            Some(state) => state,
            None => self.plan.spawn()?,
        };
        let outputs = state.run(tvec!(input.into()));
        if let Ok(mut states) = self.states.lock() {
            states.push(state);
        }
        let first = &outputs?[0];
        Ok(match self.output {
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
