//! A streams application run as a child process by the end-to-end tests,
//! so a test can kill it with SIGKILL.
//!
//! `streams-app <mode> <bootstrap> <application.id> <state.dir> <guarantee>`
//! where mode is `wordcount` (lines -> word counts) or `idcount` (each
//! record's key counted). Prints `STATE <state>` on every transition.

use std::time::Duration;

use streams_core::StreamsError;
use streams_core::runtime::KafkaStreams;

fn main() -> Result<(), StreamsError> {
    let args: Vec<String> = std::env::args().collect();
    let [_, mode, bootstrap, app_id, state_dir, guarantee] = args.as_slice() else {
        eprintln!(
            "usage: streams-app wordcount|idcount BOOTSTRAP APPLICATION_ID STATE_DIR GUARANTEE"
        );
        std::process::exit(2);
    };
    let topology = match mode.as_str() {
        "wordcount" => tests::apps::word_count("lines", "counts", "word-counts")?,
        "idcount" => tests::apps::id_count("ids", "id-counts", "id-store")?,
        other => {
            eprintln!("unknown mode {other}");
            std::process::exit(2);
        }
    };
    let config = tests::apps::config(app_id, bootstrap, state_dir)
        .set("processing.guarantee", guarantee.as_str());
    let streams = KafkaStreams::new(topology, config)?;
    streams.set_state_listener(|_, new| println!("STATE {new:?}"));
    streams.start()?;
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
