//! The raw-log `read_committed` reader against the development broker: it
//! hides an aborted transaction that librdkafka, on this broker, cannot.

use std::time::Duration;

use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use tests::committed::{read_committed, read_committed_topic};
use tests::shared_broker;

const TIMEOUT: Duration = Duration::from_secs(30);

fn send(producer: &BaseProducer, topic: &str, key: &str, value: &str) {
    producer
        .send(BaseRecord::to(topic).partition(0).key(key).payload(value))
        .map_err(|(e, _)| e)
        .unwrap_or_else(|e| panic!("sending {value}: {e}"));
}

#[test]
fn aborted_transactions_are_dropped_and_committed_ones_kept() {
    let broker = shared_broker();
    let topic = "committed-mixed";
    broker.create_topic(topic, 2);

    let txn: BaseProducer = broker
        .client_config()
        .set("transactional.id", "committed-test-txn")
        .create()
        .unwrap();
    let plain: BaseProducer = broker.client_config().create().unwrap();
    txn.init_transactions(TIMEOUT).unwrap();

    txn.begin_transaction().unwrap();
    for value in ["t1-0", "t1-1", "t1-2"] {
        send(&txn, topic, "k", value);
    }
    txn.commit_transaction(TIMEOUT).unwrap();

    // A plain record between transactions.
    send(&plain, topic, "p", "plain");
    plain.flush(TIMEOUT).unwrap();

    txn.begin_transaction().unwrap();
    for value in ["t2-0", "t2-1"] {
        send(&txn, topic, "k", value);
    }
    // Abort purges what is still queued: let the records reach the log first,
    // so there is an aborted write to hide.
    txn.flush(TIMEOUT).unwrap();
    txn.abort_transaction(TIMEOUT).unwrap();

    txn.begin_transaction().unwrap();
    send(&txn, topic, "k", "t3-0");
    txn.commit_transaction(TIMEOUT).unwrap();

    let out = read_committed(broker.bootstrap_servers(), topic, 0).unwrap();
    let values: Vec<&str> = out
        .values()
        .into_iter()
        .map(|v| std::str::from_utf8(v.expect("a value")).unwrap())
        .collect();
    assert_eq!(
        values,
        ["t1-0", "t1-1", "t1-2", "plain", "t3-0"],
        "{out:#?}"
    );
    assert_eq!(out.aborted, 2, "{out:#?}");
    assert_eq!((out.commits, out.aborts), (2, 1), "{out:#?}");
    assert_eq!((out.open, out.held_back), (0, 0), "{out:#?}");
    assert!(out.records.iter().all(|r| r.partition == 0));
    assert!(
        out.records.windows(2).all(|w| w[0].offset < w[1].offset),
        "offsets not increasing: {out:#?}"
    );
    assert_eq!(out.records[3].key.as_deref(), Some(&b"p"[..]));

    // The whole topic: partition 1 is empty and adds nothing.
    let all = read_committed_topic(broker.bootstrap_servers(), topic, 2).unwrap();
    assert_eq!(all, out);
}

#[test]
fn an_empty_partition_reads_as_empty() {
    let broker = shared_broker();
    broker.create_topic("committed-empty", 1);
    let out = read_committed(broker.bootstrap_servers(), "committed-empty", 0).unwrap();
    assert_eq!(out, Default::default());
}

#[test]
fn a_missing_topic_or_partition_is_an_error_naming_it() {
    let broker = shared_broker();
    broker.create_topic("committed-one", 1);
    let e = read_committed(broker.bootstrap_servers(), "committed-one", 5).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("committed-one/5"), "{e}");
    assert!(e.to_string().contains("has 1 partitions"), "{e}");
    let e = read_committed(broker.bootstrap_servers(), "committed-none", 0).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("committed-none/0"), "{e}");
    assert!(e.to_string().contains("does not exist"), "{e}");
}

#[test]
fn a_partition_larger_than_one_fetch_is_read_whole() {
    let broker = shared_broker();
    let topic = "committed-large";
    broker.create_topic(topic, 1);
    // Small batches of large records: dozens of batches and several
    // megabytes, more than one fetch answer holds.
    let txn: BaseProducer = broker
        .client_config()
        .set("transactional.id", "committed-test-large")
        .set("batch.size", "100000")
        .create()
        .unwrap();
    let plain: BaseProducer = broker
        .client_config()
        .set("batch.size", "100000")
        .create()
        .unwrap();
    let big = |tag: &str, i: usize| format!("{tag}-{i:04}-{}", "x".repeat(16 * 1024));
    txn.init_transactions(TIMEOUT).unwrap();
    txn.begin_transaction().unwrap();
    for i in 0..150 {
        send(&txn, topic, "k", &big("kept", i));
    }
    txn.commit_transaction(TIMEOUT).unwrap();
    txn.begin_transaction().unwrap();
    for i in 0..60 {
        send(&txn, topic, "k", &big("aborted", i));
    }
    txn.flush(TIMEOUT).unwrap();
    txn.abort_transaction(TIMEOUT).unwrap();
    for i in 0..50 {
        send(&plain, topic, "p", &big("plain", i));
    }
    plain.flush(TIMEOUT).unwrap();

    let out = read_committed(broker.bootstrap_servers(), topic, 0).unwrap();
    let tags: Vec<String> = out
        .values()
        .into_iter()
        .map(|v| String::from_utf8(v.unwrap()[..10].to_vec()).unwrap())
        .collect();
    let expected: Vec<String> = (0..150)
        .map(|i| big("kept", i)[..10].to_owned())
        .chain((0..50).map(|i| big("plain", i)[..10].to_owned()))
        .collect();
    assert_eq!(tags, expected);
    assert_eq!((out.aborted, out.commits, out.aborts), (60, 1, 1));
    assert_eq!((out.open, out.held_back), (0, 0));
}
