//! The Processor API through the TopologyTestDriver: stores, punctuation,
//! record metadata, wiring errors and bad input.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use streams_core::handlers::{DeadLetterQueue, LogAndFail, dead_letter};
use streams_core::processor::{
    Cancellable, ProcessResult, Processor, ProcessorContext, PunctuationType,
};
use streams_core::serde::{I64Serde, StringSerde};
use streams_core::state::{KeyValueStoreBuilder, KeyValueStoreHandle, Stores};
use streams_core::testing::TopologyTestDriver;
use streams_core::{Record, StreamsConfig, StreamsError, Topology};

use common::{numbers, out_values, passthrough, s, strings, through};

/// Sums values per key in a store; on each punctuation forwards every sum.
struct Summer {
    kind: PunctuationType,
    store: Option<KeyValueStoreHandle<String, i64>>,
    punctuated: Arc<Mutex<Vec<i64>>>,
    cancel_after: Option<usize>,
    handle: Option<Cancellable>,
}

impl Summer {
    fn new(kind: PunctuationType, punctuated: Arc<Mutex<Vec<i64>>>) -> Self {
        Summer {
            kind,
            store: None,
            punctuated,
            cancel_after: None,
            handle: None,
        }
    }
}

impl Processor<String, i64, String, i64> for Summer {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, String, i64>) -> ProcessResult {
        let store = ctx.key_value_store::<String, i64>("sums")?;
        self.store = Some(store.clone());
        let punctuated = self.punctuated.clone();
        let cancel_after = self.cancel_after;
        let handle = ctx.schedule(Duration::from_millis(10), self.kind, move |time, ctx| {
            let mut seen = punctuated.lock().unwrap();
            seen.push(time);
            if cancel_after.is_some_and(|n| seen.len() >= n) {
                return Ok(());
            }
            assert!(
                ctx.record_metadata().is_none(),
                "no record during punctuation"
            );
            for (key, sum) in store.all()? {
                ctx.forward(Record::new(key, sum, time))?;
            }
            Ok(())
        })?;
        self.handle = Some(handle);
        Ok(())
    }

    fn process(
        &mut self,
        record: Record<String, i64>,
        ctx: &mut ProcessorContext<'_, String, i64>,
    ) -> ProcessResult {
        let metadata = ctx.record_metadata().expect("metadata while processing");
        assert_eq!(metadata.topic, "numbers");
        let store = self.store.as_ref().unwrap();
        let sum = store.get(&record.key)?.unwrap_or(0) + record.value;
        store.put(&record.key, &sum)?;
        if let Some(n) = self.cancel_after
            && self.punctuated.lock().unwrap().len() >= n
        {
            self.handle.as_ref().unwrap().cancel();
        }
        Ok(())
    }
}

fn summing_topology(make: impl Fn() -> Summer + Send + Sync + 'static) -> Topology {
    let mut topology = Topology::new();
    topology
        .add_source("numbers-source", StringSerde, I64Serde, &["numbers"])
        .unwrap()
        .add_processor("summer", make, &["numbers-source"])
        .unwrap()
        .add_state_store(
            Stores::key_value_store_builder(
                Stores::in_memory_key_value_store("sums"),
                StringSerde,
                I64Serde,
            ),
            &["summer"],
        )
        .unwrap()
        .add_sink("sums-sink", "sums", StringSerde, I64Serde, &["summer"])
        .unwrap();
    topology
}

#[test]
fn stream_time_punctuation_fires_as_record_time_advances() {
    let punctuated = Arc::new(Mutex::new(Vec::new()));
    let p = punctuated.clone();
    let topology = summing_topology(move || Summer::new(PunctuationType::StreamTime, p.clone()));
    let d = TopologyTestDriver::with_wall_clock(topology, StreamsConfig::new("p"), 0).unwrap();
    let mut numbers = d.create_input_topic("numbers", StringSerde, I64Serde);
    let sums = d.create_output_topic("sums", StringSerde, I64Serde);

    numbers.pipe_input_at(s("a"), 1, 0); // first data: fires at stream time 0
    assert_eq!(sums.read_key_values_to_list(), [(s("a"), 1)]);
    numbers.pipe_input_at(s("a"), 2, 5); // not due
    assert!(sums.is_empty());
    numbers.pipe_input_at(s("b"), 3, 10); // due at 10
    assert_eq!(sums.read_key_values_to_list(), [(s("a"), 3), (s("b"), 3)]);
    numbers.pipe_input_at(s("b"), 1, 3); // out of order: stream time stays 10
    assert!(sums.is_empty());
    numbers.pipe_input_at(s("b"), 1, 45); // skipped intervals fire once
    assert_eq!(sums.queue_size(), 2);
    // Wall-clock time does not fire stream-time punctuations.
    d.advance_wall_clock_time(Duration::from_secs(60));
    assert_eq!(*punctuated.lock().unwrap(), [0, 10, 45]);
    numbers.pipe_input_at(s("b"), 1, 49);
    numbers.pipe_input_at(s("b"), 1, 50);
    assert_eq!(*punctuated.lock().unwrap(), [0, 10, 45, 50]);
}

