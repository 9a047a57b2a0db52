//! The `actors` engine, the tutorial's Akka actor router: a router task
//! hands each record and each model descriptor to the actor of its data
//! type, created on first use (records in one mail per actor for what one
//! wake-up read). An actor is a task with a bounded mailbox
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
use streams_core::StreamsConfig;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use crate::model::{ModelLimits, ServedModel, build};
use crate::results::{EPOCH, Results};
use crate::serving::{DATA_TOPIC, SCORES_TOPIC};
use crate::stage::{
    Consumers, Published, Replay, SharedStage, decode_wine, in_a_row, lock, now_ms,
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

/// Every actor's state, by data type, and the router's, for the HTTP
/// routes.
pub type ActorStages = Arc<Actors>;

/// What the HTTP routes see of the `actors` engine.
#[derive(Default)]
pub struct Actors {
    by_data_type: Mutex<BTreeMap<String, SharedStage>>,
    /// The router's own stage, which serves nothing: it keeps the
    /// descriptors that could not be read, so no actor's data type.
    router: SharedStage,
}

/// Mails an actor's mailbox holds (a batch of records or a model each).
const MAILBOX: usize = 16;

/// How often an actor writes its statistics down.
const PERSIST_EVERY: Duration = Duration::from_secs(5);

/// A record to score, whose result is sent in acknowledgement `slot`.
struct Record {
    partition: i32,
    offset: i64,
    ts: i64,
    wine: WineRecord,
    slot: usize,
}

enum Mail {
    /// Records to score, in the order they were read: the router hands
    /// over what one wake-up read, not a mail per record.
    Records(Vec<Record>),
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

/// Where an actor's results go.
trait Output {
    /// Sends the result of a record tracked in acknowledgement `slot`.
    async fn send(&self, bytes: &[u8], slot: usize) -> Result<(), String>;
}

/// The engine's way out: the producer all actors share.
impl Output for Arc<Results> {
    async fn send(&self, bytes: &[u8], slot: usize) -> Result<(), String> {
        Results::send(self, SCORES_TOPIC, bytes, slot).await
    }
}

/// One data type's actor: scores its records, installs its models, and
/// keeps both on disk.
struct Actor<O> {
    data_type: String,
    stage: SharedStage,
    files: Files,
    limits: ModelLimits,
    /// Where results go.
    results: O,
    /// The newest descriptor seen, built or building: an older one (a
    /// replay of `models` after a restart) is not built again.
    newest: i64,
}

impl<O: Output> Actor<O> {
    async fn run(mut self, mut mailbox: mpsc::Receiver<Mail>) {
        let (built_tx, mut built) = mpsc::channel::<(i64, Vec<u8>, Result<ServedModel, String>)>(4);
        let mut tick = tokio::time::interval(PERSIST_EVERY);
        let mut dirty = false;
        loop {
            tokio::select! {
                mail = mailbox.recv() => match mail {
                    None => break,
                    Some(Mail::Records(records)) => {
                        if self.score(records, &mut dirty).await.is_err() {
                            // A refusal stops the router at its next epoch.
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

    async fn score(&self, records: Vec<Record>, dirty: &mut bool) -> Result<(), String> {
        let mut bytes = Vec::new();
        for Record {
            partition,
            offset,
            ts,
            wine,
            slot,
        } in records
        {
            let result = lock(&self.stage).serve_wine(partition, offset, ts, wine);
            *dirty |= result.served;
            bytes.clear();
            result.encode(&mut bytes).map_err(|e| e.to_string())?;
            self.results.send(&bytes, slot).await?;
        }
        Ok(())
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
    results: Arc<Results>,
    stages: ActorStages,
    mailboxes: BTreeMap<String, Mailbox>,
    tasks: Vec<JoinHandle<()>>,
    /// Where an actor that panics says so: the records counted for it
    /// would never be acknowledged, and nothing committed again.
    panicked: mpsc::UnboundedSender<String>,
}

/// Reports, when dropped by a panic, that `data_type`'s actor panicked.
struct PanicWatch {
    data_type: String,
    panicked: mpsc::UnboundedSender<String>,
}

impl Drop for PanicWatch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = self
                .panicked
                .send(format!("the actor of `{}` panicked", self.data_type));
        }
    }
}

/// An actor's mailbox, and the records read for it that are not yet mailed.
struct Mailbox {
    sender: mpsc::Sender<Mail>,
    batch: Vec<Record>,
}

impl Router {
    /// The mailbox of `data_type`'s actor, started (from what it persisted)
    /// if it was not running.
    async fn actor(&mut self, data_type: &str) -> &mut Mailbox {
        if !self.mailboxes.contains_key(data_type) {
            self.start(data_type).await;
        }
        self.mailboxes
            .get_mut(data_type)
            .expect("an actor was just started for it")
    }

    async fn start(&mut self, data_type: &str) {
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
        let watch = PanicWatch {
            data_type: data_type.to_owned(),
            panicked: self.panicked.clone(),
        };
        self.tasks.push(tokio::spawn(async move {
            let _watch = watch;
            actor.run(inbox).await;
        }));
        let mailbox = Mailbox {
            sender: mailbox,
            batch: Vec::new(),
        };
        self.mailboxes.insert(data_type.to_owned(), mailbox);
        lock_stages(&self.stages).insert(data_type.to_owned(), stage);
    }

    /// Mails every actor the records read for it.
    async fn mail_batches(&mut self) -> Result<(), String> {
        for mailbox in self.mailboxes.values_mut() {
            if !mailbox.batch.is_empty() {
                let records = std::mem::take(&mut mailbox.batch);
                let mail = Mail::Records(records);
                mailbox
                    .sender
                    .send(mail)
                    .await
                    .map_err(|_| "an actor stopped".to_owned())?;
            }
        }
        Ok(())
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
            self.start(&data_type).await;
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
        .by_data_type
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Every actor's stage, and the router's, for the HTTP routes.
pub fn stages(actors: &ActorStages) -> Vec<SharedStage> {
    let mut stages = vec![actors.router.clone()];
    stages.extend(lock_stages(actors).values().cloned());
    stages
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
    let producer = Arc::new(Results::new(
        &options.config,
        &[SCORES_TOPIC, &options.errors_topic],
    )?);
    let mut acks = producer.acknowledger();
    let mut epochs = tokio::time::interval(EPOCH);
    let (panicked, mut panics) = mpsc::unbounded_channel();
    let mut router = Router {
        options: options.clone(),
        dir,
        results: producer.clone(),
        stages,
        mailboxes: BTreeMap::new(),
        tasks: Vec::new(),
        panicked,
    };
    // Before anything is read: the first record finds its model.
    router.restore_all().await;

    let Consumers { records, models } = Consumers::new(&options.config)?;
    let mut replay = Replay::of(&models);

    let outcome = loop {
        tokio::select! {
            _ = stop.notified() => break Ok(()),
            Some(reason) = panics.recv() => break Err(reason),
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
                        lock(&router.stages.router).reject(message.offset(), &reason);
                        replay.passed(message.offset())
                    }
                };
                let mut stopped = false;
                for Published { version, descriptor, bytes } in due {
                    let mailbox = &router.actor(&descriptor.data_type).await.sender;
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
                    // Counted as it is read: its offset is committed only
                    // once its result, and every earlier one, is delivered.
                    let slot = acks.track(partition, offset);
                    match decode_wine(message.payload()) {
                        Ok(wine) => {
                            let record = Record { partition, offset, ts, wine, slot };
                            router.actor(&record.wine.data_type).await.batch.push(record);
                            Ok(())
                        }
                        Err(reason) => {
                            log::warn!("{DATA_TOPIC}[{partition}]@{offset}: {reason}");
                            let bytes = message.payload().unwrap_or_default();
                            Results::send(&producer, &options.errors_topic, bytes, slot).await
                        }
                    }
                })
                .await;
                if let Err(e) = routed.and(router.mail_batches().await) {
                    break Err(e);
                }
            }
        }
    };
    // The actors score what their mailboxes hold, and write their
    // statistics down as they stop; then their results are awaited.
    router.mailboxes.clear();
    for task in router.tasks.drain(..) {
        let _ = task.await;
    }
    drop(router);
    let finished = acks.finish(&producer, &records);
    // A refused result first: an actor stopping is only its consequence.
    finished.and(outcome)
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

    /// An actor's results on an in-process channel.
    impl Output for mpsc::Sender<Vec<u8>> {
        async fn send(&self, bytes: &[u8], _slot: usize) -> Result<(), String> {
            mpsc::Sender::send(self, bytes.to_vec())
                .await
                .map_err(|e| e.to_string())
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
            let (results, mut outputs) = mpsc::channel::<Vec<u8>>(16);
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
                let mail = Mail::Records(vec![Record {
                    partition: 0,
                    offset: next,
                    ts: 0,
                    wine: wine(),
                    slot: 0,
                }]);
                next += 1;
                mailbox.send(mail).await.unwrap();
                let bytes = outputs.recv().await.unwrap();
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
    fn an_actor_that_panics_is_reported_and_one_that_ends_is_not() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (panicked, mut panics) = mpsc::unbounded_channel();
            let watched = |data_type: &str| PanicWatch {
                data_type: data_type.into(),
                panicked: panicked.clone(),
            };
            let (ended, crashed) = (watched("beer"), watched("wine"));
            tokio::spawn(async move {
                let _watch = ended;
            })
            .await
            .unwrap();
            let crash = tokio::spawn(async move {
                let _watch = crashed;
                panic!("a bug in an actor");
            });
            assert!(crash.await.unwrap_err().is_panic());
            drop(panicked);
            assert_eq!(panics.recv().await.unwrap(), "the actor of `wine` panicked");
            assert_eq!(panics.recv().await, None);
        });
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
