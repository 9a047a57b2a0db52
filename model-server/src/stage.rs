//! The core of the `stage` engine, the tutorial's Akka Streams custom
//! stage: one piece of state that takes the merged stream of wine records
//! and model descriptors, keeps the current model and its statistics per
//! data type, and answers each record with a [`ServingResult`]. It knows
//! nothing of Kafka or of threads: the engine feeds it, and builds models
//! (with [`build`](crate::model::build)'s checks and limits) before
//! handing them over, so scoring never waits on a build.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::registry::Registry;
use proto::{Message, ModelDescriptor, ServingResult, WineRecord};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::message::BorrowedMessage;
use rdkafka::{ClientConfig, Message as _, Offset, TopicPartitionList};
use streams_core::StreamsConfig;
use streams_core::config::ClientKind;
use tokio::sync::{Notify, mpsc};

use serde_json::{Value, json};
use streams_http::{Request, Response};
use streams_kafka::MetricRows;

use crate::console::{Rejection, Rejections};
use crate::http::model_json;
use crate::model::{ModelLimits, ServedModel, build};
use crate::results::{Acknowledger, EPOCH, RecordsConsumer, Results, Revocations};
use crate::serving::{DATA_TOPIC, MODELS_TOPIC, SCORES_TOPIC, score_into};
use crate::stats::ModelToServeStats;

/// The current model of one data type, and how it has served.
struct Current {
    model: ServedModel,
    stats: ModelToServeStats,
}

/// The merged record and model streams' state.
pub struct Stage {
    current: BTreeMap<String, Current>,
    clock: quanta::Clock,
    served: u64,
    not_served: u64,
    builds: u64,
    rejected: u64,
    rejections: Rejections,
}

impl Default for Stage {
    fn default() -> Self {
        Stage {
            current: BTreeMap::new(),
            clock: quanta::Clock::new(),
            served: 0,
            not_served: 0,
            builds: 0,
            rejected: 0,
            rejections: Rejections::default(),
        }
    }
}

impl Stage {
    /// Makes `model` (publication `version`: its descriptor's offset on
    /// the models topic) the current model of its data type from `now_ms`
    /// on, with fresh statistics; false, and nothing changes, when the
    /// current model was published after it (builds run side by side, and
    /// a quick one may finish before a slow one published earlier).
    pub fn install(&mut self, model: ServedModel, version: i64, now_ms: i64) -> bool {
        if let Some(current) = self.current.get(&model.data_type)
            && current.stats.version > version
        {
            log::info!(
                "Model {} (offset {version}) is older than {} (offset {}): not installed",
                model.name,
                current.model.name,
                current.stats.version
            );
            return false;
        }
        log::info!(
            "New model - {} ({}) for data type `{}`",
            model.name,
            model.kind.as_str_name(),
            model.data_type
        );
        self.builds += 1;
        let stats = ModelToServeStats::new(&model, now_ms, version);
        self.current
            .insert(model.data_type.clone(), Current { model, stats });
        true
    }

    /// Scores the wine record `value` read at `partition`/`offset` (record
    /// time `ts`): the result to write, served or not. A value that is not
    /// a wine record is an error with the reason, for the dead-letter topic.
    pub fn serve(
        &mut self,
        partition: i32,
        offset: i64,
        ts: i64,
        value: Option<&[u8]>,
    ) -> Result<ServingResult, String> {
        let wine = decode_wine(value)?;
        Ok(self.serve_wine(partition, offset, ts, wine))
    }

    /// [`serve`](Self::serve) for a record already decoded.
    pub fn serve_wine(
        &mut self,
        partition: i32,
        offset: i64,
        ts: i64,
        wine: WineRecord,
    ) -> ServingResult {
        let mut result = ServingResult {
            partition,
            offset,
            ts,
            ..ServingResult::default()
        };
        let current = self.current.get_mut(&wine.data_type);
        let model = current.as_ref().map(|c| &c.model);
        match score_into(model, &wine, &self.clock, &mut result) {
            Some(millis) => {
                log::debug!(
                    "Calculated quality - {} calculated in {millis:.3} ms",
                    result.result
                );
                if let Some(current) = current {
                    current.stats.record(millis);
                }
            }
            None if model.is_none() => log::debug!("No model available - skipping"),
            None => log::debug!("Not served - {}", result.reason),
        }
        match result.served {
            true => self.served += 1,
            false => self.not_served += 1,
        }
        result.data_type = wine.data_type;
        result
    }

