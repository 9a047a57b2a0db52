//! `model-client`: feeds the model server (wine records and models), reads
//! its topics, and scores files offline with the server's own code.

use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use model_server::cli::{create_topics, init_logging};
use model_server::model::{ModelLimits, build, served_score};
use model_server::serving::{DATA_TOPIC, MODELS_TOPIC, SCORES_TOPIC};
use proto::{Message, MessageContent, ModelDescriptor, ModelType, ServingResult, WineRecord};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message as _;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::json;
use streams_core::StreamsConfig;

/// Feeds the model server and reads what it writes.
#[derive(Parser, Debug)]
#[command(name = "model-client", version)]
struct Args {
    /// The Kafka cluster.
    #[arg(
        long,
        global = true,
        env = "MODEL_CLIENT_BOOTSTRAP_SERVERS",
        default_value = "127.0.0.1:9092"
    )]
    bootstrap_servers: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Creates the topics if missing, then streams wine records to `mdata`
    /// and publishes model files to `models`, keyed by data type. The
    /// first model goes out before the first record.
    Publish {
        /// The wine records: `;`-separated, 11 features and the quality.
        #[arg(long, default_value = "data/winequality_red.csv")]
        data: PathBuf,
        /// Model files (`.onnx`, `.pmml`, `.pb`), or directories searched
        /// for them [default: data/models].
        #[arg(long = "model")]
        models: Vec<PathBuf>,
        /// Records per second (0: as fast as the broker takes them).
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        /// Records to send [default: the file once; with --loop, forever].
        #[arg(long)]
        count: Option<u64>,
        /// Start the file over at its end (and the models at theirs).
        #[arg(long = "loop")]
        looping: bool,
        /// Time between two models (0: publish only the first).
        #[arg(long, default_value_t = 10_000)]
        model_interval_ms: u64,
        /// Send records only.
        #[arg(long, conflicts_with = "models")]
        no_models: bool,
        /// The data type of the records and the models.
        #[arg(long, default_value = "wine")]
        data_type: String,
        /// Partitions of `mdata` and `mscores` when created here.
        #[arg(long, default_value_t = 2)]
        partitions: i32,
    },
    /// Prints what a topic holds, decoded (`mdata`, `models` and `mscores`
    /// as their messages; others as text), one JSON object per line.
    Read {
        /// The topic.
        #[arg(long)]
        topic: String,
        /// Stop after this many records.
        #[arg(long)]
        count: Option<u64>,
        /// Stop when nothing new arrives for this long.
        #[arg(long, default_value_t = 5_000)]
        idle_ms: u64,
    },
    /// Scores the rows of a `;`-separated wine file offline with the code
    /// the server uses; prints one prediction per line, or `not served:`
    /// and the reason where the server would not serve the row (a score
    /// that is not a finite number).
    Score {
        /// The model file.
        #[arg(long)]
        model: PathBuf,
        /// Its type [default: from the extension: .onnx, .pmml, .pb].
        #[arg(long = "type")]
        kind: Option<Kind>,
        /// The rows to score.
        #[arg(long)]
        input: PathBuf,
    },
}

/// mimalloc, for librdkafka's and RocksDB's `malloc` too (see the
/// workspace's `Cargo.toml`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Set by Ctrl-C, SIGTERM or SIGHUP: `publish` and `read` stop at the
/// next record, deliver what they sent, and exit 0.
static STOP: AtomicBool = AtomicBool::new(false);

fn stop_requested() -> bool {
    STOP.load(Ordering::Relaxed)
}

fn main() -> ExitCode {
    init_logging("model-client");
    let args = Args::parse();
    // `score` is short and offline: a signal ends it as usual.
    if !matches!(args.command, Command::Score { .. })
        && let Err(e) = ctrlc::set_handler(|| STOP.store(true, Ordering::Relaxed))
    {
        eprintln!("model-client: cannot install the signal handler: {e}");
        return ExitCode::FAILURE;
    }
    let result = match args.command {
        Command::Publish {
            data,
            models,
            rate,
            count,
            looping,
            model_interval_ms,
            no_models,
            data_type,
            partitions,
        } => publish(&Publish {
            bootstrap: args.bootstrap_servers,
            data,
            models,
            rate,
            count,
            looping,
            model_interval: Duration::from_millis(model_interval_ms),
            no_models,
            data_type,
            partitions,
        }),
        Command::Read {
            topic,
            count,
            idle_ms,
        } => read(
            &args.bootstrap_servers,
            &topic,
            count,
            Duration::from_millis(idle_ms),
        ),
        Command::Score { model, kind, input } => score(&model, kind, &input),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("model-client: {message}");
            ExitCode::FAILURE
        }
    }
}

