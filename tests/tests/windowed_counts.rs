//! The `windowed_counts` example (streams-kafka/examples) as a program on a
//! real broker: final counts per tumbling window and per session, each
//! emitted once; out-of-order records within grace counted, later ones not;
//! a clean exit on SIGTERM; a restart on a fresh state directory that
//! restores the open windows and the suppression buffer from their
//! changelogs; and clear failures for bad flags and a broker that is down.
//!
//! Event time is the records' timestamps, chosen here, so no test waits on
//! the wall clock for a window to close: a record far ahead closes them.
//! Each input topic has one partition, so one task sees every record in
//! the order written and its stream time is the largest timestamp so far.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use tests::{Broker, WAIT, committed, shared_broker, unique};

/// How long the program may take to stop after SIGTERM: it commits, writes
/// checkpoints and leaves the group.
const STOP_WITHIN: Duration = Duration::from_secs(30);

/// The example program, built by `cargo test --workspace` next to this
/// test's directory: `target/<profile>/deps/<this test>` and
/// `target/<profile>/examples/windowed_counts`.
fn example_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test executable sits in target/<profile>/deps");
    let binary = profile_dir.join("examples").join("windowed_counts");
    assert!(
        binary.exists(),
        "{} is missing: build the examples with `cargo test --workspace` \
         (or `cargo build --workspace --examples`)",
        binary.display()
    );
    binary
}

