//! Runtime throughput benchmark: one input topic, several ways to process it.
//!
//! ```text
//! bench-runtime BOOTSTRAP [COUNT] [PARTITIONS] [SCENARIOS] [KEY=VALUE ...]
//! ```
//!
//! Produces COUNT records (default 1,000,000; key `key-{i % 10000}`, a
//! 90-byte string value, timestamp 1 ms after the record before, the last
//! one about now) to a fresh input topic with PARTITIONS partitions
//! (default 4), untimed, then runs each scenario of SCENARIOS (a
//! comma-separated list; default `all`: every scenario but `queries`) on
//! that same input, each with its own consumer group / application.id and
//! output topic:
//!
//! - `semantic`: the basis of every ratio (issue 20). An rdkafka
//!   consume-and-produce loop (one `BaseConsumer`, one `BaseProducer`, one
//!   thread) that does the per-record work a topology must do, and no
//!   more: it forwards key, value, timestamp and headers to the partition
//!   the default partitioner picks for the key, with the framework's client
//!   settings (`StreamsConfig::client_properties`: its fetch, batch and
//!   linger defaults, an idempotent producer), and every
//!   `commit.interval.ms` (the at-least-once default, or the override) it
//!   waits for every delivery, then commits the consumed offsets.
//! - `raw`: the bare loop, a second reference: key and value only, to the
//!   same partition, librdkafka's producer defaults (not idempotent), one
//!   commit at the end.
//! - `passthrough`: stream (bytes) -> peek -> to (bytes): the framework's
//!   floor, what a topology keeps of the semantic loop's speed when it
//!   does nothing.
//! - `stateless`: stream -> map_values -> filter -> peek -> to.
//! - `count-alos`: peek -> group_by_key -> count (RocksDB with changelog) ->
//!   to_stream -> to, at-least-once.
//! - `count-eos`: the same under `exactly_once_v2`.
//! - `window-count`: peek -> group_by_key -> windowed_by (tumbling 60 s,
//!   10 s grace) -> count (RocksDB with changelog, cached) ->
//!   suppress(until_window_closes(unbounded)) -> to_stream -> to,
//!   at-least-once. The input's event time advances 1 ms per record, so a
//!   window holds 60,000 records (6 per key) and each window's 10,000 final
//!   counts come out once stream time passes its end plus grace: about
//!   COUNT / 6 results in all (the last window or two stay open). No target.
//! - `serving`: the model server's topology (`model_server::serving`, the
//!   `standard` store: statistics in RocksDB with a changelog), on COUNT
//!   wine records of its own (about 105 bytes each, the same partitions,
//!   written untimed to `mdata`), with the original PMML linear
//!   regression and an ONNX linear regression published in turn every 100 ms while
//!   it runs (`BENCH_SWAP_INTERVAL_MS`; 0: the first model only), so that
//!   models are built and swapped under load. Also
//!   reported: how many swaps happened and the longest time any record
//!   waited to get its model (the only step a swap can delay).
//! - `serving-stage` and `serving-actors`: the model server's engines
//!   without a framework (`model_server::stage`, `model_server::actors`:
//!   tokio, rdkafka's stream consumer), on the same wine records with the
//!   same model swaps, so the three engines compare in one run. No target.
//! - `restore`: a full restore. Writes a changelog of its own once (COUNT
//!   distinct keys with 8-byte counts, on PARTITIONS partitions, each key
//!   where the default partitioner puts it), then each round starts a
//!   count per key in RocksDB (`bench-restore-counts`) whose changelog it
//!   is, on an empty state directory, and stops it once every changelog
//!   partition is restored. Its rate runs from the first restore's start
//!   (just before its first fetch) to the last record restored; the group
//!   join is in its total only. No ratio: it reads no loop's input.
//! - `queries` (not in `all`; it measures requests, not records, and has
//!   a table of its own): interactive queries. Writes
//!   10,000 keys once each to a topic of its own (PARTITIONS partitions,
//!   at least 2), starts two instances of `tests::apps::id_count` (a
//!   count per key in RocksDB) in this process, each with a
//!   `streams_http::QueryServer` on a loopback port of its own
//!   (`application.server` set, registry heartbeat 200 ms), waits until
//!   both list each other in `GET /state/instances`, agree on who owns
//!   each key (`query_metadata_for_key`) and every key is readable on
//!   its owner, then times, single-threaded and one request after the
//!   other: `ReadOnlyKeyValueView::get` on the owner (no HTTP); HTTP
//!   lookups `GET /state/keyvalue/{store}/{key}` of keys the asked
//!   instance owns; the same for keys the other instance owns (forwarded
//!   to it); and merged scans `GET /state/keyvalue/{store}` (fan-out to
//!   both, 10,000 entries). Requests alternate between the two instances.
//!   The client is `streams_http::get`: hyper's pooled client, whose
//!   connections are reused, as instances forward to each other. Each
//!   measurement follows a short untimed warm-up. Reported: requests per
//!   second, mean and p99 latency, and CPU seconds of this process per
//!   million requests (client, both servers and both idle instances).
//!
//! Time: the clock starts when the consumer subscribes (the loops) or just before
//! `start()` (streams), and stops when every record was seen and the output
//! is flushed (raw: every delivery report served; streams: `close()`,
//! which flushes and commits). That
//! includes joining the group. The time from the first record seen to the
//! same end is reported too. CPU is the user+system time of this process
//! (every thread, librdkafka's and RocksDB's included) from /proc/self/stat
//! around each scenario; with `BENCH_BROKER_PID` set, the broker's too.
//! "loop/M" is the CPU of the one thread that consumes, processes and
//! produces (a loop's own thread, or the stream thread, read just
//! before `close()`), per million records: when it is the busiest thread,
//! its cost per record bounds the rate.
//! Each streams scenario also prints its commits and the time they took,
//! from the instance's metrics just before `close()`, and how long
//! `close()` took (about 0.1 s of it is rdkafka closing a group consumer,
//! which polls in 100 ms slices; the loops drop their consumers inside
//! their timed runs too). Commits count only those with something to
//! commit. `RUST_LOG` turns the framework's log on (with seconds since
//! start): `streams_kafka::collector=debug,streams_kafka::thread=debug`
//! shows each exactly-once commit's phases.
//!
//! Extra `KEY=VALUE` arguments override the streams settings (for example
//! `commit.interval.ms=1000`); the `consumer.KEY=VALUE` and
//! `producer.KEY=VALUE` ones apply to the loops' clients too, so a
//! client setting can be tried on all at once. A streams scenario that
//! has not finished after `BENCH_SCENARIO_TIMEOUT` seconds (default 300) is
//! closed and reported with the records it got through.
//!
//! `BENCH_CACHE_BYTES` sizes the record cache of the count scenarios'
//! stores (`count-alos`, `count-eos`, `window-count`; default: the
//! framework's, `DEFAULT_CACHE_BYTES`); 0 turns it off.
//!
//! `BENCH_ROUNDS=N` (default 1) runs the scenarios N times in turn on the
//! same input (each round with its own groups and output topics, and
//! starting one scenario further along the list than the last) and ends
//! with a summary: per scenario, the median of its steady ratios to the
//! semantic loop of the same round and their range, the median ratio to
//! the bare loop, and the medians of records/s, CPU and loop CPU per
//! million records (and loop/M's ratio to the semantic loop's), peak
//! memory and commit time. Targets are judged on those medians. On a shared machine
//! a single run's ratio moves by a tenth or more; the median of several
//! rounds moves less.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use streams_core::dsl::{BufferConfig, Consumed, Grouped, Materialized, Produced, Suppressed};
use streams_core::serde::{BytesSerde, I64Serde, Nullable, StringSerde};
use streams_core::window::{TimeWindowedSerde, TimeWindows};
use streams_core::{StreamsBuilder, StreamsConfig};
use streams_http::percent_encode;
use streams_kafka::{HostInfo, KafkaStreams, State, create_topics_if_missing, drain_producer};

use model_server::http::ServingMetrics;
use model_server::serving::{DATA_TOPIC, MODELS_TOPIC, SCORES_TOPIC, StoreVariant};
use tests::QueryInstance;

type Error = Box<dyn std::error::Error>;