/// A model type (see `score --type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Kind {
    Onnx,
    Tensorflow,
    Pmml,
}

/// The model type `--type` names, else the file's extension.
fn model_type(path: &Path, kind: Option<Kind>) -> Result<ModelType, String> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    match (kind, ext) {
        (Some(Kind::Onnx), _) | (None, "onnx") => Ok(ModelType::Onnx),
        (Some(Kind::Pmml), _) | (None, "pmml") => Ok(ModelType::Pmml),
        (Some(Kind::Tensorflow), _) | (None, "pb" | "tensorflow") => Ok(ModelType::Tensorflow),
        (None, _) => Err(format!(
            "{}: cannot tell the model type from `.{ext}`; give --type onnx|tensorflow|pmml",
            path.display()
        )),
    }
}

/// Model files under `paths` (files as given, directories searched), in
/// path order.
fn model_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
        let entries =
            std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        for entry in entries {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path.is_dir() {
                walk(&path, out)?;
            } else if model_type(&path, None).is_ok() {
                out.push(path);
            }
        }
        Ok(())
    }
    let defaults = [PathBuf::from("data/models")];
    let paths = if paths.is_empty() {
        &defaults[..]
    } else {
        paths
    };
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found = Vec::new();
            walk(path, &mut found)?;
            found.sort();
            files.extend(found);
        } else if path.exists() {
            files.push(path.clone());
        } else {
            return Err(format!("no model file or directory {}", path.display()));
        }
    }
    if files.is_empty() {
        return Err("no model files (.onnx, .pmml, .pb) found".into());
    }
    Ok(files)
}

/// The rows of a wine file; a bad line is an error naming it.
fn read_rows(path: &Path) -> Result<Vec<[f64; 11]>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match WineRecord::parse_csv(line) {
            Ok(row) => rows.push(row),
            // A header line (the UCI files have one) is skipped.
            Err(_) if i == 0 && line.contains('"') => {}
            Err(e) => return Err(format!("{}:{}: {e}", path.display(), i + 1)),
        }
    }
    if rows.is_empty() {
        return Err(format!("{} holds no wine records", path.display()));
    }
    Ok(rows)
}

struct Publish {
    bootstrap: String,
    data: PathBuf,
    models: Vec<PathBuf>,
    rate: f64,
    count: Option<u64>,
    looping: bool,
    model_interval: Duration,
    no_models: bool,
    data_type: String,
    partitions: i32,
}

fn producer(bootstrap: &str) -> Result<BaseProducer, String> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .map_err(|e| format!("cannot create a producer: {e}"))
}

fn publish(p: &Publish) -> Result<(), String> {
    let rows = read_rows(&p.data)?;
    let files = match p.no_models {
        true => Vec::new(),
        false => model_files(&p.models)?,
    };
    let config = StreamsConfig::new("model-client").set("bootstrap.servers", &p.bootstrap);
    create_topics(&config, p.partitions, &[]).map_err(|e| e.to_string())?;
    let producer = producer(&p.bootstrap)?;
    // Records carry no key, and librdkafka's sticky partitioner would put
    // a quick burst of them all on one partition; dealing them out in
    // turn spreads the load over every instance from the first record.
    let data_partitions = match partition_count(producer.client(), &p.bootstrap, DATA_TOPIC)? {
        0 => return Err(format!("topic {DATA_TOPIC} does not exist")),
        n => n as u64,
    };
    let total = match (p.count, p.looping) {
        (Some(n), _) => Some(n),
        (None, true) => None,
        (None, false) => Some(rows.len() as u64),
    };
    let mut progress = Progress::new(total);
    let started = Instant::now();
    let mut next_model = 0usize;
    // When the next model goes out; never again once there is none.
    let mut model_due = (!files.is_empty()).then_some(started);
    let mut sent = 0u64;
    loop {
        let now = Instant::now();
        if model_due.is_some_and(|due| now >= due) && (next_model < files.len() || p.looping) {
            let file = &files[next_model % files.len()];
            send_model(&producer, file, &p.data_type)?;
            // The first model is delivered before the first record.
            producer
                .flush(Duration::from_secs(30))
                .map_err(|e| format!("model not delivered: {e}"))?;
            progress.model(file);
            next_model += 1;
            model_due = (!p.model_interval.is_zero()).then(|| now + p.model_interval);
        }
        if total.is_some_and(|t| sent >= t) || stop_requested() {
            break;
        }
        let row = rows[(sent % rows.len() as u64) as usize];
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let bytes = WineRecord::from_features(row, p.data_type.as_str(), ts).encode_to_vec();
        let mut record = BaseRecord::<(), [u8]>::to(DATA_TOPIC)
            .payload(&bytes)
            .partition((sent % data_partitions) as i32);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((e, back)) if is_queue_full(&e) => {
                    producer.poll(Duration::from_millis(10));
                    record = back;
                }
                Err((e, _)) => return Err(format!("cannot send a record: {e}")),
            }
        }
        sent += 1;
        producer.poll(Duration::ZERO);
        progress.record(sent);
        if p.rate > 0.0 {
            let due = started + Duration::from_secs_f64(sent as f64 / p.rate);
            // In slices, so that a signal is seen within 100 ms at any rate.
            while let Some(wait) = due.checked_duration_since(Instant::now()) {
                if stop_requested() {
                    break;
                }
                std::thread::sleep(wait.min(Duration::from_millis(100)));
            }
        }
    }
    producer
        .flush(Duration::from_secs(30))
        .map_err(|e| format!("records not delivered: {e}"))?;
    progress.done(sent);
    Ok(())
}

