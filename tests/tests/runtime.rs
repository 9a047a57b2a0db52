//! The streams runtime against a real broker: word count end to end, two
//! instances sharing the work, restoration from changelogs, exactly-once,
//! and clear errors for bad settings.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, Producer};
use streams_kafka::partitioner::partition_for_key;
use streams_kafka::{KafkaStreams, State, StateRestoreListener};
use tests::{Broker, WAIT, apps, shared_broker, unique};

/// Reads `topic` from the start until `done` holds for the latest value per
/// key (or panics after a minute). Returns every record read: (partition, key, value).
fn read_until(
    broker: &Broker,
    topic: &str,
    partitions: i32,
    done: impl Fn(&HashMap<String, i64>) -> bool,
) -> Vec<(i32, String, i64)> {
    let consumer = broker.read_from_start(topic, partitions);
    let deadline = Instant::now() + WAIT;
    let mut latest = HashMap::new();
    let mut all = Vec::new();
    while !done(&latest) {
        assert!(
            Instant::now() < deadline,
            "timed out reading {topic}; latest values: {latest:?}"
        );
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            // A consumer without a group reports "unknown group" events; only
            // records matter here.
            let Ok(message) = message else { continue };
            let key = String::from_utf8(message.key().unwrap().to_vec()).unwrap();
            let value = i64::from_be_bytes(message.payload().unwrap().try_into().unwrap());
            all.push((message.partition(), key.clone(), value));
            latest.insert(key, value);
        }
    }
    all
}

fn expect(counts: &[(&str, i64)]) -> impl Fn(&HashMap<String, i64>) -> bool {
    let expected: HashMap<String, i64> =
        counts.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
    move |latest| expected.iter().all(|(k, v)| latest.get(k) == Some(v))
}

#[test]
fn word_count_end_to_end_with_keys_on_java_partitions() {
    let broker = shared_broker();
    let [lines, counts] = broker.unique_topics(["lines", "counts"], 3);
    let app = unique("wc");
    broker.produce(&lines, &[(None, "a b c"), (None, "b c"), (None, "c")]);
    let state_dir = tempfile::tempdir().unwrap();
    let topology = apps::word_count(&lines, &counts, "word-counts").unwrap();
    let config = broker.streams_config(&app, state_dir.path());
    let streams = KafkaStreams::new(topology, config).unwrap();
    let states = Arc::new(Mutex::new(Vec::new()));
    let s = states.clone();
    streams.set_state_listener(move |_, new| s.lock().unwrap().push(new));
    streams.start().unwrap();
    let records = read_until(broker, &counts, 3, expect(&[("a", 1), ("b", 2), ("c", 3)]));
    for (partition, key, _) in &records {
        assert_eq!(
            *partition,
            partition_for_key(key.as_bytes(), 3),
            "{key} is on Java's partition"
        );
    }
    assert!(streams.wait_for_state(State::Running, WAIT));
    // The internal topics exist with the input's partition count.
    let consumer: BaseConsumer = broker.client_config().create().unwrap();
    for internal in [
        format!("{app}-word-counts-changelog"),
        format!("{app}-word-counts-repartition"),
    ] {
        let metadata = consumer
            .fetch_metadata(Some(&internal), Duration::from_secs(10))
            .unwrap();
        assert_eq!(metadata.topics()[0].partitions().len(), 3, "{internal}");
    }
    assert!(streams.close(WAIT));
    assert_eq!(streams.state(), State::NotRunning);
    let states = states.lock().unwrap().clone();
    assert_eq!(states.first(), Some(&State::Rebalancing));
    assert!(
        states.contains(&State::Running)
            && states.ends_with(&[State::PendingShutdown, State::NotRunning]),
        "{states:?}"
    );
}