const SCENARIOS: [&str; 12] = [
    "semantic",
    "raw",
    "passthrough",
    "stateless",
    "count-alos",
    "count-eos",
    "window-count",
    "serving",
    "serving-stage",
    "serving-actors",
    "restore",
    "queries",
];
/// Scenarios that `all` leaves out: `queries` measures requests, not
/// records, and has a table of its own.
const NOT_IN_ALL: [&str; 1] = ["queries"];
/// The basis every ratio is taken to (see [`semantic_loop`]).
const BASIS: &str = "semantic";
/// Minimum steady ratio to the semantic loop of the same round, per
/// scenario (issue 20), judged on the median of the rounds.
const TARGETS: [(&str, f64); 8] = [
    ("passthrough", 0.9),
    ("stateless", 0.85),
    ("count-alos", 0.75),
    ("count-eos", 0.55),
    ("window-count", 0.6),
    ("serving", 0.75),
    ("serving-stage", 0.75),
    ("serving-actors", 0.75),
];
/// Minimum records per second, for scenarios that are no loop over the
/// input (`restore`).
const RATE_TARGETS: [(&str, f64); 1] = [("restore", 500_000.0)];
/// The passthrough stream thread's CPU per record (loop/M) at most this
/// many times the semantic loop's thread's.
const LOOP_TARGET: (&str, f64) = ("passthrough", 1.15);
/// Exactly-once commits take less than this many ms each on average.
const COMMIT_TARGET: (&str, f64) = ("count-eos", 5.0);
/// The `serving` scenario's models, published in turn every
/// [`swap_interval`] while it runs.
const SERVING_MODELS: [&str; 2] = [
    "pmml/winequalityLinearRegression.pmml",
    "onnx/wine_linear_regression.onnx",
];
/// `BENCH_SWAP_INTERVAL_MS`: how often the `serving` scenario publishes
/// the next model while it runs (0: only the first, before start).
fn swap_interval() -> Option<Duration> {
    let ms: u64 = std::env::var("BENCH_SWAP_INTERVAL_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    (ms > 0).then(|| Duration::from_millis(ms))
}
const VALUE_BYTES: usize = 90;
const KEYS: u64 = 10_000;
/// The `window-count` scenario's tumbling windows and their grace period.
const WINDOW: Duration = Duration::from_secs(60);
const WINDOW_GRACE: Duration = Duration::from_secs(10);
/// Group timeouts as in the end-to-end tests: joining takes about 2 s on
/// the development broker (it answers a join after about half of the
/// session timeout plus a little; 1000 ms joined in about 1.2 s but once
/// saw a spurious rebalance under exactly-once).
const SESSION_TIMEOUT_MS: &str = "3000";
const HEARTBEAT_INTERVAL_MS: &str = "500";
/// How long a scenario may go without progress before it counts as stuck.
const STALL: Duration = Duration::from_secs(60);
/// How long a streams scenario may run before it is stopped and reported
/// with the records it got through (`BENCH_SCENARIO_TIMEOUT`, seconds).
const DEFAULT_SCENARIO_TIMEOUT: u64 = 300;
/// The `queries` scenario: keys in the store, requests per lookup
/// measurement, requests per scan measurement, the store's name, and how
/// long one request may take.
const QUERY_KEYS: u64 = 10_000;
const QUERY_LOOKUPS: usize = 20_000;
const QUERY_SCANS: usize = 50;
const QUERY_STORE: &str = "bench-query-counts";
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// The raw loop's consumer tuning: the framework's consumer defaults, which
/// are the best found for this loop (`fetch.queue.backoff.ms` 10 ms, not
/// librdkafka's 1 s, so a consumer that drains its prefetch queue quickly
/// does not sit idle). Changing them changes the ceiling too.
const RAW_CONSUMER: &[(&str, &str)] = streams_core::config::CONSUMER_DEFAULTS;
/// The raw loop's producer tuning: librdkafka's defaults (linger.ms 1 or
/// 20, bigger batches or queues were no faster here).
const RAW_PRODUCER: &[(&str, &str)] = &[];

#[derive(Clone)]
struct Settings {
    bootstrap: String,
    count: u64,
    partitions: i32,
    /// The throughput scenarios to run.
    scenarios: Vec<String>,
    /// Whether to run the `queries` scenario (after them).
    queries: bool,
    /// `KEY=VALUE` overrides of the streams settings; the raw loop takes
    /// the `consumer.` and `producer.` ones.
    overrides: BTreeMap<String, String>,
    scenario_timeout: Duration,
    run_id: String,
    /// The round being run (see `BENCH_ROUNDS`), part of every group and
    /// output topic name.
    round: usize,
    rounds: usize,
    clk_tck: f64,
    broker_pid: Option<String>,
}

struct Outcome {
    /// Records seen; less than the count when the scenario timed out.
    records: u64,
    /// From subscribe / start() to flushed / closed.
    total: Duration,
    /// From the first record seen to flushed / closed.
    from_first: Duration,
    cpu: f64,
    /// Of the thread that consumes, processes and produces: the raw loop's
    /// own thread, or the stream thread. Beside `cpu` it shows how much is
    /// librdkafka's and RocksDB's background threads.
    loop_cpu: f64,
    broker_cpu: Option<f64>,
    /// This process's peak resident memory during the scenario, in MiB
    /// (the kernel's high-water mark, reset as the scenario starts).
    peak_mib: Option<f64>,
    /// Commits and their mean time in ms (streams scenarios).
    commits: Option<(u64, f64)>,
}

/// Resets this process's peak resident memory (Linux: `5` to
/// `/proc/self/clear_refs`), so that the next reading is one scenario's.
fn reset_peak_memory() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// This process's peak resident memory since the last reset, in MiB.
fn peak_memory_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// mimalloc, for librdkafka's and RocksDB's `malloc` too (see the
/// workspace's `Cargo.toml`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // Transparent huge pages stay as the allocator and kernel have them,
    // as in an application's own binary; BENCH_HUGE_PAGES=0 turns them off
    // as `model-server` does (less memory; the scenarios ran 10-15 % slower
    // against the semantic loop, which slowed less).
    if std::env::var_os("BENCH_HUGE_PAGES").is_some_and(|v| v == "0")
        && let Err(error) = model_server::cli::without_huge_pages()
    {
        eprintln!("bench: transparent huge pages stay on: {error}");
    }
    // The framework's log lines (restoration's rates, for one) when
    // `RUST_LOG` asks for them.
    if std::env::var_os("RUST_LOG").is_some() {
        use std::io::Write as _;
        // Seconds since the start, to the microsecond: timings show in
        // the log.
        let start = Instant::now();
        let _ = env_logger::Builder::from_default_env()
            .format(move |out, record| {
                writeln!(
                    out,
                    "{:.6} {} {}",
                    start.elapsed().as_secs_f64(),
                    record.target(),
                    record.args()
                )
            })
            .try_init();
    }
    if let Err(error) = run() {
        eprintln!("bench-runtime: {error}");
        std::process::exit(1);
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: bench-runtime BOOTSTRAP [COUNT] [PARTITIONS] [SCENARIOS] [KEY=VALUE ...]\n\
         SCENARIOS: comma-separated from {} (`all`: all but {})",
        SCENARIOS.join(","),
        NOT_IN_ALL.join(",")
    );
    std::process::exit(2);
}

fn parse_args() -> Settings {
    let mut positional = Vec::new();
    let mut overrides = BTreeMap::new();
    for arg in std::env::args().skip(1) {
        if arg == "-h" || arg == "--help" {
            usage();
        }
        match arg.split_once('=') {
            Some((key, value)) if !key.is_empty() => {
                overrides.insert(key.to_owned(), value.to_owned());
            }
            _ => positional.push(arg),
        }
    }
    if positional.is_empty() || positional.len() > 4 {
        usage();
    }
    let count = positional
        .get(1)
        .map(|c| {
            c.replace('_', "")
                .parse::<u64>()
                .unwrap_or_else(|_| usage())
        })
        .unwrap_or(1_000_000);
    let partitions = positional
        .get(2)
        .map(|p| p.parse::<i32>().unwrap_or_else(|_| usage()))
        .unwrap_or(4);
    let mut scenarios: Vec<String> = match positional.get(3) {
        Some(list) if list != "all" => list.split(',').map(str::to_owned).collect(),
        _ => SCENARIOS
            .iter()
            .filter(|s| !NOT_IN_ALL.contains(s))
            .map(|s| (*s).to_owned())
            .collect(),
    };
    if count == 0 || partitions < 1 || scenarios.iter().any(|s| !SCENARIOS.contains(&s.as_str())) {
        usage();
    }
    let queries = scenarios.iter().any(|s| s == "queries");
    scenarios.retain(|s| s != "queries");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    Settings {
        bootstrap: positional[0].clone(),
        count,
        partitions,
        scenarios,
        queries,
        overrides,
        run_id: format!("{now}-{}", std::process::id()),
        round: 0,
        rounds: std::env::var("BENCH_ROUNDS")
            .ok()
            .and_then(|r| r.parse().ok())
            .filter(|&r| r > 0)
            .unwrap_or(1),
        clk_tck: clock_ticks_per_second(),
        scenario_timeout: Duration::from_secs(
            std::env::var("BENCH_SCENARIO_TIMEOUT")
                .ok()
                .and_then(|t| t.parse().ok())
                .unwrap_or(DEFAULT_SCENARIO_TIMEOUT),
        ),
        broker_pid: std::env::var("BENCH_BROKER_PID")
            .ok()
            .filter(|p| !p.is_empty()),
    }
}

/// `getconf CLK_TCK`, else Linux's usual 100.
fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// User plus system CPU seconds of process `pid` (all its threads, living
/// and finished), from `/proc/<pid>/stat`.
fn cpu_seconds(pid: &str, clk_tck: f64) -> Option<f64> {
    stat_cpu(
        &std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?,
        clk_tck,
    )
}

/// User+system seconds from the text of a `/proc/.../stat` file.
fn stat_cpu(stat: &str, clk_tck: f64) -> Option<f64> {
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / clk_tck)
}

/// User+system seconds so far of this process's threads whose name starts
/// with `prefix` (`/proc/self/task`; a thread that has ended is not there).
fn threads_cpu(prefix: &str, clk_tck: f64) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter_map(|task| {
            let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
            let name = stat.get(stat.find('(')? + 1..stat.rfind(')')?)?;
            name.starts_with(prefix)
                .then(|| stat_cpu(&stat, clk_tck))
                .flatten()
        })
        .sum()
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

impl Settings {
    fn input(&self) -> String {
        format!("bench-{}-input", self.run_id)
    }

    fn output(&self, scenario: &str) -> String {
        format!("bench-{}-{}-{scenario}-output", self.run_id, self.round)
    }

    fn admin_config(&self) -> StreamsConfig {
        StreamsConfig::new("bench-admin")
            .set("bootstrap.servers", &self.bootstrap)
            .set("replication.factor", "1")
    }

    /// A client configuration with `tuning`, then the `prefix` overrides.
    fn client(&self, tuning: &[(&str, &str)], prefix: &str) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        for (key, value) in tuning {
            config.set(*key, *value);
        }
        self.override_client(&mut config, prefix);
        config
    }

    /// Applies the `prefix` overrides to `config`.
    fn override_client(&self, config: &mut ClientConfig, prefix: &str) {
        for (key, value) in &self.overrides {
            if let Some(key) = key.strip_prefix(prefix) {
                config.set(key, value);
            }
        }
    }

    /// Streams settings: the framework's defaults (commit interval
    /// included) except for short group timeouts.
    fn streams_config(&self, scenario: &str, state_dir: &str, guarantee: &str) -> StreamsConfig {
        let mut config =
            StreamsConfig::new(format!("bench-{}-{}-{scenario}", self.run_id, self.round))
                .set("bootstrap.servers", &self.bootstrap)
                .set("state.dir", state_dir)
                .set("replication.factor", "1")
                .set("processing.guarantee", guarantee)
                .set("consumer.session.timeout.ms", SESSION_TIMEOUT_MS)
                .set("consumer.heartbeat.interval.ms", HEARTBEAT_INTERVAL_MS);
        for (key, value) in &self.overrides {
            config = config.set(key, value);
        }
        config
    }
}