fn is_queue_full(error: &rdkafka::error::KafkaError) -> bool {
    error.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
}

fn send_model(producer: &BaseProducer, file: &Path, data_type: &str) -> Result<(), String> {
    let kind = model_type(file, None)?;
    let bytes = std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let name = file
        .file_stem()
        .map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned());
    let descriptor = ModelDescriptor {
        name,
        description: format!("{} model from {}", kind.as_str_name(), file.display()),
        data_type: data_type.to_owned(),
        modeltype: kind as i32,
        message_content: Some(MessageContent::Data(bytes)),
    };
    let payload = descriptor.encode_to_vec();
    producer
        .send(
            BaseRecord::to(MODELS_TOPIC)
                .key(data_type)
                .payload(&payload),
        )
        .map_err(|(e, _)| format!("cannot send model {}: {e}", file.display()))
}

/// A progress bar on a terminal, a log line every few seconds otherwise.
struct Progress {
    total: Option<u64>,
    terminal: bool,
    started: Instant,
    last: Instant,
    models: usize,
}

impl Progress {
    fn new(total: Option<u64>) -> Self {
        let now = Instant::now();
        Progress {
            total,
            terminal: std::io::stderr().is_terminal(),
            started: now,
            last: now,
            models: 0,
        }
    }

    fn model(&mut self, file: &Path) {
        self.models += 1;
        if self.terminal {
            eprint!("\r\x1b[K");
        }
        log::info!("published model {}", file.display());
    }

    fn record(&mut self, sent: u64) {
        let every = if self.terminal {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(5)
        };
        if self.last.elapsed() < every {
            return;
        }
        self.last = Instant::now();
        let rate = sent as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        if self.terminal {
            let bar = match self.total {
                Some(t) if t > 0 => {
                    let filled = (30 * sent / t) as usize;
                    format!(
                        "[{}{}] {sent}/{t}",
                        "=".repeat(filled),
                        " ".repeat(30 - filled)
                    )
                }
                _ => format!("{sent}"),
            };
            eprint!("\r\x1b[K{bar} records, {rate:.0}/s, {} models", self.models);
            let _ = std::io::stderr().flush();
        } else {
            log::info!("sent {sent} records ({rate:.0}/s), {} models", self.models);
        }
    }

    fn done(&self, sent: u64) {
        if self.terminal {
            eprint!("\r\x1b[K");
        }
        log::info!(
            "sent {sent} records and {} models in {:.1} s",
            self.models,
            self.started.elapsed().as_secs_f64()
        );
    }
}

/// How many partitions `topic` has; 0 when it does not exist.
fn partition_count<C: rdkafka::ClientContext>(
    client: &rdkafka::client::Client<C>,
    bootstrap: &str,
    topic: &str,
) -> Result<i32, String> {
    let metadata = client
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|e| format!("cannot reach {bootstrap} (is the broker up?): {e}"))?;
    Ok(metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map_or(0, |t| t.partitions().len() as i32))
}

