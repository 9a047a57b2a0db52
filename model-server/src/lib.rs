//! The model-serving application: scores wine records streaming in over
//! Kafka with the current machine-learning model, swaps models without a
//! pause, and answers queries about its serving state over HTTP.
//!
//! Built on `streams-core`, in these modules:
//! - [`model`]: models built from `ModelDescriptor`s: ONNX and the
//!   original TensorFlow graph through tract (with our own ONNX-ML
//!   tree-ensemble and linear-regressor operators, which score a row
//!   without tract's plan when a model is one of them), PMML through the
//!   `pmml` crate;
//! - [`serving`]: the topology, in three store variants (`memory`,
//!   `standard`, `custom`), with models in a global store swapped off the
//!   scoring path;
//! - [`stats`]: serving statistics with the original's JSON names, merged
//!   across tasks and instances, and the compact encoding the `memory` and
//!   `standard` stores keep them in;
//! - [`http`]: the routes (`/state/value`, `/state/{dataType}`,
//!   `/models`) on the framework's query layer;
//! - [`console`]: the web console's Models and Recent results panels, on
//!   the framework's console (`GET /`);
//! - [`cli`]: what the `model-server` and `model-client` binaries share.
//!
//! ```
//! use model_server::model::{ModelLimits, build};
//! use proto::{MessageContent, ModelDescriptor, ModelType, WineRecord};
//!
//! // Location descriptors are read only from below the model directory.
//! let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/models/pmml");
//! let limits = ModelLimits::default().with_model_dir(dir);
//! let descriptor = ModelDescriptor {
//!     name: "linear".into(),
//!     description: "Spark linear regression".into(),
//!     data_type: "wine".into(),
//!     modeltype: ModelType::Pmml as i32,
//!     message_content: Some(MessageContent::Location("winequalityLinearRegression.pmml".into())),
//! };
//! let served = build(&descriptor, &limits).unwrap();
//! let record = WineRecord::from_features(
//!     [7.4, 0.7, 0.0, 1.9, 0.076, 11.0, 34.0, 0.9978, 3.51, 0.56, 9.4], "wine", 0);
//! let quality = served.model.score(&record).unwrap();
//! assert!((quality - 5.178).abs() < 0.001);
//! ```

pub mod actors;
pub mod cli;
pub mod console;
pub mod http;
mod linear;
pub mod model;
mod onnx_ml;
mod results;
pub mod serving;
pub mod stage;
pub mod stats;
mod tract_model;
mod tree_ensemble;

// The test files' helpers (the data folder, the tutorial's PMML files), for
// the unit tests too.
#[cfg(test)]
#[path = "../tests/common/mod.rs"]
mod test_common;
