//! The development broker works with rdkafka: topics, produce, consume.

use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use tests::{Broker, shared_broker};

#[test]
fn create_topic_produce_and_consume() {
    let broker = shared_broker();
    broker.create_topic("greetings", 3);
    // Creating it again is harmless.
    broker.create_topic("greetings", 3);

    let producer: BaseProducer = broker
        .client_config()
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    producer
        .send(
            BaseRecord::to("greetings")
                .partition(1)
                .key("k")
                .payload("hello, broker")
                .timestamp(1_700_000_000_000)
                .headers(OwnedHeaders::new().insert(Header {
                    key: "h",
                    value: Some("v"),
                })),
        )
        .map_err(|(e, _)| e)
        .unwrap();
    producer.flush(Duration::from_secs(10)).unwrap();

    let consumer: BaseConsumer = broker
        .client_config()
        .set("group.id", "e2e-broker-test")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some("greetings"), Duration::from_secs(10))
        .unwrap();
    assert_eq!(metadata.topics()[0].partitions().len(), 3);

    let mut assignment = rdkafka::TopicPartitionList::new();
    assignment
        .add_partition_offset("greetings", 1, rdkafka::Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let message = loop {
        assert!(Instant::now() < deadline, "no record consumed within 20 s");
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            break message.unwrap().detach();
        }
    };
    assert_eq!(message.key(), Some(&b"k"[..]));
    assert_eq!(message.payload(), Some(&b"hello, broker"[..]));
    assert_eq!(message.partition(), 1);
    assert_eq!(message.offset(), 0);
    assert_eq!(message.timestamp().to_millis(), Some(1_700_000_000_000));
    let header = message.headers().unwrap().get(0);
    assert_eq!((header.key, header.value), ("h", Some(&b"v"[..])));
}

#[test]
fn a_private_broker_starts_and_stops() {
    let mut broker = Broker::start();
    let addr = broker.bootstrap_servers().to_owned();
    assert!(std::net::TcpStream::connect(&addr).is_ok());
    assert_ne!(broker.port(), shared_broker().port());
    broker.stop();
    assert!(
        std::net::TcpStream::connect(&addr).is_err(),
        "the broker still listens on {addr}"
    );
}

#[test]
fn a_missing_broker_binary_fails_naming_the_setup_script() {
    let missing = std::env::temp_dir().join("no-such-dir/tansu");
    let panic = std::panic::catch_unwind(|| Broker::start_with(&missing)).unwrap_err();
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("scripts/setup.sh"), "{message}");
    assert!(
        message.contains(&missing.display().to_string()),
        "{message}"
    );
}