#[test]
fn wall_clock_punctuation_fires_without_records_and_can_be_cancelled() {
    let punctuated = Arc::new(Mutex::new(Vec::new()));
    let p = punctuated.clone();
    let topology = summing_topology(move || {
        let mut summer = Summer::new(PunctuationType::WallClockTime, p.clone());
        summer.cancel_after = Some(3);
        summer
    });
    let d = TopologyTestDriver::with_wall_clock(topology, StreamsConfig::new("p"), 1_000).unwrap();
    let mut numbers = d.create_input_topic("numbers", StringSerde, I64Serde);
    let sums = d.create_output_topic("sums", StringSerde, I64Serde);
    numbers.pipe_input_at(s("a"), 5, 999_999); // record time is irrelevant
    assert!(punctuated.lock().unwrap().is_empty());
    d.advance_wall_clock_time(Duration::from_millis(9));
    assert!(punctuated.lock().unwrap().is_empty());
    d.advance_wall_clock_time(Duration::from_millis(1));
    assert_eq!(*punctuated.lock().unwrap(), [1_010]);
    assert_eq!(sums.read_key_value(), (s("a"), 5));
    d.advance_wall_clock_time(Duration::from_millis(35));
    assert_eq!(*punctuated.lock().unwrap(), [1_010, 1_045]);
    d.advance_wall_clock_time(Duration::from_millis(5));
    assert_eq!(*punctuated.lock().unwrap(), [1_010, 1_045, 1_050]);
    // The processor cancels its schedule on the next record.
    numbers.pipe_input_at(s("a"), 1, 0);
    d.advance_wall_clock_time(Duration::from_secs(1));
    assert_eq!(punctuated.lock().unwrap().len(), 3);
}

#[test]
fn describe_lists_subtopologies_nodes_stores_and_topics() {
    let topology = summing_topology(|| Summer::new(PunctuationType::StreamTime, Arc::default()));
    let text = topology.describe().to_string();
    let expected = "\
Topologies:
   Sub-topology: 0
    Source: numbers-source (topics: [numbers])
      --> summer
    Processor: summer (stores: [sums])
      --> sums-sink
      <-- numbers-source
    Sink: sums-sink (topic: sums)
      <-- summer
";
    assert_eq!(text, expected);
}

#[test]
fn wiring_mistakes_are_topology_errors() {
    let mut t = Topology::new();
    t.add_source("src", StringSerde, I64Serde, &["in"]).unwrap();
    let err = |e: StreamsError| e.to_string();
    assert!(
        err(t
            .add_source("src", StringSerde, I64Serde, &["x"])
            .unwrap_err())
        .contains("already exists")
    );
    assert!(
        err(t
            .add_source("src2", StringSerde, I64Serde, &["in"])
            .unwrap_err())
        .contains("already read")
    );
    assert!(
        err(t
            .add_sink("sink", "out", StringSerde, I64Serde, &["nope"])
            .unwrap_err())
        .contains("does not exist")
    );
    // A sink of the wrong types for its parent.
    let wrong = t
        .add_sink("sink", "out", StringSerde, StringSerde, &["src"])
        .unwrap_err();
    assert!(err(wrong).contains("takes records of (alloc::string::String, alloc::string::String)"));
    t.add_sink("sink", "out", StringSerde, I64Serde, &["src"])
        .unwrap();
    assert!(
        err(t
            .add_sink("sink2", "out", StringSerde, I64Serde, &["sink"])
            .unwrap_err())
        .contains("is a sink")
    );
    assert!(
        err(t
            .connect_processor_and_state_stores("sink", &["x"])
            .unwrap_err())
        .contains("does not exist")
    );
}