    /// Installs `model` with the statistics it had (read back after a
    /// restart).
    pub fn restore(&mut self, model: ServedModel, stats: ModelToServeStats) {
        self.current
            .insert(model.data_type.clone(), Current { model, stats });
    }

    /// The publication of `data_type`'s current model.
    pub fn version(&self, data_type: &str) -> Option<i64> {
        self.current.get(data_type).map(|c| c.stats.version)
    }

    /// Records answered so far, served or not.
    pub fn records(&self) -> u64 {
        self.served + self.not_served
    }

    /// Records served and not, models built and rejected.
    pub(crate) fn counters(&self) -> [u64; 4] {
        [self.served, self.not_served, self.builds, self.rejected]
    }

    /// A descriptor that did not become a model (why is logged).
    pub fn reject(&mut self, version: i64, reason: &str) {
        log::warn!("model at offset {version} rejected: {reason}");
        self.rejected += 1;
        self.rejections.push(version, reason.to_owned());
    }

    /// The last descriptors rejected, with why, oldest first.
    pub fn rejections(&self) -> Vec<Rejection> {
        self.rejections.all()
    }

    /// Every data type's statistics, by data type.
    pub fn stats(&self) -> Vec<ModelToServeStats> {
        self.current.values().map(|c| c.stats.clone()).collect()
    }

    /// The statistics of `data_type`'s current model.
    pub fn stats_of(&self, data_type: &str) -> Option<ModelToServeStats> {
        self.current.get(data_type).map(|c| c.stats.clone())
    }

