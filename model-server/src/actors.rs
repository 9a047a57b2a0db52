//! The `actors` engine, the tutorial's Akka actor router: a router task
//! hands each record and each model descriptor to the actor of its data
//! type, created on first use. An actor is a task with a bounded mailbox
//! that owns its data type's current model and statistics (a
//! [`Stage`](crate::stage::Stage)
//! holding that one data type), and keeps them in files under the state
//! directory, so that a restarted server serves its first record with the
//! model it had, before any descriptor is read again.
//!
//! Files, per data type (named by the data type's bytes in hex):
//! `<hex>.descriptor`, the current model's descriptor as read from
//! `models`, written at each model change; `<hex>.stats`, its statistics
//! as JSON, written at each model change and every few seconds. Both are
//! written atomically (temp file, fsync, rename, fsync of the folder). A
//! file that cannot be read back is logged and ignored.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto::{Message, ModelDescriptor, WineRecord};
use rdkafka::Message as _;
use rdkafka::producer::{DeliveryFuture, FutureProducer};
use streams_core::StreamsConfig;
use streams_core::config::ClientKind;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::model::{ModelLimits, ServedModel, build};
use crate::serving::{DATA_TOPIC, SCORES_TOPIC};
use crate::stage::{
    Consumers, Delivery, IN_FLIGHT, Pending, Published, Replay, Results, SharedStage, acknowledge,
    client, decode_wine, delivered, in_a_row, lock, now_ms,
};
use crate::stats::ModelToServeStats;

/// How to run the `actors` engine.
#[derive(Debug, Clone)]
pub struct ActorsOptions {
    /// Kafka settings, as for the `stage` engine.
    pub config: StreamsConfig,
    /// The checks and limits every model build goes through.
    pub limits: ModelLimits,
    /// Where records that are not wine records go.
    pub errors_topic: String,
    /// Where actors keep their models and statistics.
    pub state_dir: PathBuf,
}

/// Every actor's state, by data type, for the HTTP routes.
pub type ActorStages = Arc<Mutex<BTreeMap<String, SharedStage>>>;

/// Mail an actor takes, in a mailbox of this many.
const MAILBOX: usize = 256;

/// How often an actor writes its statistics down.
const PERSIST_EVERY: Duration = Duration::from_secs(5);

enum Mail {
    /// A record to score; the result's delivery goes back on `reply`.
    Record {
        partition: i32,
        offset: i64,
        ts: i64,
        wine: WineRecord,
        reply: oneshot::Sender<Result<DeliveryFuture, String>>,
    },
    /// A descriptor read at `version` (its offset on `models`).
    Model {
        version: i64,
        descriptor: ModelDescriptor,
        bytes: Vec<u8>,
    },
}

/// An actor's files.
struct Files {
    descriptor: PathBuf,
    stats: PathBuf,
}

impl Files {
    fn of(dir: &Path, data_type: &str) -> Files {
        let name: String = data_type.bytes().map(|b| format!("{b:02x}")).collect();
        Files {
            descriptor: dir.join(format!("{name}.descriptor")),
            stats: dir.join(format!("{name}.stats")),
        }
    }
}

/// Writes `bytes` to `path` atomically: a crash leaves the old file or the
/// new one, never a part.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let temp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// What an actor persisted for its data type, built again; `None` (logged)
/// when there is nothing, or nothing usable.
fn restore(files: &Files, limits: &ModelLimits) -> Option<(ServedModel, ModelToServeStats)> {
    let bytes = std::fs::read(&files.descriptor).ok()?;
    let restored = (|| {
        let descriptor = ModelDescriptor::decode(bytes.as_slice())
            .map_err(|e| format!("not a model descriptor: {e}"))?;
        let stats: ModelToServeStats = serde_json::from_slice(
            &std::fs::read(&files.stats).map_err(|e| format!("no statistics: {e}"))?,
        )
        .map_err(|e| format!("unreadable statistics: {e}"))?;
        let model = build(&descriptor, limits).map_err(|e| e.to_string())?;
        if model.name != stats.name {
            return Err(format!(
                "the statistics are of `{}`, the model is `{}`",
                stats.name, model.name
            ));
        }
        Ok((model, stats))
    })();
    match restored {
        Ok(restored) => Some(restored),
        Err(reason) => {
            log::warn!(
                "ignoring the persisted model {}: {reason}",
                files.descriptor.display()
            );
            None
        }
    }
}

