//! Every model file in `data/models/` served through `model::build`,
//! checked against answers computed elsewhere, on all 1,599 wine rows:
//! - the ten ONNX models against onnxruntime's reference predictions
//!   (`data/models/onnx/reference_predictions.csv`): class labels exactly,
//!   regression values within float32 summation noise;
//! - the TensorFlow graph against the same network evaluated here in f64
//!   from the weights in the graph file (argmax of the nine outputs).

mod common;

use std::collections::HashMap;

use common::{data, reference_columns, wine_rows};
use model_server::model::{ModelLimits, ServedModel, build};
use proto::{MessageContent, ModelDescriptor, ModelType, WineRecord};

fn rows() -> Vec<WineRecord> {
    wine_rows()
        .into_iter()
        .map(|row| WineRecord::from_features(row, "wine", 0))
        .collect()
}

/// Limits that let the tests read the data folder's models.
fn limits() -> ModelLimits {
    ModelLimits::default().with_model_dir(data("models"))
}

fn load(kind: ModelType, path: &str) -> ServedModel {
    build(
        &ModelDescriptor {
            name: path.into(),
            description: String::new(),
            data_type: "wine".into(),
            modeltype: kind as i32,
            message_content: Some(MessageContent::Location(
                data(path).to_string_lossy().into_owned(),
            )),
        },
        &limits(),
    )
    .unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn onnx_models_match_onnxruntime_on_every_row() {
    let (header, columns) = reference_columns("models/onnx/reference_predictions.csv");
    let rows = rows();
    let models = &header[1..];
    assert_eq!(models.len(), 10, "{models:?}");
    for name in models {
        let expected: Vec<f64> = columns[name].iter().map(|v| v.parse().unwrap()).collect();
        assert_eq!(expected.len(), rows.len());
        let served = load(ModelType::Onnx, &format!("models/onnx/{name}.onnx"));
        let classifier = name.ends_with("_classifier");
        let mut worst = 0.0f64;
        for (i, (row, want)) in rows.iter().zip(&expected).enumerate() {
            let got = served
                .model
                .score(row)
                .unwrap_or_else(|| panic!("{name}: no prediction for row {i}"));
            if classifier {
                assert_eq!(got, *want, "{name}: row {i}");
            } else {
                worst = worst.max((got - want).abs());
            }
        }
        // float32 sums in another order: the largest onnxruntime vs
        // scikit-learn difference in these files is 2.6e-5.
        assert!(worst < 1e-4, "{name}: largest difference {worst}");
    }
}

/// The frozen graph's tensors by node name.
fn graph_constants() -> (
    HashMap<String, (Vec<usize>, Vec<f32>)>,
    HashMap<String, String>,
) {
    let bytes = std::fs::read(data("models/tensorflow/optimized_WineQuality.pb")).unwrap();
    let graph = tract_tensorflow::tensorflow()
        .read_frozen_model(&mut bytes.as_slice())
        .unwrap();
    let mut constants = HashMap::new();
    let mut ops = HashMap::new();
    for node in &graph.node {
        ops.insert(node.name.clone(), node.op.clone());
        if node.op == "Const" {
            let Some(tract_tensorflow::tfpb::tensorflow::attr_value::Value::Tensor(proto)) =
                node.attr.get("value").and_then(|a| a.value.as_ref())
            else {
                continue;
            };
            let tensor = tract_tensorflow::tract_hir::prelude::Tensor::try_from(proto).unwrap();
            let values = tensor
                .to_plain_array_view::<f32>()
                .unwrap()
                .iter()
                .copied()
                .collect();
            constants.insert(node.name.clone(), (tensor.shape().to_vec(), values));
        }
    }
    (constants, ops)
}

#[test]
fn the_tensorflow_graph_predicts_the_argmax_of_its_nine_outputs() {
    let (constants, ops) = graph_constants();
    // The network the file holds: 11 -> 12 (relu) -> 8 (relu) -> 9 (sigmoid).
    assert_eq!(ops["dense_1/Relu"], "Relu");
    assert_eq!(ops["dense_2/Relu"], "Relu");
    assert_eq!(ops["dense_3/Sigmoid"], "Sigmoid");
    let layer = |k: usize, input: &[f64]| -> Vec<f64> {
        let (shape, w) = &constants[&format!("dense_{k}/kernel")];
        let (_, b) = &constants[&format!("dense_{k}/bias")];
        assert_eq!(shape[0], input.len());
        (0..shape[1])
            .map(|j| {
                let z = b[j] as f64
                    + input
                        .iter()
                        .enumerate()
                        .map(|(i, x)| x * w[i * shape[1] + j] as f64)
                        .sum::<f64>();
                if k == 3 {
                    1.0 / (1.0 + (-z).exp())
                } else {
                    z.max(0.0)
                }
            })
            .collect()
    };
    let served = load(
        ModelType::Tensorflow,
        "models/tensorflow/optimized_WineQuality.pb",
    );
    let (mut close, mut seen) = (0, HashMap::<u64, usize>::new());
    for (i, row) in rows().iter().enumerate() {
        let out = layer(3, &layer(2, &layer(1, &row.features())));
        assert_eq!(out.len(), 9);
        let mut order: Vec<usize> = (0..9).collect();
        order.sort_by(|&a, &b| out[b].total_cmp(&out[a]).then(a.cmp(&b)));
        let got = served.model.score(row).unwrap();
        *seen.entry(got as u64).or_default() += 1;
        if out[order[0]] - out[order[1]] < 1e-5 {
            // Too close to call in float32: either of the two will do.
            close += 1;
            assert!(got == order[0] as f64 || got == order[1] as f64, "row {i}");
        } else {
            assert_eq!(got, order[0] as f64, "row {i}: outputs {out:?}");
        }
    }
    assert!(close < 10, "{close} rows too close to call");
    // A model, not a constant: it predicts more than one quality.
    assert!(seen.len() > 1, "{seen:?}");
}

#[test]
fn a_corrupt_onnx_model_is_rejected_with_the_reason() {
    let mut bytes = std::fs::read(data("models/onnx/wine_mlp_regression.onnx")).unwrap();
    bytes.truncate(bytes.len() / 2);
    let err = build(
        &ModelDescriptor {
            name: "half".into(),
            description: String::new(),
            data_type: "wine".into(),
            modeltype: ModelType::Onnx as i32,
            message_content: Some(MessageContent::Data(bytes)),
        },
        &limits(),
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("model half: not a valid ONNX model"),
        "{text}"
    );
}

#[test]
fn one_model_scores_from_several_threads_at_once() {
    let served = load(
        ModelType::Onnx,
        "models/onnx/wine_random_forest_regression.onnx",
    );
    let rows = rows();
    let alone: Vec<f64> = rows[..200]
        .iter()
        .map(|r| served.model.score(r).unwrap())
        .collect();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for (r, want) in rows[..200].iter().zip(&alone) {
                    assert_eq!(served.model.score(r), Some(*want));
                }
            });
        }
    });
}