    /// The models serving now, by data type.
    pub fn models(&self) -> Vec<&ServedModel> {
        self.current.values().map(|c| &c.model).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use proto::{MessageContent, ModelDescriptor, ModelType};

    use super::*;

    fn model(stem: &str, data_type: &str) -> ServedModel {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../data/models/pmml")
            .join(format!("{stem}.pmml"));
        let descriptor = ModelDescriptor {
            name: stem.into(),
            description: "a test model".into(),
            data_type: data_type.into(),
            modeltype: ModelType::Pmml as i32,
            message_content: Some(MessageContent::Data(std::fs::read(path).unwrap())),
        };
        build(&descriptor, &ModelLimits::default()).unwrap()
    }

    fn wine(data_type: &str) -> Vec<u8> {
        WineRecord::from_features(
            [
                7.4, 0.7, 0.0, 1.9, 0.076, 11.0, 34.0, 0.9978, 3.51, 0.56, 9.4,
            ],
            data_type,
            0,
        )
        .encode_to_vec()
    }

    #[test]
    fn no_model_then_a_model_then_a_swap() {
        let mut stage = Stage::default();
        let result = stage.serve(0, 1, 5, Some(&wine("wine"))).unwrap();
        assert!(!result.served);
        assert_eq!(result.reason, "no model for data type `wine`");
        assert_eq!((result.partition, result.offset, result.ts), (0, 1, 5));

        stage.install(model("winequalityLinearRegression", "wine"), 7, 1_000);
        for offset in 2..5 {
            let result = stage.serve(0, offset, 5, Some(&wine("wine"))).unwrap();
            assert!(result.served, "{result:?}");
            assert_eq!(result.model, "winequalityLinearRegression");
            assert_eq!(result.data_type, "wine");
        }
        let stats = stage.stats_of("wine").unwrap();
        assert_eq!((stats.usage, stats.since, stats.version), (3, 1_000, 7));

        // A swap starts new statistics; the new model serves at once.
        stage.install(model("winequalityDesisionTreeRegression", "wine"), 9, 2_000);
        let result = stage.serve(1, 0, 5, Some(&wine("wine"))).unwrap();
        assert_eq!(result.model, "winequalityDesisionTreeRegression");
        let stats = stage.stats_of("wine").unwrap();
        assert_eq!((stats.usage, stats.since, stats.version), (1, 2_000, 9));
    }

    #[test]
    fn a_build_that_finishes_after_a_newer_one_is_not_installed() {
        let mut stage = Stage::default();
        assert!(stage.install(model("winequalityDesisionTreeRegression", "wine"), 9, 20));
        assert!(!stage.install(model("winequalityLinearRegression", "wine"), 7, 30));
        let result = stage.serve(0, 0, 0, Some(&wine("wine"))).unwrap();
        assert_eq!(result.model, "winequalityDesisionTreeRegression");
    }

    #[test]
    fn a_replay_offers_each_data_types_last_descriptor_once_at_its_end() {
        let published = |version, data_type: &str| Published {
            version,
            descriptor: ModelDescriptor {
                name: format!("m{version}"),
                data_type: data_type.into(),
                ..ModelDescriptor::default()
            },
            bytes: Vec::new(),
        };
        let names = |due: Vec<Published>| -> Vec<String> {
            due.into_iter().map(|p| p.descriptor.name).collect()
        };
        let mut replay = Replay::new(5);
        for (version, data_type) in [(0, "wine"), (1, "beer"), (2, "wine"), (3, "wine")] {
            assert!(replay.offer(published(version, data_type)).is_empty());
        }
        // The last record before the end: beer's last, then wine's.
        assert_eq!(names(replay.offer(published(4, "beer"))), ["m3", "m4"]);
        // After it, each descriptor is built as it comes.
        assert_eq!(names(replay.offer(published(5, "wine"))), ["m5"]);
        // Nothing to replay: at once.
        assert_eq!(names(Replay::new(0).offer(published(0, "wine"))), ["m0"]);
        // An unreadable last message ends the replay as well.
        let mut replay = Replay::new(3);
        assert!(replay.offer(published(0, "wine")).is_empty());
        assert!(replay.offer(published(1, "wine")).is_empty());
        assert_eq!(names(replay.passed(2)), ["m1"]);
        assert_eq!(names(replay.offer(published(3, "wine"))), ["m3"]);
    }

    #[test]
    fn two_data_types_are_served_each_by_its_own_model() {
        let mut stage = Stage::default();
        stage.install(model("winequalityLinearRegression", "red"), 1, 10);
        stage.install(model("winequalityDesisionTreeRegression", "white"), 2, 20);
        let red = stage.serve(0, 0, 0, Some(&wine("red"))).unwrap();
        let white = stage.serve(0, 1, 0, Some(&wine("white"))).unwrap();
        let other = stage.serve(0, 2, 0, Some(&wine("rose"))).unwrap();
        assert_eq!(red.model, "winequalityLinearRegression");
        assert_eq!(white.model, "winequalityDesisionTreeRegression");
        assert!(!other.served);
        let names: Vec<String> = stage.models().iter().map(|m| m.name.clone()).collect();
        assert_eq!(names.len(), 2);
        assert_eq!(stage.stats().len(), 2);
    }

    #[test]
    fn a_corrupt_model_is_rejected_and_the_previous_one_serves() {
        let mut stage = Stage::default();
        stage.install(model("winequalityLinearRegression", "wine"), 1, 10);
        let corrupt = ModelDescriptor {
            name: "corrupt".into(),
            data_type: "wine".into(),
            modeltype: ModelType::Pmml as i32,
            message_content: Some(MessageContent::Data(b"<PMML".to_vec())),
            ..ModelDescriptor::default()
        };
        let error = build(&corrupt, &ModelLimits::default()).unwrap_err();
        stage.reject(2, &error.to_string());
        let result = stage.serve(0, 0, 0, Some(&wine("wine"))).unwrap();
        assert_eq!(result.model, "winequalityLinearRegression");
        assert_eq!(stage.counters(), [1, 0, 1, 1]);
    }

    #[test]
    fn metrics_are_prometheus_text() {
        assert_eq!(
            prometheus([1, 2, 3, 4]),
            "# HELP model_server_records_total Records scored, by outcome.\n\
             # TYPE model_server_records_total counter\n\
             model_server_records_total{outcome=\"served\"} 1\n\
             model_server_records_total{outcome=\"not_served\"} 2\n\
             # HELP model_server_model_builds_total Models built and installed.\n\
             # TYPE model_server_model_builds_total counter\n\
             model_server_model_builds_total 3\n\
             # HELP model_server_models_rejected_total Model descriptors rejected.\n\
             # TYPE model_server_models_rejected_total counter\n\
             model_server_models_rejected_total 4\n"
        );
    }

    #[test]
    fn a_malformed_record_is_an_error_and_changes_nothing() {
        let mut stage = Stage::default();
        stage.install(model("winequalityLinearRegression", "wine"), 1, 10);
        // Field 1 as a length-delimited field whose length never ends.
        let error = stage.serve(0, 0, 0, Some(&[0x0a, 0xff])).unwrap_err();
        assert!(error.starts_with("not a wine record"), "{error}");
        assert_eq!(stage.stats_of("wine").unwrap().usage, 0);
        assert!(stage.serve(0, 1, 0, Some(&wine("wine"))).unwrap().served);
    }
}

/// Prometheus text of `[served, not served, built, rejected]`. (Help
/// texts lack their final period: `Registry::register` adds it.)
fn prometheus([served, not_served, builds, rejected]: [u64; 4]) -> String {
    let mut registry = Registry::default();
    let outcome = |value: &str| vec![("outcome", value.to_owned())];
    registry.register(
        "model_server_records",
        "Records scored, by outcome",
        MetricRows::new([
            (outcome("served"), ConstCounter::new(served)),
            (outcome("not_served"), ConstCounter::new(not_served)),
        ]),
    );
    registry.register(
        "model_server_model_builds",
        "Models built and installed",
        ConstCounter::new(builds),
    );
    registry.register(
        "model_server_models_rejected",
        "Model descriptors rejected",
        ConstCounter::new(rejected),
    );
    let mut text = String::new();
    // Writing to a `String` cannot fail.
    let _ = prometheus_text::encode(&mut text, &registry);
    text
}

/// A model descriptor read from `models`.
pub(crate) struct Published {
    /// Its offset: which publication it is.
    pub(crate) version: i64,
    pub(crate) descriptor: ModelDescriptor,
    /// As read, for the actors' files.
    pub(crate) bytes: Vec<u8>,
}

impl Published {
    /// The descriptor `message` carries; the error says why it is none.
    pub(crate) fn read(message: &BorrowedMessage<'_>) -> Result<Published, String> {
        let bytes = message.payload().unwrap_or_default().to_vec();
        let descriptor = ModelDescriptor::decode(bytes.as_slice())
            .map_err(|e| format!("not a model descriptor: {e}"))?;
        Ok(Published {
            version: message.offset(),
            descriptor,
            bytes,
        })
    }
}

/// At start every instance reads `models` from its beginning. While that
/// replay lasts only each data type's last descriptor is kept, and they
/// are built once it reaches the end the topic had at start: as in the
/// streams engine, a restart builds one model per data type, not every
/// one ever published.
pub(crate) struct Replay {
    /// The topic's end at start; 0 once the replay is over.
    end: i64,
    pending: BTreeMap<String, Published>,
}

impl Replay {
    /// A replay up to `end` (exclusive; 0: nothing to replay).
    pub(crate) fn new(end: i64) -> Replay {
        Replay {
            end,
            pending: BTreeMap::new(),
        }
    }

