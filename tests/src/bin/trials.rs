//! Kill trials: repeated failure trials of a counting application on a
//! private broker, with figures.
//!
//! `trials [--trials N] [--kinds LIST] [--restart-after-ms MS] [--keep-logs]`
//!
//! Starts its own development broker and runs, one trial at a time, each
//! with fresh topics, application id and state directories, N trials
//! (default 20) of each kind in LIST (comma-separated, default all):
//!
//! - `at-least-once`: three instances of `streams-app idcount`; one is
//!   killed with SIGKILL under load, and restarted on its state directory;
//! - `exactly-once`: the same under `exactly_once_v2`, the output read as a
//!   `read_committed` consumer on Apache Kafka reads it
//!   ([`tests::committed`]);
//! - `scaling`: one instance, then three, then one again, under load
//!   (at-least-once; the two extra instances stop cleanly).
//!
//! The load is [`RECORDS`] records over [`KEYS`] keys (drawn at random, so
//! the counts differ), sent at a steady rate over [`LOAD`]. After it, the
//! final state (the latest output value of each key) is compared with the
//! counts computed from the input topic:
//!
//! - lost: the sum of each key's deficit; must be 0 in every trial;
//! - duplicated: the sum of each key's surplus; must be 0 under
//!   exactly-once and in scaling (no crash). After a crash under
//!   at-least-once, records processed since the last commit are counted
//!   again: reported, and allowed;
//! - duplicated outputs: output records repeating a (key, count) already
//!   read; must be 0 under exactly-once;
//! - the longest time without output: the longest gap between output
//!   records becoming readable, from the first input record to the last
//!   output, over the whole topic and within any one partition.
//!
//! `streams-app` is looked for next to this executable. Prints a line per
//! trial on stderr and the table on stdout; exits 1 when a check failed,
//! keeping the instances' logs and naming their folder.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use tests::committed::{self, Committed};
use tests::{Broker, app_process};

/// Input records per trial.
const RECORDS: usize = 6_000;
/// Distinct keys among them.
const KEYS: usize = 500;
/// How long the input takes to send, at a steady rate.
const LOAD: Duration = Duration::from_secs(8);
/// Partitions of the input and the output topics.
const PARTITIONS: i32 = 6;
/// When the kill (or the scaling up) happens, from the start of the load.
const EVENT_AT: Duration = Duration::from_secs(2);
/// How long three instances, or two joining ones, may take to share the
/// partitions.
const GROUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the output may take to be complete once the input is sent.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a clean stop (stdin closed) may take.
const STOP_TIMEOUT: Duration = Duration::from_secs(45);
/// How often the output is read while a trial runs.
const WATCH_EVERY: Duration = Duration::from_millis(100);

#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
enum Kind {
    AtLeastOnce,
    ExactlyOnce,
    Scaling,
}