/// One data type's actor: scores its records, installs its models, and
/// keeps both on disk.
struct Actor {
    data_type: String,
    stage: SharedStage,
    files: Files,
    limits: ModelLimits,
    /// Where results go: the producer task, which answers on `reply`.
    results: mpsc::Sender<Output>,
    /// The newest descriptor seen, built or building: an older one (a
    /// replay of `models` after a restart) is not built again.
    newest: i64,
}

/// A result for `mscores`, and where its delivery goes.
type Output = (Vec<u8>, oneshot::Sender<Result<DeliveryFuture, String>>);

/// Sends every result it is given, answering each with its delivery: the
/// actors' one way out, so that they depend on channels only.
async fn produce(producer: Arc<Results>, mut results: mpsc::Receiver<Output>) {
    while let Some((bytes, reply)) = results.recv().await {
        let _ = reply.send(producer.send(SCORES_TOPIC, &bytes).await);
    }
}

impl Actor {
    async fn run(mut self, mut mailbox: mpsc::Receiver<Mail>) {
        let (built_tx, mut built) = mpsc::channel::<(i64, Vec<u8>, Result<ServedModel, String>)>(4);
        let mut tick = tokio::time::interval(PERSIST_EVERY);
        let mut dirty = false;
        loop {
            tokio::select! {
                mail = mailbox.recv() => match mail {
                    None => break,
                    Some(Mail::Record { partition, offset, ts, wine, reply }) => {
                        let result = lock(&self.stage).serve_wine(partition, offset, ts, wine);
                        dirty |= result.served;
                        if self.results.send((result.encode_to_vec(), reply)).await.is_err() {
                            break;
                        }
                    }
                    Some(Mail::Model { version, descriptor, bytes }) => {
                        if version <= self.newest {
                            continue;
                        }
                        self.newest = version;
                        let (limits, built_tx) = (self.limits.clone(), built_tx.clone());
                        // Off the scoring path: this actor goes on serving
                        // with its current model meanwhile.
                        tokio::task::spawn_blocking(move || {
                            let result = build(&descriptor, &limits).map_err(|e| e.to_string());
                            let _ = built_tx.blocking_send((version, bytes, result));
                        });
                    }
                },
                Some((version, bytes, result)) = built.recv() => match result {
                    Ok(model) => {
                        if !lock(&self.stage).install(model, version, now_ms()) {
                            continue;
                        }
                        if let Err(e) = write_atomically(&self.files.descriptor, &bytes) {
                            log::warn!("{}: cannot keep the model: {e}", self.data_type);
                        }
                        self.persist_stats();
                        dirty = false;
                    }
                    Err(reason) => lock(&self.stage).reject(version, &reason),
                },
                _ = tick.tick() => {
                    if dirty {
                        self.persist_stats();
                        dirty = false;
                    }
                }
            }
        }
        self.persist_stats();
    }

    fn persist_stats(&self) {
        let Some(stats) = lock(&self.stage).stats_of(&self.data_type) else {
            return;
        };
        let json = serde_json::to_vec(&stats).unwrap_or_default();
        if let Err(e) = write_atomically(&self.files.stats, &json) {
            log::warn!("{}: cannot keep the statistics: {e}", self.data_type);
        }
    }
}