    /// A replay up to the end `models` has now (a broker that reports it
    /// too low ends the replay early: later descriptors are then built one
    /// by one, which is only slower).
    pub(crate) fn of(models: &StreamConsumer) -> Replay {
        let end = models
            .fetch_watermarks(MODELS_TOPIC, 0, Duration::from_secs(10))
            .map_or(0, |(_, high)| high);
        Replay::new(end)
    }

    /// Takes a descriptor; returns those to build now, oldest first.
    pub(crate) fn offer(&mut self, published: Published) -> Vec<Published> {
        if self.end <= 0 {
            return vec![published];
        }
        let version = published.version;
        self.pending
            .insert(published.descriptor.data_type.clone(), published);
        self.passed(version)
    }

    /// Notes that the message at `offset` was read, whether or not it held
    /// a descriptor (an unreadable last one must end the replay too);
    /// returns the descriptors to build now, oldest first.
    pub(crate) fn passed(&mut self, offset: i64) -> Vec<Published> {
        if self.end <= 0 || offset + 1 < self.end {
            return Vec::new();
        }
        self.end = 0;
        let mut due: Vec<Published> = std::mem::take(&mut self.pending).into_values().collect();
        due.sort_by_key(|p| p.version);
        due
    }
}

/// Parses a wine record; the error says why it is not one.
pub(crate) fn decode_wine(value: Option<&[u8]>) -> Result<WineRecord, String> {
    WineRecord::decode(value.unwrap_or_default()).map_err(|e| format!("not a wine record: {e}"))
}

/// How to run the `stage` engine.
#[derive(Debug, Clone)]
pub struct StageOptions {
    /// Kafka settings, as the streams engine takes them (`bootstrap.servers`,
    /// the application id, which is the records' consumer group, and
    /// pass-through properties with `consumer.` and `producer.` prefixes).
    pub config: StreamsConfig,
    /// The checks and limits every model build goes through.
    pub limits: ModelLimits,
    /// Where records that are not wine records go.
    pub errors_topic: String,
}

/// What the engine shares with its HTTP routes.
pub type SharedStage = Arc<Mutex<Stage>>;

/// Runs the `stage` engine until `stop` is notified: every instance reads
/// every model (`models`, from its start, outside the group), the records
/// of `mdata` are split across instances by the consumer group, and every
/// record gets a result on `mscores`, committed only once the broker has
/// acknowledged it (at-least-once).
pub fn run(options: StageOptions, stage: SharedStage, stop: Arc<Notify>) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(pipeline(options, stage, stop))
}