#[test]
fn two_instances_split_the_partitions_and_produce_every_count() {
    let broker = shared_broker();
    let [lines, counts] = broker.unique_topics(["lines", "counts"], 4);
    let app = unique("wc2");
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let instances: Vec<KafkaStreams> = dirs
        .iter()
        .map(|dir| {
            let topology = apps::word_count(&lines, &counts, "word-counts").unwrap();
            let config = broker.streams_config(&app, dir.path());
            KafkaStreams::new(topology, config).unwrap()
        })
        .collect();
    for streams in &instances {
        streams.start().unwrap();
    }
    for streams in &instances {
        assert!(streams.wait_for_state(State::Running, WAIT));
    }
    let words: Vec<String> = (0..40).map(|i| format!("w{i}")).collect();
    let line = words.join(" ");
    broker.produce(&lines, &[(None, &line), (None, &line), (None, &line)]);
    let expected: Vec<(&str, i64)> = words.iter().map(|w| (w.as_str(), 3)).collect();
    read_until(broker, &counts, 4, expect(&expected));
    // Both instances hold part of the state: each has task directories.
    let tasks = |dir: &tempfile::TempDir| {
        std::fs::read_dir(dir.path().join(&app))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    assert!(
        tasks(&dirs[0]) > 0 && tasks(&dirs[1]) > 0,
        "work was split: {} and {}",
        tasks(&dirs[0]),
        tasks(&dirs[1])
    );
    for streams in &instances {
        assert!(streams.close(WAIT));
    }
}

/// What each changelog partition restored, per store.
#[derive(Default)]
struct Restored(Mutex<HashMap<(String, i32), u64>>);

impl Restored {
    fn of_store(&self, store: &str) -> u64 {
        let totals = self.0.lock().unwrap();
        totals
            .iter()
            .filter(|((s, _), _)| s == store)
            .map(|(_, n)| n)
            .sum()
    }

    fn per_partition(&self) -> HashMap<i32, u64> {
        let mut out = HashMap::new();
        for ((_, partition), n) in self.0.lock().unwrap().iter() {
            *out.entry(*partition).or_default() += n;
        }
        out
    }
}

/// The listener `KafkaStreams` owns, over a [`Restored`] the test keeps.
struct Counting(Arc<Restored>);

impl StateRestoreListener for Counting {
    fn on_restore_end(&self, store: &str, _: &str, partition: i32, total: u64) {
        *self
            .0
            .0
            .lock()
            .unwrap()
            .entry((store.to_owned(), partition))
            .or_default() += total;
    }
}

/// Runs the uncached id count (so every count reaches the changelog) from
/// `ids` to `out` (`partitions` each) as `app` in `state_dir`: produces
/// `records`, reads `out` until `done`, closes, and says what was restored
/// at the start.
fn run_id_count(
    broker: &Broker,
    (ids, out, partitions): (&str, &str, i32),
    app: &str,
    state_dir: &std::path::Path,
    records: &[(Option<&str>, &str)],
    done: impl Fn(&HashMap<String, i64>) -> bool,
) -> Arc<Restored> {
    let restored = Arc::new(Restored::default());
    let topology = apps::id_count_in(
        ids,
        out,
        streams_core::dsl::Materialized::named("id-store").with_caching_disabled(),
    )
    .unwrap();
    let config = broker.streams_config(app, state_dir);
    let streams = KafkaStreams::new(topology, config).unwrap();
    streams.set_global_state_restore_listener(Counting(restored.clone()));
    streams.start().unwrap();
    assert!(streams.wait_for_state(State::Running, WAIT));
    broker.produce(ids, records);
    read_until(broker, out, partitions, done);
    assert!(streams.close(WAIT));
    restored
}

/// Every key and value of a closed RocksDB store, in key order.
fn dump_store(path: &std::path::Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    use streams_core::state::{ReadOnlyKeyValueStore, RocksDbStore, StateStore};
    let mut store = RocksDbStore::open("id-store", path).unwrap();
    let all = store.all().unwrap().collect::<Result<Vec<_>, _>>().unwrap();
    store.close().unwrap();
    all
}

#[test]
fn restart_restores_only_the_tail_and_a_wiped_state_restores_in_full() {
    let broker = shared_broker();
    let [ids, out] = broker.unique_topics(["ids", "id-counts"], 1);
    let app = unique("restore");
    let state_dir = tempfile::tempdir().unwrap();
    let run = |records: &[(Option<&str>, &str)], expected: &[(&str, i64)]| -> u64 {
        let topics = (ids.as_str(), out.as_str(), 1);
        run_id_count(
            broker,
            topics,
            &app,
            state_dir.path(),
            records,
            expect(expected),
        )
        .of_store("id-store")
    };
    let first: Vec<(Option<&str>, &str)> = (0..50).map(|_| (Some("a"), "x")).collect();
    assert_eq!(run(&first, &[("a", 50)]), 0, "nothing to restore at first");
    // A restart replays only what the checkpoint does not cover: nothing.
    assert_eq!(
        run(&[(Some("b"), "x")], &[("a", 50), ("b", 1)]),
        0,
        "the checkpoint covers the changelog"
    );
    let store_dir = state_dir.path().join(&app).join("0_0");
    let checkpoint = std::fs::read_to_string(store_dir.join(".checkpoint")).unwrap();
    assert!(
        checkpoint.contains(&format!("{app}-id-store-changelog 0 ")),
        "{checkpoint}"
    );
    // An older checkpoint: the tail since then is replayed.
    std::fs::write(
        store_dir.join(".checkpoint"),
        format!("1\n{app}-id-store-changelog 0 40\n"),
    )
    .unwrap();
    let tail = run(&[(Some("c"), "x")], &[("a", 50), ("b", 1), ("c", 1)]);
    assert!(
        (1..=20).contains(&tail),
        "replayed {tail} records from offset 40"
    );
    // Wiped: a full restore rebuilds the very same store, byte for byte.
    let rocksdb = store_dir.join("rocksdb").join("id-store");
    let before = dump_store(&rocksdb);
    assert_eq!(before.len(), 3, "a, b and c are stored");
    std::fs::remove_dir_all(state_dir.path().join(&app)).unwrap();
    let full = run(&[], &[("a", 50), ("b", 1), ("c", 1)]);
    assert!(full >= 52, "full restore replayed {full} records");
    assert_eq!(
        dump_store(&rocksdb),
        before,
        "the restored store is identical"
    );
    // And it goes on counting from there.
    run(&[(Some("a"), "x")], &[("a", 51), ("b", 1), ("c", 1)]);
    // A corrupt checkpoint is ignored: the state is wiped and restored in full.
    std::fs::write(store_dir.join(".checkpoint"), "garbage").unwrap();
    let again = run(&[(Some("b"), "x")], &[("a", 51), ("b", 2), ("c", 1)]);
    assert!(
        again >= 53,
        "full restore after a corrupt checkpoint replayed {again}"
    );
}

#[test]
fn a_wiped_state_restores_every_partition_together_byte_for_byte() {
    // Four tasks restore at once, each changelog partition in several
    // write batches (2,000 records each): every store comes back whole.
    const KEYS: usize = 10_000;
    let broker = shared_broker();
    let [ids, out] = broker.unique_topics(["ids", "id-counts"], 4);
    let app = unique("restore-all");
    let state_dir = tempfile::tempdir().unwrap();
    let keys: Vec<String> = (0..KEYS).map(|i| format!("k{i:05}")).collect();
    let run = |records: &[(Option<&str>, &str)], done: &dyn Fn(&HashMap<String, i64>) -> bool| {
        let topics = (ids.as_str(), out.as_str(), 4);
        run_id_count(broker, topics, &app, state_dir.path(), records, done).per_partition()
    };
    let records: Vec<(Option<&str>, &str)> = keys.iter().map(|k| (Some(k.as_str()), "x")).collect();
    let all_counted = |latest: &HashMap<String, i64>| latest.len() == KEYS;
    assert!(run(&records, &all_counted).values().all(|&n| n == 0));
    let stores = |dir: &std::path::Path| -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
        (0..4)
            .map(|p| dump_store(&dir.join(format!("0_{p}")).join("rocksdb").join("id-store")))
            .collect()
    };
    let app_dir = state_dir.path().join(&app);
    let before = stores(&app_dir);
    assert_eq!(before.iter().map(Vec::len).sum::<usize>(), KEYS);
    assert!(
        before.iter().filter(|s| s.len() > 2_000).count() >= 2,
        "several partitions hold more than one write batch: {:?}",
        before.iter().map(Vec::len).collect::<Vec<_>>()
    );
    std::fs::remove_dir_all(&app_dir).unwrap();
    let restored = run(&[(Some("k00000"), "x")], &|latest| {
        latest.get("k00000") == Some(&2)
    });
    assert_eq!(restored.len(), 4, "every partition restored: {restored:?}");
    assert_eq!(restored.values().sum::<u64>(), KEYS as u64, "{restored:?}");
    let mut after = stores(&app_dir);
    // The count of k00000 went on from its restored value.
    for store in &mut after {
        store.retain(|(k, _)| k != b"k00000");
    }
    let mut expected = before;
    for store in &mut expected {
        store.retain(|(k, _)| k != b"k00000");
    }
    assert_eq!(after, expected, "the restored stores are identical");
}

