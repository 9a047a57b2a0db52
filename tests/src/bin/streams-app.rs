//! A streams application run as a child process by the end-to-end tests,
//! so a test can kill it with SIGKILL.
//!
//! `streams-app <mode> <bootstrap> <application.id> <state.dir> <guarantee> [<input> <output>]`
//! where mode is `wordcount` (lines -> word counts) or `idcount` (each
//! record's key counted); the topics default to `lines`/`counts` and
//! `ids`/`id-counts`. Prints `STATE <state>` on every transition.

use std::io::Write as _;
use std::time::Duration;

use clap::Parser;
use streams_core::StreamsError;
use streams_kafka::KafkaStreams;

/// A streams application run as a child process by the end-to-end tests.
#[derive(Parser, Debug)]
#[command(name = "streams-app")]
struct Args {
    /// The application.
    mode: Mode,
    /// `bootstrap.servers`.
    bootstrap: String,
    /// `application.id`.
    application_id: String,
    /// `state.dir`.
    state_dir: String,
    /// `processing.guarantee`, as the config spells it (`at_least_once`,
    /// `exactly_once_v2`).
    guarantee: String,
    /// The input topic [default: `lines` or `ids`].
    #[arg(requires = "output")]
    input: Option<String>,
    /// The output topic [default: `counts` or `id-counts`].
    output: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Mode {
    /// Lines -> word counts.
    Wordcount,
    /// Each record's key counted.
    Idcount,
}

/// Log lines (info and above, or as `RUST_LOG` says) on stderr, prefixed
/// with the process id, so a test's output shows what each instance did.
fn init_logging() {
    let pid = std::process::id();
    let _ = env_logger::Builder::new()
        .filter_level(log::LevelFilter::Info)
        .parse_default_env()
        .format(move |out, record| {
            writeln!(
                out,
                "[streams-app {pid}] {} {}",
                record.level(),
                record.args()
            )
        })
        .try_init();
}

fn main() -> Result<(), StreamsError> {
    init_logging();
    let args = Args::parse();
    let topics = args.input.as_deref().zip(args.output.as_deref());
    let (topology, store) = match args.mode {
        Mode::Wordcount => {
            let (input, output) = topics.unwrap_or(("lines", "counts"));
            (
                tests::apps::word_count(input, output, "word-counts")?,
                "word-counts",
            )
        }
        Mode::Idcount => {
            let (input, output) = topics.unwrap_or(("ids", "id-counts"));
            (
                tests::apps::id_count(input, output, "id-store")?,
                "id-store",
            )
        }
    };
    let mut config = tests::apps::config(&args.application_id, &args.bootstrap, &args.state_dir)
        .set("processing.guarantee", args.guarantee.as_str());
    // With QUERY_PORT set, the instance serves interactive queries there.
    let query_port: Option<u16> = std::env::var("QUERY_PORT")
        .ok()
        .and_then(|p| p.parse().ok());
    if let Some(port) = query_port {
        config = tests::apps::query_config(config, port);
    }
    let streams = std::sync::Arc::new(KafkaStreams::new(topology, config)?);
    streams.set_state_listener(|_, new| println!("STATE {new:?}"));
    streams.start()?;
    let _server = match query_port {
        Some(port) => Some(
            streams_http::QueryServer::new(streams.clone())
                .key_value_store::<String, i64>(store, streams_core::serde::StringSerde)
                .serve(([127, 0, 0, 1], port).into())
                .map_err(|source| StreamsError::Io {
                    action: "serving queries".into(),
                    source,
                })?,
        ),
        None => None,
    };
    // Run until killed, or until stdin closes.
    let mut line = String::new();
    while std::io::stdin()
        .read_line(&mut line)
        .map(|n| n > 0)
        .unwrap_or(false)
    {
        line.clear();
    }
    streams.close(Duration::from_secs(30));
    Ok(())
}