fn value_for(i: u64) -> String {
    let mut value = format!("value-{i:012}-");
    while value.len() < VALUE_BYTES {
        value.push_str("abcdefghijklmnopqrstuvwxyz");
    }
    value.truncate(VALUE_BYTES);
    value
}

/// Sends `record`, serving delivery reports while the queue is full.
fn send<'a, C: rdkafka::producer::ProducerContext>(
    producer: &BaseProducer<C>,
    mut record: BaseRecord<'a, [u8], [u8], C::DeliveryOpaque>,
) -> Result<(), Error> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                // Make room without `poll(1 ms)`, a busy wait (see
                // `drain_producer`).
                drain_producer(producer, Duration::from_micros(200));
                record = returned;
            }
            Err((error, _)) => return Err(format!("producing: {error}").into()),
        }
    }
}

/// Waits until every record sent is delivered: rdkafka 0.39's `flush()`
/// serves delivery reports in 100 ms slices (its `poll(t)` always lasts
/// `t`), so a flush with anything in flight costs at least 100 ms. The
/// framework's `drain_producer` waits as its commits do; the flush after
/// it returns at once.
fn drain<C: rdkafka::producer::ProducerContext>(producer: &BaseProducer<C>) -> Result<(), Error> {
    drain_producer(producer, Duration::from_secs(300));
    producer.flush(Duration::from_secs(1))?;
    Ok(())
}

/// How [`produce_untimed`] picks each record's partition.
#[derive(Clone, Copy, PartialEq)]
enum Spread {
    /// Round robin, so each partition gets the same share.
    RoundRobin,
    /// The key's partition, as a sink or changelog writer picks it
    /// (murmur2); every record has a key.
    ByKey,
}

/// Writes COUNT records to `topic`, untimed, over its partitions as
/// `spread` says; `record(i)` gives the key and value of record `i`. With
/// `event_time`, record `i` has the timestamp `event_time + i` (ms); else
/// the producer's clock gives it one.
fn produce_untimed(
    settings: &Settings,
    topic: &str,
    spread: Spread,
    event_time: Option<i64>,
    mut record: impl FnMut(u64) -> (Option<Vec<u8>>, Vec<u8>),
) -> Result<(), Error> {
    use streams_kafka::partitioner::partition_for_key;
    let producer: BaseProducer = settings
        .client(
            &[
                ("linger.ms", "20"),
                ("queue.buffering.max.messages", "500000"),
            ],
            "producer.",
        )
        .create()?;
    let started = Instant::now();
    for i in 0..settings.count {
        let (key, value) = record(i);
        let partition = match (spread, &key) {
            (Spread::ByKey, Some(key)) => partition_for_key(key, settings.partitions),
            (Spread::ByKey, None) => return Err("a record spread by key has no key".into()),
            (Spread::RoundRobin, _) => (i % settings.partitions as u64) as i32,
        };
        let mut message = BaseRecord::to(topic)
            .payload(value.as_slice())
            .partition(partition);
        if let Some(key) = &key {
            message = message.key(key.as_slice());
        }
        if let Some(base) = event_time {
            message = message.timestamp(base + i as i64);
        }
        send(&producer, message)?;
        if i % 1024 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(300))?;
    eprintln!(
        "produced {} records to {topic} in {:.1} s (untimed)",
        settings.count,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Writes the input, untimed, its event time 1 ms apart and ending about
/// now (the windowed scenario needs time to advance; the others ignore it).
fn produce_input(settings: &Settings) -> Result<(), Error> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let base = now - settings.count as i64;
    produce_untimed(
        settings,
        &settings.input(),
        Spread::RoundRobin,
        Some(base),
        |i| {
            (
                Some(format!("key-{}", i % KEYS).into_bytes()),
                value_for(i).into_bytes(),
            )
        },
    )
}

/// What a scenario reports: the instant it saw the first record, how many
/// records it saw, and the CPU seconds of the thread(s) that ran its loop.
struct Seen {
    first: Instant,
    records: u64,
    loop_cpu: f64,
    /// When the scenario's work ended, if before the body returned (the
    /// restore scenario's last record restored); else when it returned.
    last: Option<Instant>,
    /// Commits and their mean time in ms (streams scenarios).
    commits: Option<(u64, f64)>,
}

impl Seen {
    /// Records seen from `first` on, by a loop whose thread spent
    /// `loop_cpu` seconds.
    fn new(first: Instant, records: u64, loop_cpu: f64) -> Self {
        Seen {
            first,
            records,
            loop_cpu,
            last: None,
            commits: None,
        }
    }
}

/// Measures `body`.
fn measure(
    settings: &Settings,
    body: impl FnOnce() -> Result<Seen, Error>,
) -> Result<Outcome, Error> {
    let pid = std::process::id().to_string();
    let cpu_before = cpu_seconds(&pid, settings.clk_tck).unwrap_or(0.0);
    let broker_before = settings
        .broker_pid
        .as_deref()
        .and_then(|p| cpu_seconds(p, settings.clk_tck));
    reset_peak_memory();
    let started = Instant::now();
    let seen = body()?;
    let ended = seen.last.unwrap_or_else(Instant::now);
    let peak_mib = peak_memory_mib();
    let cpu = cpu_seconds(&pid, settings.clk_tck).unwrap_or(0.0) - cpu_before;
    let broker_cpu = broker_before.and_then(|before| {
        settings
            .broker_pid
            .as_deref()
            .and_then(|p| cpu_seconds(p, settings.clk_tck))
            .map(|after| after - before)
    });
    Ok(Outcome {
        records: seen.records,
        total: ended - started,
        from_first: ended.saturating_duration_since(seen.first),
        cpu,
        loop_cpu: seen.loop_cpu,
        broker_cpu,
        peak_mib,
        commits: seen.commits,
    })
}

/// The ceiling: consume every record and produce it to the output topic
/// (same partition), one thread, then flush and commit.
fn raw_loop(settings: &Settings) -> Result<Seen, Error> {
    let mut consumer_config = ClientConfig::new();
    consumer_config
        .set("bootstrap.servers", &settings.bootstrap)
        .set(
            "group.id",
            format!("bench-{}-{}-raw", settings.run_id, settings.round),
        )
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", SESSION_TIMEOUT_MS)
        .set("heartbeat.interval.ms", HEARTBEAT_INTERVAL_MS);
    for (key, value) in RAW_CONSUMER {
        consumer_config.set(*key, *value);
    }
    settings.override_client(&mut consumer_config, "consumer.");
    let consumer: BaseConsumer = consumer_config.create()?;
    let producer: BaseProducer = settings.client(RAW_PRODUCER, "producer.").create()?;
    let output = settings.output("raw");
    let cpu_before = cpu_seconds("thread-self", settings.clk_tck).unwrap_or(0.0);
    consumer.subscribe(&[settings.input().as_str()])?;
    let mut first = None;
    let mut seen = 0u64;
    let mut last_progress = Instant::now();
    while seen < settings.count {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                first.get_or_insert_with(Instant::now);
                let mut record = BaseRecord::to(&output).partition(message.partition());
                if let Some(key) = message.key() {
                    record = record.key(key);
                }
                if let Some(value) = message.payload() {
                    record = record.payload(value);
                }
                send(&producer, record)?;
                seen += 1;
                if seen.is_multiple_of(256) {
                    producer.poll(Duration::ZERO);
                    last_progress = Instant::now();
                }
            }
            Some(Err(error)) => eprintln!("raw: consumer error: {error}"),
            None => {
                if last_progress.elapsed() > STALL {
                    return Err(format!("raw: stuck after {seen} records").into());
                }
            }
        }
    }
    drain(&producer)?;
    consumer.commit_consumer_state(CommitMode::Sync)?;
    drop(consumer);
    Ok(Seen::new(
        first.unwrap_or_else(Instant::now),
        seen,
        cpu_seconds("thread-self", settings.clk_tck).unwrap_or(0.0) - cpu_before,
    ))
}

/// The semantic loop's producer context: counts failed deliveries, which a
/// commit must see before it commits the offsets of their input.
#[derive(Default)]
struct FailureCounter {
    failed: AtomicU64,
}

impl rdkafka::ClientContext for FailureCounter {}