#[test]
fn exactly_once_word_count_commits_transactions() {
    let broker = shared_broker();
    let [lines, counts] = broker.unique_topics(["lines", "counts"], 2);
    let app = unique("eos");
    let state_dir = tempfile::tempdir().unwrap();
    let topology = apps::word_count(&lines, &counts, "word-counts").unwrap();
    let config = broker
        .streams_config(&app, state_dir.path())
        .set("processing.guarantee", "exactly_once_v2");
    let streams = apps::start(topology, config);
    broker.produce(&lines, &[(None, "x y"), (None, "y")]);
    read_until(broker, &counts, 2, expect(&[("x", 1), ("y", 2)]));
    assert!(streams.close(WAIT));
    assert!(streams.error().is_none(), "{:?}", streams.error());
}

#[test]
fn bad_settings_and_missing_topics_are_clear_errors() {
    let broker = shared_broker();
    let topology = || apps::word_count("no-such-lines", "out", "s").unwrap();
    let error = KafkaStreams::new(topology(), streams_core::StreamsConfig::new("x")).unwrap_err();
    assert!(
        error.to_string().contains("bootstrap.servers must be set"),
        "{error}"
    );
    let config =
        apps::config("x", broker.bootstrap_servers(), "/tmp").set("processing.guarantee", "twice");
    let error = KafkaStreams::new(topology(), config).unwrap_err();
    assert!(
        error.to_string().contains("processing.guarantee"),
        "{error}"
    );

    let config = apps::config(&unique("missing"), broker.bootstrap_servers(), "/tmp");
    let streams = KafkaStreams::new(topology(), config).unwrap();
    let error = streams.start().unwrap_err();
    assert!(
        error
            .to_string()
            .contains("source topics do not exist: no-such-lines"),
        "{error}"
    );
    assert_eq!(streams.state(), State::Created);
}