fn read(bootstrap: &str, topic: &str, count: Option<u64>, idle: Duration) -> Result<(), String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "model-client-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .map_err(|e| format!("cannot create a consumer: {e}"))?;
    let partitions = partition_count(consumer.client(), bootstrap, topic)?;
    if partitions == 0 {
        return Err(format!("topic {topic} does not exist"));
    }
    let mut assignment = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        assignment
            .add_partition_offset(topic, p, rdkafka::Offset::Beginning)
            .map_err(|e| e.to_string())?;
    }
    consumer.assign(&assignment).map_err(|e| e.to_string())?;
    let mut seen = 0u64;
    let mut last = Instant::now();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    while count.is_none_or(|c| seen < c) && last.elapsed() < idle && !stop_requested() {
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        // A reader without a group reports "unknown group"; skip errors
        // that are not about the data.
        let Ok(message) = message else { continue };
        last = Instant::now();
        seen += 1;
        let line = decode(
            topic,
            message.partition(),
            message.offset(),
            message.key(),
            message.payload(),
        );
        if writeln!(out, "{line}").is_err() {
            break; // the reader went away (a closed pipe)
        }
    }
    Ok(())
}

/// One record as a JSON line: the message's fields, or why it is not one.
fn decode(
    topic: &str,
    partition: i32,
    offset: i64,
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
) -> serde_json::Value {
    let bytes = payload.unwrap_or_default();
    let key = key.map(|k| String::from_utf8_lossy(k).into_owned());
    let value = match topic {
        DATA_TOPIC => WineRecord::decode(bytes).map(|r| {
            json!({
                "features": r.features(),
                "dataType": r.data_type,
                "ts": r.ts,
            })
        }),
        MODELS_TOPIC => ModelDescriptor::decode(bytes).map(|d| {
            let content = match &d.message_content {
                Some(MessageContent::Data(data)) => json!({ "bytes": data.len() }),
                Some(MessageContent::Location(location)) => json!({ "location": location }),
                None => serde_json::Value::Null,
            };
            json!({
                "name": d.name,
                "description": d.description,
                "dataType": d.data_type,
                "modelType": ModelType::try_from(d.modeltype)
                    .map_or_else(|_| d.modeltype.to_string(), |t| t.as_str_name().to_owned()),
                "content": content,
            })
        }),
        SCORES_TOPIC => ServingResult::decode(bytes).map(|r| {
            json!({
                "dataType": r.data_type,
                "model": r.model,
                "result": r.result,
                "served": r.served,
                "durationNs": r.duration_ns,
                "partition": r.partition,
                "offset": r.offset,
                "ts": r.ts,
            })
        }),
        _ => Ok(json!(String::from_utf8_lossy(bytes))),
    };
    let value = value.unwrap_or_else(|e| json!({ "undecodable": e.to_string() }));
    json!({ "partition": partition, "offset": offset, "key": key, "value": value })
}

fn score(model: &Path, kind: Option<Kind>, input: &Path) -> Result<(), String> {
    let kind = model_type(model, kind)?;
    // The file is the user's choice: read it from where it is, whatever
    // its size.
    let dir = model
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let limits = ModelLimits {
        max_model_bytes: u64::MAX,
        ..ModelLimits::default().with_model_dir(dir)
    };
    let served = build(
        &ModelDescriptor {
            name: model.display().to_string(),
            description: String::new(),
            data_type: "wine".into(),
            modeltype: kind as i32,
            message_content: Some(MessageContent::Location(
                model.to_string_lossy().into_owned(),
            )),
        },
        &limits,
    )
    .map_err(|e| e.to_string())?;
    let rows = read_rows(input)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut failed = 0;
    for (i, row) in rows.iter().enumerate() {
        let score = served
            .model
            .score(&WineRecord::from_features(*row, "wine", 0));
        // As the server reports it: the score, or why the row is not served.
        match served_score(score) {
            Ok(value) => writeln!(out, "{value}").map_err(|e| e.to_string())?,
            Err(reason) => {
                failed += 1;
                writeln!(out, "not served: {reason}").map_err(|e| e.to_string())?;
                log::warn!("row {}: not served: {reason}", i + 1);
            }
        }
    }
    out.flush().map_err(|e| e.to_string())?;
    match failed {
        0 => Ok(()),
        n => Err(format!("{n} rows were not served")),
    }
}