#[test]
fn a_processor_that_uses_an_unconnected_store_gets_a_clear_error() {
    struct Sneaky;
    impl Processor<String, i64> for Sneaky {
        fn process(
            &mut self,
            _: Record<String, i64>,
            ctx: &mut ProcessorContext<'_, String, i64>,
        ) -> ProcessResult {
            ctx.key_value_store::<String, i64>("sums")?;
            Ok(())
        }
    }
    let mut topology =
        summing_topology(|| Summer::new(PunctuationType::StreamTime, Arc::default()));
    topology
        .add_processor("sneaky", || Sneaky, &["numbers-source"])
        .unwrap();
    let d = TopologyTestDriver::new(topology, StreamsConfig::new("p")).unwrap();
    let mut input = d.create_input_topic("numbers", StringSerde, I64Serde);
    let error = input
        .try_pipe(&s("k"), Some(&1), 0, Default::default())
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        "state store `sums`: processor `sneaky` is not connected to it"
    );
}

#[test]
fn processing_errors_name_the_node_and_stop_the_record() {
    struct Fails;
    impl Processor<String, i64> for Fails {
        fn process(
            &mut self,
            r: Record<String, i64>,
            ctx: &mut ProcessorContext<'_, String, i64>,
        ) -> ProcessResult {
            if r.value < 0 {
                return Err(format!("negative value {}", r.value).into());
            }
            ctx.forward(r)?;
            Ok(())
        }
    }
    let d = through("check", || Fails, StreamsConfig::new("p"));
    let mut input = d.create_input_topic("in", StringSerde, I64Serde);
    input.pipe_input(s("ok"), 1);
    let error = input
        .try_pipe(&s("bad"), Some(&-3), 0, Default::default())
        .unwrap_err();
    assert!(
        matches!(error, StreamsError::Processing { ref node, .. } if node == "check"),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "processor `check` failed: record in[0]@1: negative value -3"
    );
    assert_eq!(out_values(&d), [1]);
}

#[test]
fn unreadable_records_are_skipped_by_default() {
    let d = passthrough(StreamsConfig::new("p"));
    let mut input = d.create_input_topic("in", StringSerde, I64Serde);
    input
        .pipe_raw(Some(b"k"), Some(b"not eight bytes"))
        .unwrap();
    input.pipe_raw(Some(b"k"), None).unwrap(); // a null where an i64 is expected
    input.pipe_input(s("k"), 7);
    assert_eq!(out_values(&d), [7]);
    assert_eq!(d.dropped_records(), 2);
}

#[test]
fn log_and_fail_stops_with_the_location() {
    let d = passthrough(StreamsConfig::new("p").with_deserialization_handler(LogAndFail));
    let mut input = d.create_input_topic("in", StringSerde, I64Serde);
    input.pipe_input(s("k"), 1);
    let error = input.pipe_raw(Some(b"k"), Some(b"xyz")).unwrap_err();
    assert_eq!(
        error.to_string(),
        "cannot deserialize record from in[0]@1: expected i64 of 8 bytes, got 3"
    );
}

#[test]
fn dead_letters_carry_the_original_bytes_and_the_error() {
    let d = passthrough(
        StreamsConfig::new("p").with_deserialization_handler(DeadLetterQueue::new("in-dlq")),
    );
    let mut input = d.create_input_topic("in", StringSerde, I64Serde);
    input.pipe_raw(Some(b"k"), Some(b"xyz")).unwrap();
    input.pipe_input(s("k"), 2);
    let letters = d.read_raw("in-dlq");
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].value.as_deref(), Some(&b"xyz"[..]));
    let header = |name| common::header(&letters[0], name);
    assert_eq!(header(dead_letter::TOPIC).as_deref(), Some("in"));
    assert_eq!(header(dead_letter::PARTITION).as_deref(), Some("0"));
    assert_eq!(header(dead_letter::OFFSET).as_deref(), Some("0"));
    assert!(
        header(dead_letter::EXCEPTION_MESSAGE)
            .unwrap()
            .contains("8 bytes")
    );
    assert_eq!(out_values(&d), [2]);
}

