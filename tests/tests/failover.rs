//! Kill one of two instances with SIGKILL under load: the other takes its
//! partitions over and restores their stores from the changelogs. With
//! at-least-once every input record has an output; with exactly-once every
//! input record has exactly one committed output.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use tests::{app_process, committed, shared_broker};

struct App {
    child: Child,
    states: mpsc::Receiver<String>,
    /// The input partitions it was last assigned, from its log.
    assigned: Arc<Mutex<Vec<i32>>>,
}

impl App {
    fn start(run: &Run<'_>, state_dir: &std::path::Path) -> App {
        let mut child = Command::new(env!("CARGO_BIN_EXE_streams-app"))
            .args([
                "idcount",
                run.bootstrap,
                run.app_id,
                state_dir.to_str().unwrap(),
                run.guarantee,
                run.input,
                run.output,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn streams-app");
        // Its log goes on to ours; its assignment is noted on the way.
        let stderr = child.stderr.take().unwrap();
        let assigned = Arc::new(Mutex::new(Vec::new()));
        let noted = assigned.clone();
        let input = run.input.to_owned();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("{line}");
                app_process::note_assignment(&line, &input, &noted);
            }
        });
        App {
            states: app_process::states(child.stdout.take().unwrap()),
            child,
            assigned,
        }
    }

    fn wait_for(&self, state: &str, timeout: Duration) {
        app_process::wait_for(&self.states, state, timeout);
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One failover run: two instances of the id count on `input`, 4 partitions.
struct Run<'a> {
    bootstrap: &'a str,
    app_id: &'a str,
    guarantee: &'a str,
    input: &'a str,
    output: &'a str,
}

const TOTAL: usize = 3000;

