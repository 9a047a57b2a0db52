//! Failures in user code on the real runtime, as Kafka Streams handles
//! them: the processing-exception handler (a poison record goes to a
//! dead-letter topic and nothing stops), a panic that stops the client
//! without committing past the record, and the uncaught-exception
//! handler's `ReplaceThread` and `ShutdownApplication`; a record larger
//! than the producer accepts, under the production-exception handler.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use streams_core::dsl::{Consumed, Produced};
use streams_core::handlers::{
    ContinueOnProductionError, DeadLetterQueue, StreamThreadExceptionResponse, dead_letter,
};
use streams_core::serde::StringSerde;
use streams_core::{StreamsBuilder, StreamsConfig, StreamsError, Topology};
use streams_http::QueryServer;
use streams_kafka::{KafkaStreams, State};
use tests::{Broker, WAIT, apps, shared_broker, unique};

/// input -> map_values (which panics on `poison` while `armed`) -> output.
fn poisoned(input: &str, output: &str, armed: Arc<AtomicBool>) -> Topology {
    let builder = StreamsBuilder::new();
    builder
        .stream_with([input], Consumed::with(StringSerde, StringSerde))
        .map_values(move |v: String| {
            if v == "poison" && armed.load(Ordering::Relaxed) {
                panic!("poison record");
            }
            v.to_uppercase()
        })
        .to_with(output, Produced::with(StringSerde, StringSerde));
    builder.build().unwrap()
}

/// `count` records keyed `k{i}`, valued `v{i}`, except `poison` at the
/// positions given.
fn produce(broker: &Broker, topic: &str, count: usize, poison: &[usize]) {
    let producer: BaseProducer = broker
        .client_config()
        .set("linger.ms", "5")
        .create()
        .unwrap();
    for i in 0..count {
        let key = format!("k{i}");
        let value = match poison.contains(&i) {
            true => "poison".to_owned(),
            false => format!("v{i}"),
        };
        let mut record = BaseRecord::to(topic).key(&key).payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    producer.poll(Duration::from_millis(10));
                    record = back;
                }
            }
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

/// Reads `topic` until `count` distinct keys were seen; returns the
/// records (key, value, headers as (name, value) text).
fn read_keys(
    broker: &Broker,
    topic: &str,
    partitions: i32,
    count: usize,
) -> Vec<(String, String, Vec<(String, String)>)> {
    use rdkafka::message::Headers as _;
    let consumer = broker.read_from_start(topic, partitions);
    let deadline = Instant::now() + WAIT;
    let mut keys = HashSet::new();
    let mut records = Vec::new();
    while keys.len() < count {
        assert!(
            Instant::now() < deadline,
            "{topic}: {} of {count} keys",
            keys.len()
        );
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let text = |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
        let headers = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_owned(), text(h.value)))
                    .collect()
            })
            .unwrap_or_default();
        let key = text(message.key());
        keys.insert(key.clone());
        records.push((key, text(message.payload()), headers));
    }
    records
}

#[test]
fn a_poison_record_among_ten_thousand_goes_to_the_dead_letter_topic() {
    let broker = shared_broker();
    let [input, output] = broker.unique_topics(["in", "out"], 2);
    let [dlq] = broker.unique_topics(["dlq"], 1);
    let app = unique("dl");
    let armed = Arc::new(AtomicBool::new(true));
    let states = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let instances: Vec<KafkaStreams> = states
        .iter()
        .map(|dir| {
            let config = broker
                .streams_config(&app, dir.path())
                .with_processing_handler(DeadLetterQueue::new(&dlq));
            apps::start(poisoned(&input, &output, armed.clone()), config)
        })
        .collect();
    produce(broker, &input, 10_000, &[4_321]);

    let outputs = read_keys(broker, &output, 2, 9_999);
    assert!(outputs.iter().all(|(key, _, _)| key != "k4321"));
    assert!(
        outputs
            .iter()
            .all(|(key, value, _)| *value == format!("V{}", &key[1..]))
    );
    let letters = read_keys(broker, &dlq, 1, 1);
    assert_eq!(letters.len(), 1);
    let (key, value, headers) = &letters[0];
    assert_eq!((key.as_str(), value.as_str()), ("k4321", "poison"));
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(header(dead_letter::TOPIC), Some(input.as_str()));
    assert!(
        header(dead_letter::NODE)
            .unwrap()
            .starts_with("KSTREAM-MAPVALUES-")
    );
    assert!(
        header(dead_letter::EXCEPTION_MESSAGE)
            .unwrap()
            .contains("poison record")
    );
    assert!(header(dead_letter::OFFSET).is_some() && header(dead_letter::PARTITION).is_some());
    for streams in &instances {
        assert!(streams.error().is_none(), "{:?}", streams.error());
        assert!(matches!(
            streams.state(),
            State::Running | State::Rebalancing
        ));
    }
    // The metrics are published about once a second.
    let deadline = Instant::now() + WAIT;
    loop {
        let dead_lettered: u64 = instances
            .iter()
            .flat_map(|s| s.metrics().tasks.into_values())
            .map(|t| t.dead_lettered_records)
            .sum();
        if dead_lettered == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "{dead_lettered} dead-lettered");
        std::thread::sleep(Duration::from_millis(200));
    }
    for streams in &instances {
        assert!(streams.close(WAIT));
    }
}

