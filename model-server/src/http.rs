//! The model server's HTTP routes, mounted on the framework's query layer
//! (`streams-http`), which adds `/state/instances`, `/metrics` and
//! `/health`:
//!
//! | route | answer |
//! |---|---|
//! | `GET /state/value` | as the original: one object, the statistics of the current model of data type `wine` (or `?dataType=`) merged over every live instance, with `instances` and `missing` added; 404 when the data type has none; `?local=true`: this instance's statistics of every data type, as a list |
//! | `GET /state` | `{"stats": [...], "instances": [...], "missing": [...]}`: every data type's statistics, merged over every live instance |
//! | `GET /state/{dataType}` | that data type's merged statistics (404 when it has none) |
//! | `GET /models` | the models serving now: `name`, `description`, `dataType`, `modelType`, `since` |
//! | `GET /console/models`, `GET /console/results` | the web console's Models and Recent results panels (see [`console`](crate::console)); the console itself, `GET /`, is the layer's |
//!
//! Statistics use the original's field names (`name`, `description`,
//! `since`, `usage`, `duration`, `min`, `max`), plus `modelType`,
//! `dataType` and `version`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use streams_http::{QueryServer, Request, Response, missing_json};
use streams_kafka::{KafkaStreams, MetricRows};

use crate::model::ServedModel;
use crate::serving::{
    Installed, MODELS_STORE, ModelStore, StoreVariant, current_models, local_stats,
};
use crate::stats::{ModelToServeStats, merge_all};

/// Counters of the scoring path, exported at `/metrics`.
#[derive(Debug, Default)]
pub struct ServingMetrics {
    /// Records scored by a model.
    pub served: AtomicU64,
    /// Records with no model for their data type (or no prediction).
    pub not_served: AtomicU64,
    /// The longest time one record waited to get its model, in
    /// nanoseconds: the only place where scoring can wait on a model swap
    /// (the swap holds the store's lock for an insert; builds happen
    /// before it). A lookup that finds the lock free waits for nothing and
    /// is not timed.
    pub longest_lookup_ns: AtomicU64,
    /// Records that waited over a millisecond for their model: a swap that
    /// blocked scoring would add one per record it held up (and so does
    /// the thread being descheduled at that moment).
    pub slow_lookups: AtomicU64,
}

impl ServingMetrics {
    /// Adds the serving path's families to `registry`. (Help texts lack
    /// their final period: `Registry::register` adds it.)
    fn register(&self, streams: &KafkaStreams, registry: &mut Registry) {
        let outcome = |value: &str| vec![("outcome", value.to_owned())];
        registry.register(
            "model_server_records",
            "Records scored, by outcome",
            MetricRows::new([
                (
                    outcome("served"),
                    ConstCounter::new(self.served.load(Ordering::Relaxed)),
                ),
                (
                    outcome("not_served"),
                    ConstCounter::new(self.not_served.load(Ordering::Relaxed)),
                ),
            ]),
        );
        registry.register(
            "model_server_model_lookup_seconds_max",
            "The longest a record waited for its model",
            ConstGauge::new(self.longest_lookup_ns.load(Ordering::Relaxed) as f64 / 1e9),
        );
        registry.register(
            "model_server_slow_model_lookups",
            "Records that waited over 1 ms for their model",
            ConstCounter::new(self.slow_lookups.load(Ordering::Relaxed)),
        );
        let (rejected, builds) = streams
            .query_custom_store(MODELS_STORE, |s: &mut ModelStore| {
                (s.rejected(), s.builds())
            })
            .map(|r| r.into_iter().fold((0, 0), |(a, b), (r, n)| (a + r, b + n)))
            .unwrap_or((0, 0));
        registry.register(
            "model_server_models_rejected",
            "Model descriptors that did not become a model",
            ConstCounter::new(rejected),
        );
        registry.register(
            "model_server_model_builds",
            "Models built or tried since start, rejected ones included",
            ConstCounter::new(builds),
        );
        if let Ok(models) = current_models(streams) {
            registry.register(
                "model_server_model_info",
                "The model serving each data type",
                MetricRows::new(models.into_iter().map(|Installed { model, .. }| {
                    let labels = vec![
                        ("data_type", model.data_type.clone()),
                        ("model", model.name.clone()),
                        ("type", model.kind.as_str_name().to_owned()),
                    ];
                    (labels, ConstGauge::new(1))
                })),
            );
        }
    }
}

