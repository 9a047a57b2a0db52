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
//!
//! Statistics use the original's field names (`name`, `description`,
//! `since`, `usage`, `duration`, `min`, `max`), plus `modelType`,
//! `dataType` and `version`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};
use streams_http::{QueryServer, Request, Response, missing_json};
use streams_kafka::KafkaStreams;

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
    fn prometheus(&self, streams: &KafkaStreams) -> String {
        let mut text = String::new();
        let served = self.served.load(Ordering::Relaxed);
        let not_served = self.not_served.load(Ordering::Relaxed);
        text.push_str("# HELP model_server_records_total Records scored, by outcome.\n");
        text.push_str("# TYPE model_server_records_total counter\n");
        text.push_str(&format!(
            "model_server_records_total{{outcome=\"served\"}} {served}\n"
        ));
        text.push_str(&format!(
            "model_server_records_total{{outcome=\"not_served\"}} {not_served}\n"
        ));
        let longest = self.longest_lookup_ns.load(Ordering::Relaxed) as f64 / 1e9;
        text.push_str(
            "# HELP model_server_model_lookup_seconds_max The longest a record waited for its model.\n",
        );
        text.push_str("# TYPE model_server_model_lookup_seconds_max gauge\n");
        text.push_str(&format!(
            "model_server_model_lookup_seconds_max {longest}\n"
        ));
        text.push_str(
            "# HELP model_server_slow_model_lookups_total Records that waited over 1 ms for their model.\n",
        );
        text.push_str("# TYPE model_server_slow_model_lookups_total counter\n");
        text.push_str(&format!(
            "model_server_slow_model_lookups_total {}\n",
            self.slow_lookups.load(Ordering::Relaxed)
        ));
        let (rejected, builds) = streams
            .query_custom_store(MODELS_STORE, |s: &mut ModelStore| {
                (s.rejected(), s.builds())
            })
            .map(|r| r.into_iter().fold((0, 0), |(a, b), (r, n)| (a + r, b + n)))
            .unwrap_or((0, 0));
        text.push_str(
            "# HELP model_server_models_rejected_total Model descriptors that did not become a model.\n",
        );
        text.push_str("# TYPE model_server_models_rejected_total counter\n");
        text.push_str(&format!("model_server_models_rejected_total {rejected}\n"));
        text.push_str(
            "# HELP model_server_model_builds_total Models built or tried since start, rejected ones included.\n",
        );
        text.push_str("# TYPE model_server_model_builds_total counter\n");
        text.push_str(&format!("model_server_model_builds_total {builds}\n"));
        if let Ok(models) = current_models(streams) {
            text.push_str("# HELP model_server_model_info The model serving each data type.\n");
            text.push_str("# TYPE model_server_model_info gauge\n");
            for Installed { model, .. } in models {
                text.push_str(&format!(
                    "model_server_model_info{{data_type=\"{}\",model=\"{}\",type=\"{}\"}} 1\n",
                    escape(&model.data_type),
                    escape(&model.name),
                    model.kind.as_str_name()
                ));
            }
        }
        text
    }
}

/// A Prometheus label value.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
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
        .metrics(move || metrics.prometheus(&for_metrics))
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
fn merged(server: &QueryServer) -> (Vec<ModelToServeStats>, Vec<String>, Value) {
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