/// The group's committed offset of `topic`'s partition 0, if any.
fn committed(broker: &Broker, group: &str, topic: &str) -> Option<i64> {
    let consumer: BaseConsumer = broker
        .client_config()
        .set("group.id", group)
        .create()
        .unwrap();
    let mut list = rdkafka::TopicPartitionList::new();
    list.add_partition(topic, 0);
    let list = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .unwrap();
    list.elements()[0].offset().to_raw()
}

#[test]
fn a_panic_stops_the_client_by_default_naming_node_and_record_and_commits_nothing_past_it() {
    let broker = shared_broker();
    let [input, output] = broker.unique_topics(["in", "out"], 1);
    let app = unique("panic");
    let state = tempfile::tempdir().unwrap();
    let streams = Arc::new(
        KafkaStreams::new(
            poisoned(&input, &output, Arc::new(AtomicBool::new(true))),
            broker.streams_config(&app, state.path()),
        )
        .unwrap(),
    );
    let port = apps::free_port();
    let mut http = QueryServer::new(streams.clone())
        .serve(([127, 0, 0, 1], port).into())
        .unwrap();
    streams.start().unwrap();
    produce(broker, &input, 6, &[3]);
    assert!(
        streams.wait_for_state(State::Error, WAIT),
        "{:?}",
        streams.state()
    );
    let error = streams.error().unwrap();
    // The error itself, not its text: the node that failed, not retriable.
    assert!(
        matches!(&*error, StreamsError::Processing { node, .. } if node.starts_with("KSTREAM-MAPVALUES-")),
        "{error:?}"
    );
    assert!(!error.is_retriable());
    let cause = error.to_string();
    for part in [
        "KSTREAM-MAPVALUES-",
        &format!("{input}[0]@3"),
        "panicked: poison record",
    ] {
        assert!(cause.contains(part), "`{part}` not in: {cause}");
    }
    // The health check tells, with the reason.
    let host = apps::loopback(port);
    let health = streams_http::get(&host, "/health", WAIT, false).unwrap();
    assert_eq!(health.status, 503);
    let body: serde_json::Value = serde_json::from_slice(&health.body).unwrap();
    assert_eq!(body["state"], "Error");
    assert_eq!(body["reason"].as_str(), Some(cause.as_str()));
    http.stop();
    assert!(streams.close(WAIT));
    // Records 0..3 may be committed; the poison record and those after it
    // are not, so a restart reads the poison record again.
    let offset = committed(broker, &app, &input);
    assert!(offset.is_none_or(|o| o <= 3), "committed {offset:?}");
}