#[test]
fn a_join_over_topics_with_different_partition_counts_is_refused() {
    use streams_core::dsl::{Consumed, Materialized, Produced};
    use streams_core::serde::StringSerde;
    let broker = shared_broker();
    let [left] = broker.unique_topics(["left"], 2);
    let [right] = broker.unique_topics(["right"], 3);
    let builder = streams_core::StreamsBuilder::new();
    let table = builder.table(
        &right,
        Consumed::with(StringSerde, StringSerde),
        Materialized::named("r").in_memory(),
    );
    builder
        .stream_with([&left], Consumed::with(StringSerde, StringSerde))
        .join(&table, |a, b| format!("{a}{b}"))
        .to_with("joined", Produced::with(StringSerde, StringSerde));
    let config = apps::config(&unique("copart"), broker.bootstrap_servers(), "/tmp");
    let streams = KafkaStreams::new(builder.build().unwrap(), config).unwrap();
    let error = streams.start().unwrap_err().to_string();
    assert!(error.contains("co-partitioned"), "{error}");
    assert!(
        error.contains(&format!("{left} (2)")) && error.contains(&format!("{right} (3)")),
        "{error}"
    );
}

#[test]
fn an_unreachable_broker_fails_start_clearly() {
    // A port nobody listens on: bind, note it, release it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config =
        apps::config("down", &format!("127.0.0.1:{port}"), "/tmp").set("socket.timeout.ms", "2000");
    let streams = KafkaStreams::new(apps::word_count("l", "c", "s").unwrap(), config).unwrap();
    let began = Instant::now();
    let error = streams.start().unwrap_err().to_string();
    assert!(error.contains("is the broker up?"), "{error}");
    assert!(began.elapsed() < Duration::from_secs(60));
}

#[test]
fn a_processing_error_stops_processing_and_reports_the_cause() {
    use streams_core::dsl::{Consumed, Produced};
    use streams_core::processor::{ProcessResult, Processor, ProcessorContext};
    use streams_core::serde::StringSerde;
    struct Picky;
    impl Processor<String, String> for Picky {
        fn process(
            &mut self,
            r: streams_core::Record<String, String>,
            ctx: &mut ProcessorContext<'_, String, String>,
        ) -> ProcessResult {
            if r.value == "poison" {
                return Err("poison record".into());
            }
            ctx.forward(r)?;
            Ok(())
        }
    }
    let broker = shared_broker();
    let [input, output] = broker.unique_topics(["in", "out"], 1);
    let app = unique("poison");
    let builder = streams_core::StreamsBuilder::new();
    builder
        .stream_with([&input], Consumed::with(StringSerde, StringSerde))
        .process(|| Picky, &[])
        .to_with(&output, Produced::with(StringSerde, StringSerde));
    let state_dir = tempfile::tempdir().unwrap();
    let config = broker.streams_config(&app, state_dir.path());
    let streams = apps::start(builder.build().unwrap(), config);
    broker.produce(&input, &[(Some("k"), "fine"), (Some("k"), "poison")]);
    assert!(
        streams.wait_for_state(State::Error, WAIT),
        "state is {:?}",
        streams.state()
    );
    let cause = streams.error().unwrap().to_string();
    assert!(
        cause.contains("poison record") && cause.contains("KSTREAM-PROCESSOR-"),
        "{cause}"
    );
    assert!(streams.close(WAIT));
}

