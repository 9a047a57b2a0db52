//! A streams application run as a child process by the end-to-end tests,
//! so a test can kill it with SIGKILL.
//!
//! `streams-app <mode> <bootstrap> <application.id> <state.dir> <guarantee> [<input> <output>]`
//! where mode is `wordcount` (lines -> word counts) or `idcount` (each
//! record's key counted); the topics default to `lines`/`counts` and
//! `ids`/`id-counts`. Prints `STATE <state>` on every transition.

use std::time::Duration;

use streams_core::StreamsError;
use streams_kafka::KafkaStreams;

/// Log lines on stderr, prefixed with the process id, so a test's output
/// shows what each instance did.
struct StderrLog;

impl log::Log for StderrLog {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Info
    }
    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            eprintln!(
                "[streams-app {}] {} {}",
                std::process::id(),
                record.level(),
                record.args()
            );
        }
    }
    fn flush(&self) {}
}

fn main() -> Result<(), StreamsError> {
    static LOG: StderrLog = StderrLog;
    let _ = log::set_logger(&LOG).map(|()| log::set_max_level(log::LevelFilter::Info));
    let args: Vec<String> = std::env::args().collect();
    let (mode, bootstrap, app_id, state_dir, guarantee, topics) = match args.as_slice() {
        [_, mode, bootstrap, app_id, state_dir, guarantee] => {
            (mode, bootstrap, app_id, state_dir, guarantee, None)
        }
        [
            _,
            mode,
            bootstrap,
            app_id,
            state_dir,
            guarantee,
            input,
            output,
        ] => (
            mode,
            bootstrap,
            app_id,
            state_dir,
            guarantee,
            Some((input.as_str(), output.as_str())),
        ),
        _ => {
            eprintln!(
                "usage: streams-app wordcount|idcount BOOTSTRAP APPLICATION_ID STATE_DIR GUARANTEE [INPUT OUTPUT]"
            );
            std::process::exit(2);
        }
    };
    let topology = match mode.as_str() {
        "wordcount" => {
            let (input, output) = topics.unwrap_or(("lines", "counts"));
            tests::apps::word_count(input, output, "word-counts")?
        }
        "idcount" => {
            let (input, output) = topics.unwrap_or(("ids", "id-counts"));
            tests::apps::id_count(input, output, "id-store")?
        }
        other => {
            eprintln!("unknown mode {other}");
            std::process::exit(2);
        }
    };
    let mut config = tests::apps::config(app_id, bootstrap, state_dir)
        .set("processing.guarantee", guarantee.as_str());
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
                .key_value_store::<String, i64>(
                    if mode == "wordcount" {
                        "word-counts"
                    } else {
                        "id-store"
                    },
                    streams_core::serde::StringSerde,
                )
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
