//! The model-serving application: scores wine records streaming in over
//! Kafka with the current machine-learning model, swaps models without a
//! pause, and answers queries about its serving state over HTTP.
//!
//! Built on `streams-core`; see `DESIGN.md` (model-server). The serving
//! topology, models and HTTP layer are added by the model-server issue;
//! this crate holds the workspace's place for them.