pub(crate) fn client(config: &StreamsConfig, kind: ClientKind) -> ClientConfig {
    let mut client = ClientConfig::new();
    for (key, value) in config.client_properties(kind) {
        client.set(key, value);
    }
    client
}

/// The two consumers of the engines without a framework.
pub(crate) struct Consumers {
    /// `mdata`, in the group named by the application id: instances
    /// split the records.
    pub(crate) records: Arc<RecordsConsumer>,
    /// `models`, assigned from the start, outside the group and never
    /// committed: every instance reads every model.
    pub(crate) models: StreamConsumer,
}

impl Consumers {
    pub(crate) fn new(config: &StreamsConfig) -> Result<Consumers, String> {
        let group = config.application_id().map_err(|e| e.to_string())?;
        let records: Arc<RecordsConsumer> = Arc::new(
            client(config, ClientKind::Consumer)
                .set("group.id", group)
                .set("enable.auto.commit", "false")
                .set("auto.offset.reset", "earliest")
                .create_with_context(Revocations::default())
                .map_err(|e| format!("cannot create the records consumer: {e}"))?,
        );
        records
            .subscribe(&[DATA_TOPIC])
            .map_err(|e| format!("cannot subscribe to {DATA_TOPIC}: {e}"))?;
        let models: StreamConsumer = client(config, ClientKind::Consumer)
            .set("group.id", format!("{group}-models"))
            .set("enable.auto.commit", "false")
            .create()
            .map_err(|e| format!("cannot create the models consumer: {e}"))?;
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(MODELS_TOPIC, 0, Offset::Beginning)
            .map_err(|e| e.to_string())?;
        models
            .assign(&assignment)
            .map_err(|e| format!("cannot read {MODELS_TOPIC}: {e}"))?;
        Ok(Consumers { records, models })
    }
}

async fn pipeline(
    options: StageOptions,
    stage: SharedStage,
    stop: Arc<Notify>,
) -> Result<(), String> {
    let Consumers { records, models } = Consumers::new(&options.config)?;
    let producer = Results::new(&options.config, &[SCORES_TOPIC, &options.errors_topic])?;
    let mut acks = producer.acknowledger();
    let mut epochs = tokio::time::interval(EPOCH);

    let mut replay = Replay::of(&models);
    let (built_tx, mut built) = mpsc::channel::<(Result<ServedModel, String>, i64)>(16);
    let outcome = loop {
        tokio::select! {
            _ = stop.notified() => break Ok(()),
            _ = epochs.tick() => {
                if let Err(e) = acks.tick(&records) {
                    break Err(e);
                }
            }
            message = models.recv() => {
                let message = match message {
                    Ok(message) => message,
                    Err(e) => {
                        log::warn!("models: {e}");
                        continue;
                    }
                };
                let due = match Published::read(&message) {
                    Ok(published) => replay.offer(published),
                    Err(reason) => {
                        lock(&stage).reject(message.offset(), &reason);
                        replay.passed(message.offset())
                    }
                };
                for Published { version, descriptor, .. } in due {
                    let (limits, built_tx) = (options.limits.clone(), built_tx.clone());
                    // Off the scoring path: records go on being scored
                    // with the current model while this one builds.
                    tokio::task::spawn_blocking(move || {
                        let result = build(&descriptor, &limits).map_err(|e| e.to_string());
                        let _ = built_tx.blocking_send((result, version));
                    });
                }
            }
            Some((result, version)) = built.recv() => match result {
                Ok(model) => {
                    lock(&stage).install(model, version, now_ms());
                }
                Err(reason) => lock(&stage).reject(version, &reason),
            },
            message = records.recv() => {
                let scored = in_a_row(&records, message, async |message| {
                    score(&message, &stage, &producer, &options, &mut acks).await
                })
                .await;
                if let Err(e) = scored {
                    break Err(e);
                }
            }
        }
    };
    let finished = acks.finish(&producer, &records);
    // A refused result first: it is the cause of a failed send.
    finished.and(outcome)
}

