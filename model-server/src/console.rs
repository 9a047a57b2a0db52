//! The model server's web console (`GET /` on any instance, see
//! `streams_http::console`): the framework's panels (instances,
//! throughput and lag, topology) and two of the server's own:
//!
//! | panel | URL | what it shows |
//! |---|---|---|
//! | Models | `GET /console/models` | the model serving each data type: name, type, since when, usage, mean, min and max scoring time (merged over every live instance in the `streams` engine), and the descriptors rejected since start, with their reasons |
//! | Recent results | `GET /console/results` | the last [`RECENT_RESULTS`] results written to `mscores`, newest first, read from the topic (so every instance's), the not-served ones marked |
//!
//! Both answer the console's table form (`streams_http::console::TablePanel`).
//! The `stage` and `actors` engines have no framework: they show this
//! instance only (no registry), sample their own counters for the
//! throughput chart (no lag), and say that the topology does not apply.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use proto::{Message as _, ServingResult};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message as _, Offset, TopicPartitionList};
use serde_json::{Value, json};
use streams_core::StreamsConfig;
use streams_core::config::ClientKind;
use streams_core::topology::TopologyDescription;
use streams_http::console::{Cell, Console, Panel, Row, Sample, Table, TablePanel};
use streams_http::{QueryServer, Request, Response};

use crate::http::merged;
use crate::serving::{MODELS_STORE, ModelStore, SCORES_TOPIC, current_models};
use crate::stage::{Stages, client, lock, now_ms};
use crate::stats::ModelToServeStats;

/// Results the Recent results panel shows.
pub const RECENT_RESULTS: usize = 20;

/// Rejected descriptors each engine keeps for the console.
pub const REJECTIONS_KEPT: usize = 20;

/// How long reading `mscores` may take before the panel says it is
/// unavailable (the broker is down, say).
pub const RESULTS_TIMEOUT: Duration = Duration::from_secs(2);

/// A model descriptor that did not become a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// When, in ms since the epoch.
    pub time: i64,
    /// Its offset on the models topic (-1 when unknown).
    pub offset: i64,
    /// Why (the reason names the model when the descriptor could be read).
    pub reason: String,
}

/// The last [`REJECTIONS_KEPT`] rejections, newest last.
#[derive(Debug, Clone, Default)]
pub struct Rejections(VecDeque<Rejection>);

impl Rejections {
    /// Keeps `reason` for the descriptor at `offset`, dropping the oldest
    /// beyond [`REJECTIONS_KEPT`].
    pub fn push(&mut self, offset: i64, reason: String) {
        if self.0.len() == REJECTIONS_KEPT {
            self.0.pop_front();
        }
        self.0.push_back(Rejection {
            time: now_ms(),
            offset,
            reason,
        });
    }

    /// Every rejection kept, oldest first.
    pub fn all(&self) -> Vec<Rejection> {
        self.0.iter().cloned().collect()
    }
}

/// One result read back from `mscores`.
#[derive(Debug, Clone, PartialEq)]
pub struct WrittenResult {
    /// Its timestamp on `mscores`: the scored record's (a sink keeps its
    /// input's timestamp, as in Kafka Streams).
    pub written: i64,
    /// The result.
    pub result: ServingResult,
}

/// Reads the newest results of `mscores`, on demand: a consumer outside
/// any group (assigned, never committing), made on first use and kept,
/// costs the scoring path nothing.
pub struct ResultsTail {
    config: rdkafka::ClientConfig,
    consumer: Mutex<Option<BaseConsumer>>,
}

impl std::fmt::Debug for ResultsTail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResultsTail").finish_non_exhaustive()
    }
}

impl ResultsTail {
    /// A reader on the cluster of `config` (its consumer settings).
    pub fn new(config: &StreamsConfig) -> ResultsTail {
        let mut client = client(config, ClientKind::Consumer);
        let group = format!(
            "{}-console",
            config.application_id().unwrap_or("model-server")
        );
        client
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true");
        ResultsTail {
            config: client,
            consumer: Mutex::new(None),
        }
    }

    /// The newest `count` results over every partition, newest first,
    /// within `timeout`; why not, when the topic cannot be read.
    pub fn newest(&self, count: usize, timeout: Duration) -> Result<Vec<WrittenResult>, String> {
        let mut guard = self.consumer.lock().unwrap_or_else(PoisonError::into_inner);
        if guard.is_none() {
            let consumer: BaseConsumer = self
                .config
                .create()
                .map_err(|e| format!("cannot create a reader of {SCORES_TOPIC}: {e}"))?;
            *guard = Some(consumer);
        }
        let consumer = guard.as_ref().expect("made above");
        let result = read_newest(consumer, count, timeout);
        let _ = consumer.unassign();
        result
    }

