//! `model-server`: scores every wine record on `mdata` with the current
//! model of its data type (models arrive on `models`), reports each on
//! `mscores`, and answers state queries over HTTP from any instance.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser};
use model_server::actors::{self, ActorStages, ActorsOptions};
use model_server::cli::{create_topics, init_logging};
use model_server::console::{ResultsTail, engine_console, streams_console};
use model_server::http::{ServingMetrics, query_server};
use model_server::model::ModelLimits;
use model_server::serving::{ServingOptions, StoreVariant, topology_with};
use model_server::stage::{self, SharedStage, StageOptions, Stages};
use streams_core::StreamsConfig;
use streams_core::handlers::DeadLetterQueue;
use streams_http::AppServer;
use streams_kafka::{KafkaStreams, State};
use tokio::sync::Notify;

/// Serves machine-learning models over Kafka: scores every record of
/// `mdata` with the current model of its data type (models arrive on
/// `models`), writes a result for each to `mscores`, and answers queries
/// about its state over HTTP. Topics that do not exist yet are created.
#[derive(Parser, Debug)]
#[command(name = "model-server", version)]
struct Args {
    /// How the server is built:
    ///
    /// `streams` (the default): on this project's Kafka Streams framework,
    /// the tutorial's Kafka Streams server: statistics in a state store
    /// (`--store`), queries answered on any instance (`/state/value`,
    /// `/state/instances`, `/models`, `/state/{dataType}`), port 8888.
    ///
    /// `stage`: no framework, the tutorial's Akka Streams custom stage:
    /// one async pipeline (tokio, rdkafka's stream consumer) merges records
    /// and models, keeps each data type's model and statistics in memory,
    /// and answers `/state`, `/models`, `/state/{dataType}` for this
    /// instance, port 5500.
    ///
    /// `actors`: no framework, the tutorial's Akka actor router: a router
    /// task hands each record and model to the actor (a task with a bounded
    /// mailbox) of its data type, which keeps its model and statistics in
    /// files under `--state-dir` and resumes from them at once after a
    /// restart; the same routes, port 5500.
    #[arg(long, env = "MODEL_SERVER_ENGINE", default_value = "streams")]
    engine: Engine,

    /// Where serving statistics live.
    #[arg(long, env = "MODEL_SERVER_STORE", default_value = "standard")]
    store: StoreVariant,

    /// The Kafka cluster.
    #[arg(
        long,
        env = "MODEL_SERVER_BOOTSTRAP_SERVERS",
        default_value = "127.0.0.1:9092"
    )]
    bootstrap_servers: String,

    /// The application id: instances with the same id share the work.
    #[arg(
        long,
        env = "MODEL_SERVER_APPLICATION_ID",
        default_value = "model-server"
    )]
    application_id: String,

    /// The HTTP port [default: 8888 with `streams`, 5500 with `stage` and
    /// `actors`].
    #[arg(long, env = "MODEL_SERVER_PORT")]
    port: Option<u16>,

    /// The address the HTTP server listens on.
    #[arg(long, env = "MODEL_SERVER_BIND", default_value = "127.0.0.1")]
    bind: IpAddr,

    /// The host name other instances use to reach this one
    /// (`application.server` is HOST:PORT).
    #[arg(
        long,
        env = "MODEL_SERVER_ADVERTISED_HOST",
        default_value = "127.0.0.1"
    )]
    advertised_host: String,

    /// Where local state lives [default: <temp dir>/model-server-<port>].
    #[arg(long, env = "MODEL_SERVER_STATE_DIR")]
    state_dir: Option<PathBuf>,

    /// Stream threads.
    #[arg(long, env = "MODEL_SERVER_THREADS", default_value_t = 1)]
    threads: u32,

    /// Processing guarantee.
    #[arg(long, env = "MODEL_SERVER_GUARANTEE", default_value = "at-least-once")]
    guarantee: Guarantee,

    /// Partitions of `mdata` and `mscores` when this server creates them.
    #[arg(long, env = "MODEL_SERVER_PARTITIONS", default_value_t = 2)]
    partitions: i32,

    /// Wine records that cannot be decoded, or whose scoring fails, go to
    /// this topic (dead letters): their bytes unchanged, with headers naming
    /// the error and the record's topic, partition and offset.
    #[arg(
        long,
        env = "MODEL_SERVER_ERRORS_TOPIC",
        default_value = "mdata-errors"
    )]
    errors_topic: String,

    /// `location` model descriptors are read only from below this
    /// directory [default: none: every location descriptor is refused].
    #[arg(long, env = "MODEL_SERVER_MODEL_DIR")]
    model_dir: Option<PathBuf>,

    /// The largest model accepted, inline or in a file, in bytes.
    #[arg(long, env = "MODEL_SERVER_MAX_MODEL_BYTES", default_value_t = 64 << 20)]
    max_model_bytes: u64,

    /// Seconds a model build may take before it is rejected (the previous
    /// model keeps serving).
    #[arg(long, env = "MODEL_SERVER_MODEL_BUILD_TIMEOUT", default_value = "30",
          value_parser = seconds)]
    model_build_timeout: Duration,

    /// Any other streams or librdkafka setting, as KEY=VALUE (repeatable).
    #[arg(long = "config", short = 'c', value_name = "KEY=VALUE", value_parser = key_value)]
    config: Vec<(String, String)>,
}