/// Records scored in a row before the pipeline looks at models and the
/// stop signal again.
const RECORDS_PER_WAKE: usize = 64;

/// Takes `first`, then the records already fetched, up to
/// RECORDS_PER_WAKE, through `each`, before the caller's select polls its
/// other branches again: every select polls each branch, two consumers'
/// queues among them, which costs more than scoring a record. A model that
/// arrives meanwhile waits at most RECORDS_PER_WAKE records. A record the
/// consumer could not read is logged and skipped; the first error of
/// `each` ends it.
pub(crate) async fn in_a_row(
    records: &RecordsConsumer,
    first: KafkaResult<BorrowedMessage<'_>>,
    mut each: impl AsyncFnMut(BorrowedMessage<'_>) -> Result<(), String>,
) -> Result<(), String> {
    let mut next = Some(first);
    let mut taken = 0;
    while let Some(message) = next.take() {
        match message {
            Ok(message) => each(message).await?,
            Err(e) => log::warn!("records: {e}"),
        }
        taken += 1;
        if taken < RECORDS_PER_WAKE {
            next = tokio::select! {
                biased;
                message = records.recv() => Some(message),
                () = std::future::ready(()) => None,
            };
        }
    }
    Ok(())
}

/// Scores `message` with the current model and sends its result (or the
/// record, to the errors topic, when it cannot be served), counted in the
/// open epoch of `acks`.
async fn score(
    message: &BorrowedMessage<'_>,
    stage: &SharedStage,
    producer: &Results,
    options: &StageOptions,
    acks: &mut Acknowledger,
) -> Result<(), String> {
    let (partition, offset) = (message.partition(), message.offset());
    let ts = message.timestamp().to_millis().unwrap_or(0);
    let served = lock(stage).serve(partition, offset, ts, message.payload());
    let slot = acks.track(partition, offset);
    match served {
        Ok(result) => {
            producer
                .send(SCORES_TOPIC, &result.encode_to_vec(), slot)
                .await
        }
        Err(reason) => {
            log::warn!("{DATA_TOPIC}[{partition}]@{offset}: {reason}");
            let bytes = message.payload().unwrap_or_default();
            producer.send(&options.errors_topic, bytes, slot).await
        }
    }
}

/// The stages an HTTP request looks at: the one of the `stage` engine, or
/// every actor's of the `actors` engine.
pub type Stages = Arc<dyn Fn() -> Vec<SharedStage> + Send + Sync>;

/// The engines' HTTP routes, as the original's Akka server had them, with
/// the streams engine's field names: `/state` (every data type's
/// statistics), `/state/{dataType}` (404 when it has no model), `/models`,
/// plus `/metrics` and `/health`.
pub fn routes(stages: Stages) -> impl Fn(&Request) -> Option<Response> + Send + Sync + 'static {
    move |request| {
        let segments = request.segments();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let stages = stages();
        let stages: Vec<_> = stages.iter().map(lock).collect();
        Some(match segments.as_slice() {
            ["health"] => Response::json(200, &json!({ "state": "Running" })),
            ["metrics"] => {
                let mut sum = [0; 4];
                for stage in &stages {
                    for (total, n) in sum.iter_mut().zip(stage.counters()) {
                        *total += n;
                    }
                }
                Response::text(200, prometheus_text::CONTENT_TYPE, prometheus(sum))
            }
            ["state"] => {
                let mut stats: Vec<ModelToServeStats> =
                    stages.iter().flat_map(|s| s.stats()).collect();
                stats.sort_by(|a, b| a.data_type.cmp(&b.data_type));
                Response::json(200, &json!({ "stats": stats }))
            }
            ["state", data_type] => match stages.iter().find_map(|s| s.stats_of(data_type)) {
                Some(stats) => Response::json(200, &stats),
                None => Response::error(404, format!("no statistics for data type `{data_type}`")),
            },
            ["models"] => {
                let models: Vec<Value> = stages
                    .iter()
                    .flat_map(|s| s.current.values())
                    .map(|c| model_json(&c.model, c.stats.since))
                    .collect();
                Response::json(200, &models)
            }
            _ => return None,
        })
    }
}

pub(crate) fn lock(stage: &SharedStage) -> std::sync::MutexGuard<'_, Stage> {
    stage
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