    /// The Recent results panel.
    pub fn panel(&self) -> Response {
        match self.newest(RECENT_RESULTS, RESULTS_TIMEOUT) {
            Ok(results) => results_panel(&results).response(),
            Err(error) => Response::error(503, error),
        }
    }
}

fn read_newest(
    consumer: &BaseConsumer,
    count: usize,
    timeout: Duration,
) -> Result<Vec<WrittenResult>, String> {
    let deadline = Instant::now() + timeout;
    let unreachable = |e: KafkaError| {
        format!(
            "{SCORES_TOPIC} cannot be read: the broker does not answer within {timeout:?} ({e})"
        )
    };
    let metadata = consumer
        .fetch_metadata(Some(SCORES_TOPIC), timeout)
        .map_err(unreachable)?;
    let partitions = metadata
        .topics()
        .iter()
        .find(|t| t.name() == SCORES_TOPIC)
        .map_or(0, |t| t.partitions().len() as i32);
    // Where each partition ends now: reading stops there.
    let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        let left = deadline.saturating_duration_since(Instant::now());
        let (low, high) = consumer
            .fetch_watermarks(SCORES_TOPIC, partition, left)
            .map_err(unreachable)?;
        if high > low {
            let start = (high - count as i64).max(low);
            assignment
                .add_partition_offset(SCORES_TOPIC, partition, Offset::Offset(start))
                .map_err(|e| e.to_string())?;
            ends.insert(partition, high);
        }
    }
    let mut results = Vec::new();
    if ends.is_empty() {
        return Ok(results);
    }
    consumer.assign(&assignment).map_err(|e| e.to_string())?;
    while !ends.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match consumer.poll(left.min(Duration::from_millis(200))) {
            Some(Ok(message)) => {
                let partition = message.partition();
                if let Ok(result) = ServingResult::decode(message.payload().unwrap_or_default()) {
                    results.push(WrittenResult {
                        written: message.timestamp().to_millis().unwrap_or(0),
                        result,
                    });
                }
                if ends
                    .get(&partition)
                    .is_some_and(|&end| message.offset() + 1 >= end)
                {
                    ends.remove(&partition);
                }
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                ends.remove(&partition);
            }
            Some(Err(error)) => log::debug!("reading {SCORES_TOPIC}: {error}"),
            None => {}
        }
    }
    // Newest first: by timestamp, then by where.
    results.sort_by(|a, b| {
        (b.written, b.result.partition, b.result.offset).cmp(&(
            a.written,
            a.result.partition,
            a.result.offset,
        ))
    });
    results.truncate(count);
    Ok(results)
}

/// The Recent results panel's tables for `results`.
pub fn results_panel(results: &[WrittenResult]) -> TablePanel {
    let mut table = Table::new([
        "Record time",
        "Record",
        "Data type",
        "Model",
        "Result",
        "Scoring (µs)",
        "Outcome",
    ])
    .when_empty("No result on mscores yet.");
    let mut not_served = 0;
    for WrittenResult { written, result } in results {
        let row = Row::new([
            Cell::time(*written),
            Cell::from(format!("mdata-{}@{}", result.partition, result.offset)),
            Cell::from(result.data_type.as_str()),
            Cell::from((!result.model.is_empty()).then(|| result.model.clone())),
            Cell::from(result.served.then_some(result.result)),
            Cell::from((!result.model.is_empty()).then(|| result.duration_ns as f64 / 1e3)),
            Cell::from(match result.served {
                true => "served".to_owned(),
                false => format!("not served: {}", result.reason),
            }),
        ]);
        table = table.row(match result.served {
            true => row,
            false => {
                not_served += 1;
                row.bad()
            }
        });
    }
    TablePanel::new().table(table).note(format!(
        "The newest {} results on {SCORES_TOPIC}, every instance's, read from the topic; {not_served} of them not served (marked).",
        results.len()
    ))
}

/// One model's row: `stats` when it has served, else its name, type and
/// since with empty figures (and no usage when `counted` is false: no
/// instance could say).
fn model_row(
    data_type: &str,
    name: &str,
    kind: &str,
    since: i64,
    stats: Option<&ModelToServeStats>,
    counted: bool,
) -> Row {
    let figures =
        |f: fn(&ModelToServeStats) -> f64| -> Cell { stats.filter(|s| s.usage > 0).map(f).into() };
    Row::new([
        Cell::from(data_type),
        Cell::from(name),
        Cell::from(kind),
        Cell::time(since),
        Cell::from(counted.then(|| stats.map_or(0, |s| s.usage))),
        figures(|s| s.duration / s.usage as f64),
        figures(|s| s.min),
        figures(|s| s.max),
    ])
}

