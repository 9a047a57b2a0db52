//! Kill one of two instances with SIGKILL under load: the other takes its
//! partitions over, restores their stores from the changelogs, and with
//! at-least-once every input record has an output.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tests::shared_broker;

struct App {
    child: Child,
    states: mpsc::Receiver<String>,
}

impl App {
    fn start(bootstrap: &str, app_id: &str, state_dir: &std::path::Path) -> App {
        let mut child = Command::new(env!("CARGO_BIN_EXE_streams-app"))
            .args([
                "idcount",
                bootstrap,
                app_id,
                state_dir.to_str().unwrap(),
                "at_least_once",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn streams-app");
        let stdout = child.stdout.take().unwrap();
        let (tx, states) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(state) = line.strip_prefix("STATE ") {
                    let _ = tx.send(state.to_owned());
                }
            }
        });
        App { child, states }
    }

    fn wait_for(&self, state: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.states.recv_timeout(left) {
                Ok(s) if s == state => return,
                Ok(_) => {}
                Err(_) => panic!("streams-app did not reach {state} within {timeout:?}"),
            }
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn killing_an_instance_under_load_loses_no_record() {
    let broker = shared_broker();
    let app_id = format!("failover-{}", std::process::id());
    // streams-app's idcount mode reads `ids` and writes `id-counts`; this
    // test binary has the broker to itself.
    let (ids_topic, out_topic) = ("ids", "id-counts");
    broker.create_topic(ids_topic, 4);
    broker.create_topic(out_topic, 4);
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let a = App::start(broker.bootstrap_servers(), &app_id, dirs[0].path());
    let b = App::start(broker.bootstrap_servers(), &app_id, dirs[1].path());
    a.wait_for("Running", Duration::from_secs(60));
    b.wait_for("Running", Duration::from_secs(60));

    let producer: BaseProducer = broker.client_config().create().unwrap();
    let total = 3000;
    let mut a = Some(a);
    for i in 0..total {
        let key = format!("id-{i}");
        producer
            .send(BaseRecord::<str, str>::to(ids_topic).key(&key).payload("x"))
            .map_err(|(e, _)| e)
            .unwrap();
        if i % 100 == 0 {
            producer.flush(Duration::from_secs(10)).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
        if i == total / 3 {
            // SIGKILL: no commit, no clean close, no leaving the group.
            drop(a.take());
        }
    }
    producer.flush(Duration::from_secs(10)).unwrap();

    let consumer: BaseConsumer = broker
        .client_config()
        .set("group.id", "test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for p in 0..4 {
        assignment
            .add_partition_offset(out_topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut seen = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen.len() < total {
        assert!(
            Instant::now() < deadline,
            "only {} of {total} ids have an output",
            seen.len()
        );
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            // A consumer without a group reports "unknown group" events; only
            // records matter here.
            let Ok(message) = message else { continue };
            let key = String::from_utf8(message.key().unwrap().to_vec()).unwrap();
            let count = i64::from_be_bytes(message.payload().unwrap().try_into().unwrap());
            assert!(count >= 1, "{key} counted {count}");
            seen.insert(key);
        }
    }
    // The survivor did the work of the killed one: every id is there.
    assert_eq!(seen.len(), total);
    drop(b);
}