/// Starts two instances, sends `TOTAL` distinct ids and kills the first
/// instance a third of the way through (under exactly-once, once it has a
/// transaction open with output in it); returns the survivor.
fn kill_one_under_load(run: &Run<'_>, dirs: &[tempfile::TempDir; 2]) -> App {
    let broker = shared_broker();
    broker.create_topic(run.input, 4);
    broker.create_topic(run.output, 4);
    let a = App::start(run, dirs[0].path());
    let b = App::start(run, dirs[1].path());
    a.wait_for("Running", Duration::from_secs(60));
    b.wait_for("Running", Duration::from_secs(60));

    // Partitioned like the engine's output (Java's murmur2 of the key): an
    // id's input and output partitions are the same.
    let producer: BaseProducer = broker
        .client_config()
        .set("partitioner", "murmur2_random")
        .create()
        .unwrap();
    let mut a = Some(a);
    for i in 0..TOTAL {
        let key = format!("id-{i}");
        producer
            .send(BaseRecord::<str, str>::to(run.input).key(&key).payload("x"))
            .map_err(|(e, _)| e)
            .unwrap();
        if i % 100 == 0 {
            producer.flush(Duration::from_secs(10)).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
        if i == TOTAL / 3 {
            let a = a.take().unwrap();
            if run.guarantee == "exactly_once_v2" {
                wait_until_mid_transaction(run, &a);
            }
            // SIGKILL: no commit, no clean close, no leaving the group.
            drop(a);
        }
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    b
}

/// Waits until `app` has an open transaction with output in it. The input
/// is partitioned like the output (murmur2 of the key), so an open
/// transaction in an output partition of one of its tasks is its own.
fn wait_until_mid_transaction(run: &Run<'_>, app: &App) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let owned = app.assigned.lock().unwrap().clone();
        for partition in owned {
            let view = committed::read_committed(run.bootstrap, run.output, partition)
                .expect("read the output raw");
            if view.open > 0 {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the instance to kill had no open transaction with output within 30 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn killing_an_instance_under_load_loses_no_record() {
    let broker = shared_broker();
    let app_id = format!("failover-{}", std::process::id());
    let (input, output) = ("alos-ids", "alos-id-counts");
    let run = Run {
        bootstrap: broker.bootstrap_servers(),
        app_id: &app_id,
        guarantee: "at_least_once",
        input,
        output,
    };
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let b = kill_one_under_load(&run, &dirs);
    let (out_topic, total) = (output, TOTAL);
    let consumer = broker.read_from_start(out_topic, 4);
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

// The input is partitioned like the output (see `kill_one_under_load`), so
// each instance's transactions write only its own tasks' partitions. Two
// producers with transactions open on one partition at once are not
// tested here: the development broker loses consumer offsets then. An
// EndTxn(COMMIT) whose records lie after the start of another producer's
// still-open transaction on the same partition writes its COMMIT markers
// but keeps its offsets pending, and the producer's next transaction
// takes them over; when that one is aborted (here: the killed instance's,
// by fencing) they are dropped, and the group's offsets go back to an
// earlier transaction's.
#[test]
fn killing_an_instance_mid_transaction_leaves_exactly_one_committed_output_per_record() {
    let broker = shared_broker();
    let app_id = format!("failover-eos-{}", std::process::id());
    let (input, output) = ("eos-ids", "eos-id-counts");
    let run = Run {
        bootstrap: broker.bootstrap_servers(),
        app_id: &app_id,
        guarantee: "exactly_once_v2",
        input,
        output,
    };
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let b = kill_one_under_load(&run, &dirs);
    // The killed instance's last transaction is still open, and holds back
    // every later record from read_committed readers until it ends. Apache
    // Kafka aborts it after transaction.timeout.ms; restarting the instance
    // on its state directory (same process id, same transactional ids)
    // fences its zombie and aborts it at once, as in Kafka Streams.
    let a = App::start(&run, dirs[0].path());
    a.wait_for("Running", Duration::from_secs(60));
    // Read as a read_committed consumer on Apache Kafka would see it.
    let deadline = Instant::now() + Duration::from_secs(120);
    let committed = loop {
        let committed = committed::read_committed_topic(broker.bootstrap_servers(), output, 4)
            .expect("read the output raw");
        let settled = committed.open == 0 && committed.held_back == 0;
        if (settled && committed.records.len() >= TOTAL) || Instant::now() > deadline {
            break committed;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let mut outputs: HashMap<String, usize> = HashMap::new();
    let mut copies: HashMap<String, Vec<(i32, i64)>> = HashMap::new();
    for record in &committed.records {
        let key = String::from_utf8(record.key.clone().unwrap()).unwrap();
        *outputs.entry(key.clone()).or_default() += 1;
        copies
            .entry(key)
            .or_default()
            .push((record.partition, record.offset));
    }
    for (key, at) in copies.iter().filter(|(_, at)| at.len() > 1).take(5) {
        eprintln!("{key} committed at {at:?}");
    }
    let missing: Vec<String> = (0..TOTAL)
        .map(|i| format!("id-{i}"))
        .filter(|k| !outputs.contains_key(k))
        .collect();
    assert!(
        missing.is_empty(),
        "ids without a committed output: {missing:?}"
    );
    let duplicated: Vec<(&String, &usize)> = outputs.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        duplicated.is_empty(),
        "ids with more than one committed output: {duplicated:?}"
    );
    assert_eq!(committed.records.len(), TOTAL);
    // The killed instance's last transaction never committed: its writes
    // are in the topic, raw, but not in what was read.
    eprintln!(
        "raw output: {} committed records, {} aborted, {} open, {} held back, {} commit markers, {} abort markers",
        committed.records.len(),
        committed.aborted,
        committed.open,
        committed.held_back,
        committed.commits,
        committed.aborts
    );
    assert_eq!((committed.open, committed.held_back), (0, 0));
    assert!(committed.commits > 0);
    assert!(
        committed.aborts > 0 && committed.aborted > 0,
        "the killed instance's open transaction was aborted"
    );
    drop((a, b));
}