/// A builder of the in-memory store `rates` (string keys and values),
/// logged: as a global store it needs `with_logging_disabled`.
fn rates_store() -> KeyValueStoreBuilder<String, String> {
    Stores::key_value_store_builder(
        Stores::in_memory_key_value_store("rates"),
        StringSerde,
        StringSerde,
    )
}

/// The rate of `key` in global store `rates`, empty when it has none.
fn rate<K, V>(ctx: &ProcessorContext<'_, K, V>, key: &String) -> Result<String, StreamsError> {
    Ok(ctx
        .key_value_store::<String, String>("rates")?
        .get(key)?
        .unwrap_or_default())
}

/// Keeps global store `rates` from its topic.
struct RatesLoader;

impl Processor<String, String, (), ()> for RatesLoader {
    fn process(
        &mut self,
        r: Record<String, String>,
        ctx: &mut ProcessorContext<'_, (), ()>,
    ) -> ProcessResult {
        ctx.key_value_store::<String, String>("rates")?
            .put(&r.key, &r.value)?;
        Ok(())
    }
}

#[test]
fn global_store_through_the_processor_api_is_readable_by_every_task() {
    struct Convert;
    impl Processor<String, i64, String, String> for Convert {
        fn process(
            &mut self,
            r: Record<String, i64>,
            ctx: &mut ProcessorContext<'_, String, String>,
        ) -> ProcessResult {
            let rate = rate(ctx, &r.key)?;
            let value = format!("{} at {rate}", r.value);
            ctx.forward(r.with_value(value))?;
            Ok(())
        }
    }
    let mut topology = Topology::new();
    topology
        .add_global_store(
            rates_store().with_logging_disabled(),
            "rates-source",
            StringSerde,
            StringSerde,
            "rates",
            "rates-loader",
            || RatesLoader,
        )
        .unwrap()
        .add_source("src", StringSerde, I64Serde, &["amounts"])
        .unwrap()
        .add_processor("convert", || Convert, &["src"])
        .unwrap()
        .add_sink("sink", "converted", StringSerde, StringSerde, &["convert"])
        .unwrap();
    let d = TopologyTestDriver::new(topology, StreamsConfig::new("g")).unwrap();
    d.create_input_topic("rates", StringSerde, StringSerde)
        .pipe_input(s("eur"), s("1.1"));
    d.create_input_topic("amounts", StringSerde, I64Serde)
        .pipe_input(s("eur"), 10);
    assert_eq!(
        d.create_output_topic("converted", StringSerde, StringSerde)
            .read_value(),
        "10 at 1.1"
    );
}

#[test]
fn a_logged_global_store_is_rejected() {
    let mut topology = Topology::new();
    let error = topology
        .add_global_store(
            rates_store(),
            "s",
            StringSerde,
            StringSerde,
            "t",
            "p",
            || RatesLoader,
        )
        .unwrap_err();
    assert!(error.to_string().contains("must not be logged"), "{error}");
}

#[test]
fn stores_are_flushed_and_logged_through_a_cache() {
    struct Count;
    impl Processor<String, i64> for Count {
        fn process(
            &mut self,
            r: Record<String, i64>,
            ctx: &mut ProcessorContext<'_, String, i64>,
        ) -> ProcessResult {
            let store = ctx.key_value_store::<String, i64>("counts")?;
            let n = store.get(&r.key)?.unwrap_or(0) + 1;
            store.put(&r.key, &n)?;
            Ok(())
        }
    }
    let mut topology = Topology::new();
    topology
        .add_source("src", StringSerde, I64Serde, &["in"])
        .unwrap()
        .add_processor("count", || Count, &["src"])
        .unwrap()
        .add_state_store(
            Stores::key_value_store_builder(
                Stores::persistent_key_value_store("counts"),
                StringSerde,
                I64Serde,
            )
            .with_caching_enabled(1 << 20),
            &["count"],
        )
        .unwrap();
    let d = TopologyTestDriver::new(topology, StreamsConfig::new("c")).unwrap();
    let mut input = d.create_input_topic("in", StringSerde, I64Serde);
    // The driver commits after every record, as Kafka Streams' does, so the
    // cache flushes each time and every write reaches the changelog (that
    // writes collapse between commits is the cache's own test).
    for _ in 0..100 {
        input.pipe_input(s("hot"), 0);
    }
    d.flush().unwrap();
    let changelog = d.read_raw("c-counts-changelog");
    assert_eq!(changelog.len(), 100, "one changelog record per commit");
    let changelog = &changelog[99..];
    assert_eq!(
        changelog[0].value.as_deref(),
        Some(&100i64.to_be_bytes()[..])
    );
    assert_eq!(changelog[0].partition, 0);
}