#[test]
fn a_global_table_is_read_in_full_and_joined_by_any_key() {
    use streams_core::dsl::{Consumed, Materialized, Produced};
    use streams_core::serde::StringSerde;
    let broker = shared_broker();
    let [products] = broker.unique_topics(["products"], 3);
    let [orders, out] = broker.unique_topics(["orders", "enriched"], 2);
    let app = unique("global");
    // Published before start: the global store must be caught up first.
    broker.produce(
        &products,
        &[
            (Some("p1"), "pen"),
            (Some("p2"), "ink"),
            (Some("p3"), "pad"),
        ],
    );
    let builder = streams_core::StreamsBuilder::new();
    let table = builder.global_table(
        &products,
        Consumed::with(StringSerde, StringSerde),
        Materialized::named("products").in_memory(),
    );
    builder
        .stream_with([&orders], Consumed::with(StringSerde, StringSerde))
        .join_global(
            &table,
            |_, product| product.clone(),
            |product, name| format!("{product}:{name}"),
        )
        .to_with(&out, Produced::with(StringSerde, StringSerde));
    let state_dir = tempfile::tempdir().unwrap();
    let config = broker.streams_config(&app, state_dir.path());
    let streams = apps::start(builder.build().unwrap(), config);
    broker.produce(
        &orders,
        &[(Some("o1"), "p1"), (Some("o2"), "p3"), (Some("o3"), "p2")],
    );
    let consumer = broker.read_from_start(&out, 2);
    let mut joined = Vec::new();
    let deadline = Instant::now() + WAIT;
    while joined.len() < 3 {
        assert!(Instant::now() < deadline, "joined so far: {joined:?}");
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            joined.push(String::from_utf8(message.payload().unwrap().to_vec()).unwrap());
        }
    }
    joined.sort();
    assert_eq!(joined, ["p1:pen", "p2:ink", "p3:pad"]);
    // The global store is queryable like any other, on every instance.
    let products = streams.store::<String, String>("products").unwrap();
    assert_eq!(
        products.get(&"p2".to_owned()).unwrap(),
        Some("ink".to_owned())
    );
    assert_eq!(products.all().unwrap().len(), 3);
    assert!(
        streams.store::<String, i64>("products").is_err(),
        "wrong types"
    );
    assert!(
        streams.store::<String, String>("nope").is_err(),
        "unknown store"
    );
    assert!(streams.close(WAIT));
}

#[test]
fn a_fenced_producer_is_replaced_and_processing_goes_on_exactly_once() {
    let broker = shared_broker();
    let [ids, out] = broker.unique_topics(["ids", "id-counts"], 1);
    let app = unique("fenced");
    let state_dir = tempfile::tempdir().unwrap();
    let topology = apps::id_count(&ids, &out, "id-store").unwrap();
    let config = broker
        .streams_config(&app, state_dir.path())
        .set("processing.guarantee", "exactly_once_v2");
    let streams = KafkaStreams::new(topology, config).unwrap();
    let states = Arc::new(Mutex::new(Vec::new()));
    let s = states.clone();
    streams.set_state_listener(move |_, new| s.lock().unwrap().push(new));
    streams.start().unwrap();
    assert!(streams.wait_for_state(State::Running, WAIT));
    let first: Vec<String> = (0..20).map(|i| format!("first-{i}")).collect();
    let records: Vec<(Option<&str>, &str)> =
        first.iter().map(|k| (Some(k.as_str()), "x")).collect();
    broker.produce(&ids, &records);
    read_until(broker, &out, 1, |latest| latest.len() == 20);

    // A newer producer with the thread's transactional id, as a zombie's
    // successor would have: the instance's producer is fenced.
    let metadata = std::fs::read_to_string(
        state_dir
            .path()
            .join(&app)
            .join("kafka-streams-process-metadata"),
    )
    .unwrap();
    let process_id = metadata.split('"').nth(3).unwrap().to_owned();
    let usurper: BaseProducer = broker
        .client_config()
        .set("transactional.id", format!("{app}-{process_id}-0"))
        .create()
        .unwrap();
    usurper.init_transactions(Duration::from_secs(30)).unwrap();
    states.lock().unwrap().clear();

    let second: Vec<String> = (0..20).map(|i| format!("second-{i}")).collect();
    let records: Vec<(Option<&str>, &str)> =
        second.iter().map(|k| (Some(k.as_str()), "x")).collect();
    broker.produce(&ids, &records);
    let progress = std::thread::scope(|scope| {
        let reader = scope.spawn(|| read_until(broker, &out, 1, |latest| latest.len() == 40));
        while !reader.is_finished() {
            std::thread::sleep(Duration::from_millis(200));
        }
        reader.join()
    });
    assert!(
        progress.is_ok(),
        "no output after the fence; states {:?}, error {:?}",
        states.lock().unwrap(),
        streams.error()
    );
    // The thread recovered by itself: it rejoined, it did not fail.
    let seen = states.lock().unwrap().clone();
    assert!(seen.contains(&State::Rebalancing), "states: {seen:?}");
    assert!(!seen.contains(&State::Error), "states: {seen:?}");
    assert!(streams.error().is_none(), "{:?}", streams.error());
    assert!(streams.wait_for_state(State::Running, WAIT));
    // Each record counted once in what a read_committed reader sees.
    let committed =
        tests::committed::read_committed_topic(broker.bootstrap_servers(), &out, 1).unwrap();
    let mut outputs: HashMap<String, Vec<i64>> = HashMap::new();
    for record in &committed.records {
        let key = String::from_utf8(record.key.clone().unwrap()).unwrap();
        let value = i64::from_be_bytes(record.value.clone().unwrap().try_into().unwrap());
        outputs.entry(key).or_default().push(value);
    }
    assert_eq!(outputs.len(), 40);
    for (key, values) in &outputs {
        assert_eq!(values, &[1], "{key}");
    }
    assert!(streams.close(WAIT));
    drop(usurper);
}