/// A running `windowed_counts`, killed on drop if still running.
struct Program {
    child: Child,
    /// Its log (standard error) so far, line by line; also echoed to ours.
    log: Arc<Mutex<Vec<String>>>,
    /// One message when it logs that it is counting (after `start()`).
    counting: mpsc::Receiver<()>,
    /// The thread reading its log; it ends when the program does.
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Program {
    /// Starts the example with `args` (its flags).
    fn start(args: &[&str]) -> Program {
        let mut child = Command::new(example_binary())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn windowed_counts");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, counting) = mpsc::channel();
        let lines = log.clone();
        let started = Instant::now();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let at = started.elapsed().as_secs_f64();
                eprintln!("windowed_counts +{at:.1}s: {line}");
                if line.contains("counting ") {
                    let _ = tx.send(());
                }
                lines.lock().unwrap().push(line);
            }
        });
        Program {
            child,
            log,
            counting,
            reader: Some(reader),
        }
    }

    /// Starts the example on `run`'s topics with a state directory and
    /// extra flags.
    fn counting(run: &Run<'_>, state_dir: &std::path::Path, extra: &[&str]) -> Program {
        let mut args = vec![
            "--bootstrap-servers",
            run.broker.bootstrap_servers(),
            "--input",
            &run.input,
            "--output",
            &run.output,
            "--application-id",
            &run.app,
            "--state-dir",
            state_dir.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let program = Program::start(&args);
        program.wait_counting();
        program
    }

    /// Waits until it has started its streams client.
    fn wait_counting(&self) {
        if self.counting.recv_timeout(WAIT).is_err() {
            panic!(
                "windowed_counts did not start counting within {WAIT:?}; its log:\n{}",
                self.log()
            );
        }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Waits up to `timeout` for it to exit on its own; once it has, its
    /// log is complete.
    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the program") {
                if let Some(reader) = self.reader.take() {
                    let _ = reader.join();
                }
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and asserts that it exits with status 0 within
    /// [`STOP_WITHIN`].
    fn terminate(self) {
        self.stop_with("TERM");
    }

    /// Sends `signal` (`TERM` or `INT`) and asserts that it exits with
    /// status 0 within [`STOP_WITHIN`].
    fn stop_with(mut self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed: {status}");
        let began = Instant::now();
        let Some(status) = self.wait_exit(STOP_WITHIN) else {
            panic!(
                "windowed_counts did not exit within {STOP_WITHIN:?} of SIG{signal}; its log:\n{}",
                self.log()
            );
        };
        assert!(
            status.success(),
            "windowed_counts exited with {status} after SIG{signal}; its log:\n{}",
            self.log()
        );
        eprintln!(
            "windowed_counts stopped {:.1} s after SIG{signal}",
            began.elapsed().as_secs_f64()
        );
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One application's topics on the shared broker.
struct Run<'a> {
    broker: &'a Broker,
    input: String,
    output: String,
    app: String,
    /// The event time the records' offsets (in ms) count from: a multiple
    /// of every window size used here, an hour ago.
    base: i64,
}

impl<'a> Run<'a> {
    /// A fresh input topic (one partition) and application id. The output
    /// topic is left to the program to create.
    fn new(broker: &'a Broker, name: &str) -> Run<'a> {
        let [input] = broker.unique_topics([&format!("{name}-in")], 1);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        Run {
            broker,
            input,
            output: unique(&format!("{name}-out")),
            app: unique(name),
            base: now / 60_000 * 60_000 - 3_600_000,
        }
    }

    /// Writes `records` (key, event time as an offset from `base`) to the
    /// input in this order, values empty, and waits until they are
    /// delivered. A `None` key writes a keyless record.
    fn produce(&self, records: &[(Option<&str>, i64)]) {
        let producer: BaseProducer = self
            .broker
            .client_config()
            .create()
            .expect("create a producer");
        for (key, at) in records {
            let mut record = BaseRecord::<str, str>::to(&self.input)
                .payload("")
                .timestamp(self.base + at);
            if let Some(key) = key {
                record = record.key(*key);
            }
            producer.send(record).map_err(|(e, _)| e).expect("send");
        }
        producer
            .flush(Duration::from_secs(10))
            .expect("deliver within 10 s");
    }

    /// Every record of the output topic: (key, value) as UTF-8, in offset
    /// order.
    fn output(&self) -> Vec<(String, String)> {
        let read = committed::read_committed(self.broker.bootstrap_servers(), &self.output, 0)
            .unwrap_or_else(|e| panic!("reading {}: {e}", self.output));
        let text = |bytes: Option<Vec<u8>>| {
            String::from_utf8(bytes.expect("neither key nor value is null")).expect("UTF-8")
        };
        read.records
            .into_iter()
            .map(|r| (text(r.key), text(r.value)))
            .collect()
    }

    /// Waits until the output holds `count` records (or panics after
    /// [`WAIT`]) and returns them.
    fn wait_output(&self, count: usize) -> Vec<(String, String)> {
        let deadline = Instant::now() + WAIT;
        loop {
            let output = self.output();
            if output.len() >= count {
                return output;
            }
            assert!(
                Instant::now() < deadline,
                "{} has {} of {count} records after {WAIT:?}: {output:?}",
                self.output,
                output.len()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `(key@window, count)`, with the window's times offset by `base`.
    fn tumbling(&self, key: &str, start: i64, count: i64) -> (String, String) {
        (format!("{key}@{}", self.base + start), count.to_string())
    }

    /// `(key@start-end, count)` of a session, its times offset by `base`.
    fn session(&self, key: &str, start: i64, end: i64, count: i64) -> (String, String) {
        (
            format!("{key}@{}-{}", self.base + start, self.base + end),
            count.to_string(),
        )
    }

    /// The offset of the input's partition 0 that `app`'s group has
    /// committed, if any.
    fn committed_offset(&self) -> Option<i64> {
        let consumer: BaseConsumer = self
            .broker
            .client_config()
            .set("group.id", &self.app)
            .create()
            .unwrap();
        let mut list = rdkafka::TopicPartitionList::new();
        list.add_partition(&self.input, 0);
        let list = consumer
            .committed_offsets(list, Duration::from_secs(10))
            .unwrap();
        list.elements()[0].offset().to_raw()
    }
}

fn sorted(mut records: Vec<(String, String)>) -> Vec<(String, String)> {
    records.sort();
    records
}

#[test]
fn tumbling_windows_emit_each_final_count_once_and_drop_records_past_grace() {
    let broker = shared_broker();
    let run = Run::new(broker, "tumbling");
    // Windows of 10 s with 5 s of grace: [0, 10 s) closes once stream time
    // reaches 15 s, [10 s, 20 s) at 25 s.
    run.produce(&[
        (Some("a"), 1_000),
        (Some("b"), 2_000),
        (Some("a"), 3_000),
        (None, 3_500), // no key: skipped
        (Some("c"), 9_000),
        (Some("a"), 12_000), // stream time 12 s
        (Some("b"), 8_000),  // out of order, within grace: counted
        (Some("a"), 14_000),
        (Some("c"), 9_999),  // within grace, the window's last ms
        (Some("b"), 16_000), // stream time 16 s: [0, 10 s) is final
        (Some("a"), 4_000),  // past grace: dropped, no second result
        (Some("c"), 10_000),
        (Some("z"), 100_000), // far ahead: [10 s, 20 s) is final too
    ]);
    let dir = tempfile::tempdir().unwrap();
    let program = Program::counting(
        &run,
        dir.path(),
        &["--window-ms", "10000", "--grace-ms", "5000"],
    );
    let expected = vec![
        run.tumbling("a", 0, 2),
        run.tumbling("b", 0, 2),
        run.tumbling("c", 0, 2),
        run.tumbling("a", 10_000, 2),
        run.tumbling("b", 10_000, 1),
        run.tumbling("c", 10_000, 1),
    ];
    let seen = run.wait_output(expected.len());
    // The first window's results come before the second's: they were
    // final once `b` at 16 s arrived, before `z` closed the second.
    assert_eq!(sorted(seen[..3].to_vec()), sorted(expected[..3].to_vec()));
    program.terminate();
    // Stopped and flushed: this is all it wrote. `z`'s window is still
    // open, and no window came out twice.
    assert_eq!(sorted(run.output()), sorted(expected));
}

#[test]
fn sessions_merge_when_a_record_bridges_them_and_each_final_count_comes_once() {
    let broker = shared_broker();
    let run = Run::new(broker, "sessions");
    // A gap of 3 s and 5 s of grace. The grace is longer than the gap, so
    // whether a session is held for its grace alone or for gap and grace
    // (see `a_session_is_held_for_its_gap_and_grace_before_it_is_final`),
    // the bridged sessions below are still open when the bridge comes.
    run.produce(&[
        (Some("a"), 0),
        (Some("a"), 2_000), // a: [0, 2 s]
        (Some("b"), 1_000), // b: [1 s, 1 s]
        (Some("a"), 6_000), // 4 s after 2 s: a session of its own
        (Some("a"), 4_000), // within 3 s of both: one session [0, 6 s] of 4
        (Some("c"), 5_000),
        (Some("d"), 30_000),  // stream time 30 s: a, b and c are final
        (Some("c"), 5_500),   // past grace: dropped, no second result
        (Some("d"), 31_000),  // d: [30 s, 31 s]
        (Some("z"), 100_000), // far ahead: d is final too
    ]);
    let dir = tempfile::tempdir().unwrap();
    let program = Program::counting(
        &run,
        dir.path(),
        &["--session-gap-ms", "3000", "--grace-ms", "5000"],
    );
    let expected = vec![
        run.session("a", 0, 6_000, 4),
        run.session("b", 1_000, 1_000, 1),
        run.session("c", 5_000, 5_000, 1),
        run.session("d", 30_000, 31_000, 2),
    ];
    run.wait_output(expected.len());
    // Ctrl-C stops it as cleanly as SIGTERM.
    program.stop_with("INT");
    assert_eq!(sorted(run.output()), sorted(expected));
}

/// Kafka Streams holds a session back for its inactivity gap plus its
/// grace (`GraphGraceSearchUtil`: `gracePeriodMs() + inactivityGap()` for
/// a session aggregation): until then a record may still extend the
/// session or bridge it with the next, so an earlier result would not be
/// final.
#[test]
fn a_session_is_held_for_its_gap_and_grace_before_it_is_final() {
    let broker = shared_broker();
    let run = Run::new(broker, "session-close");
    // A gap of 5 s and 1 s of grace: [0, 2 s] is final at 2 + 5 + 1 = 8 s.
    run.produce(&[
        (Some("a"), 0),
        (Some("a"), 2_000),
        (Some("a"), 7_500), // 5.5 s after 2 s: a session of its own
        (Some("a"), 4_500), // bridges them: [0, 7.5 s] of 4
        (Some("z"), 100_000),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let program = Program::counting(
        &run,
        dir.path(),
        &["--session-gap-ms", "5000", "--grace-ms", "1000"],
    );
    run.wait_output(1);
    program.terminate();
    assert_eq!(run.output(), [run.session("a", 0, 7_500, 4)]);
}

#[test]
fn a_restart_on_a_fresh_state_directory_restores_open_windows_and_emits_once() {
    let broker = shared_broker();
    let run = Run::new(broker, "restart");
    let flags = ["--window-ms", "10000", "--grace-ms", "5000"];
    // Before the restart: [0, 10 s) closes (m's result marks that every
    // record below was processed); [10 s, 20 s) and [20 s, 30 s) stay open,
    // their counts in the window store and the suppression buffer.
    run.produce(&[
        (Some("m"), 1_000),
        (Some("k"), 11_000),
        (Some("k"), 12_000),
        (Some("j"), 13_000),
        (Some("k"), 21_000), // stream time 21 s: [0, 10 s) is final
    ]);
    let first_dir = tempfile::tempdir().unwrap();
    let first = Program::counting(&run, first_dir.path(), &flags);
    assert_eq!(run.wait_output(1), [run.tumbling("m", 0, 1)]);
    first.terminate();
    assert_eq!(
        run.committed_offset(),
        Some(5),
        "a clean stop commits every record it processed"
    );
    assert_eq!(
        run.output(),
        [run.tumbling("m", 0, 1)],
        "nothing else is final"
    );

    // After it, on an empty state directory: everything is restored from
    // the changelogs. k gets one more record in [10 s, 20 s); j and the
    // later k are known only from what was restored.
    let second_dir = tempfile::tempdir().unwrap();
    let second = Program::counting(&run, second_dir.path(), &flags);
    run.produce(&[
        (Some("k"), 14_000),  // within grace
        (Some("z"), 100_000), // closes [10 s, 20 s) and [20 s, 30 s)
    ]);
    let expected = vec![
        run.tumbling("m", 0, 1),
        run.tumbling("k", 10_000, 3),
        run.tumbling("j", 10_000, 1),
        run.tumbling("k", 20_000, 1),
    ];
    run.wait_output(expected.len());
    second.terminate();
    assert_eq!(sorted(run.output()), sorted(expected));
}

#[test]
fn a_missing_flag_is_a_usage_error() {
    let mut program = Program::start(&[
        "--bootstrap-servers",
        "127.0.0.1:9",
        "--output",
        "out",
        "--application-id",
        "app",
        "--state-dir",
        "/nonexistent",
    ]);
    let status = program
        .wait_exit(WAIT)
        .expect("a usage error exits at once");
    let log = program.log();
    assert!(!status.success(), "{status}: {log}");
    assert!(log.contains("--input") && log.contains("Usage"), "{log}");

    let mut program = Program::start(&[
        "--bootstrap-servers",
        "127.0.0.1:9",
        "--input",
        "in",
        "--output",
        "out",
        "--application-id",
        "app",
        "--state-dir",
        "/nonexistent",
        "--window-ms",
        "0",
    ]);
    let status = program.wait_exit(WAIT).expect("a bad value exits at once");
    let log = program.log();
    assert!(!status.success(), "{status}: {log}");
    assert!(log.contains("--window-ms"), "{log}");
}

#[test]
fn a_broker_that_is_down_is_a_clear_error() {
    // A loopback port nobody listens on: bind, note it, release it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bootstrap = format!("127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let began = Instant::now();
    let mut program = Program::start(&[
        "--bootstrap-servers",
        &bootstrap,
        "--input",
        "in",
        "--output",
        "out",
        "--application-id",
        "down",
        "--state-dir",
        dir.path().to_str().unwrap(),
    ]);
    let status = program
        .wait_exit(WAIT)
        .unwrap_or_else(|| panic!("still running after {WAIT:?}: {}", program.log()));
    eprintln!("gave up after {:.1} s", began.elapsed().as_secs_f64());
    let log = program.log();
    assert!(!status.success(), "{status}: {log}");
    // One line in words, naming the address and the likely cause.
    let said = format!("fetching metadata from {bootstrap} (is the broker up?)");
    assert!(
        log.lines()
            .any(|line| line.starts_with("windowed_counts: ") && line.contains(&said)),
        "{log}"
    );
}