impl rdkafka::producer::ProducerContext for FailureCounter {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, _: ()) {
        if result.is_err() {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The basis: what a topology that forwards each record must do, with
/// nothing else. One thread consumes and produces as the framework's
/// clients do (their settings are the framework's:
/// `StreamsConfig::client_properties`, so its fetch, batch and linger
/// defaults and its idempotent producer, with the same overrides), forwards
/// key, value, timestamp and headers to the partition the default
/// partitioner picks for the key (murmur2, as a sink does), and every
/// `commit.interval.ms` (the framework's at-least-once default, or the
/// override) waits for every delivery, fails on a failed one, and commits
/// the consumed offsets synchronously, as an at-least-once commit does.
fn semantic_loop(settings: &Settings) -> Result<Seen, Error> {
    use streams_core::config::ClientKind;
    use streams_kafka::partitioner::{partition_for_key, partition_for_unkeyed};
    let config = settings.streams_config("semantic", "", "at_least_once");
    let interval = config.commit_interval()?;
    let mut consumer_config = ClientConfig::new();
    for (key, value) in config.client_properties(ClientKind::Consumer) {
        consumer_config.set(key, value);
    }
    // As the stream thread's consumer (`supplier.rs`).
    consumer_config
        .set("group.id", config.application_id()?)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "range");
    let consumer: BaseConsumer = consumer_config.create()?;
    let mut producer_config = ClientConfig::new();
    for (key, value) in config.client_properties(ClientKind::Producer) {
        producer_config.set(key, value);
    }
    producer_config.set("partitioner", "murmur2_random");
    let producer: BaseProducer<FailureCounter> =
        producer_config.create_with_context(FailureCounter::default())?;
    let output = settings.output("semantic");
    let partitions = settings.partitions;
    // The next offset to commit per input partition.
    let mut consumed: Vec<(i32, i64)> = Vec::new();
    let input = settings.input();
    let commit = |consumed: &[(i32, i64)]| -> Result<(), Error> {
        drain(&producer)?;
        let failed = producer.context().failed.load(Ordering::Relaxed);
        if failed > 0 {
            return Err(format!("semantic: {failed} records not delivered").into());
        }
        let mut offsets = rdkafka::TopicPartitionList::new();
        for (partition, next) in consumed {
            offsets.add_partition_offset(&input, *partition, rdkafka::Offset::Offset(*next))?;
        }
        if offsets.count() > 0 {
            consumer.commit(&offsets, CommitMode::Sync)?;
        }
        Ok(())
    };
    let cpu_before = cpu_seconds("thread-self", settings.clk_tck).unwrap_or(0.0);
    consumer.subscribe(&[input.as_str()])?;
    let mut first = None;
    let mut seen = 0u64;
    let mut unkeyed = 0u64;
    let mut last_progress = Instant::now();
    let mut last_commit = Instant::now();
    while seen < settings.count {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                first.get_or_insert_with(Instant::now);
                let mut record = BaseRecord::to(&output);
                if let Some(timestamp) = message.timestamp().to_millis() {
                    record = record.timestamp(timestamp);
                }
                record = match message.key() {
                    Some(key) => record
                        .key(key)
                        .partition(partition_for_key(key, partitions)),
                    None => {
                        unkeyed += 1;
                        record.partition(partition_for_unkeyed(unkeyed, partitions))
                    }
                };
                if let Some(value) = message.payload() {
                    record = record.payload(value);
                }
                if let Some(headers) = message.headers() {
                    record = record.headers(headers.detach());
                }
                send(&producer, record)?;
                let next = message.offset() + 1;
                match consumed.iter_mut().find(|(p, _)| *p == message.partition()) {
                    Some((_, offset)) => *offset = next,
                    None => consumed.push((message.partition(), next)),
                }
                seen += 1;
                if seen.is_multiple_of(256) {
                    producer.poll(Duration::ZERO);
                    last_progress = Instant::now();
                    if last_progress.duration_since(last_commit) >= interval {
                        commit(&consumed)?;
                        last_commit = Instant::now();
                    }
                }
            }
            Some(Err(error)) => eprintln!("semantic: consumer error: {error}"),
            None => {
                if last_progress.elapsed() > STALL {
                    return Err(format!("semantic: stuck after {seen} records").into());
                }
            }
        }
    }
    commit(&consumed)?;
    drop(consumer);
    Ok(Seen::new(
        first.unwrap_or_else(Instant::now),
        seen,
        cpu_seconds("thread-self", settings.clk_tck).unwrap_or(0.0) - cpu_before,
    ))
}