/// A persistent global store keeps a checkpoint: a restart reads only the
/// records published since, and still holds the earlier ones (a deleted key
/// stays deleted). A checkpoint beyond the topic's end (the topic deleted
/// and made anew) is dropped and the topic read from its start.
#[test]
fn a_persistent_global_store_restarts_from_its_checkpoint() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use streams_core::processor::{ProcessResult, Processor, ProcessorContext};
    use streams_core::serde::{Nullable, StringSerde};
    use streams_core::state::Stores;
    use streams_core::{Record, Topology};

    /// Puts each record into the store, counting them.
    struct Loader(Arc<AtomicU64>);
    impl Processor<String, Option<String>, (), ()> for Loader {
        fn process(
            &mut self,
            r: Record<String, Option<String>>,
            ctx: &mut ProcessorContext<'_, (), ()>,
        ) -> ProcessResult {
            self.0.fetch_add(1, Ordering::Relaxed);
            let store = ctx.key_value_store::<String, String>("catalogue")?;
            match r.value {
                Some(value) => store.put(&r.key, &value)?,
                None => {
                    store.delete(&r.key)?;
                }
            }
            Ok(())
        }
    }
    let broker = shared_broker();
    let [topic] = broker.unique_topics(["catalogue"], 2);
    let app = unique("global-checkpoint");
    let state_dir = tempfile::tempdir().unwrap();
    let start = |read: Arc<AtomicU64>| {
        let mut topology = Topology::new();
        topology
            .add_global_store(
                Stores::key_value_store_builder(
                    Stores::persistent_key_value_store("catalogue"),
                    StringSerde,
                    StringSerde,
                )
                .with_logging_disabled(),
                "catalogue-source",
                StringSerde,
                Nullable(StringSerde),
                &topic,
                "catalogue-loader",
                move || Loader(read.clone()),
            )
            .unwrap();
        let config = broker.streams_config(&app, state_dir.path());
        apps::start(topology, config)
    };
    let read = Arc::new(AtomicU64::new(0));
    broker.produce(
        &topic,
        &[(Some("a"), "1"), (Some("b"), "2"), (Some("c"), "3")],
    );
    let streams = start(read.clone());
    assert_eq!(read.load(Ordering::Relaxed), 3);
    assert!(streams.close(WAIT));

    // Published while it was down: a new key, and a tombstone for `a`.
    let producer: BaseProducer = broker.client_config().create().unwrap();
    producer
        .send(rdkafka::producer::BaseRecord::<str, str>::to(&topic).key("a"))
        .map_err(|(e, _)| e)
        .unwrap();
    producer.flush(Duration::from_secs(10)).unwrap();
    broker.produce(&topic, &[(Some("d"), "4")]);
    let read = Arc::new(AtomicU64::new(0));
    let streams = start(read.clone());
    assert_eq!(
        read.load(Ordering::Relaxed),
        2,
        "only what was published since"
    );
    let kv = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    let contents = |streams: &KafkaStreams| {
        let mut all = streams
            .store::<String, String>("catalogue")
            .unwrap()
            .all()
            .unwrap();
        all.sort();
        all
    };
    assert_eq!(
        contents(&streams),
        [kv("b", "2"), kv("c", "3"), kv("d", "4")]
    );
    assert!(streams.close(WAIT));

    // A checkpoint beyond the topic's end (as after the topic is deleted and
    // made anew) is not trusted: the local files go, the topic is read in
    // full.
    let checkpoint = state_dir
        .path()
        .join(&app)
        .join("global")
        .join(".checkpoint");
    let text = std::fs::read_to_string(&checkpoint).unwrap();
    assert!(text.starts_with("1\n"), "{text}");
    std::fs::write(
        &checkpoint,
        format!("1\n{topic} 0 1000000\n{topic} 1 1000000\n"),
    )
    .unwrap();
    let read = Arc::new(AtomicU64::new(0));
    let streams = start(read.clone());
    assert_eq!(read.load(Ordering::Relaxed), 5);
    assert_eq!(
        contents(&streams),
        [kv("b", "2"), kv("c", "3"), kv("d", "4")]
    );
    assert!(streams.close(WAIT));
}

