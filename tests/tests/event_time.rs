//! Event time on a real broker: a task that reads two topics processes
//! their records lowest timestamp first, whatever order they are fetched in.

use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use streams_core::StreamsBuilder;
use streams_core::dsl::{Consumed, Produced};
use streams_core::serde::StringSerde;
use tests::{WAIT, apps, shared_broker, unique};

#[test]
fn a_task_reading_two_topics_processes_their_records_in_timestamp_order() {
    let broker = shared_broker();
    let [left, right, out] = broker.unique_topics(["left", "right", "merged"], 1);
    // All of one topic, then all of the other, each record in a batch of
    // its own (Tansu reports a batch's base offset plus one as the high
    // watermark: exact only for batches of one).
    let producer: BaseProducer = broker.client_config().create().unwrap();
    for (topic, records) in [
        (&left, [("l1", 1_000), ("l3", 3_000), ("l5", 5_000)]),
        (&right, [("r2", 2_000), ("r4", 4_000), ("r6", 6_000)]),
    ] {
        for (value, timestamp) in records {
            producer
                .send(
                    BaseRecord::<str, str>::to(topic)
                        .key(value)
                        .payload(value)
                        .timestamp(timestamp),
                )
                .map_err(|(e, _)| e)
                .unwrap();
            producer.flush(Duration::from_secs(10)).unwrap();
        }
    }
    let builder = StreamsBuilder::new();
    let strings = || Consumed::with(StringSerde, StringSerde);
    builder
        .stream_with([&left], strings())
        .merge(&builder.stream_with([&right], strings()))
        .to_with(&out, Produced::with(StringSerde, StringSerde));
    let state_dir = tempfile::tempdir().unwrap();
    let config = broker.streams_config(&unique("event-time"), state_dir.path());
    let streams = apps::start(builder.build().unwrap(), config);

    let consumer = broker.read_from_start(&out, 1);
    let mut merged = Vec::new();
    let deadline = Instant::now() + WAIT;
    while merged.len() < 6 {
        assert!(Instant::now() < deadline, "only {merged:?} came out");
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            let value = String::from_utf8(message.payload().unwrap().to_vec()).unwrap();
            merged.push((value, message.timestamp().to_millis().unwrap()));
        }
    }
    assert_eq!(
        merged,
        [
            ("l1".to_owned(), 1_000),
            ("r2".to_owned(), 2_000),
            ("l3".to_owned(), 3_000),
            ("r4".to_owned(), 4_000),
            ("l5".to_owned(), 5_000),
            ("r6".to_owned(), 6_000),
        ]
    );
    assert!(streams.close(WAIT));
}