/// The query layer with the model server's routes.
pub fn query_server(
    streams: Arc<KafkaStreams>,
    variant: StoreVariant,
    metrics: Arc<ServingMetrics>,
) -> QueryServer {
    let for_metrics = streams.clone();
    QueryServer::new(streams)
        .route(move |request, server| route(request, server, variant))
        .metrics(move |registry| metrics.register(&for_metrics, registry))
}

fn route(request: &Request, server: &QueryServer, variant: StoreVariant) -> Option<Response> {
    if request.method != "GET" {
        return None;
    }
    let segments = request.segments();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    Some(match segments.as_slice() {
        ["state", "value"] if request.forwarded || request.param("local") == Some("true") => {
            match local_stats(server.streams(), variant) {
                Ok(stats) => Response::json(200, &stats),
                Err(error) => unavailable(&error),
            }
        }
        ["state", "value"] => {
            let data_type = request.param("dataType").unwrap_or("wine");
            let (stats, answered, missing) = merged(server);
            match stats.into_iter().find(|s| s.data_type == data_type) {
                Some(stats) => {
                    let mut answer = serde_json::to_value(&stats).unwrap_or(Value::Null);
                    if let Value::Object(fields) = &mut answer {
                        fields.insert("instances".into(), json!(answered));
                        fields.insert("missing".into(), missing);
                    }
                    Response::json(200, &answer)
                }
                None => no_statistics(data_type, missing),
            }
        }
        ["state"] => {
            let (stats, answered, missing) = merged(server);
            Response::json(
                200,
                &json!({ "stats": stats, "instances": answered, "missing": missing }),
            )
        }
        ["models"] => match current_models(server.streams()) {
            Ok(models) => Response::json(
                200,
                &models
                    .iter()
                    .map(|Installed { model, since, .. }| model_json(model, *since))
                    .collect::<Vec<_>>(),
            ),
            Err(error) => unavailable(&error),
        },
        // `/state/instances` and `/state/keyvalue/..` belong to the layer.
        ["state", data_type] if *data_type != "instances" && *data_type != "keyvalue" => {
            let (stats, _, missing) = merged(server);
            match stats.into_iter().find(|s| s.data_type == *data_type) {
                Some(stats) => Response::json(200, &stats),
                None => no_statistics(data_type, missing),
            }
        }
        _ => return None,
    })
}

/// Every live instance's statistics, merged; the instances that answered
/// and those that did not.
pub(crate) fn merged(server: &QueryServer) -> (Vec<ModelToServeStats>, Vec<String>, Value) {
    let fan_out = server.fan_out("/state/value?local=true");
    let mut entries = Vec::new();
    let mut answered = Vec::new();
    for (host, answer) in fan_out.answers {
        answered.push(host.to_string());
        if let Ok(list) = serde_json::from_value::<Vec<ModelToServeStats>>(answer) {
            entries.extend(list);
        }
    }
    (merge_all(entries), answered, missing_json(&fan_out.missing))
}

fn no_statistics(data_type: &str, missing: Value) -> Response {
    Response::json(
        404,
        &json!({
            "error": format!("no statistics for data type `{data_type}`"),
            "missing": missing,
        }),
    )
}

fn unavailable(error: &streams_core::StreamsError) -> Response {
    let status = if error.is_retriable() { 503 } else { 500 };
    Response::error(status, error)
}

/// A model as `/models` lists it, in every engine.
pub(crate) fn model_json(model: &ServedModel, since: i64) -> Value {
    json!({
        "name": model.name,
        "description": model.description,
        "dataType": model.data_type,
        "modelType": model.kind.as_str_name(),
        "since": since,
    })
}