/// Its name on the command line (`at-least-once`, ...).
impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`, so that the table's widths apply.
        f.pad(
            self.to_possible_value()
                .expect("no kind is skipped")
                .get_name(),
        )
    }
}

impl Kind {
    fn guarantee(self) -> &'static str {
        match self {
            Kind::ExactlyOnce => "exactly_once_v2",
            Kind::AtLeastOnce | Kind::Scaling => "at_least_once",
        }
    }

    /// Whether the final state must equal the computed one exactly (no
    /// surplus): everywhere but after a crash under at-least-once.
    fn exact(self) -> bool {
        self != Kind::AtLeastOnce
    }

    /// How long the killed instance stays down. Under at-least-once, longer
    /// than the session timeout (3 s), so the survivors take its partitions
    /// over first. Under exactly-once, shorter: the restart fences the
    /// killed instance's open transaction before a survivor writes to its
    /// partitions. The development broker mishandles transactional offset
    /// commits when two producers have transactions open on one partition
    /// (see tests/tests/failover.rs), which a longer outage would cause.
    fn default_restart_after(self) -> Duration {
        match self {
            Kind::ExactlyOnce => Duration::from_secs(1),
            Kind::AtLeastOnce | Kind::Scaling => Duration::from_secs(4),
        }
    }
}

/// Kill trials of a counting application on a private broker.
#[derive(Parser)]
#[command(name = "trials")]
struct Options {
    /// Trials of each kind.
    #[arg(long, default_value_t = 20)]
    trials: usize,
    /// The kinds of trial, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Kind::AtLeastOnce, Kind::ExactlyOnce, Kind::Scaling])]
    kinds: Vec<Kind>,
    /// How long a killed instance stays down, in milliseconds [default:
    /// 1000 under exactly-once, else 4000].
    #[arg(long = "restart-after-ms", value_name = "MS", value_parser = millis)]
    restart_after: Option<Duration>,
    /// Keep the instances' logs even when every check passed.
    #[arg(long)]
    keep_logs: bool,
}

fn millis(text: &str) -> Result<Duration, String> {
    text.parse()
        .map(Duration::from_millis)
        .map_err(|_| format!("`{text}` is not a number of milliseconds"))
}

/// One instance of `streams-app idcount`, a child process.
struct App {
    name: String,
    child: Child,
    /// Closing it stops the instance cleanly.
    stdin: Option<ChildStdin>,
    states: mpsc::Receiver<String>,
    /// Its latest state.
    state: String,
    /// The input partitions it was last assigned, from its log.
    assigned: Arc<Mutex<Vec<i32>>>,
    /// Whether it was stopped or killed on purpose.
    ended: bool,
}

/// What every instance of a trial shares.
struct Setup<'a> {
    binary: &'a Path,
    bootstrap: &'a str,
    app_id: String,
    guarantee: &'a str,
    input: String,
    output: String,
    /// Where the instances' logs go.
    logs: PathBuf,
    /// When the trial began: log lines carry the seconds since.
    epoch: Instant,
}

impl App {
    fn start(setup: &Setup<'_>, name: &str, state_dir: &Path) -> App {
        let mut child = Command::new(setup.binary)
            .args([
                "idcount",
                setup.bootstrap,
                &setup.app_id,
                state_dir.to_str().expect("a UTF-8 temporary path"),
                setup.guarantee,
                &setup.input,
                &setup.output,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", setup.binary.display()));
        let stdin = child.stdin.take();
        // Its log goes to a file; its assignment is noted on the way.
        let stderr = child.stderr.take().expect("piped stderr");
        let assigned = Arc::new(Mutex::new(Vec::new()));
        let noted = assigned.clone();
        let input = setup.input.clone();
        let log_path = setup.logs.join(format!("{name}.log"));
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap_or_else(|e| panic!("opening {}: {e}", log_path.display()));
        let epoch = setup.epoch;
        let _ = writeln!(
            log,
            "{:8.3} --- started {name}",
            epoch.elapsed().as_secs_f64()
        );
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = writeln!(log, "{:8.3} {line}", epoch.elapsed().as_secs_f64());
                app_process::note_assignment(&line, &input, &noted);
            }
        });
        let states = app_process::states(child.stdout.take().expect("piped stdout"));
        App {
            name: name.to_owned(),
            child,
            stdin,
            states,
            state: String::new(),
            assigned,
            ended: false,
        }
    }

    /// Takes in the state transitions reported since the last call.
    fn refresh(&mut self) {
        while let Ok(state) = self.states.try_recv() {
            self.state = state;
        }
    }

    fn assigned(&self) -> Vec<i32> {
        self.assigned.lock().unwrap().clone()
    }

    /// An error when the process has exited though nobody stopped it.
    fn check_alive(&mut self) -> Result<(), String> {
        if self.ended {
            return Ok(());
        }
        match self.child.try_wait() {
            Ok(Some(status)) => {
                self.ended = true;
                Err(format!("{} exited by itself with {status}", self.name))
            }
            _ => Ok(()),
        }
    }

    /// SIGKILL: no commit, no clean close, no leaving the group.
    fn kill(&mut self) {
        self.ended = true;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Asks for a clean stop (closes stdin) without waiting.
    fn request_stop(&mut self) {
        self.ended = true;
        drop(self.stdin.take());
    }

    /// Waits for the exit a [`App::request_stop`] asked for; kills the
    /// process after [`STOP_TIMEOUT`].
    fn wait_stopped(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => return Err(self.bad_exit(status)),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => {
                    self.kill();
                    return Err(format!(
                        "{} did not stop within {STOP_TIMEOUT:?} of its stdin closing",
                        self.name
                    ));
                }
            }
        }
    }

    fn bad_exit(&self, status: ExitStatus) -> String {
        format!("{} stopped with {status}", self.name)
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until every app in `apps` is running and together they own every
/// input partition, each at least one.
fn wait_for_group(apps: &mut [&mut App]) -> Result<(), String> {
    let deadline = Instant::now() + GROUP_TIMEOUT;
    loop {
        let mut owned = HashSet::new();
        let mut ready = true;
        for app in apps.iter_mut() {
            app.refresh();
            app.check_alive()?;
            let assigned = app.assigned();
            ready &= app.state == "Running" && !assigned.is_empty();
            owned.extend(assigned);
        }
        if ready && owned.len() == PARTITIONS as usize {
            return Ok(());
        }
        if Instant::now() > deadline {
            let views: Vec<String> = apps
                .iter()
                .map(|a| format!("{} {} {:?}", a.name, a.state, a.assigned()))
                .collect();
            return Err(format!(
                "the instances did not share the partitions within {GROUP_TIMEOUT:?}: {}",
                views.join("; ")
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends [`RECORDS`] records at a steady rate over [`LOAD`], keys drawn
/// from [`KEYS`] with a generator seeded by `seed`, partitioned as the
/// engine partitions its output (Java's murmur2 of the key), so each
/// instance's transactions touch only its own partitions.
fn send_load(broker: &Broker, topic: &str, seed: u64, start: Instant) -> Result<usize, String> {
    let producer: BaseProducer = broker
        .client_config()
        .set("partitioner", "murmur2_random")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .map_err(|e| format!("creating the input producer: {e}"))?;
    let mut rng = seed | 1;
    let mut next_key = || {
        // xorshift64
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % KEYS as u64
    };
    for i in 0..RECORDS {
        let due = start + LOAD.mul_f64(i as f64 / RECORDS as f64);
        let now = Instant::now();
        if due > now {
            producer.poll(Duration::ZERO);
            std::thread::sleep(due - now);
        }
        let key = format!("key-{}", next_key());
        let value = i.to_string();
        let mut record = BaseRecord::<str, str>::to(topic).key(&key).payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => return Err(format!("sending input record {i}: {e}")),
            }
        }
    }
    producer
        .flush(Duration::from_secs(30))
        .map_err(|e| format!("delivering the input: {e}"))?;
    Ok(RECORDS)
}

/// The output as read while a trial runs: when each partition's readable
/// output grew.
#[derive(Default)]
struct Watch {
    /// Per partition, the times its readable record count grew.
    growth: BTreeMap<i32, Vec<Instant>>,
    /// The latest read.
    latest: Option<Committed>,
    /// Read errors (the reader retries).
    errors: usize,
}

fn watch_output(
    bootstrap: String,
    topic: String,
    stop: Arc<AtomicBool>,
    watch: Arc<Mutex<Watch>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut counts = vec![0usize; PARTITIONS as usize];
        while !stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            let mut all = Committed::default();
            let mut failed = false;
            for partition in 0..PARTITIONS {
                match committed::read_committed(&bootstrap, &topic, partition) {
                    Ok(part) => {
                        let now = Instant::now();
                        let count = part.records.len();
                        if count > counts[partition as usize] {
                            counts[partition as usize] = count;
                            watch
                                .lock()
                                .unwrap()
                                .growth
                                .entry(partition)
                                .or_default()
                                .push(now);
                        }
                        all.records.extend(part.records);
                        all.aborted += part.aborted;
                        all.commits += part.commits;
                        all.aborts += part.aborts;
                        all.open += part.open;
                        all.held_back += part.held_back;
                    }
                    Err(_) => failed = true,
                }
            }
            {
                let mut watch = watch.lock().unwrap();
                if failed {
                    watch.errors += 1;
                } else {
                    watch.latest = Some(all);
                }
            }
            if let Some(left) = WATCH_EVERY.checked_sub(started.elapsed()) {
                std::thread::sleep(left);
            }
        }
    })
}

/// Each key's count in the records of `view`.
fn counts_of(view: &Committed) -> HashMap<Vec<u8>, i64> {
    let mut counts = HashMap::new();
    for record in &view.records {
        *counts
            .entry(record.key.clone().unwrap_or_default())
            .or_insert(0) += 1;
    }
    counts
}

/// The latest output value of each key (a key has one output partition,
/// read in offset order), and the outputs that repeat a (key, count).
fn final_state(view: &Committed) -> (HashMap<Vec<u8>, i64>, usize) {
    let mut latest = HashMap::new();
    let mut seen = HashSet::new();
    let mut repeated = 0;
    for record in &view.records {
        let key = record.key.clone().unwrap_or_default();
        let value = record
            .value
            .as_deref()
            .and_then(|v| v.try_into().ok())
            .map(i64::from_be_bytes)
            .unwrap_or(0);
        if !seen.insert((key.clone(), value)) {
            repeated += 1;
        }
        latest.insert(key, value);
    }
    (latest, repeated)
}

/// (lost, surplus): the sums of each key's deficit and surplus of `actual`
/// against `expected`.
fn compare(expected: &HashMap<Vec<u8>, i64>, actual: &HashMap<Vec<u8>, i64>) -> (i64, i64) {
    let mut lost = 0;
    let mut surplus = 0;
    for (key, &want) in expected {
        let got = actual.get(key).copied().unwrap_or(0);
        lost += (want - got).max(0);
        surplus += (got - want).max(0);
    }
    for (key, &got) in actual {
        if !expected.contains_key(key) {
            surplus += got.max(0);
        }
    }
    (lost, surplus)
}

#[derive(Default)]
struct Outcome {
    records: usize,
    lost: i64,
    duplicated: i64,
    repeated_outputs: usize,
    /// The longest time without any output.
    gap: Duration,
    /// The longest time one partition was without output.
    partition_gap: Duration,
    elapsed: Duration,
    failures: Vec<String>,
    /// What happened when, for the trial's line.
    events: Vec<String>,
}

/// The longest gap in `start, times...` (sorted), and when it began.
fn longest_gap(start: Instant, times: &[Instant]) -> (Duration, Instant) {
    let mut previous = start;
    let mut longest = (Duration::ZERO, start);
    for &t in times {
        let gap = t.saturating_duration_since(previous);
        if gap > longest.0 {
            longest = (gap, previous);
        }
        previous = previous.max(t);
    }
    longest
}

fn run_trial(
    broker: &Broker,
    binary: &Path,
    kind: Kind,
    number: usize,
    restart_after: Duration,
    logs: &Path,
) -> Outcome {
    let begun = Instant::now();
    let app_id = format!("trials-{kind}-{}-{number}", std::process::id());
    let logs = logs.join(&app_id);
    std::fs::create_dir_all(&logs).expect("create the log folder");
    let setup = Setup {
        binary,
        bootstrap: broker.bootstrap_servers(),
        guarantee: kind.guarantee(),
        input: format!("{app_id}-in"),
        output: format!("{app_id}-out"),
        app_id,
        logs,
        epoch: begun,
    };
    broker.create_topic(&setup.input, PARTITIONS);
    broker.create_topic(&setup.output, PARTITIONS);
    let dirs: Vec<tempfile::TempDir> = (0..3)
        .map(|_| tempfile::tempdir().expect("a state directory"))
        .collect();
    let mut outcome = Outcome::default();
    let mut apps: Vec<App> = Vec::new();
    let result = drive(
        &setup,
        broker,
        kind,
        number,
        restart_after,
        &dirs,
        &mut apps,
        &mut outcome,
    );
    if let Err(failure) = result {
        outcome.failures.push(failure);
    }
    // Whatever happened, every instance goes.
    drop(apps);
    outcome.elapsed = begun.elapsed();
    outcome
}

#[allow(clippy::too_many_arguments)]
fn drive(
    setup: &Setup<'_>,
    broker: &Broker,
    kind: Kind,
    number: usize,
    restart_after: Duration,
    dirs: &[tempfile::TempDir],
    apps: &mut Vec<App>,
    outcome: &mut Outcome,
) -> Result<(), String> {
    let instances = if kind == Kind::Scaling { 1 } else { 3 };
    for (i, dir) in dirs.iter().enumerate().take(instances) {
        apps.push(App::start(setup, &format!("instance-{i}"), dir.path()));
    }
    wait_for_group(&mut apps.iter_mut().collect::<Vec<_>>())?;

    // The load, and a reader of the output, in the background.
    let start = Instant::now();
    let stop_watch = Arc::new(AtomicBool::new(false));
    let watch = Arc::new(Mutex::new(Watch::default()));
    let watcher = watch_output(
        setup.bootstrap.to_owned(),
        setup.output.clone(),
        stop_watch.clone(),
        watch.clone(),
    );
    outcome.events.push(format!(
        "load from {:.1}s of the logs' clock",
        (start - setup.epoch).as_secs_f64()
    ));
    let load = std::thread::scope(|scope| -> Result<usize, String> {
        let input = setup.input.as_str();
        let loader = scope.spawn(move || send_load(broker, input, number as u64 * 7919, start));
        let at = |d: Duration| format!("{:.1}s", d.as_secs_f64());
        std::thread::sleep(EVENT_AT);
        match kind {
            Kind::AtLeastOnce | Kind::ExactlyOnce => {
                let victim = (number - 1) % 3;
                if kind == Kind::ExactlyOnce
                    && let Err(note) = wait_until_mid_transaction(setup, &apps[victim])
                {
                    outcome.events.push(note);
                }
                let partitions = apps[victim].assigned();
                apps[victim].kill();
                outcome.events.push(format!(
                    "killed instance-{victim} (partitions {partitions:?}) at {}",
                    at(start.elapsed())
                ));
                std::thread::sleep(restart_after);
                let name = format!("instance-{victim}");
                let restarted = App::start(setup, &name, dirs[victim].path());
                apps[victim] = restarted;
                outcome
                    .events
                    .push(format!("restarted it at {}", at(start.elapsed())));
            }
            Kind::Scaling => {
                for (i, dir) in dirs.iter().enumerate().skip(1) {
                    apps.push(App::start(setup, &format!("instance-{i}"), dir.path()));
                }
                outcome
                    .events
                    .push(format!("started 2 more at {}", at(start.elapsed())));
                wait_for_group(&mut apps.iter_mut().collect::<Vec<_>>())?;
                outcome
                    .events
                    .push(format!("3 sharing at {}", at(start.elapsed())));
                std::thread::sleep(Duration::from_secs(1));
                for app in &mut apps[1..] {
                    app.request_stop();
                }
                outcome
                    .events
                    .push(format!("stopping 2 at {}", at(start.elapsed())));
                for app in &mut apps[1..] {
                    app.wait_stopped()?;
                }
                outcome
                    .events
                    .push(format!("1 left at {}", at(start.elapsed())));
            }
        }
        let sent = loader.join().expect("the load thread")?;
        outcome
            .events
            .push(format!("input sent at {}", at(start.elapsed())));
        Ok(sent)
    });
    let settled = load.and_then(|sent| {
        let input = committed::read_committed_topic(setup.bootstrap, &setup.input, PARTITIONS)
            .map_err(|e| format!("reading the input: {e}"))?;
        outcome.records = input.records.len();
        if input.records.len() != sent {
            return Err(format!(
                "{sent} input records sent, {} in the input topic",
                input.records.len()
            ));
        }
        let expected = counts_of(&input);
        // Wait until every key's output reaches its count, and (exactly
        // once) no transaction is open.
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            for app in apps.iter_mut() {
                app.check_alive()?;
            }
            let done = match &watch.lock().unwrap().latest {
                Some(view) => {
                    let (state, _) = final_state(view);
                    compare(&expected, &state).0 == 0 && view.open == 0 && view.held_back == 0
                }
                None => false,
            };
            if done {
                outcome.events.push(format!(
                    "output complete at {:.1}s",
                    start.elapsed().as_secs_f64()
                ));
                return Ok(expected);
            }
            if Instant::now() > deadline {
                outcome.failures.push(format!(
                    "the output was not complete {SETTLE_TIMEOUT:?} after the input was sent"
                ));
                return Ok(expected);
            }
            std::thread::sleep(WATCH_EVERY);
        }
    });
    // A little longer, to see outputs that come late (and would be
    // duplicates), then stop everything cleanly.
    std::thread::sleep(Duration::from_millis(500));
    stop_watch.store(true, Ordering::Relaxed);
    watcher.join().expect("the output reader");
    let mut stop_errors = Vec::new();
    let running: Vec<usize> = (0..apps.len()).filter(|&i| !apps[i].ended).collect();
    for &i in &running {
        apps[i].request_stop();
    }
    for &i in &running {
        if let Err(e) = apps[i].wait_stopped() {
            stop_errors.push(e);
        }
    }
    outcome.failures.extend(stop_errors);
    let expected = settled?;

    // The longest times without output, up to the last growth.
    {
        let watch = watch.lock().unwrap();
        let mut all: Vec<Instant> = watch.growth.values().flatten().copied().collect();
        all.sort();
        let (gap, from) = longest_gap(start, &all);
        outcome.gap = gap;
        outcome.events.push(format!(
            "no output from {:.1}s to {:.1}s",
            (from - start).as_secs_f64(),
            (from + gap - start).as_secs_f64()
        ));
        if let Some((partition, (gap, from))) = watch
            .growth
            .iter()
            .map(|(partition, times)| (partition, longest_gap(start, times)))
            .max_by_key(|(_, (gap, _))| *gap)
        {
            outcome.partition_gap = gap;
            outcome.events.push(format!(
                "none in partition {partition} from {:.1}s to {:.1}s",
                (from - start).as_secs_f64(),
                (from + gap - start).as_secs_f64()
            ));
        }
    }

    // The final state, once every instance has stopped.
    let view = committed::read_committed_topic(setup.bootstrap, &setup.output, PARTITIONS)
        .map_err(|e| format!("reading the output: {e}"))?;
    let (state, repeated) = final_state(&view);
    let (lost, surplus) = compare(&expected, &state);
    outcome.lost = lost;
    outcome.duplicated = surplus;
    outcome.repeated_outputs = repeated;
    if lost > 0 {
        outcome
            .failures
            .push(format!("{lost} input records not counted"));
    }
    if kind.exact() && surplus > 0 {
        outcome
            .failures
            .push(format!("{surplus} input records counted more than once"));
    }
    if kind == Kind::ExactlyOnce {
        outcome.events.push(format!(
            "output: {} committed records, {} aborted, {} commit and {} abort markers",
            view.records.len(),
            view.aborted,
            view.commits,
            view.aborts
        ));
        if repeated > 0 {
            outcome
                .failures
                .push(format!("{repeated} committed outputs duplicated"));
        }
        if view.open > 0 || view.held_back > 0 {
            outcome.failures.push(format!(
                "after a clean stop, {} output records in open transactions and {} held back",
                view.open, view.held_back
            ));
        }
    }
    Ok(())
}

/// Waits (at most 5 s) until `app` has an open transaction with output in
/// it, as in tests/tests/failover.rs: the input is partitioned like the
/// output, so an open transaction in an output partition of its tasks is
/// its own.
fn wait_until_mid_transaction(setup: &Setup<'_>, app: &App) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        for partition in app.assigned() {
            if let Ok(view) = committed::read_committed(setup.bootstrap, &setup.output, partition)
                && view.open > 0
            {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err("no open transaction seen on the victim's partitions in 5 s".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The figures of one kind's trials.
#[derive(Default)]
struct Row {
    trials: usize,
    failed: usize,
    records: usize,
    lost: i64,
    duplicated: i64,
    repeated_outputs: usize,
    gap: Duration,
    partition_gap: Duration,
    longest_trial: Duration,
}

fn main() {
    let options = Options::parse();
    let built = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join("streams-app")))
        .filter(|path| path.exists())
        .unwrap_or_else(|| {
            eprintln!(
                "trials: streams-app is not next to this executable; build the workspace's binaries"
            );
            std::process::exit(2);
        });
    // A copy of its own, so a build during a long run changes nothing.
    let bin = tempfile::Builder::new()
        .prefix("trials-bin-")
        .tempdir()
        .expect("a folder for streams-app");
    let binary = bin.path().join("streams-app");
    std::fs::copy(&built, &binary).expect("copy streams-app");
    let broker = Broker::start();
    // Kept until every trial passed, so that even a panic leaves the logs.
    let logs = tempfile::Builder::new()
        .prefix("trials-")
        .tempdir()
        .expect("a folder for the logs")
        .keep();
    eprintln!(
        "trials: broker on {}; {} trial(s) of {}; {RECORDS} records over {KEYS} keys in {:?}, {PARTITIONS} partitions",
        broker.bootstrap_servers(),
        options.trials,
        options
            .kinds
            .iter()
            .map(Kind::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        LOAD
    );
    let mut rows = Vec::new();
    for &kind in &options.kinds {
        let mut row = Row::default();
        let restart_after = options
            .restart_after
            .unwrap_or_else(|| kind.default_restart_after());
        for number in 1..=options.trials {
            let outcome = run_trial(&broker, &binary, kind, number, restart_after, &logs);
            let verdict = if outcome.failures.is_empty() {
                "ok".to_owned()
            } else {
                format!("FAILED: {}", outcome.failures.join("; "))
            };
            eprintln!(
                "trials: {} {number}/{}: {:.1}s, {} records, lost {}, duplicated {}, repeated outputs {}, longest without output {:.2}s (one partition {:.2}s); {}; {verdict}",
                kind,
                options.trials,
                outcome.elapsed.as_secs_f64(),
                outcome.records,
                outcome.lost,
                outcome.duplicated,
                outcome.repeated_outputs,
                outcome.gap.as_secs_f64(),
                outcome.partition_gap.as_secs_f64(),
                outcome.events.join(", "),
            );
            row.trials += 1;
            row.failed += usize::from(!outcome.failures.is_empty());
            row.records += outcome.records;
            row.lost += outcome.lost;
            row.duplicated += outcome.duplicated;
            row.repeated_outputs += outcome.repeated_outputs;
            row.gap = row.gap.max(outcome.gap);
            row.partition_gap = row.partition_gap.max(outcome.partition_gap);
            row.longest_trial = row.longest_trial.max(outcome.elapsed);
        }
        rows.push((kind, row));
    }
    println!(
        "{:<14} {:>6} {:>6} {:>8} {:>5} {:>10} {:>11} {:>12} {:>13} {:>13}",
        "kind",
        "trials",
        "failed",
        "records",
        "lost",
        "duplicated",
        "dup outputs",
        "max no-output",
        "max partition",
        "longest trial"
    );
    for (kind, row) in &rows {
        println!(
            "{:<14} {:>6} {:>6} {:>8} {:>5} {:>10} {:>11} {:>12.2}s {:>12.2}s {:>12.1}s",
            kind,
            row.trials,
            row.failed,
            row.records,
            row.lost,
            row.duplicated,
            row.repeated_outputs,
            row.gap.as_secs_f64(),
            row.partition_gap.as_secs_f64(),
            row.longest_trial.as_secs_f64()
        );
    }
    let failed: usize = rows.iter().map(|(_, r)| r.failed).sum();
    if failed > 0 || options.keep_logs {
        eprintln!("trials: the instances' logs are in {}", logs.display());
    } else {
        let _ = std::fs::remove_dir_all(&logs);
    }
    if failed > 0 {
        eprintln!("trials: {failed} trial(s) failed");
        std::process::exit(1);
    }
}