fn models_table() -> Table {
    Table::new([
        "Data type",
        "Model",
        "Type",
        "Since",
        "Usage",
        "Mean (ms)",
        "Min (ms)",
        "Max (ms)",
    ])
    .titled("Serving")
    .when_empty("No model yet: publish one to the models topic.")
}

fn rejections_table(rejections: &[Rejection]) -> Table {
    let mut table = Table::new(["Time", "Offset", "Reason"])
        .titled("Rejected descriptors (the previous model keeps serving)")
        .when_empty("No descriptor rejected since start.");
    // Newest first.
    for rejection in rejections.iter().rev() {
        table = table.row(
            Row::new([
                Cell::time(rejection.time),
                Cell::from((rejection.offset >= 0).then_some(rejection.offset)),
                Cell::from(rejection.reason.as_str()),
            ])
            .bad(),
        );
    }
    table
}

/// The Models panel of the `streams` engine: the models this instance
/// serves (every instance has them all) with their statistics merged
/// over every live instance, and the rejections this instance saw (every
/// instance reads every descriptor).
pub fn streams_models_panel(server: &QueryServer) -> Response {
    let streams = server.streams();
    let models = match current_models(streams) {
        Ok(models) => models,
        Err(error) => return Response::error(503, format!("the models store: {error}")),
    };
    let (stats, answered, missing) = merged(server);
    let mut table = models_table();
    for installed in &models {
        let model = &installed.model;
        let stats = stats.iter().find(|s| {
            s.data_type == model.data_type && s.name == model.name && s.version == installed.version
        });
        table = table.row(model_row(
            &model.data_type,
            &model.name,
            model.kind.as_str_name(),
            installed.since,
            stats,
            !answered.is_empty(),
        ));
    }
    let rejections: Vec<Rejection> = streams
        .query_custom_store(MODELS_STORE, |s: &mut ModelStore| s.rejections())
        .map(|all| all.into_iter().flatten().collect())
        .unwrap_or_default();
    let mut panel = TablePanel::new()
        .table(table)
        .table(rejections_table(&rejections))
        .note(format!(
            "Usage and scoring times merged over {} instance{}: {}. Every instance serves every model.",
            answered.len(),
            if answered.len() == 1 { "" } else { "s" },
            answered.join(", ")
        ));
    let missing: Vec<String> = missing
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let instance = m["instance"].as_str().unwrap_or("?");
            format!(
                "{instance}: {}",
                readable_error(m["error"].as_str().unwrap_or(""))
            )
        })
        .collect();
    if answered.is_empty() {
        panel = panel.warning(format!(
            "Usage and scoring times are unavailable: no instance answered ({}).",
            missing.join("; ")
        ));
    } else if !missing.is_empty() {
        panel = panel.warning(format!(
            "Not counted, not answering: {}.",
            missing.join("; ")
        ));
    }
    panel.response()
}