/// Runs a topology whose `peek` bumps `seen`, until `seen` reaches the
/// record count (or the scenario times out), then closes it.
fn run_streams(
    settings: &Settings,
    topology: streams_core::Topology,
    config: StreamsConfig,
    seen: &AtomicU64,
    first: &OnceLock<Instant>,
) -> Result<Seen, Error> {
    let streams = KafkaStreams::new(topology, config)?;
    let started = Instant::now();
    streams.start()?;
    let mut last = 0;
    let mut last_progress = Instant::now();
    let mut last_report = Instant::now();
    loop {
        let now = seen.load(Ordering::Relaxed);
        if now >= settings.count {
            break;
        }
        if started.elapsed() > settings.scenario_timeout {
            eprintln!(
                "  timed out after {} s at {now} of {} records; closing",
                settings.scenario_timeout.as_secs(),
                settings.count
            );
            break;
        }
        if last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            eprintln!("  ... {now} of {} records", settings.count);
        }
        if streams.state() == State::Error {
            return Err(format!(
                "streams failed: {}",
                streams.error().map(|e| e.to_string()).unwrap_or_default()
            )
            .into());
        }
        if now != last {
            last = now;
            last_progress = Instant::now();
        } else if last_progress.elapsed() > STALL {
            return Err(format!("stuck after {now} records").into());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    // Metrics are published once a second: this shows commits up to then.
    let (commits, commit_nanos) = streams
        .metrics()
        .threads
        .values()
        .fold((0, 0), |(n, t), m| (n + m.commits, t + m.commit_nanos));
    eprintln!(
        "  {commits} commits, {:.2} s committing ({:.1} ms each)",
        commit_nanos as f64 / 1e9,
        commit_nanos as f64 / 1e6 / commits.max(1) as f64
    );
    // The stream threads end in close(): read their CPU before.
    let loop_cpu = threads_cpu("stream-thread", settings.clk_tck);
    let closing = Instant::now();
    if !streams.close(Duration::from_secs(300)) {
        return Err("close() did not finish within 300 s".into());
    }
    eprintln!("  close() took {:.3} s", closing.elapsed().as_secs_f64());
    if let Some(error) = streams.error() {
        return Err(format!("streams failed: {error}").into());
    }
    Ok(Seen {
        commits: Some((commits, commit_nanos as f64 / 1e6 / commits.max(1) as f64)),
        ..Seen::new(
            first.get().copied().unwrap_or_else(Instant::now),
            seen.load(Ordering::Relaxed).min(settings.count),
            loop_cpu,
        )
    })
}

fn counter() -> (Arc<AtomicU64>, Arc<OnceLock<Instant>>) {
    (Arc::new(AtomicU64::new(0)), Arc::new(OnceLock::new()))
}

/// The `peek` a scenario counts its records with: it bumps `seen` and
/// notes when the first record came.
fn counting<K: 'static, V: 'static>(
    seen: &Arc<AtomicU64>,
    first: &Arc<OnceLock<Instant>>,
) -> impl Fn(&K, &V) + Send + Sync + 'static {
    let (seen, first) = (seen.clone(), first.clone());
    move |_, _| {
        first.get_or_init(Instant::now);
        seen.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs the topology `builder` holds as `scenario` under `guarantee`, its
/// state in a temporary directory (see [`run_streams`]).
fn run_built(
    settings: &Settings,
    scenario: &str,
    guarantee: &str,
    builder: StreamsBuilder,
    seen: &AtomicU64,
    first: &OnceLock<Instant>,
) -> Result<Seen, Error> {
    let dir = tempfile::tempdir()?;
    let config =
        settings.streams_config(scenario, dir.path().to_str().ok_or("state dir")?, guarantee);
    run_streams(settings, builder.build()?, config, seen, first)
}

/// The framework's floor: each record's bytes go to the output as they
/// came, through one `peek` that counts them: it shows how much of the
/// semantic loop's speed a topology keeps when it does nothing.
fn passthrough(settings: &Settings) -> Result<Seen, Error> {
    let (seen, first) = counter();
    let builder = StreamsBuilder::new();
    builder
        .stream_with(
            [settings.input().as_str()],
            Consumed::with(BytesSerde, BytesSerde),
        )
        .peek(counting(&seen, &first))
        .to_with(
            &settings.output("passthrough"),
            Produced::with(BytesSerde, BytesSerde),
        );
    run_built(
        settings,
        "passthrough",
        "at_least_once",
        builder,
        &seen,
        &first,
    )
}

fn stateless(settings: &Settings) -> Result<Seen, Error> {
    let (seen, first) = counter();
    let builder = StreamsBuilder::new();
    builder
        .stream_with(
            [settings.input().as_str()],
            Consumed::with(StringSerde, StringSerde),
        )
        .map_values(|value: String| value.to_ascii_uppercase())
        .filter(|_, value| !value.is_empty())
        .peek(counting(&seen, &first))
        .to_with(
            &settings.output("stateless"),
            Produced::with(StringSerde, StringSerde),
        );
    run_built(
        settings,
        "stateless",
        "at_least_once",
        builder,
        &seen,
        &first,
    )
}

fn count(settings: &Settings, scenario: &str, guarantee: &str) -> Result<Seen, Error> {
    let (seen, first) = counter();
    let builder = StreamsBuilder::new();
    builder
        .stream_with(
            [settings.input().as_str()],
            Consumed::with(StringSerde, StringSerde),
        )
        .peek(counting(&seen, &first))
        .group_by_key_with(Grouped::default())
        .count_with(cached(Materialized::named("bench-counts")))
        .to_stream()
        .to_with(
            &settings.output(scenario),
            Produced::with(StringSerde, Nullable(I64Serde)),
        );
    run_built(settings, scenario, guarantee, builder, &seen, &first)
}

/// `store` with the record cache `BENCH_CACHE_BYTES` asks for (the
/// framework's default otherwise); 0 turns it off, so every record reaches
/// RocksDB and the changelog.
fn cached<K: 'static, V: 'static>(store: Materialized<K, V>) -> Materialized<K, V> {
    match std::env::var("BENCH_CACHE_BYTES")
        .ok()
        .and_then(|b| b.parse().ok())
    {
        Some(0) => store.with_caching_disabled(),
        Some(bytes) => store.with_caching_enabled(bytes),
        None => store,
    }
}

/// Final counts per key and tumbling window (see the module
/// documentation), at-least-once.
fn window_count(settings: &Settings) -> Result<Seen, Error> {
    let (seen, first) = counter();
    // Final counts out: shows that windows closed and were emitted.
    let results = Arc::new(AtomicU64::new(0));
    let emitted = results.clone();
    let builder = StreamsBuilder::new();
    builder
        .stream_with(
            [settings.input().as_str()],
            Consumed::with(StringSerde, StringSerde),
        )
        .peek(counting(&seen, &first))
        .group_by_key_with(Grouped::default())
        .windowed_by(TimeWindows::of_size_and_grace(WINDOW, WINDOW_GRACE)?)
        .count_with(cached(Materialized::named("bench-window-counts")))
        .suppress(Suppressed::until_window_closes(BufferConfig::unbounded()))
        .to_stream()
        .peek(move |_, _| {
            emitted.fetch_add(1, Ordering::Relaxed);
        })
        .to_with(
            &settings.output("window-count"),
            Produced::with(
                TimeWindowedSerde::new(StringSerde, WINDOW.as_millis() as i64),
                Nullable(I64Serde),
            ),
        );
    let outcome = run_built(
        settings,
        "window-count",
        "at_least_once",
        builder,
        &seen,
        &first,
    );
    println!(
        "window-count: {} final counts emitted ({} keys per closed window)",
        results.load(Ordering::Relaxed),
        KEYS
    );
    outcome
}

/// The `restore` scenario's store; its changelog is
/// `<application id>-bench-restore-counts-changelog`.
const RESTORE_STORE: &str = "bench-restore-counts";

/// The `restore` scenario's application id: one per run, shared by its
/// rounds, which restore the same changelog into fresh state directories.
fn restore_application(settings: &Settings) -> String {
    format!("bench-{}-restore", settings.run_id)
}

/// Writes the `restore` scenario's changelog, untimed: COUNT distinct keys
/// (`key-{i:09}`), each with a count of 8 bytes, on the partition the
/// default partitioner gives the key, as the store logs them; and creates
/// its empty input topic.
fn produce_changelog(settings: &Settings) -> Result<(), Error> {
    let application = restore_application(settings);
    let changelog = format!("{application}-{RESTORE_STORE}-changelog");
    let input = format!("{application}-input");
    create_topics_if_missing(
        &settings.admin_config(),
        &[
            (changelog.as_str(), settings.partitions),
            (input.as_str(), settings.partitions),
        ],
    )?;
    produce_untimed(settings, &changelog, Spread::ByKey, None, |i| {
        let key = format!("key-{i:09}").into_bytes();
        (Some(key), (i as i64 % 1000 + 1).to_be_bytes().to_vec())
    })
}

/// When restoration started and ended, and how much it restored.
#[derive(Default)]
struct RestoreTimes {
    first: OnceLock<Instant>,
    /// Last record restored, and changelog partitions finished.
    last: std::sync::Mutex<Option<Instant>>,
    partitions: AtomicU64,
    records: AtomicU64,
}

/// Hands restoration's progress to a shared [`RestoreTimes`].
struct RestoreClock(Arc<RestoreTimes>);

impl streams_kafka::StateRestoreListener for RestoreClock {
    fn on_restore_start(&self, _: &str, _: &str, _: i32, _: i64, _: i64) {
        self.0.first.get_or_init(Instant::now);
    }
    fn on_restore_end(&self, _: &str, _: &str, _: i32, total: u64) {
        let mut last = self.0.last.lock().unwrap_or_else(|e| e.into_inner());
        *last = Some(Instant::now());
        self.0.records.fetch_add(total, Ordering::Relaxed);
        self.0.partitions.fetch_add(1, Ordering::Relaxed);
    }
}

/// A full restore: a count per key in RocksDB whose changelog holds COUNT
/// distinct keys (see [`produce_changelog`]), started on an empty state
/// directory, stopped once every changelog partition is restored. Timed
/// from the first restore's start (just before its first fetch) to the
/// last record restored; the group join before it is in `total` only.
fn restore(settings: &Settings) -> Result<Seen, Error> {
    let application = restore_application(settings);
    let builder = StreamsBuilder::new();
    builder
        .stream_with(
            [format!("{application}-input").as_str()],
            Consumed::with(StringSerde, StringSerde),
        )
        .group_by_key_with(Grouped::default())
        .count_with(Materialized::named(RESTORE_STORE).persistent());
    // A state directory of its own, so nothing is there to start from.
    let dir = tempfile::tempdir()?;
    let mut config = settings.streams_config(
        "restore",
        dir.path().to_str().ok_or("state dir")?,
        "at_least_once",
    );
    config = config.set("application.id", &application);
    let streams = KafkaStreams::new(builder.build()?, config)?;
    let times = Arc::new(RestoreTimes::default());
    streams.set_global_state_restore_listener(RestoreClock(times.clone()));
    streams.start()?;
    let started = Instant::now();
    let mut last = (0, Instant::now());
    while times.partitions.load(Ordering::Relaxed) < settings.partitions as u64 {
        if streams.state() == State::Error {
            return Err(format!(
                "streams failed: {}",
                streams.error().map(|e| e.to_string()).unwrap_or_default()
            )
            .into());
        }
        let restored: u64 = streams.metrics().restore.values().map(|r| r.restored).sum();
        if restored != last.0 {
            last = (restored, Instant::now());
        } else if last.1.elapsed() > STALL || started.elapsed() > settings.scenario_timeout {
            return Err(format!("restore stuck after {restored} records").into());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let loop_cpu = threads_cpu("stream-thread", settings.clk_tck);
    let records = times.records.load(Ordering::Relaxed);
    if !streams.close(Duration::from_secs(300)) {
        return Err("close() did not finish within 300 s".into());
    }
    if records != settings.count {
        return Err(format!("restored {records} records of {}", settings.count).into());
    }
    let last = *times.last.lock().unwrap_or_else(|e| e.into_inner());
    Ok(Seen {
        last,
        ..Seen::new(
            times.first.get().copied().unwrap_or_else(Instant::now),
            records,
            loop_cpu,
        )
    })
}

/// Writes COUNT wine records (the data set's rows in turn) to `mdata`,
/// untimed, after creating the serving topics.
fn produce_wine(settings: &Settings) -> Result<(), Error> {
    use proto::{Message, WineRecord};
    create_topics_if_missing(
        &settings.admin_config(),
        &[
            (DATA_TOPIC, settings.partitions),
            (MODELS_TOPIC, 1),
            (SCORES_TOPIC, settings.partitions),
        ],
    )?;
    let rows: Vec<Vec<u8>> = std::fs::read_to_string(data_dir().join("winequality_red.csv"))?
        .lines()
        .map(|l| {
            let row = WineRecord::parse_csv(l)?;
            Ok(WineRecord::from_features(row, "wine", 0).encode_to_vec())
        })
        .collect::<Result<_, String>>()?;
    produce_untimed(settings, DATA_TOPIC, Spread::RoundRobin, None, |i| {
        (None, rows[(i % rows.len() as u64) as usize].clone())
    })
}

fn data_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data")
}

/// Publishes `SERVING_MODELS` in turn, one every [`swap_interval`], until
/// `stop`; returns how many it published.
fn publish_models(settings: &Settings, stop: &std::sync::atomic::AtomicBool) -> Result<u64, Error> {
    use proto::{Message, MessageContent, ModelDescriptor, ModelType};
    let producer: BaseProducer = settings.client(&[], "producer.").create()?;
    let mut descriptors = Vec::new();
    for path in SERVING_MODELS {
        let kind = if path.ends_with(".onnx") {
            ModelType::Onnx
        } else {
            ModelType::Pmml
        };
        descriptors.push(
            ModelDescriptor {
                name: path.into(),
                description: String::new(),
                data_type: "wine".into(),
                modeltype: kind as i32,
                message_content: Some(MessageContent::Data(std::fs::read(
                    data_dir().join("models").join(path),
                )?)),
            }
            .encode_to_vec(),
        );
    }
    let mut published = 0u64;
    let interval = swap_interval();
    while !stop.load(Ordering::Relaxed) && (published == 0 || interval.is_some()) {
        let payload = &descriptors[published as usize % descriptors.len()];
        send(
            &producer,
            BaseRecord::to(MODELS_TOPIC)
                .key(b"wine".as_slice())
                .payload(payload.as_slice()),
        )?;
        drain(&producer)?;
        published += 1;
        if let Some(interval) = interval {
            std::thread::sleep(interval);
        }
    }
    Ok(published)
}

/// The model server's topology on the wine records, with models swapped
/// every [`swap_interval`]. The first model is published as it starts:
/// records scored before the global thread has built it count as not
/// served.
fn serving(settings: &Settings, metrics: Arc<ServingMetrics>) -> Result<Seen, Error> {
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (seen, first) = counter();
    let dir = tempfile::tempdir()?;
    let config = settings.streams_config(
        "serving",
        dir.path().to_str().ok_or("state dir")?,
        "at_least_once",
    );
    let topology = model_server::serving::topology_with(model_server::serving::ServingOptions {
        variant: StoreVariant::Standard,
        metrics: metrics.clone(),
        ..Default::default()
    })?;
    std::thread::scope(|scope| {
        let publisher = scope.spawn(|| publish_models(settings, &stop).map_err(|e| e.to_string()));
        // The scorer's counters feed the scenario's progress.
        let watcher = scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let n = metrics.served.load(Ordering::Relaxed)
                    + metrics.not_served.load(Ordering::Relaxed);
                if n > 0 {
                    first.get_or_init(Instant::now);
                }
                seen.store(n, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        let result = run_streams(settings, topology, config, &seen, &first);
        stop.store(true, Ordering::Relaxed);
        let swaps = publisher.join().map_err(|_| "publisher panicked")??;
        let _ = watcher.join();
        println!(
            "serving: {swaps} models published; {} records served, {} not served; \
             the longest any record waited for its model: {:.3} ms; \
             records that waited over 1 ms: {}",
            metrics.served.load(Ordering::Relaxed),
            metrics.not_served.load(Ordering::Relaxed),
            metrics.longest_lookup_ns.load(Ordering::Relaxed) as f64 / 1e6,
            metrics.slow_lookups.load(Ordering::Relaxed)
        );
        result
    })
}

/// The model server's `stage` or `actors` engine (`engine` is the
/// scenario's name) on the wine records, with the same model swaps as
/// `serving`, run in this process until it answered COUNT records.
fn serving_engine(settings: &Settings, engine: &str) -> Result<Seen, Error> {
    use model_server::actors::{self, ActorStages, ActorsOptions};
    use model_server::model::ModelLimits;
    use model_server::stage::{self, SharedStage, StageOptions};
    let stop_publishing = std::sync::atomic::AtomicBool::new(false);
    let dir = tempfile::tempdir()?;
    let config = settings.streams_config(engine, "", "at_least_once");
    let stop = Arc::new(tokio::sync::Notify::new());
    // Every record is a wine record: nothing goes to the errors topic.
    let errors_topic = SCORES_TOPIC.to_owned();
    let stage: SharedStage = Arc::default();
    let actors: ActorStages = Arc::default();
    let answered = || -> u64 {
        let stages = match engine {
            "serving-actors" => actors::stages(&actors),
            _ => vec![stage.clone()],
        };
        stages
            .iter()
            .map(|s| s.lock().map_or(0, |s| s.records()))
            .sum()
    };
    std::thread::scope(|scope| {
        let publisher =
            scope.spawn(|| publish_models(settings, &stop_publishing).map_err(|e| e.to_string()));
        let runner = std::thread::Builder::new()
            .name("engine-loop".into())
            .spawn_scoped(scope, || match engine {
                "serving-actors" => actors::run(
                    ActorsOptions {
                        config: config.clone(),
                        limits: ModelLimits::default(),
                        errors_topic: errors_topic.clone(),
                        state_dir: dir.path().to_path_buf(),
                    },
                    actors.clone(),
                    stop.clone(),
                ),
                _ => stage::run(
                    StageOptions {
                        config: config.clone(),
                        limits: ModelLimits::default(),
                        errors_topic: errors_topic.clone(),
                    },
                    stage.clone(),
                    stop.clone(),
                ),
            })?;
        let started = Instant::now();
        let mut first = None;
        let (mut last, mut last_progress) = (0, Instant::now());
        let outcome = loop {
            let now = answered();
            if now > 0 {
                first.get_or_insert_with(Instant::now);
            }
            if now >= settings.count {
                break Ok(now);
            }
            if runner.is_finished() {
                break Err("the engine stopped".to_owned());
            }
            if started.elapsed() > settings.scenario_timeout {
                break Err(format!("timed out at {now} of {} records", settings.count));
            }
            if now != last {
                (last, last_progress) = (now, Instant::now());
            } else if last_progress.elapsed() > STALL {
                break Err(format!("stuck after {now} records"));
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        let loop_cpu = threads_cpu("engine-loop", settings.clk_tck);
        stop.notify_one();
        stop_publishing.store(true, Ordering::Relaxed);
        let ran = runner.join().map_err(|_| "the engine panicked")?;
        let swaps = publisher.join().map_err(|_| "publisher panicked")??;
        ran?;
        let records = outcome?;
        println!("{engine}: {swaps} models published");
        Ok(Seen::new(
            first.unwrap_or_else(Instant::now),
            records.min(settings.count),
            loop_cpu,
        ))
    })
}

fn run() -> Result<(), Error> {
    let settings = parse_args();
    if !settings.scenarios.is_empty() {
        throughput(&settings)?;
    }
    if settings.queries {
        if !settings.scenarios.is_empty() {
            println!();
        }
        queries(&settings)?;
    }
    Ok(())
}

/// The throughput scenarios, on one shared input, and their table.
fn throughput(settings: &Settings) -> Result<(), Error> {
    let rounds: Vec<Settings> = (0..settings.rounds)
        .map(|round| Settings {
            round,
            ..settings.clone()
        })
        .collect();
    let mut topics = vec![(settings.input(), settings.partitions)];
    for round in &rounds {
        for scenario in &settings.scenarios {
            topics.push((round.output(scenario), settings.partitions));
        }
    }
    let topic_refs: Vec<(&str, i32)> = topics.iter().map(|(t, p)| (t.as_str(), *p)).collect();
    create_topics_if_missing(&settings.admin_config(), &topic_refs)?;
    produce_input(settings)?;

    let alos = settings.streams_config("probe", "", "at_least_once");
    let eos = settings.streams_config("probe", "", "exactly_once_v2");
    let overridden = settings.overrides.contains_key("commit.interval.ms");
    println!(
        "basis: the semantic loop (forwards key, value, timestamp and headers; idempotent \
         producer; commits every commit.interval.ms after every delivery; the framework's \
         client settings); second reference: the bare loop (raw)"
    );
    println!(
        "input: {} records of {} + ~8 key bytes, {} partitions; one stream thread",
        settings.count, VALUE_BYTES, settings.partitions
    );
    println!(
        "commit interval: {} ({} ms at-least-once, {} ms exactly-once); \
         session.timeout.ms {SESSION_TIMEOUT_MS}",
        if overridden {
            "overridden"
        } else {
            "framework default"
        },
        alos.commit_interval()?.as_millis(),
        eos.commit_interval()?.as_millis()
    );
    if !settings.overrides.is_empty() {
        println!("overrides: {:?}", settings.overrides);
    }
    println!(
        "time \"total\": from subscribe()/start() (group join included) to flush()/close() done; \
         \"steady\": from the first record seen to the same end. Targets are judged on the \
         steady ratio: joining the group takes about 2 s on the development broker, longer \
         than a loop's whole run."
    );

    let mut all = Vec::new();
    for round in &rounds {
        if settings.rounds > 1 {
            eprintln!("round {} of {}", round.round + 1, settings.rounds);
        }
        let mut results: Vec<(String, Outcome, String)> = Vec::new();
        let mut wine_written = round.round > 0;
        let mut changelog_written = round.round > 0;
        // Each round starts one scenario further along the list: a scenario
        // that always ran right after the raw loop's million writes, or
        // always last, would carry that in every round.
        let n = settings.scenarios.len();
        let order = (0..n).map(|i| &settings.scenarios[(i + round.round) % n]);
        for scenario in order {
            let load = load_average();
            eprintln!("running {scenario} (load average {load}) ...");
            let outcome = match scenario.as_str() {
                "semantic" => measure(round, || semantic_loop(round)),
                "raw" => measure(round, || raw_loop(round)),
                "restore" => {
                    if !changelog_written {
                        produce_changelog(round)?;
                        changelog_written = true;
                    }
                    measure(round, || restore(round))
                }
                "passthrough" => measure(round, || passthrough(round)),
                "stateless" => measure(round, || stateless(round)),
                "count-alos" => measure(round, || count(round, scenario, "at_least_once")),
                "count-eos" => measure(round, || count(round, scenario, "exactly_once_v2")),
                "window-count" => measure(round, || window_count(round)),
                "serving" | "serving-stage" | "serving-actors" => {
                    // The wine records are written once and read by every
                    // round and engine.
                    if !wine_written {
                        produce_wine(round)?;
                        wine_written = true;
                    }
                    match scenario.as_str() {
                        "serving" => measure(round, || serving(round, Arc::default())),
                        engine => measure(round, || serving_engine(round, engine)),
                    }
                }
                _ => unreachable!("scenarios are checked"),
            }
            .map_err(|e| format!("{scenario}: {e}"))?;
            eprintln!(
                "  {scenario}: {:.2} s total, {:.2} s steady, {:.2} CPU s",
                outcome.total.as_secs_f64(),
                outcome.from_first.as_secs_f64(),
                outcome.cpu
            );
            results.push((scenario.clone(), outcome, load));
        }
        // Tables list the scenarios as given, whatever the order they ran in.
        results.sort_by_key(|(s, _, _)| settings.scenarios.iter().position(|x| x == s));
        println!();
        if settings.rounds > 1 {
            println!("round {} of {}:", round.round + 1, settings.rounds);
        }
        print_table(settings, &results);
        all.push(results);
    }
    println!();
    println!(
        "ratio: records/s over the semantic loop's of the same round, on the same basis \
         (total or steady); /bare: steady records/s over the bare (raw) loop's. CPU s/M: \
         user+system CPU seconds of this process per million records; loop/M: of the thread \
         that consumes, processes and produces (a loop's own thread, or the stream thread); \
         /sem: loop/M over the semantic loop's; broker/M: the broker's, when BENCH_BROKER_PID \
         is set; peak MiB: this process's peak resident memory during the scenario; commit \
         ms: commits x mean time of one (streams scenarios, from the metrics just before \
         close()); load: 1-minute load average when the scenario started. restore: records/s \
         from the first restore fetch to the last record restored, no ratio."
    );
    if settings.rounds > 1 {
        print_summary(settings, &all);
    }
    Ok(())
}

/// Records per second of `outcome`: over its total time and from its
/// first record.
fn rates(outcome: &Outcome) -> (f64, f64) {
    let n = outcome.records as f64;
    (
        n / outcome.total.as_secs_f64().max(1e-9),
        n / outcome.from_first.as_secs_f64().max(1e-9),
    )
}

/// CPU seconds per million records of `outcome`: the process's and the
/// loop thread's.
fn per_million(outcome: &Outcome) -> (f64, f64) {
    let per_million = 1_000_000.0 / (outcome.records.max(1) as f64);
    (outcome.cpu * per_million, outcome.loop_cpu * per_million)
}

/// What a scenario is judged on, from one round or the median of several.
#[derive(Default)]
struct Judged {
    /// Steady ratio to the semantic loop.
    ratio: Option<f64>,
    /// Steady records per second.
    rate: Option<f64>,
    /// loop/M over the semantic loop's.
    loop_ratio: Option<f64>,
    /// Mean commit time, ms.
    commit_ms: Option<f64>,
}

/// Whether `scenario` meets its targets, as the tables print it.
fn verdict(scenario: &str, judged: &Judged) -> String {
    let mut out = Vec::new();
    let mark = |met: bool| if met { "met" } else { "MISSED" };
    if let (Some((_, min)), Some(ratio)) =
        (TARGETS.iter().find(|(s, _)| *s == scenario), judged.ratio)
    {
        out.push(format!("{}: ratio >= {min}", mark(ratio >= *min)));
    }
    if let (Some((_, min)), Some(rate)) = (
        RATE_TARGETS.iter().find(|(s, _)| *s == scenario),
        judged.rate,
    ) {
        out.push(format!("{}: >= {min:.0} records/s", mark(rate >= *min)));
    }
    if let (true, Some(ratio)) = (LOOP_TARGET.0 == scenario, judged.loop_ratio) {
        let max = LOOP_TARGET.1;
        out.push(format!(
            "{}: loop/M <= {max} x semantic",
            mark(ratio <= max)
        ));
    }
    if let (true, Some(ms)) = (COMMIT_TARGET.0 == scenario, judged.commit_ms) {
        let max = COMMIT_TARGET.1;
        out.push(format!("{}: commit < {max} ms", mark(ms < max)));
    }
    out.join("; ")
}

/// `value` with `digits` decimals, or `-`.
fn or_dash(value: Option<f64>, digits: usize) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{v:.digits$}"))
}

/// The outcome of scenario `name` in `results`.
fn find<'a>(results: &'a [(String, Outcome, String)], name: &str) -> Option<&'a Outcome> {
    results
        .iter()
        .find(|(s, _, _)| s == name)
        .map(|(_, o, _)| o)
}

/// Whether `scenario` is a loop over the shared input, so that a ratio to
/// the loops means something (`restore` reads a changelog of its own).
fn is_loop(scenario: &str) -> bool {
    scenario != "restore"
}

/// One round's table.
fn print_table(settings: &Settings, results: &[(String, Outcome, String)]) {
    let basis = find(results, BASIS).map(rates);
    let bare = find(results, "raw").map(rates);
    let basis_loop = find(results, BASIS).map(|o| per_million(o).1);
    println!(
        "{:<15} {:>8} {:>11} {:>6} {:>8} {:>11} {:>6} {:>6} {:>8} {:>7} {:>6} {:>9} {:>8} {:>9} {:>5}  target",
        "scenario",
        "total s",
        "records/s",
        "ratio",
        "steady s",
        "records/s",
        "ratio",
        "/bare",
        "CPU s/M",
        "loop/M",
        "/sem",
        "broker/M",
        "peak MiB",
        "commit ms",
        "load"
    );
    let mut incomplete = Vec::new();
    for (scenario, outcome, load) in results {
        let (total_rate, steady_rate) = rates(outcome);
        let looped = is_loop(scenario);
        let ratio = |rate: f64, base: Option<f64>| base.filter(|_| looped).map(|b| rate / b);
        let (cpu, loop_cpu) = per_million(outcome);
        let mut name = scenario.clone();
        if outcome.records < settings.count {
            name.push('*');
            incomplete.push(format!(
                "{scenario} ({} of {})",
                outcome.records, settings.count
            ));
        }
        let judged = Judged {
            ratio: ratio(steady_rate, basis.map(|b| b.1)),
            rate: Some(steady_rate),
            loop_ratio: basis_loop.filter(|_| looped).map(|b| loop_cpu / b),
            commit_ms: outcome.commits.map(|c| c.1),
        };
        println!(
            "{:<15} {:>8.2} {:>11.0} {:>6} {:>8.2} {:>11.0} {:>6} {:>6} {:>8.2} {:>7.2} {:>6} {:>9} {:>8} {:>9} {:>5}  {}",
            name,
            outcome.total.as_secs_f64(),
            total_rate,
            or_dash(ratio(total_rate, basis.map(|b| b.0)), 2),
            outcome.from_first.as_secs_f64(),
            steady_rate,
            or_dash(judged.ratio, 2),
            or_dash(ratio(steady_rate, bare.map(|b| b.1)), 2),
            cpu,
            loop_cpu,
            or_dash(judged.loop_ratio, 2),
            or_dash(
                outcome
                    .broker_cpu
                    .map(|c| c * 1e6 / outcome.records.max(1) as f64),
                2
            ),
            or_dash(outcome.peak_mib, 0),
            outcome
                .commits
                .map_or_else(|| "-".into(), |(n, ms)| format!("{n}x{ms:.1}")),
            load,
            verdict(scenario, &judged)
        );
    }
    if !incomplete.is_empty() {
        println!(
            "* timed out after {} s (BENCH_SCENARIO_TIMEOUT) and was closed: rates are over the \
             records it got through: {}",
            settings.scenario_timeout.as_secs(),
            incomplete.join(", ")
        );
    }
}

/// The median of `values` (the mean of the middle two for an even count).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The median of `values`, `None` when there are none.
fn median_of(mut values: Vec<f64>) -> Option<f64> {
    (!values.is_empty()).then(|| median(&mut values))
}

/// Per scenario over every round: the median steady ratio to the same
/// round's semantic loop and its range, the median ratio to the same
/// round's bare loop, and the medians of records/s, CPU, loop CPU (and its
/// ratio to the same round's semantic loop's), peak memory and commit time.
fn print_summary(settings: &Settings, rounds: &[Vec<(String, Outcome, String)>]) {
    println!();
    println!(
        "summary of {} rounds (medians; ratios to the loops of the same round):",
        rounds.len()
    );
    println!(
        "{:<15} {:>6} {:>10} {:>6} {:>11} {:>8} {:>7} {:>6} {:>8} {:>9}  target",
        "scenario",
        "ratio",
        "range",
        "/bare",
        "records/s",
        "CPU s/M",
        "loop/M",
        "/sem",
        "peak MiB",
        "commit ms"
    );
    for scenario in &settings.scenarios {
        let looped = is_loop(scenario);
        let (mut ratios, mut bare_ratios, mut steady, mut cpu) = (vec![], vec![], vec![], vec![]);
        let (mut loop_cpu, mut loop_ratios, mut peak, mut commit) =
            (vec![], vec![], vec![], vec![]);
        for results in rounds {
            let Some(outcome) = find(results, scenario) else {
                continue;
            };
            let rate = rates(outcome).1;
            let (c, l) = per_million(outcome);
            steady.push(rate);
            cpu.push(c);
            loop_cpu.push(l);
            peak.extend(outcome.peak_mib);
            commit.extend(outcome.commits.map(|c| c.1));
            if let Some(basis) = find(results, BASIS).filter(|_| looped) {
                ratios.push(rate / rates(basis).1);
                loop_ratios.push(l / per_million(basis).1);
            }
            if let Some(bare) = find(results, "raw").filter(|_| looped) {
                bare_ratios.push(rate / rates(bare).1);
            }
        }
        let range = match ratios.is_empty() {
            true => "-".to_owned(),
            false => format!(
                "{:.2}-{:.2}",
                ratios.iter().copied().fold(f64::INFINITY, f64::min),
                ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max)
            ),
        };
        let judged = Judged {
            ratio: median_of(ratios),
            rate: median_of(steady),
            loop_ratio: median_of(loop_ratios),
            commit_ms: median_of(commit),
        };
        println!(
            "{:<15} {:>6} {:>10} {:>6} {:>11} {:>8} {:>7} {:>6} {:>8} {:>9}  {}",
            scenario,
            or_dash(judged.ratio, 2),
            range,
            or_dash(median_of(bare_ratios), 2),
            or_dash(judged.rate, 0),
            or_dash(median_of(cpu), 2),
            or_dash(median_of(loop_cpu), 2),
            or_dash(judged.loop_ratio, 2),
            or_dash(median_of(peak), 0),
            or_dash(judged.commit_ms, 1),
            verdict(scenario, &judged)
        );
    }
}

/// One timed series of requests.
struct QueryOutcome {
    name: &'static str,
    requests: usize,
    wall: Duration,
    cpu: f64,
    mean: Duration,
    p99: Duration,
    load: String,
}

/// Runs `request(i)` for `i` in `0..requests`, one after the other, after
/// an untimed warm-up of a twentieth of them (at most 500).
fn time_requests(
    settings: &Settings,
    name: &'static str,
    requests: usize,
    mut request: impl FnMut(usize) -> Result<(), Error>,
) -> Result<QueryOutcome, Error> {
    let load = load_average();
    eprintln!("  {name}: {requests} requests (load average {load}) ...");
    for i in 0..(requests / 20).min(500) {
        request(i).map_err(|e| format!("{name}: warm-up request {i}: {e}"))?;
    }
    let pid = std::process::id().to_string();
    let mut latencies = Vec::with_capacity(requests);
    let cpu_before = cpu_seconds(&pid, settings.clk_tck).unwrap_or(0.0);
    let started = Instant::now();
    for i in 0..requests {
        let sent = Instant::now();
        request(i).map_err(|e| format!("{name}: request {i}: {e}"))?;
        latencies.push(sent.elapsed());
    }
    let wall = started.elapsed();
    let cpu = cpu_seconds(&pid, settings.clk_tck).unwrap_or(0.0) - cpu_before;
    latencies.sort_unstable();
    let n = latencies.len().max(1);
    let p99 = latencies
        .get(((n as f64 * 0.99).ceil() as usize).saturating_sub(1))
        .copied()
        .unwrap_or_default();
    Ok(QueryOutcome {
        name,
        requests,
        wall,
        cpu,
        mean: latencies.iter().sum::<Duration>() / n as u32,
        p99,
        load,
    })
}

/// `GET path` on `host` through the instances' own client; an answer
/// other than 200 is an error. Returns the body.
fn http_get(host: &HostInfo, path: &str) -> Result<Vec<u8>, Error> {
    let answer = streams_http::get(host, path, QUERY_TIMEOUT, false)?;
    if answer.status != 200 {
        return Err(format!(
            "GET {path} on {host}: status {}: {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        )
        .into());
    }
    Ok(answer.body)
}

/// One instance of the `queries` scenario.
fn start_query_instance(
    settings: &Settings,
    input: &str,
    output: &str,
) -> Result<QueryInstance, Error> {
    let topology = tests::apps::id_count(input, output, QUERY_STORE)?;
    let config = |dir: &str| settings.streams_config("queries", dir, "at_least_once");
    QueryInstance::start(topology, config, QUERY_STORE)
}

/// Whether the two instances are ready to be queried: both running, both
/// listing both with partitions, agreeing on every key's owner, every key
/// on its owner, and a merged scan from each with every key. Returns the
/// keys each instance owns, or why they are not ready.
fn queries_ready(
    instances: &[QueryInstance; 2],
    keys: &[String],
) -> Result<[Vec<String>; 2], String> {
    let ports: std::collections::BTreeSet<u64> =
        instances.iter().map(|i| u64::from(i.host.port)).collect();
    for instance in instances {
        let state = instance.streams.state();
        if state == State::Error {
            return Err(format!(
                "{} failed: {}",
                instance.host,
                instance
                    .streams
                    .error()
                    .map(|e| e.to_string())
                    .unwrap_or_default()
            ));
        }
        if state != State::Running {
            return Err(format!("{} is {state:?}", instance.host));
        }
        let body = http_get(&instance.host, "/state/instances").map_err(|e| e.to_string())?;
        let listed: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        let list = listed.as_array().cloned().unwrap_or_default();
        let seen: std::collections::BTreeSet<u64> =
            list.iter().filter_map(|i| i["port"].as_u64()).collect();
        let with_partitions = list
            .iter()
            .all(|i| i["partitions"].as_array().is_some_and(|p| !p.is_empty()));
        if seen != ports || !with_partitions {
            return Err(format!("{} lists {listed}", instance.host));
        }
    }
    let views = [
        instances[0]
            .streams
            .store::<String, i64>(QUERY_STORE)
            .map_err(|e| e.to_string())?,
        instances[1]
            .streams
            .store::<String, i64>(QUERY_STORE)
            .map_err(|e| e.to_string())?,
    ];
    let mut owned: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    let mut absent = [0usize; 2];
    for key in keys {
        let mut owners = Vec::new();
        for instance in instances {
            let owner = instance
                .streams
                .query_metadata_for_key(QUERY_STORE, key, &StringSerde)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("{} knows no owner of {key}", instance.host))?;
            owners.push(owner);
        }
        if owners[0] != owners[1] {
            return Err(format!("the instances disagree on {key}: {owners:?}"));
        }
        let index = instances
            .iter()
            .position(|i| i.host == owners[0].active_host)
            .ok_or_else(|| format!("{key} is owned by {}", owners[0].active_host))?;
        if views[index].get(key).map_err(|e| e.to_string())?.is_none() {
            absent[index] += 1;
        }
        owned[index].push(key.clone());
    }
    if absent.iter().any(|a| *a > 0) {
        return Err(format!(
            "keys not yet on their owner: {} of {} on {}, {} of {} on {}",
            absent[0],
            owned[0].len(),
            instances[0].host,
            absent[1],
            owned[1].len(),
            instances[1].host
        ));
    }
    if owned.iter().any(Vec::is_empty) {
        return Err(format!(
            "one instance owns no key ({} and {})",
            owned[0].len(),
            owned[1].len()
        ));
    }
    for instance in instances {
        let path = format!(
            "/state/keyvalue/{}?limit={QUERY_KEYS}",
            percent_encode(QUERY_STORE)
        );
        let body = http_get(&instance.host, &path).map_err(|e| e.to_string())?;
        let merged: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        let entries = merged["entries"].as_array().map_or(0, Vec::len);
        if entries != keys.len() || merged["missing"] != serde_json::json!([]) {
            return Err(format!(
                "a merged scan on {} has {entries} entries, missing {}",
                instance.host, merged["missing"]
            ));
        }
    }
    Ok(owned)
}

/// The `queries` scenario: two instances with query servers, then timed
/// lookups and scans (see the module documentation).
fn queries(settings: &Settings) -> Result<(), Error> {
    if settings.partitions < 2 {
        return Err("queries: needs at least 2 partitions, one per instance".into());
    }
    let input = format!("bench-{}-queries-input", settings.run_id);
    let output = settings.output("queries");
    create_topics_if_missing(
        &settings.admin_config(),
        &[
            (input.as_str(), settings.partitions),
            (output.as_str(), settings.partitions),
        ],
    )?;
    let keys: Vec<String> = (0..QUERY_KEYS).map(|i| format!("key-{i}")).collect();
    // Java's murmur2, as the streams producers and query_metadata_for_key:
    // a key's record lands in the partition queries look in.
    let producer: BaseProducer = settings
        .client(
            &[("linger.ms", "20"), ("partitioner", "murmur2_random")],
            "producer.",
        )
        .create()?;
    for (i, key) in keys.iter().enumerate() {
        let value = value_for(i as u64);
        send(
            &producer,
            BaseRecord::to(&input)
                .key(key.as_bytes())
                .payload(value.as_bytes()),
        )?;
    }
    drain(&producer)?;
    drop(producer);
    eprintln!("queries: produced {QUERY_KEYS} keys to {input} (untimed); starting two instances");

    let started = Instant::now();
    let instances = [
        start_query_instance(settings, &input, &output)?,
        start_query_instance(settings, &input, &output)?,
    ];
    let mut last_report = Instant::now();
    let owned = loop {
        match queries_ready(&instances, &keys) {
            Ok(owned) => break owned,
            Err(why) if started.elapsed() > settings.scenario_timeout => {
                return Err(format!(
                    "queries: not ready after {} s: {why}",
                    settings.scenario_timeout.as_secs()
                )
                .into());
            }
            Err(why) => {
                if last_report.elapsed() >= Duration::from_secs(10) {
                    last_report = Instant::now();
                    eprintln!("  ... not ready yet: {why}");
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    eprintln!(
        "queries: ready after {:.1} s; {} keys on {}, {} on {}",
        started.elapsed().as_secs_f64(),
        owned[0].len(),
        instances[0].host,
        owned[1].len(),
        instances[1].host
    );

    let hosts = [instances[0].host.clone(), instances[1].host.clone()];
    let measured = measure_queries(settings, &instances, &owned);
    for mut instance in instances {
        instance.server.stop();
        if !instance.streams.close(Duration::from_secs(60)) {
            eprintln!("queries: {} did not close within 60 s", instance.host);
        }
    }
    let results = measured?;

    println!(
        "interactive queries: two instances in this process ({} and {}), {QUERY_KEYS} keys \
         (a count per key in RocksDB) over {} partitions, {} and {} keys each",
        hosts[0],
        hosts[1],
        settings.partitions,
        owned[0].len(),
        owned[1].len()
    );
    println!(
        "one client thread, one request at a time, alternating between the instances; HTTP \
         through streams_http::get: pooled, reused connections, as instances forward to each other"
    );
    println!();
    println!(
        "{:<24} {:>8} {:>11} {:>9} {:>9} {:>9} {:>5}",
        "measurement", "requests", "requests/s", "mean µs", "p99 µs", "CPU s/M", "load"
    );
    for outcome in &results {
        let n = outcome.requests.max(1) as f64;
        println!(
            "{:<24} {:>8} {:>11.0} {:>9.1} {:>9.1} {:>9.2} {:>5}",
            outcome.name,
            outcome.requests,
            n / outcome.wall.as_secs_f64().max(1e-9),
            outcome.mean.as_secs_f64() * 1e6,
            outcome.p99.as_secs_f64() * 1e6,
            outcome.cpu * 1_000_000.0 / n,
            outcome.load
        );
    }
    println!();
    println!(
        "CPU s/M: user+system CPU seconds of this process (client, both servers, both \
         instances idling) per million requests, read in ticks of 1/{} s (coarse for a \
         short row); load: 1-minute load average when the measurement started.",
        settings.clk_tck
    );
    Ok(())
}

/// Request `i` goes to instance `i % 2`, for the `(i / 2)`-th of `keys`.
fn pick(keys: &[String], i: usize) -> &String {
    &keys[(i / 2) % keys.len()]
}

/// The four timed series of the `queries` scenario.
fn measure_queries(
    settings: &Settings,
    instances: &[QueryInstance; 2],
    owned: &[Vec<String>; 2],
) -> Result<Vec<QueryOutcome>, Error> {
    let lookup = |asked: usize, key: &str| {
        let path = format!(
            "/state/keyvalue/{}/{}",
            percent_encode(QUERY_STORE),
            percent_encode(key)
        );
        http_get(&instances[asked].host, &path).map(drop)
    };
    let views = [
        instances[0].streams.store::<String, i64>(QUERY_STORE)?,
        instances[1].streams.store::<String, i64>(QUERY_STORE)?,
    ];
    let mut results = Vec::new();
    results.push(time_requests(
        settings,
        "in-process get (owner)",
        QUERY_LOOKUPS,
        |i| {
            let owner = i % 2;
            let key = pick(&owned[owner], i);
            match views[owner].get(key)? {
                Some(_) => Ok(()),
                None => Err(format!("{key} is gone from its owner").into()),
            }
        },
    )?);
    results.push(time_requests(
        settings,
        "HTTP get, owner asked",
        QUERY_LOOKUPS,
        |i| lookup(i % 2, pick(&owned[i % 2], i)),
    )?);
    results.push(time_requests(
        settings,
        "HTTP get, forwarded",
        QUERY_LOOKUPS,
        |i| lookup(i % 2, pick(&owned[1 - i % 2], i)),
    )?);
    let scan = format!(
        "/state/keyvalue/{}?limit={QUERY_KEYS}",
        percent_encode(QUERY_STORE)
    );
    results.push(time_requests(
        settings,
        "HTTP merged scan",
        QUERY_SCANS,
        |i| http_get(&instances[i % 2].host, &scan).map(drop),
    )?);
    Ok(results)
}