#[test]
fn a_second_instance_on_one_state_directory_is_refused_at_start() {
    let broker = shared_broker();
    let [lines, counts] = broker.unique_topics(["lines", "counts"], 1);
    let app = unique("locked");
    let state_dir = tempfile::tempdir().unwrap();
    let instance = || {
        let config = broker.streams_config(&app, state_dir.path());
        KafkaStreams::new(apps::word_count(&lines, &counts, "s").unwrap(), config).unwrap()
    };
    let first = instance();
    first.start().unwrap();
    let second = instance();
    let error = second.start().unwrap_err().to_string();
    let app_dir = state_dir.path().join(&app);
    assert!(
        error.contains("locked by another instance")
            && error.contains(&app_dir.display().to_string()),
        "{error}"
    );
    assert_eq!(second.state(), State::Created);
    // The first goes on undisturbed.
    broker.produce(&lines, &[(None, "a a")]);
    read_until(broker, &counts, 1, expect(&[("a", 2)]));
    assert!(first.error().is_none(), "{:?}", first.error());
    // Closing releases the directory.
    assert!(first.close(WAIT));
    let third = instance();
    third.start().unwrap();
    assert!(third.wait_for_state(State::Running, WAIT));
    assert!(third.close(WAIT));
}

#[test]
fn consumer_lag_counts_from_the_position_and_is_zero_once_caught_up() {
    use streams_core::dsl::{Consumed, Produced};
    use streams_core::serde::StringSerde;
    let broker = shared_broker();
    let [input, output] = broker.unique_topics(["lag-in", "lag-out"], 2);
    let app = unique("lag");
    const RECORDS: usize = 2_000;
    let keys: Vec<String> = (0..RECORDS).map(|i| format!("k{i}")).collect();
    let records: Vec<(Option<&str>, &str)> = keys.iter().map(|k| (Some(k.as_str()), "v")).collect();
    broker.produce(&input, &records);
    // Slow on purpose (2 ms a record, so seconds behind the end), which
    // lets the metric be seen while records wait.
    let builder = streams_core::StreamsBuilder::new();
    builder
        .stream_with([&input], Consumed::with(StringSerde, StringSerde))
        .peek(|_, _| std::thread::sleep(Duration::from_millis(2)))
        .to_with(&output, Produced::with(StringSerde, StringSerde));
    let state_dir = tempfile::tempdir().unwrap();
    // No commit while it runs: a lag counted from the committed offset
    // would stay at the whole input (or be unknown).
    let config = broker
        .streams_config(&app, state_dir.path())
        .set("commit.interval.ms", "600000")
        .set("consumer.statistics.interval.ms", "200");
    let streams = apps::start(builder.build().unwrap(), config);
    let lags = || -> Vec<i64> {
        let snapshot = streams.metrics();
        (0..2)
            .filter_map(|p| snapshot.consumer_lag.get(&(input.clone(), p)).copied())
            .collect()
    };
    let deadline = Instant::now() + WAIT;
    while lags().iter().sum::<i64>() < 100 {
        assert!(
            Instant::now() < deadline,
            "no lag reported while records wait; the last report: {:?}",
            lags()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Every record through.
    let consumer = broker.read_from_start(&output, 2);
    let mut out = 0;
    let deadline = Instant::now() + WAIT;
    while out < RECORDS {
        assert!(Instant::now() < deadline, "{out} of {RECORDS} records out");
        if let Some(Ok(_)) = consumer.poll(Duration::from_millis(100)) {
            out += 1;
        }
    }
    // Caught up, with nothing committed yet: every partition reports 0.
    let deadline = Instant::now() + WAIT;
    while lags() != [0, 0] {
        assert!(
            Instant::now() < deadline,
            "caught up, yet the lag is {:?}",
            lags()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let text = streams.metrics().to_prometheus(&app);
    let line = format!(
        "streams_consumer_lag_records{{application_id=\"{app}\",topic=\"{input}\",partition=\"0\"}} 0"
    );
    assert!(text.contains(&line), "{line} missing from\n{text}");
    assert!(streams.close(WAIT));
}

#[test]
fn records_of_another_producer_are_all_read_whatever_their_compression() {
    use rdkafka::producer::BaseRecord;
    let broker = shared_broker();
    let [ids, out] = broker.unique_topics(["codec-ids", "codec-out"], 2);
    let app = unique("codec");
    const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];
    const PER_CODEC: usize = 300;
    for codec in CODECS {
        // A plain librdkafka producer, not the framework's: its batches
        // (several records each, lingering) are compressed with `codec`.
        let producer: BaseProducer = broker
            .client_config()
            .set("compression.type", codec)
            .set("linger.ms", "20")
            .create()
            .unwrap_or_else(|e| panic!("a producer with compression.type={codec}: {e}"));
        for i in 0..PER_CODEC {
            let key = format!("{codec}-{i}");
            producer
                .send(BaseRecord::to(&ids).key(&key).payload("x"))
                .map_err(|(e, _)| e)
                .unwrap();
        }
        producer.flush(Duration::from_secs(30)).unwrap();
    }
    let state_dir = tempfile::tempdir().unwrap();
    let config = broker.streams_config(&app, state_dir.path());
    let streams = apps::start(apps::id_count(&ids, &out, "ids").unwrap(), config);
    let consumer = broker.read_from_start(&out, 2);
    let mut counted: HashMap<String, i64> = HashMap::new();
    let deadline = Instant::now() + WAIT;
    while counted.len() < CODECS.len() * PER_CODEC {
        if Instant::now() > deadline {
            let missing: Vec<&str> = CODECS
                .iter()
                .filter(|c| !counted.contains_key(&format!("{c}-0")))
                .copied()
                .collect();
            panic!(
                "{} of {} records counted; codecs not read: {missing:?}; state {:?}, error {:?}",
                counted.len(),
                CODECS.len() * PER_CODEC,
                streams.state(),
                streams.error()
            );
        }
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            let key = String::from_utf8(message.key().unwrap().to_vec()).unwrap();
            let value = i64::from_be_bytes(message.payload().unwrap().try_into().unwrap());
            counted.insert(key, value);
        }
    }
    assert!(counted.values().all(|&n| n == 1), "each record once");
    assert_eq!(streams.state(), State::Running);
    assert!(streams.close(WAIT));
}

#[test]
fn a_batch_that_cannot_be_read_fails_the_client_instead_of_stalling_it() {
    let broker = shared_broker();
    let [ids, out] = broker.unique_topics(["bad-ids", "bad-out"], 1);
    let app = unique("bad-batch");
    let state_dir = tempfile::tempdir().unwrap();
    let config = broker.streams_config(&app, state_dir.path());
    let streams = apps::start(apps::id_count(&ids, &out, "ids").unwrap(), config);
    broker.produce(&ids, &[(Some("before"), "x")]);
    read_until(broker, &out, 1, expect(&[("before", 1)]));
    // Gzip by its attributes, but not gzip inside: no consumer can read it.
    let batch = tests::committed::raw_batch(1, 1, b"this is not gzip");
    tests::committed::produce_raw(broker.bootstrap_servers(), &ids, 0, &batch).unwrap();
    broker.produce(&ids, &[(Some("after"), "x")]);
    assert!(
        streams.wait_for_state(State::Error, WAIT),
        "state {:?}",
        streams.state()
    );
    let cause = streams.error().unwrap().to_string();
    assert!(
        cause.contains("consumer error repeated")
            && cause.contains(&format!("{ids}[0] at offset 1")),
        "{cause}"
    );
    assert!(streams.close(WAIT));
}