#[test]
fn replace_thread_resumes_from_committed_state() {
    let broker = shared_broker();
    let [input, output] = broker.unique_topics(["in", "out"], 2);
    let app = unique("replace");
    let state = tempfile::tempdir().unwrap();
    let armed = Arc::new(AtomicBool::new(true));
    let streams = KafkaStreams::new(
        poisoned(&input, &output, armed.clone()),
        broker.streams_config(&app, state.path()),
    )
    .unwrap();
    let deaths = Arc::new(AtomicUsize::new(0));
    let (d, a) = (deaths.clone(), armed.clone());
    streams.set_uncaught_exception_handler(move |error| {
        assert!(error.to_string().contains("poison record"), "{error}");
        d.fetch_add(1, Ordering::Relaxed);
        // The poison is cured for the next thread.
        a.store(false, Ordering::Relaxed);
        StreamThreadExceptionResponse::ReplaceThread
    });
    streams.start().unwrap();
    produce(broker, &input, 200, &[120]);
    let outputs = read_keys(broker, &output, 2, 200);
    assert!(
        outputs
            .iter()
            .any(|(key, value, _)| key == "k120" && value == "POISON")
    );
    assert_eq!(deaths.load(Ordering::Relaxed), 1);
    assert!(streams.error().is_none(), "{:?}", streams.error());
    assert!(
        streams.wait_for_state(State::Running, WAIT),
        "{:?}",
        streams.state()
    );
    assert!(streams.close(WAIT));
}

#[test]
fn shutdown_application_stops_every_instance() {
    let broker = shared_broker();
    // The two instances read different topics, so only the first meets the
    // poison record: the second stops because it is told to.
    let [poisoned_input, clean_input, output] = broker.unique_topics(["in", "in", "out"], 1);
    let app = unique("shutdown");
    let states = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let instances: Vec<KafkaStreams> = [&poisoned_input, &clean_input]
        .iter()
        .zip(&states)
        .map(|(input, dir)| {
            let streams = KafkaStreams::new(
                poisoned(input, &output, Arc::new(AtomicBool::new(true))),
                broker.streams_config(&app, dir.path()),
            )
            .unwrap();
            streams.set_uncaught_exception_handler(|_| {
                StreamThreadExceptionResponse::ShutdownApplication
            });
            streams.start().unwrap();
            streams
        })
        .collect();
    for streams in &instances {
        assert!(
            streams.wait_for_state(State::Running, WAIT),
            "{:?}",
            streams.state()
        );
    }
    produce(broker, &clean_input, 20, &[]);
    produce(broker, &poisoned_input, 20, &[7]);
    for streams in &instances {
        assert!(
            streams.wait_for_state(State::Error, WAIT),
            "{:?}",
            streams.state()
        );
    }
    let first = instances[0].error().unwrap().to_string();
    assert!(first.contains("poison record"), "{first}");
    let second = instances[1].error().unwrap().to_string();
    assert!(second.contains("was shut down by instance"), "{second}");
    assert!(
        second.contains("poison record"),
        "the reason is passed on: {second}"
    );
    for streams in &instances {
        assert!(streams.close(WAIT));
    }
}

#[test]
fn a_record_too_large_to_produce_is_the_production_handlers_call() {
    let broker = shared_broker();
    let run = |config: fn(StreamsConfig) -> StreamsConfig| {
        let [input, output] = broker.unique_topics(["in", "out"], 1);
        let app = unique("large");
        let builder = StreamsBuilder::new();
        builder
            .stream_with([&input], Consumed::with(StringSerde, StringSerde))
            // Twice the producer's default `message.max.bytes`.
            .map_values(|v: String| match v.as_str() {
                "poison" => "x".repeat(2_000_000),
                _ => v,
            })
            .to_with(&output, Produced::with(StringSerde, StringSerde));
        let state = tempfile::tempdir().unwrap();
        let config = config(broker.streams_config(&app, state.path()));
        let streams = apps::start(builder.build().unwrap(), config);
        produce(broker, &input, 10, &[4]);
        (streams, output, state)
    };

    // By default, the client stops, naming the topic.
    let (streams, output, _state) = run(|config| config);
    assert!(
        streams.wait_for_state(State::Error, WAIT),
        "{:?}",
        streams.state()
    );
    let cause = streams.error().unwrap().to_string();
    assert!(
        cause.contains(&format!("cannot produce to {output}")),
        "{cause}"
    );
    assert!(streams.close(WAIT));

    // Continue: the record is lost, the others are all written.
    let (streams, output, _state) =
        run(|config| config.with_production_handler(ContinueOnProductionError));
    let records = read_keys(broker, &output, 1, 9);
    assert!(records.iter().all(|(key, _, _)| key != "k4"));
    assert!(streams.error().is_none(), "{:?}", streams.error());
    assert!(streams.close(WAIT));
}