/// The server's engine (see `--engine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Engine {
    Streams,
    Stage,
    Actors,
}

impl Engine {
    /// The flags (clap ids) of other engines only.
    fn foreign_flags(self) -> &'static [&'static str] {
        const STREAMS_ONLY: [&str; 4] = ["store", "threads", "guarantee", "advertised_host"];
        match self {
            Engine::Streams => &[],
            Engine::Stage => &[
                "store",
                "threads",
                "guarantee",
                "advertised_host",
                "state_dir",
            ],
            Engine::Actors => &STREAMS_ONLY,
        }
    }
}

/// The processing guarantee (see `--guarantee`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Guarantee {
    AtLeastOnce,
    ExactlyOnce,
}

impl Guarantee {
    /// Its `processing.guarantee` setting.
    fn config_value(self) -> &'static str {
        match self {
            Guarantee::AtLeastOnce => "at_least_once",
            Guarantee::ExactlyOnce => "exactly_once_v2",
        }
    }
}

fn seconds(text: &str) -> Result<Duration, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s <= 1e9 => Ok(Duration::from_secs_f64(s)),
        _ => Err(format!("`{text}` is not a number of seconds above 0")),
    }
}

fn key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("`{text}` is not KEY=VALUE")),
    }
}

/// mimalloc, for librdkafka's and RocksDB's `malloc` too (see the
/// workspace's `Cargo.toml`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Memory over speed (see `without_huge_pages`), unless asked otherwise;
    // before the first allocations that count.
    let small_pages = match std::env::var_os("MODEL_SERVER_HUGE_PAGES") {
        Some(v) if v == "1" => Ok(()),
        _ => model_server::cli::without_huge_pages(),
    };
    init_logging("model-server");
    if let Err(error) = small_pages {
        log::debug!("transparent huge pages stay on: {error}");
    }
    let matches = Args::command().get_matches();
    let args = match Args::from_arg_matches(&matches) {
        Ok(args) => args,
        Err(error) => error.exit(),
    };
    // A flag given for another engine is a mistake worth saying.
    if let Some(flag) = args
        .engine
        .foreign_flags()
        .iter()
        .find(|id| matches.value_source(id) == Some(ValueSource::CommandLine))
    {
        let engine = format!("{:?}", args.engine).to_lowercase();
        eprintln!(
            "model-server: --{} does not apply to --engine {engine}; see --help",
            flag.replace('_', "-"),
        );
        return ExitCode::from(2);
    }
    let result = match args.engine {
        Engine::Streams => run(args),
        Engine::Stage | Engine::Actors => run_without_framework(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("model-server: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The model checks and limits of `args`, for every engine.
fn limits(args: &Args) -> Result<ModelLimits, String> {
    if let Some(dir) = &args.model_dir
        && !dir.is_dir()
    {
        return Err(format!("--model-dir {}: not a directory", dir.display()));
    }
    Ok(ModelLimits {
        model_dir: args.model_dir.clone(),
        max_model_bytes: args.max_model_bytes,
        build_timeout: args.model_build_timeout,
    })
}

/// The `stage` and `actors` engines: no framework (see
/// `model_server::stage` and `model_server::actors`).
fn run_without_framework(args: Args) -> Result<(), String> {
    let port = args.port.unwrap_or(5500);
    let mut config =
        StreamsConfig::new(&args.application_id).set("bootstrap.servers", &args.bootstrap_servers);
    for (key, value) in &args.config {
        config = config.set(key, value);
    }
    let limits = limits(&args)?;
    create_topics(&config, args.partitions, &[&args.errors_topic]).map_err(|e| e.to_string())?;
    let stage: SharedStage = Arc::default();
    let actors: ActorStages = Arc::default();
    let stages: Stages = match args.engine {
        Engine::Actors => {
            let actors = actors.clone();
            Arc::new(move || actors::stages(&actors))
        }
        _ => {
            let stage = stage.clone();
            Arc::new(move || vec![stage.clone()])
        }
    };
    let engine = format!("{:?}", args.engine).to_lowercase();
    let addr = SocketAddr::new(args.bind, port);
    let (console, console_routes) =
        engine_console(&engine, addr, stages.clone(), ResultsTail::new(&config));
    let routes = stage::routes(stages);
    let mut http =
        AppServer::new(move |request| console_routes(request).or_else(|| routes(request)))
            .console(console)
            .serve(addr)
            .map_err(|e| e.to_string())?;
    let stop = Arc::new(Notify::new());
    let stop_on_signal = stop.clone();
    // Ctrl-C, SIGTERM and SIGHUP: the last results are awaited and their
    // offsets committed.
    ctrlc::set_handler(move || stop_on_signal.notify_one())
        .map_err(|e| format!("cannot install the signal handler: {e}"))?;
    log::info!(
        "serving with the {engine} engine on http://{} (the console is at /; group {}, broker {})",
        http.local_addr(),
        args.application_id,
        args.bootstrap_servers
    );
    let result = match args.engine {
        Engine::Actors => {
            let state_dir = args.state_dir.clone().unwrap_or_else(|| {
                std::env::temp_dir().join(format!("model-server-actors-{port}"))
            });
            let options = ActorsOptions {
                config,
                limits,
                errors_topic: args.errors_topic.clone(),
                state_dir,
            };
            actors::run(options, actors, stop)
        }
        _ => {
            let options = StageOptions {
                config,
                limits,
                errors_topic: args.errors_topic.clone(),
            };
            stage::run(options, stage, stop)
        }
    };
    log::info!("shutting down");
    http.stop();
    result
}

fn run(args: Args) -> Result<(), String> {
    let port = args.port.unwrap_or(8888);
    let state_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("model-server-{port}")));
    let mut config = StreamsConfig::new(&args.application_id)
        .set("bootstrap.servers", &args.bootstrap_servers)
        .set("num.stream.threads", args.threads.to_string())
        .set("processing.guarantee", args.guarantee.config_value())
        .set("state.dir", state_dir.to_string_lossy())
        .set(
            "application.server",
            format!("{}:{port}", args.advertised_host),
        );
    for (key, value) in &args.config {
        config = config.set(key, value);
    }
    // The tutorial's exercise: malformed records to a topic of their own,
    // and records whose scoring fails (an error or a panic) there too,
    // rather than stopping the server.
    let config = config
        .with_deserialization_handler(DeadLetterQueue::new(&args.errors_topic))
        .with_processing_handler(DeadLetterQueue::new(&args.errors_topic));
    let limits = limits(&args)?;

    // The broker is checked first: an unreachable one is one clear line.
    create_topics(&config, args.partitions, &[&args.errors_topic]).map_err(|e| e.to_string())?;
    let metrics = Arc::new(ServingMetrics::default());
    let topology = topology_with(ServingOptions {
        variant: args.store,
        limits,
        metrics: metrics.clone(),
    })
    .map_err(|e| e.to_string())?;
    // The console draws the topology and reads the newest results.
    let description = topology.describe();
    let results = ResultsTail::new(&config);
    let streams = Arc::new(KafkaStreams::new(topology, config).map_err(|e| e.to_string())?);
    // The port is taken before joining the group: a port in use fails
    // here, before any partition is assigned to this instance.
    let server = query_server(streams.clone(), args.store, metrics);
    let mut http = streams_console(server, &description, results)
        .serve(SocketAddr::new(args.bind, port))
        .map_err(|e| e.to_string())?;
    let (stop_tx, stop_rx) = mpsc::channel();
    // Ctrl-C, SIGTERM (systemd, Docker, Kubernetes) and SIGHUP all close
    // cleanly: a final commit and checkpoint, then leaving the group.
    ctrlc::set_handler(move || {
        let _ = stop_tx.send(());
    })
    .map_err(|e| format!("cannot install the signal handler: {e}"))?;
    streams.start().map_err(|e| e.to_string())?;
    log::info!(
        "serving with the {:?} store on http://{} (the console is at /; application {}, broker {}, state in {})",
        args.store,
        http.local_addr(),
        args.application_id,
        args.bootstrap_servers,
        state_dir.display()
    );
    let failed = loop {
        match stop_rx.recv_timeout(Duration::from_millis(500)) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => break false,
            // The client stopping by itself (a failed thread, or another
            // instance shutting the application down) is a failure too.
            Err(mpsc::RecvTimeoutError::Timeout)
                if matches!(streams.state(), State::Error | State::NotRunning) =>
            {
                break true;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
    };
    log::info!("shutting down");
    let clean = streams.close(Duration::from_secs(30));
    http.stop();
    match (failed, clean) {
        (true, _) => Err(match streams.error() {
            Some(error) => format!("the streams runtime stopped: {error}"),
            None => "the streams runtime stopped; see the log above".into(),
        }),
        (false, false) => Err("did not shut down within 30 s".into()),
        (false, true) => Ok(()),
    }
}