/// The router's view of the actors: their mailboxes, and their tasks to
/// wait for at the end.
struct Router {
    options: ActorsOptions,
    dir: PathBuf,
    results: mpsc::Sender<Output>,
    stages: ActorStages,
    mailboxes: BTreeMap<String, mpsc::Sender<Mail>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Router {
    /// The mailbox of `data_type`'s actor, started (from what it persisted)
    /// if it was not running.
    async fn actor(&mut self, data_type: &str) -> mpsc::Sender<Mail> {
        if let Some(mailbox) = self.mailboxes.get(data_type) {
            return mailbox.clone();
        }
        let files = Files::of(&self.dir, data_type);
        let limits = self.options.limits.clone();
        let stage: SharedStage = Arc::default();
        let mut newest = -1;
        let restored = {
            let (files, limits) = (Files::of(&self.dir, data_type), limits.clone());
            tokio::task::spawn_blocking(move || restore(&files, &limits))
                .await
                .ok()
                .flatten()
        };
        if let Some((model, stats)) = restored {
            log::info!(
                "Restored model - {} for data type `{data_type}`",
                model.name
            );
            newest = stats.version;
            lock(&stage).restore(model, stats);
        }
        let (mailbox, inbox) = mpsc::channel(MAILBOX);
        let actor = Actor {
            data_type: data_type.to_owned(),
            stage: stage.clone(),
            files,
            limits,
            results: self.results.clone(),
            newest,
        };
        self.tasks.push(tokio::spawn(actor.run(inbox)));
        self.mailboxes.insert(data_type.to_owned(), mailbox.clone());
        lock_stages(&self.stages).insert(data_type.to_owned(), stage);
        mailbox
    }

    /// Starts the actor of every data type that has persisted state.
    async fn restore_all(&mut self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut data_types = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(hex) = name.strip_suffix(".descriptor") else {
                continue;
            };
            match unhex(hex).and_then(|bytes| String::from_utf8(bytes).ok()) {
                Some(data_type) => data_types.push(data_type),
                None => log::warn!("ignoring {name}: not an actor's file"),
            }
        }
        for data_type in data_types {
            self.actor(&data_type).await;
        }
    }
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn lock_stages(stages: &ActorStages) -> std::sync::MutexGuard<'_, BTreeMap<String, SharedStage>> {
    stages
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Every actor's stage, for the HTTP routes.
pub fn stages(actors: &ActorStages) -> Vec<SharedStage> {
    lock_stages(actors).values().cloned().collect()
}

/// Runs the `actors` engine until `stop` is notified: as the `stage`
/// engine, but with one actor per data type, which keep their state on
/// disk under `options.state_dir`.
pub fn run(options: ActorsOptions, stages: ActorStages, stop: Arc<Notify>) -> Result<(), String> {
    // Actors are tasks on one thread, as the stage is; model builds and
    // restores run on the runtime's blocking threads.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(route(options, stages, stop))
}

async fn route(
    options: ActorsOptions,
    stages: ActorStages,
    stop: Arc<Notify>,
) -> Result<(), String> {
    let dir = options.state_dir.join("actors");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let producer: FutureProducer = client(&options.config, ClientKind::Producer)
        .create()
        .map_err(|e| format!("cannot create the producer: {e}"))?;
    let producer = Arc::new(Results::new(
        producer,
        &options.config,
        &[SCORES_TOPIC, &options.errors_topic],
    ));
    let (results, outputs) = mpsc::channel(IN_FLIGHT);
    let producing = tokio::spawn(produce(producer.clone(), outputs));
    let mut router = Router {
        options: options.clone(),
        dir,
        results,
        stages,
        mailboxes: BTreeMap::new(),
        tasks: Vec::new(),
    };
    // Before anything is read: the first record finds its model.
    router.restore_all().await;

    let Consumers { records, models } = Consumers::new(&options.config)?;
    let mut replay = Replay::of(&models);

    let (acks_tx, acks) = mpsc::channel::<Pending>(IN_FLIGHT);
    let acker = tokio::spawn(acknowledge(acks, records.clone()));
    let outcome = loop {
        tokio::select! {
            _ = stop.notified() => break Ok(()),
            message = models.recv() => {
                let message = match message {
                    Ok(message) => message,
                    Err(e) => {
                        log::warn!("models: {e}");
                        continue;
                    }
                };
                let published = match Published::read(&message) {
                    Ok(published) => published,
                    Err(reason) => {
                        log::warn!("model at offset {} rejected: {reason}", message.offset());
                        continue;
                    }
                };
                let mut stopped = false;
                for Published { version, descriptor, bytes } in replay.offer(published) {
                    let mailbox = router.actor(&descriptor.data_type).await;
                    stopped |= mailbox.send(Mail::Model { version, descriptor, bytes }).await.is_err();
                }
                if stopped {
                    break Err("an actor stopped".into());
                }
            }
            message = records.recv() => {
                let routed = in_a_row(&records, message, async |message| {
                    let (partition, offset) = (message.partition(), message.offset());
                    let ts = message.timestamp().to_millis().unwrap_or(0);
                    let delivery: Delivery = match decode_wine(message.payload()) {
                        Ok(wine) => {
                            let (reply, answer) = oneshot::channel();
                            let mailbox = router.actor(&wine.data_type).await;
                            let mail = Mail::Record { partition, offset, ts, wine, reply };
                            if mailbox.send(mail).await.is_err() {
                                return Err("an actor stopped".into());
                            }
                            Box::pin(async move {
                                let delivery =
                                    answer.await.map_err(|_| "an actor stopped".to_owned())??;
                                delivered(delivery).await
                            })
                        }
                        Err(reason) => {
                            log::warn!("{DATA_TOPIC}[{partition}]@{offset}: {reason}");
                            let bytes = message.payload().unwrap_or_default();
                            Box::pin(delivered(producer.send(&options.errors_topic, bytes).await?))
                        }
                    };
                    // In the order the records were read: an offset is
                    // committed only once every result before it is
                    // delivered.
                    acks_tx
                        .send(Pending { partition, offset, delivery })
                        .await
                        .map_err(|_| "a result was not delivered; see the log".to_owned())
                })
                .await;
                if let Err(e) = routed {
                    break Err(e);
                }
            }
        }
    };
    drop(acks_tx);
    let acked = acker.await.map_err(|e| e.to_string())?;
    // The actors write their statistics down as they stop.
    router.mailboxes.clear();
    for task in router.tasks.drain(..) {
        let _ = task.await;
    }
    drop(router);
    let _ = producing.await;
    outcome.and(acked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_named_by_the_data_types_bytes() {
        let files = Files::of(Path::new("/s"), "wine/red");
        assert_eq!(
            files.descriptor,
            Path::new("/s/77696e652f726564.descriptor")
        );
        assert_eq!(unhex("77696e652f726564").unwrap(), b"wine/red");
        assert_eq!(unhex("7"), None);
        assert_eq!(unhex("zz"), None);
    }

    fn descriptor(name: &str, stem: &str) -> ModelDescriptor {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../data/models/pmml")
            .join(format!("{stem}.pmml"));
        ModelDescriptor {
            name: name.into(),
            description: "d".into(),
            data_type: "wine".into(),
            modeltype: proto::ModelType::Pmml as i32,
            message_content: Some(proto::MessageContent::Data(std::fs::read(path).unwrap())),
        }
    }

    fn wine() -> WineRecord {
        WineRecord::from_features(
            [
                7.4, 0.7, 0.0, 1.9, 0.076, 11.0, 34.0, 0.9978, 3.51, 0.56, 9.4,
            ],
            "wine",
            0,
        )
    }

    /// An actor on in-process channels: no model, a first model, a swap, a
    /// corrupt model, a replayed older descriptor; its files after it stops.
    #[test]
    fn an_actor_on_channels_serves_swaps_rejects_and_persists() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        runtime.block_on(async {
            let stage: SharedStage = Arc::default();
            let (results, mut outputs) = mpsc::channel(16);
            let (mailbox, inbox) = mpsc::channel(16);
            let actor = Actor {
                data_type: "wine".into(),
                stage: stage.clone(),
                files: Files::of(dir.path(), "wine"),
                limits: ModelLimits::default(),
                results,
                newest: -1,
            };
            let task = tokio::spawn(actor.run(inbox));
            let mut next = 0;
            let mut score = async || {
                let (reply, _answer) = oneshot::channel();
                let mail = Mail::Record {
                    partition: 0,
                    offset: next,
                    ts: 0,
                    wine: wine(),
                    reply,
                };
                next += 1;
                mailbox.send(mail).await.unwrap();
                let (bytes, _reply) = outputs.recv().await.unwrap();
                proto::ServingResult::decode(bytes.as_slice()).unwrap()
            };
            let model = |version, descriptor: ModelDescriptor| Mail::Model {
                version,
                bytes: descriptor.encode_to_vec(),
                descriptor,
            };
            let installed = async |version| {
                while lock(&stage).version("wine") != Some(version) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            };

            assert!(!score().await.served, "no model yet");
            mailbox
                .send(model(
                    10,
                    descriptor("linear", "winequalityLinearRegression"),
                ))
                .await
                .unwrap();
            installed(10).await;
            assert_eq!(score().await.model, "linear");
            mailbox
                .send(model(
                    20,
                    descriptor("tree", "winequalityDesisionTreeRegression"),
                ))
                .await
                .unwrap();
            installed(20).await;
            assert_eq!(score().await.model, "tree");
            // A corrupt descriptor is rejected; an older one (a replay) is
            // not even built; the tree serves on.
            let mut corrupt = descriptor("corrupt", "winequalityLinearRegression");
            corrupt.message_content = Some(proto::MessageContent::Data(b"<PMML".to_vec()));
            mailbox.send(model(30, corrupt)).await.unwrap();
            mailbox
                .send(model(15, descriptor("old", "winequalityLinearRegression")))
                .await
                .unwrap();
            while lock(&stage).counters()[3] == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            assert_eq!(score().await.model, "tree");
            assert_eq!(lock(&stage).counters(), [3, 1, 2, 1]);
            drop(mailbox);
            task.await.unwrap();
        });
        // What it kept: the tree, with its statistics (two records).
        let (model, stats) =
            restore(&Files::of(dir.path(), "wine"), &ModelLimits::default()).unwrap();
        assert_eq!(
            (model.name.as_str(), stats.usage, stats.version),
            ("tree", 2, 20)
        );
    }

    #[test]
    fn a_persisted_model_is_restored_and_a_corrupt_one_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../data/models/pmml/winequalityLinearRegression.pmml");
        let descriptor = ModelDescriptor {
            name: "linear".into(),
            description: "d".into(),
            data_type: "wine".into(),
            modeltype: proto::ModelType::Pmml as i32,
            message_content: Some(proto::MessageContent::Data(std::fs::read(path).unwrap())),
        };
        let limits = ModelLimits::default();
        let model = build(&descriptor, &limits).unwrap();
        let mut stats = ModelToServeStats::new(&model, 1_000, 42);
        stats.record(0.5);
        let files = Files::of(dir.path(), "wine");
        write_atomically(&files.descriptor, &descriptor.encode_to_vec()).unwrap();
        write_atomically(&files.stats, &serde_json::to_vec(&stats).unwrap()).unwrap();
        let (restored, restored_stats) = restore(&files, &limits).unwrap();
        assert_eq!(restored.name, "linear");
        assert_eq!(restored_stats, stats);

        // Damaged statistics, or a damaged descriptor: ignored.
        std::fs::write(&files.stats, b"{not json").unwrap();
        assert!(restore(&files, &limits).is_none());
        write_atomically(&files.stats, &serde_json::to_vec(&stats).unwrap()).unwrap();
        std::fs::write(&files.descriptor, [0x0a, 0xff]).unwrap();
        assert!(restore(&files, &limits).is_none());
        // Nothing persisted: nothing restored.
        assert!(restore(&Files::of(dir.path(), "beer"), &limits).is_none());
    }
}
