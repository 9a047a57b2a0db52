//! Local state that outlives its cluster: the same application, on one
//! state directory, run against two fresh brokers one after the other.
//!
//! The second broker's changelogs start empty, so the first run's
//! checkpoints lie beyond their end: the local stores reflect records that
//! no longer exist, and are wiped and restored in full (from nothing), as
//! Kafka Streams does. Trusting them doubled every count.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::Message;
use streams_kafka::State;
use tests::{Broker, WAIT, apps};

/// Lines with 60 distinct words, word `w{i}` appearing `i % 7 + 1` times.
fn input() -> (Vec<String>, HashMap<String, i64>) {
    let mut lines = Vec::new();
    let mut expected = HashMap::new();
    for i in 0..60 {
        let word = format!("w{i}");
        let times = i % 7 + 1;
        for _ in 0..times {
            lines.push(format!("{word} filler-{}", i % 3));
        }
        expected.insert(word, times);
        *expected.entry(format!("filler-{}", i % 3)).or_default() += times;
    }
    (lines, expected)
}

/// Runs word count once on a fresh broker with `state_dir` and
/// `guarantee`, and returns the last count of each word in the output.
fn run_on_a_fresh_broker(state_dir: &std::path::Path, guarantee: &str) -> HashMap<String, i64> {
    let broker = Broker::start();
    let (lines_topic, counts_topic) = ("lines", "counts");
    broker.create_topic(lines_topic, 2);
    broker.create_topic(counts_topic, 2);
    let (lines, expected) = input();
    let records: Vec<(Option<&str>, &str)> = lines.iter().map(|l| (None, l.as_str())).collect();
    broker.produce(lines_topic, &records);
    let topology = apps::word_count(lines_topic, counts_topic, "word-counts").unwrap();
    // The same application id both times, as a rerun of one program.
    let config = broker
        .streams_config("word-count-rerun", state_dir)
        .set("processing.guarantee", guarantee);
    let streams = apps::start(topology, config);
    let consumer = broker.read_from_start(counts_topic, 2);
    let mut latest: HashMap<String, i64> = HashMap::new();
    let deadline = Instant::now() + WAIT;
    // Until every word has reached its count, or one has gone past it.
    let settled = |latest: &HashMap<String, i64>| {
        expected
            .iter()
            .all(|(word, n)| latest.get(word).is_some_and(|c| c >= n))
    };
    while !settled(&latest) {
        assert!(
            Instant::now() < deadline,
            "timed out; counts so far {latest:?}; state {:?}, error {:?}",
            streams.state(),
            streams.error()
        );
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            let word = String::from_utf8(message.key().unwrap().to_vec()).unwrap();
            let count = i64::from_be_bytes(message.payload().unwrap().try_into().unwrap());
            latest.insert(word, count);
        }
    }
    assert_eq!(streams.state(), State::Running, "{:?}", streams.error());
    assert!(streams.close(WAIT));
    latest
}

/// Two runs on one state directory, each on a fresh broker.
fn two_runs(guarantee: &str) {
    let state_dir = tempfile::tempdir().unwrap();
    let (_, expected) = input();
    let first = run_on_a_fresh_broker(state_dir.path(), guarantee);
    assert_eq!(first, expected, "first run");
    // The first run left its stores and checkpoints behind.
    let app_dir = state_dir.path().join("word-count-rerun");
    let checkpoints = std::fs::read_dir(&app_dir)
        .unwrap()
        .filter(|task| task.as_ref().unwrap().path().join(".checkpoint").exists())
        .count();
    assert!(checkpoints > 0, "no checkpoint in {}", app_dir.display());
    let second = run_on_a_fresh_broker(state_dir.path(), guarantee);
    assert_eq!(second, expected, "second run, on a new broker");
}

#[test]
fn the_same_application_on_two_fresh_brokers_counts_right_both_times() {
    two_runs("at_least_once");
}

#[test]
fn the_same_application_on_two_fresh_brokers_counts_right_both_times_exactly_once() {
    // A clean close leaves checkpoints under exactly-once too.
    two_runs("exactly_once_v2");
}