/// A peer's error as the fan-out reports it (`status 503: {"error":
/// "..."}`), reduced to its message.
fn readable_error(error: &str) -> String {
    error
        .split_once(": ")
        .and_then(|(_, body)| serde_json::from_str::<Value>(body).ok())
        .and_then(|body| body["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| error.to_owned())
}

/// The console's panels, in the order the issue lists them.
fn panels(title: &str, topology: Panel) -> Console {
    Console::new(title)
        .panel(Panel::instances())
        .panel(Panel::table("models", "Models", "/console/models"))
        .panel(Panel::throughput())
        .panel(topology)
        .panel(Panel::table("results", "Recent results", "/console/results").wide())
}

/// `server` with the console of the `streams` engine: the framework's
/// panels over `topology`, the models and the results read with `results`.
pub fn streams_console(
    server: QueryServer,
    topology: &TopologyDescription,
    results: ResultsTail,
) -> QueryServer {
    let title = format!("model-server: {}", server.streams().application_id());
    let results = Arc::new(results);
    server
        .topology(topology)
        .console(panels(&title, Panel::topology()))
        .route(move |request, server| match request.path.as_str() {
            "/console/models" => Some(streams_models_panel(server)),
            "/console/results" => Some(results.panel()),
            _ => None,
        })
}

/// The console of the `stage` and `actors` engines, and the routes its
/// panels read, for an `AppServer` listening on `addr`.
pub fn engine_console(
    engine: &str,
    addr: SocketAddr,
    stages: Stages,
    results: ResultsTail,
) -> (
    Console,
    impl Fn(&Request) -> Option<Response> + Send + Sync + 'static,
) {
    let sampled = stages.clone();
    let console = panels(
        &format!("model-server: {engine} engine"),
        Panel::not_applicable(
            "topology",
            "Topology",
            &format!(
                "the {engine} engine does not run on the streams framework, so it has no topology \
                 (--engine streams has one)"
            ),
        ),
    )
    .throughput_source(move || Sample {
        records: sampled()
            .iter()
            .map(|stage| {
                let [served, not_served, ..] = lock(stage).counters();
                served + not_served
            })
            .sum(),
        ..Sample::default()
    });
    let engine = engine.to_owned();
    let routes = move |request: &Request| match request.path.as_str() {
        "/console/instances" => Some(Response::json(200, &engine_instances(&engine, addr))),
        "/console/models" => Some(engine_models_panel(&engine, &stages).response()),
        "/console/results" => Some(results.panel()),
        _ => None,
    };
    (console, routes)
}

fn engine_instances(engine: &str, addr: SocketAddr) -> Value {
    let me = addr.to_string();
    json!({
        "answering": me,
        "state": "Running",
        "instances": [{
            "instance": me,
            "host": addr.ip().to_string(),
            "port": addr.port(),
            "storeNames": [],
            "partitions": [],
            "answering": true,
        }],
        "note": format!(
            "The {engine} engine has no instance registry: this instance only (instances share \
             mdata through the consumer group, each with every model). Lag is not sampled."
        ),
    })
}

fn engine_models_panel(engine: &str, stages: &Stages) -> TablePanel {
    let mut stats: Vec<ModelToServeStats> = Vec::new();
    let mut rejections: Vec<Rejection> = Vec::new();
    for stage in stages() {
        let stage = lock(&stage);
        stats.extend(stage.stats());
        rejections.extend(stage.rejections());
    }
    stats.sort_by(|a, b| a.data_type.cmp(&b.data_type));
    rejections.sort_by_key(|r| r.time);
    let mut table = models_table();
    for s in &stats {
        table = table.row(model_row(
            &s.data_type,
            &s.name,
            &s.model_type,
            s.since,
            Some(s),
            true,
        ));
    }
    TablePanel::new()
        .table(table)
        .table(rejections_table(&rejections))
        .note(format!(
            "This instance's usage and scoring times: the {engine} engine has no instance registry to merge over."
        ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(partition: i32, offset: i64, served: bool) -> WrittenResult {
        WrittenResult {
            written: 1_700_000_000_000 + offset,
            result: ServingResult {
                partition,
                offset,
                served,
                model: "m".into(),
                data_type: "wine".into(),
                result: 5.5,
                duration_ns: 1_500,
                reason: if served {
                    String::new()
                } else {
                    "not a finite number".into()
                },
                ..ServingResult::default()
            },
        }
    }

    #[test]
    fn not_served_results_are_marked_with_their_reason() {
        let panel = results_panel(&[written(0, 2, true), written(1, 1, false)]);
        let json = serde_json::to_value(&panel).unwrap();
        let rows = &json["tables"][0]["rows"];
        assert_eq!(rows[0]["cells"][1], "mdata-0@2");
        assert_eq!(rows[0]["cells"][4], 5.5);
        assert_eq!(rows[0]["cells"][5], 1.5);
        assert!(rows[0].get("mark").is_none());
        assert_eq!(rows[1]["mark"], "bad");
        assert_eq!(rows[1]["cells"][4], Value::Null);
        assert_eq!(rows[1]["cells"][6], "not served: not a finite number");
        assert!(
            json["note"]
                .as_str()
                .unwrap()
                .contains("1 of them not served")
        );
        let empty = serde_json::to_value(results_panel(&[])).unwrap();
        assert_eq!(empty["tables"][0]["empty"], "No result on mscores yet.");
    }

    #[test]
    fn peer_errors_read_as_their_message() {
        assert_eq!(
            readable_error(r#"status 503: {"error":"store `model-stats` is rebalancing; retry"}"#),
            "store `model-stats` is rebalancing; retry"
        );
        assert_eq!(
            readable_error("tcp connect error: refused"),
            "tcp connect error: refused"
        );
    }

    #[test]
    fn rejections_keep_the_newest_and_show_newest_first() {
        let mut rejections = Rejections::default();
        for offset in 0..(REJECTIONS_KEPT as i64 + 5) {
            rejections.push(offset, format!("model m{offset}: bad"));
        }
        let all = rejections.all();
        assert_eq!(all.len(), REJECTIONS_KEPT);
        assert_eq!(all[0].offset, 5);
        let table = serde_json::to_value(rejections_table(&all)).unwrap();
        assert_eq!(table["rows"][0]["cells"][1], (REJECTIONS_KEPT + 4) as f64);
        assert_eq!(table["rows"][0]["mark"], "bad");
        let unknown = rejections_table(&[Rejection {
            time: 0,
            offset: -1,
            reason: "undecodable".into(),
        }]);
        assert_eq!(
            serde_json::to_value(unknown).unwrap()["rows"][0]["cells"][1],
            Value::Null
        );
    }
}