#[test]
fn global_store_and_state_store_through_the_dsl() {
    // The DSL's addGlobalStore / addStateStore + process: a global store
    // kept by its own processor, read by a DSL processor that also counts
    // in a store of its own.
    struct Convert;
    impl Processor<String, i64, String, String> for Convert {
        fn process(
            &mut self,
            r: Record<String, i64>,
            ctx: &mut ProcessorContext<'_, String, String>,
        ) -> ProcessResult {
            let rate = rate(ctx, &r.key)?;
            let seen = ctx.key_value_store::<String, i64>("seen")?;
            let n = seen.get(&r.key)?.unwrap_or(0) + 1;
            seen.put(&r.key, &n)?;
            let value = format!("{} at {rate} (#{n})", r.value);
            ctx.forward(r.with_value(value))?;
            Ok(())
        }
    }
    let builder = streams_core::StreamsBuilder::new();
    builder.add_global_store(
        rates_store().with_logging_disabled(),
        "rates",
        strings(),
        || RatesLoader,
    );
    builder.add_state_store(Stores::key_value_store_builder(
        Stores::in_memory_key_value_store("seen"),
        StringSerde,
        I64Serde,
    ));
    builder
        .stream_with(["amounts"], numbers())
        .process(|| Convert, &["seen"])
        .to_with(
            "converted",
            streams_core::dsl::Produced::with(StringSerde, StringSerde),
        );
    let topology = builder.build().unwrap();
    assert_eq!(topology.describe().global_stores.len(), 1);
    let d = TopologyTestDriver::new(topology, StreamsConfig::new("g")).unwrap();
    d.create_input_topic("rates", StringSerde, StringSerde)
        .pipe_input(s("eur"), s("1.1"));
    let mut amounts = d.create_input_topic("amounts", StringSerde, I64Serde);
    amounts.pipe_input(s("eur"), 10);
    amounts.pipe_input(s("eur"), 20);
    assert_eq!(
        d.create_output_topic("converted", StringSerde, StringSerde)
            .read_values_to_list(),
        ["10 at 1.1 (#1)", "20 at 1.1 (#2)"]
    );
    // A logged global store is refused here too: its topic is its changelog.
    let builder = streams_core::StreamsBuilder::new();
    builder.add_global_store(rates_store(), "rates", strings(), || RatesLoader);
    assert!(builder.build().is_err());
}

/// Notes where each record came from.
struct Origins(Arc<Mutex<Vec<(String, i32, i64)>>>);

impl Processor<String, i64, String, i64> for Origins {
    fn process(
        &mut self,
        _: Record<String, i64>,
        ctx: &mut ProcessorContext<'_, String, i64>,
    ) -> ProcessResult {
        let m = ctx.record_metadata().expect("metadata while processing");
        self.0
            .lock()
            .unwrap()
            .push((m.topic.clone(), m.partition, m.offset));
        Ok(())
    }
}

#[test]
fn record_metadata_follows_each_records_topic_and_offset() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let shared = seen.clone();
    let mut topology = Topology::new();
    topology
        .add_source("both", StringSerde, I64Serde, &["left", "right-hand"])
        .unwrap()
        .add_processor("origins", move || Origins(shared.clone()), &["both"])
        .unwrap();
    let d = TopologyTestDriver::new(topology, StreamsConfig::new("meta")).unwrap();
    let mut left = d.create_input_topic("left", StringSerde, I64Serde);
    let mut right = d.create_input_topic("right-hand", StringSerde, I64Serde);
    left.pipe_input(s("a"), 1);
    right.pipe_input(s("a"), 1);
    right.pipe_input(s("a"), 1);
    left.pipe_input(s("a"), 1);
    let expected = [
        (s("left"), 0, 0),
        (s("right-hand"), 0, 0),
        (s("right-hand"), 0, 1),
        (s("left"), 0, 1),
    ];
    assert_eq!(*seen.lock().unwrap(), expected);
}
