//! The model server as users run it: the `model-server` and `model-client`
//! binaries against a real broker (one per test: the server's topic names
//! are fixed, so tests sharing a broker would read each other's records).
//!
//! - `standard`: two instances, 2,000 records and a model; every record
//!   has a result in `mscores` equal to the model's reference prediction
//!   (onnxruntime's), `/state` on either instance reports usage 2,000 in
//!   total, `/state/instances` lists both; after one instance restarts the
//!   total is still 2,000.
//! - `custom` keeps its statistics over a restart too; `memory` loses the
//!   restarted instance's share.
//! - Bad flags, an unreachable broker and a port in use are clear errors.
//! - The original tutorial's bytes are served: its seven PMML models and
//!   its TensorFlow graph as descriptors without a key, and wine records
//!   without key or timestamp, encoded by hand as its ScalaPB client
//!   encodes them; each of 1,000 results is served by the model published
//!   before its record and equals, bit for bit, what `model-client score`
//!   computes offline for that row and model.
//! - Malformed wine records go to `mdata-errors` unchanged, with headers
//!   naming the error and the record's topic, partition and offset; the
//!   others are all served, exactly once each; the dead-letter metric
//!   counts them; the server stays healthy.
//! - `since` (in `/models` and `/state/value`) is wall-clock time, taken
//!   when the model started serving; republishing a model under the same
//!   name (here with a key that is not UTF-8) starts new statistics.
//!   `/state/value` is one object for `wine`, `/state` the list form, and
//!   an unknown data type a 404 with an error.
//! - A restart (either persistent store) builds only the last model
//!   descriptor, not the 52 published before it (50 models, two of them
//!   garbage), reads nothing from before its checkpoint, serves that model
//!   and then the next one published.
//! - Hostile descriptors are rejected and counted, one each, while the
//!   previous model keeps serving: locations outside `--model-dir` (an
//!   absolute path, `..`, a symbolic link), a directory, models over
//!   `--max-model-bytes` inline or in a file, a garbage ONNX model; a
//!   location inside the directory is served.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{data, pb, pmml_file, reference_columns, wait_until, wine_rows};
use proto::{Message, ModelDescriptor, ServingResult, WineRecord};
use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers as _, Message as _};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use serde_json::Value;
use streams_kafka::HostInfo;
use tests::Broker;

const SERVER: &str = env!("CARGO_BIN_EXE_model-server");
const CLIENT: &str = env!("CARGO_BIN_EXE_model-client");
const MODEL: &str = "wine_random_forest_regression";
/// The server's topics: records in, models in, results out, dead letters.
const DATA: &str = "mdata";
const MODELS: &str = "models";
const SCORES: &str = "mscores";
const ERRORS: &str = "mdata-errors";

/// A model-server process, stopped (SIGINT, then SIGKILL) on drop.
struct Server {
    child: Child,
    port: u16,
    args: Vec<String>,
}

impl Server {
    fn start(broker: &Broker, store: &str, app: &str, state_dir: &Path, port: u16) -> Server {
        Server::start_with(broker, store, app, state_dir, port, &[])
    }

    /// [`Server::start`] with `extra` flags.
    fn start_with(
        broker: &Broker,
        store: &str,
        app: &str,
        state_dir: &Path,
        port: u16,
        extra: &[&str],
    ) -> Server {
        let state_dir = state_dir.to_string_lossy();
        let flags: &[&str] = &[
            "--store",
            store,
            "--state-dir",
            &state_dir,
            "-c",
            "commit.interval.ms=200",
            "-c",
            "replication.factor=1",
            "-c",
            "consumer.topic.metadata.refresh.interval.ms=1000",
            "-c",
            "registry.heartbeat.interval.ms=200",
            "-c",
            "registry.instance.timeout.ms=2000",
        ];
        Server::spawn_on(broker, app, port, &[flags, extra].concat())
    }

    /// A server of application `app` on `broker`, serving HTTP on `port`,
    /// with a short group session, and `flags`.
    fn spawn_on(broker: &Broker, app: &str, port: u16, flags: &[&str]) -> Server {
        let args = [
            "--bootstrap-servers",
            broker.bootstrap_servers(),
            "--application-id",
            app,
            "--port",
            &port.to_string(),
            "-c",
            "consumer.session.timeout.ms=3000",
            "-c",
            "consumer.heartbeat.interval.ms=500",
        ]
        .iter()
        .chain(flags)
        .map(|s| s.to_string())
        .collect();
        Server::spawn(args, port)
    }

    fn spawn(args: Vec<String>, port: u16) -> Server {
        let child = Command::new(SERVER)
            .args(&args)
            .env_remove("RUST_BACKTRACE")
            .stdout(Stdio::null())
            .spawn()
            .expect("start model-server");
        Server { child, port, args }
    }

    fn host(&self) -> HostInfo {
        tests::apps::loopback(self.port)
    }

    /// `GET path` as JSON, or `None` while the server does not answer 200.
    fn get(&self, path: &str) -> Option<Value> {
        let answer = streams_http::get(&self.host(), path, Duration::from_secs(5), false).ok()?;
        (answer.status == 200)
            .then(|| serde_json::from_slice(&answer.body).ok())
            .flatten()
    }

    /// `GET path`: the status and the body as JSON (`Null` when it is not
    /// JSON), or `None` while the server does not answer.
    fn answer(&self, path: &str) -> Option<(u16, Value)> {
        let answer = streams_http::get(&self.host(), path, Duration::from_secs(5), false).ok()?;
        let body = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
        Some((answer.status, body))
    }

    /// The sum of a `/metrics` series' samples over all its labels, or
    /// `None` while the server does not answer or has no such series.
    fn metric(&self, name: &str) -> Option<f64> {
        let answer =
            streams_http::get(&self.host(), "/metrics", Duration::from_secs(5), false).ok()?;
        if answer.status != 200 {
            return None;
        }
        let text = String::from_utf8_lossy(&answer.body);
        let samples: Vec<f64> = text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.rsplit_once(' '))
            .filter(|(series, _)| series.split('{').next() == Some(name))
            .filter_map(|(_, value)| value.trim().parse().ok())
            .collect();
        (!samples.is_empty()).then(|| samples.iter().sum())
    }

    /// Waits until `/health` answers 200.
    fn wait_healthy(&self) {
        wait_until("a healthy server", Duration::from_secs(60), || {
            match self.answer("/health") {
                Some((200, _)) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        });
    }

    /// The model serving `data_type` by `/models`: its name and `since`.
    fn model(&self, data_type: &str) -> Result<(String, i64), String> {
        let models = self.get("/models").ok_or("no answer from /models")?;
        models
            .as_array()
            .and_then(|list| list.iter().find(|m| m["dataType"] == data_type))
            .and_then(|m| Some((m["name"].as_str()?.to_owned(), m["since"].as_i64()?)))
            .ok_or_else(|| format!("/models: {models}"))
    }

    /// Waits until `/models` shows `name` serving `data_type`; its `since`.
    fn wait_for_model(&self, data_type: &str, name: &str) -> i64 {
        wait_until(
            &format!("model {name} serving {data_type}"),
            Duration::from_secs(120),
            || match self.model(data_type)? {
                (serving, since) if serving == name => Ok(since),
                (serving, _) => Err(format!("{serving} serves {data_type}")),
            },
        )
    }

    /// Stops the process as Ctrl-C would and waits for it to exit.
    fn stop(&mut self) {
        stop_with(&mut self.child, "INT", "model-server");
    }

    fn restart(&mut self) {
        self.stop();
        *self = Server::spawn(self.args.clone(), self.port);
    }
}

/// Sends `child` the signal (`INT`, `TERM`) and waits up to 40 s for it
/// to exit with success.
fn stop_with(child: &mut Child, signal: &str, what: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(40);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            assert!(
                status.success(),
                "{what} exited with {status} on SIG{signal}"
            );
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    panic!("{what} did not stop within 40 s of SIG{signal}");
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn client(broker: &Broker, args: &[&str]) -> Output {
    let output = Command::new(CLIENT)
        .arg("--bootstrap-servers")
        .arg(broker.bootstrap_servers())
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR").to_owned() + "/..")
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run model-client");
    assert!(
        output.status.success(),
        "model-client {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Total usage of the data type `wine` in the merged `/state` (0 when no
/// instance has statistics for it), once every live instance answered.
fn merged_usage(server: &Server) -> Option<u64> {
    let value = server.get("/state")?;
    if !value["missing"].as_array()?.is_empty() {
        return None;
    }
    Some(
        value["stats"]
            .as_array()?
            .iter()
            .find(|s| s["dataType"] == "wine")
            .and_then(|s| s["usage"].as_u64())
            .unwrap_or(0),
    )
}

fn instances(server: &Server) -> Option<Vec<u64>> {
    let list = server.get("/state/instances")?;
    let mut ports: Vec<u64> = list
        .as_array()?
        .iter()
        .filter_map(|i| i["port"].as_u64())
        .collect();
    ports.sort();
    Some(ports)
}

/// Two running instances that both serve model `MODEL`.
fn two_instances(broker: &Broker, store: &str, state: &Path) -> (Server, Server) {
    let app = tests::unique("model-server");
    let a = Server::start(
        broker,
        store,
        &app,
        &state.join("a"),
        tests::apps::free_port(),
    );
    let b = Server::start(
        broker,
        store,
        &app,
        &state.join("b"),
        tests::apps::free_port(),
    );
    let model = data(&format!("models/onnx/{MODEL}.onnx"));
    client(
        broker,
        &[
            "publish",
            "--count",
            "0",
            "--model",
            &model.to_string_lossy(),
            "--model-interval-ms",
            "0",
        ],
    );
    let mut both = vec![a.port as u64, b.port as u64];
    both.sort();
    for server in [&a, &b] {
        wait_for(
            "the model on every instance",
            Duration::from_secs(60),
            || {
                let models = server.get("/models")?;
                (models[0]["name"] == MODEL).then_some(())
            },
        );
        wait_for("both instances listed", Duration::from_secs(60), || {
            (instances(server)? == both).then_some(())
        });
    }
    (a, b)
}

fn publish_records(broker: &Broker, count: u64) {
    client(
        broker,
        &[
            "publish",
            "--no-models",
            "--count",
            &count.to_string(),
            "--rate",
            "0",
        ],
    );
}

/// Reads `count` records of `topic` (2 partitions), keyed by (partition,
/// offset).
fn read_topic(broker: &Broker, topic: &str, count: usize) -> HashMap<(i32, i64), Vec<u8>> {
    let consumer = broker.read_from_start(topic, 2);
    let mut records = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while records.len() < count {
        assert!(
            Instant::now() < deadline,
            "{topic}: {} of {count} records",
            records.len()
        );
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
            records.insert(
                (message.partition(), message.offset()),
                message.payload().unwrap_or_default().to_vec(),
            );
        }
    }
    consumer.unassign().ok();
    records
}

/// onnxruntime's prediction of `MODEL` for each row's features.
fn reference() -> HashMap<[u64; 11], f64> {
    let (_, columns) = reference_columns("models/onnx/reference_predictions.csv");
    wine_rows()
        .into_iter()
        .zip(&columns[MODEL])
        .map(|(row, p)| (row.map(f64::to_bits), p.parse().unwrap()))
        .collect()
}

#[test]
fn two_standard_instances_score_every_record_and_agree_on_the_statistics() {
    let broker = Broker::start();
    let state = tempfile::tempdir().unwrap();
    let (a, mut b) = two_instances(&broker, "standard", state.path());
    publish_records(&broker, 2000);

    // Every record has a result, served by the model, equal to onnxruntime's.
    let inputs = read_topic(&broker, "mdata", 2000);
    let results = read_topic(&broker, "mscores", 2000);
    let reference = reference();
    let mut sources = std::collections::HashSet::new();
    for bytes in results.values() {
        let result = ServingResult::decode(bytes.as_slice()).unwrap();
        assert!(result.served, "{result:?}");
        assert_eq!(result.model, MODEL);
        let input = &inputs[&(result.partition, result.offset)];
        let record = WineRecord::decode(input.as_slice()).unwrap();
        let expected = reference[&record.features().map(f64::to_bits)];
        assert!(
            (result.result - expected).abs() < 1e-4,
            "{result:?}: expected {expected}"
        );
        sources.insert((result.partition, result.offset));
    }
    assert_eq!(sources.len(), 2000, "one result per record");
    // Results have no key: they are spread over the partitions of mscores.
    let partitions: std::collections::HashSet<i32> = results.keys().map(|(p, _)| *p).collect();
    assert_eq!(partitions.len(), 2, "{partitions:?}");

    // `model-client read` prints what the topics hold, decoded.
    let read = |topic: &str, count: &str| -> Vec<Value> {
        let out = client(&broker, &["read", "--topic", topic, "--count", count]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let scores = read("mscores", "5");
    assert_eq!(scores.len(), 5);
    assert!(
        scores
            .iter()
            .all(|r| r["value"]["served"] == true && r["value"]["model"] == MODEL),
        "{scores:?}"
    );
    let models = read("models", "1");
    assert_eq!(models[0]["key"], "wine");
    assert_eq!(models[0]["value"]["name"], MODEL);
    assert_eq!(models[0]["value"]["modelType"], "ONNX");
    assert_eq!(
        read("mdata", "1")[0]["value"]["features"]
            .as_array()
            .unwrap()
            .len(),
        11
    );

    // Both instances report the merged total and list each other.
    for server in [&a, &b] {
        wait_for(
            "usage 2000 on every instance",
            Duration::from_secs(30),
            || (merged_usage(server)? == 2000).then_some(()),
        );
    }
    let local: u64 = [&a, &b]
        .iter()
        .map(|s| {
            s.get("/state/value?local=true").unwrap()[0]["usage"]
                .as_u64()
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(local, 2000, "the instances' own counts add up");
    let wine = a.get("/state/wine").unwrap();
    assert_eq!(
        (wine["name"].as_str(), wine["usage"].as_u64()),
        (Some(MODEL), Some(2000))
    );
    assert!(wine["min"].as_f64().unwrap() <= wine["max"].as_f64().unwrap());
    assert!(
        a.get("/state/beer").is_none(),
        "an unknown data type is a 404"
    );

    // A restarted instance restores its statistics from the changelog.
    b.restart();
    assert_eq!(settled_total(&a, &b), 2000);
    let metrics = streams_http::get(&a.host(), "/metrics", Duration::from_secs(5), false).unwrap();
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains("model_server_records_total{outcome=\"served\"}"),
        "{text}"
    );
    assert!(text.contains(&format!("model=\"{MODEL}\"")), "{text}");

    // A corrupt model over Kafka is rejected and counted on every
    // instance; the current model keeps serving.
    let corrupt = state.path().join("corrupt.onnx");
    std::fs::write(&corrupt, b"not an ONNX model").unwrap();
    client(
        &broker,
        &[
            "publish",
            "--count",
            "0",
            "--model",
            &corrupt.to_string_lossy(),
        ],
    );
    for server in [&a, &b] {
        wait_for("the corrupt model counted", Duration::from_secs(30), || {
            let answer =
                streams_http::get(&server.host(), "/metrics", Duration::from_secs(5), false)
                    .ok()?;
            String::from_utf8_lossy(&answer.body)
                .contains("model_server_models_rejected_total 1")
                .then_some(())
        });
        assert_eq!(server.get("/models").unwrap()[0]["name"], MODEL);
    }
}

/// Serves 200 records on two instances, restarts one, and returns the
/// merged usage once both answer again.
fn usage_after_restart(store: &str) -> u64 {
    let broker = Broker::start();
    let state = tempfile::tempdir().unwrap();
    let (a, mut b) = two_instances(&broker, store, state.path());
    publish_records(&broker, 200);
    wait_for("usage 200", Duration::from_secs(60), || {
        (merged_usage(&a)? == 200).then_some(())
    });
    // Each instance served some of the records (two partitions, two
    // instances), so a lost share shows.
    let b_share = b.get("/state/value?local=true").unwrap()[0]["usage"]
        .as_u64()
        .unwrap_or(0);
    assert!(b_share > 0 && b_share < 200, "{b_share}");
    b.restart();
    settled_total(&a, &b)
}

/// The merged usage once both instances run and agree on it three times
/// in a row, 700 ms apart (a rebalance in between changes it).
fn settled_total(a: &Server, b: &Server) -> u64 {
    let healthy = |s: &Server| s.get("/health").is_some();
    let mut seen = Vec::new();
    wait_for("a settled total", Duration::from_secs(60), || {
        let total = match (healthy(a) && healthy(b), merged_usage(a), merged_usage(b)) {
            (true, Some(x), Some(y)) if x == y => Some(x),
            _ => None,
        };
        seen.push(total);
        std::thread::sleep(Duration::from_millis(700));
        let last: Vec<_> = seen.iter().rev().take(3).collect();
        (last.len() == 3 && last.iter().all(|t| t.is_some() && **t == total)).then_some(total?)
    })
}

#[test]
fn custom_store_keeps_its_statistics_over_a_restart() {
    assert_eq!(usage_after_restart("custom"), 200);
}

#[test]
fn memory_store_starts_from_zero_after_a_restart() {
    assert!(usage_after_restart("memory") < 200);
}

#[test]
fn bad_flags_a_broker_that_is_down_and_a_port_in_use_are_clear_errors() {
    let run = |args: &[&str]| {
        let out = Command::new(SERVER)
            .args(args)
            .env_remove("RUST_BACKTRACE")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["--store", "rocks"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("[possible values: memory, standard, custom]"),
        "{err}"
    );
    let (code, err) = run(&["--guarantee", "twice"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("at-least-once"), "{err}");

    let dead = tests::apps::free_port();
    let (code, err) = run(&[
        "--bootstrap-servers",
        &format!("127.0.0.1:{dead}"),
        "--port",
        &tests::apps::free_port().to_string(),
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("is the broker up?"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let broker = Broker::start();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let state = tempfile::tempdir().unwrap();
    let (code, err) = run(&[
        "--bootstrap-servers",
        broker.bootstrap_servers(),
        "--port",
        &port.to_string(),
        "--state-dir",
        &state.path().to_string_lossy(),
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{err}"
    );

    // The client: a file that is not a model, a row that is not a record.
    let out = Command::new(CLIENT)
        .args(["score", "--model", "Cargo.toml", "--input", "x.csv"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--type"));
}

/// Milliseconds since the Unix epoch, as the server stamps `since`.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Where each record a [`Sender`] sent landed, by the order it was sent.
#[derive(Default)]
struct Deliveries(Mutex<HashMap<usize, Result<(i32, i64), String>>>);

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, index: usize) {
        let report = match result {
            Ok(message) => Ok((message.partition(), message.offset())),
            Err((error, _)) => Err(error.to_string()),
        };
        self.0.lock().unwrap().insert(index, report);
    }
}

/// A producer of raw bytes that learns each record's partition and offset
/// from its delivery report.
struct Sender {
    producer: BaseProducer<Deliveries>,
    sent: usize,
}

impl Sender {
    fn new(broker: &Broker) -> Sender {
        let producer = broker
            .client_config()
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .create_with_context(Deliveries::default())
            .expect("create a producer");
        Sender { producer, sent: 0 }
    }

    /// Sends `value` to `topic`, with `key` (none: no key) to `partition`
    /// (none: the producer's choice); returns the record's index.
    fn send(
        &mut self,
        topic: &str,
        key: Option<&[u8]>,
        partition: Option<i32>,
        value: &[u8],
    ) -> usize {
        let index = self.sent;
        self.sent += 1;
        let mut record =
            BaseRecord::<[u8], [u8], usize>::with_opaque_to(topic, index).payload(value);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(partition) = partition {
            record = record.partition(partition);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => break,
                Err((e, back))
                    if e.rdkafka_error_code()
                        == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) =>
                {
                    self.producer.poll(Duration::from_millis(10));
                    record = back;
                }
                Err((e, _)) => panic!("cannot send to {topic}: {e}"),
            }
        }
        self.producer.poll(Duration::ZERO);
        index
    }

    /// Waits until every record sent so far is delivered; returns where
    /// each landed (partition, offset), by index.
    fn flush(&mut self) -> Vec<(i32, i64)> {
        self.producer
            .flush(Duration::from_secs(30))
            .expect("records delivered within 30 s");
        let context = self.producer.context().clone();
        wait_until("every delivery report", Duration::from_secs(10), || {
            self.producer.poll(Duration::from_millis(10));
            let reports = context.0.lock().unwrap();
            (0..self.sent)
                .map(|i| match reports.get(&i) {
                    Some(Ok(position)) => Ok(*position),
                    Some(Err(e)) => panic!("record {i} not delivered: {e}"),
                    None => Err(format!("no report for record {i}")),
                })
                .collect()
        })
    }

    /// Sends one record and waits for it; where it landed.
    fn send_one(&mut self, topic: &str, key: Option<&[u8]>, value: &[u8]) -> (i32, i64) {
        let index = self.send(topic, key, None, value);
        self.flush()[index]
    }
}

/// Publishes `model` inline as `name` (a model of type `kind`) for `wine`,
/// as the original client does, and waits until `server` serves it.
fn publish_model(sender: &mut Sender, server: &Server, name: &str, kind: i64, model: &[u8]) {
    sender.send_one(MODELS, None, &inline_descriptor(name, "wine", kind, model));
    server.wait_for_model("wine", name);
}

/// What the server wrote to `mscores`, read from the start as it comes,
/// by the (partition, offset) of the record each result is about.
struct Scores {
    consumer: BaseConsumer,
    results: HashMap<(i32, i64), ServingResult>,
    /// Results read, a second result for the same record included.
    read: usize,
}

impl Scores {
    fn new(broker: &Broker) -> Scores {
        Scores {
            consumer: broker.read_from_start(SCORES, 2),
            results: HashMap::new(),
            read: 0,
        }
    }

    /// Reads one result, waiting up to `timeout`; the record it is about.
    fn poll(&mut self, timeout: Duration) -> Option<(i32, i64)> {
        // A reader without a group also sees "unknown group" errors.
        let message = self.consumer.poll(timeout)?.ok()?;
        let result = ServingResult::decode(message.payload().unwrap_or_default())
            .unwrap_or_else(|e| panic!("an undecodable result in {SCORES}: {e}"));
        let source = (result.partition, result.offset);
        self.read += 1;
        self.results.insert(source, result);
        Some(source)
    }

    /// The results about `sources` (records on `mdata`), in that order,
    /// once all are read.
    fn wait_for(&mut self, sources: &[(i32, i64)], timeout: Duration) -> Vec<ServingResult> {
        let mut missing: HashSet<(i32, i64)> = sources
            .iter()
            .filter(|s| !self.results.contains_key(s))
            .copied()
            .collect();
        let deadline = Instant::now() + timeout;
        while !missing.is_empty() {
            assert!(
                Instant::now() < deadline,
                "{SCORES}: no result within {timeout:?} for {} of {} records, e.g. {:?}",
                missing.len(),
                sources.len(),
                missing.iter().next()
            );
            if let Some(source) = self.poll(Duration::from_millis(200)) {
                missing.remove(&source);
            }
        }
        sources.iter().map(|s| self.results[s].clone()).collect()
    }

    /// Reads on until nothing more comes for `quiet`.
    fn drain(&mut self, quiet: Duration) {
        let mut last = Instant::now();
        while last.elapsed() < quiet {
            if self.poll(Duration::from_millis(100)).is_some() {
                last = Instant::now();
            }
        }
    }
}

/// The original tutorial's models: its seven PMML files (type PMML) and
/// its TensorFlow graph (type TENSORFLOW), with their names (file stems).
fn original_models() -> Vec<(PathBuf, String, i64)> {
    let mut pmml: Vec<PathBuf> = std::fs::read_dir(data("models/pmml"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "pmml"))
        .collect();
    pmml.sort();
    assert_eq!(pmml.len(), 7, "{pmml:?}");
    pmml.into_iter()
        .map(|path| (path, pb::PMML))
        .chain([(
            data("models/tensorflow/optimized_WineQuality.pb"),
            pb::TENSORFLOW,
        )])
        .map(|(path, kind)| {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            (path, name, kind)
        })
        .collect()
}

/// An inline descriptor for `data_type`, encoded by hand, checked against
/// what `prost` makes of it.
fn inline_descriptor(name: &str, data_type: &str, kind: i64, model: &[u8]) -> Vec<u8> {
    let description = format!("{name}, as the original client publishes it");
    let bytes = pb::descriptor(
        name,
        &description,
        data_type,
        kind,
        pb::Content::Data(model),
    );
    let decoded = ModelDescriptor::decode(bytes.as_slice()).unwrap();
    assert_eq!(
        (decoded.name.as_str(), decoded.data_type.as_str()),
        (name, data_type)
    );
    assert_eq!(i64::from(decoded.modeltype), kind);
    assert_eq!(
        decoded.message_content,
        Some(proto::MessageContent::Data(model.to_vec()))
    );
    assert_eq!(decoded.encode_to_vec(), bytes, "a proto3 layout");
    bytes
}

/// A wine record for `row` as the original client writes it (no key, no
/// timestamp, zero features left out), checked against `prost`.
fn original_record(row: &[f64; 11]) -> Vec<u8> {
    let bytes = pb::wine_record(row, "wine", 0);
    let decoded = WineRecord::decode(bytes.as_slice()).unwrap();
    assert_eq!(decoded.features(), *row);
    assert_eq!((decoded.data_type.as_str(), decoded.ts), ("wine", 0));
    assert_eq!(decoded.encode_to_vec(), bytes, "a proto3 layout");
    bytes
}

/// `model-client score` of every row of `data/winequality_red.csv` with
/// `model`: the server's exact answers, computed offline.
fn offline_scores(broker: &Broker, model: &Path) -> Vec<f64> {
    let out = client(
        broker,
        &[
            "score",
            "--model",
            &model.to_string_lossy(),
            "--input",
            &data("winequality_red.csv").to_string_lossy(),
        ],
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            line.parse()
                .unwrap_or_else(|e| panic!("{}: `{line}`: {e}", model.display()))
        })
        .collect()
}

/// One server on a broker of its own, healthy.
fn one_server(store: &str, extra: &[&str]) -> (Broker, tempfile::TempDir, Server) {
    let broker = Broker::start();
    let state = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        &broker,
        store,
        &tests::unique("model-server"),
        state.path(),
        tests::apps::free_port(),
        extra,
    );
    server.wait_healthy();
    (broker, state, server)
}

#[test]
fn original_client_bytes_are_served() {
    const BATCH: usize = 125;
    let (broker, _state, server) = one_server("standard", &[]);
    let rows = wine_rows();
    let models = original_models();
    assert_eq!(models.len(), 8);
    let mut sender = Sender::new(&broker);
    let mut scores = Scores::new(&broker);
    for (i, (path, name, kind)) in models.iter().enumerate() {
        let offline = offline_scores(&broker, path);
        assert_eq!(offline.len(), rows.len(), "{name}: one score per row");
        let model = std::fs::read(path).unwrap();
        publish_model(&mut sender, &server, name, *kind, &model);

        // The next 125 rows, served by this model and no other: the next
        // model goes out once they all have results.
        let batch = i * BATCH..(i + 1) * BATCH;
        let results = serve_rows(&mut sender, &mut scores, &rows, batch.clone(), |_| None);
        for (row, result) in batch.zip(results) {
            assert!(result.served, "row {row}, model {name}: {result:?}");
            assert_eq!(result.model, *name, "row {row}: {result:?}");
            assert_eq!(result.data_type, "wine");
            assert!(result.reason.is_empty(), "{result:?}");
            assert_eq!(
                result.result.to_bits(),
                offline[row].to_bits(),
                "row {row}, model {name}: the server scored {}, model-client {}",
                result.result,
                offline[row]
            );
        }
    }
    scores.drain(Duration::from_secs(2));
    assert_eq!(scores.read, 8 * BATCH, "one result per record");
}

/// Sends `rows[range]` as the original client writes wine records (to the
/// partition `partition` gives each row, or the producer's choice), and
/// waits for their results: one per row, in row order.
fn serve_rows(
    sender: &mut Sender,
    scores: &mut Scores,
    rows: &[[f64; 11]],
    range: std::ops::Range<usize>,
    partition: impl Fn(usize) -> Option<i32>,
) -> Vec<ServingResult> {
    let sent: Vec<usize> = range
        .map(|row| sender.send(DATA, None, partition(row), &original_record(&rows[row])))
        .collect();
    let positions = sender.flush();
    let sources: Vec<(i32, i64)> = sent.iter().map(|&s| positions[s]).collect();
    scores.wait_for(&sources, Duration::from_secs(60))
}

/// Byte strings that are not wine records: each fails to decode.
fn malformed_records() -> Vec<Vec<u8>> {
    let good = pb::wine_record(&wine_rows()[2], "wine", 0);
    let malformed = vec![
        // Field 1 (a double) as a length-delimited field whose length
        // varint never ends.
        vec![0x0a, 0xff],
        // A record cut in the middle of a double.
        good[..50].to_vec(),
        // `dataType` of 5 bytes with only 1 there.
        vec![0x62, 0x05, b'w'],
        // `dataType` that is not UTF-8.
        vec![0x62, 0x02, 0xff, 0xfe],
        // `ts` as a varint of 11 bytes.
        [vec![0x68], vec![0xff; 10], vec![0x01]].concat(),
        // Wire type 7 does not exist.
        vec![0x0f],
        // Field number 0 does not exist.
        vec![0x00, 0x00],
    ];
    for bytes in &malformed {
        assert!(
            WineRecord::decode(bytes.as_slice()).is_err(),
            "{bytes:02x?} decodes"
        );
    }
    malformed
}

/// A record of `mdata-errors`: its partition, offset, value and headers.
struct DeadLetter {
    position: (i32, i64),
    value: Vec<u8>,
    headers: HashMap<String, String>,
}

/// Reads `count` records of `topic` (2 partitions), and on until nothing
/// more comes for 2 s.
fn read_dead_letters(broker: &Broker, topic: &str, count: usize) -> Vec<DeadLetter> {
    let consumer = broker.read_from_start(topic, 2);
    let mut letters = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = Instant::now();
    while letters.len() < count || last.elapsed() < Duration::from_secs(2) {
        assert!(
            Instant::now() < deadline,
            "{topic}: {} of {count} records",
            letters.len()
        );
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        last = Instant::now();
        let headers = message.headers().map_or_else(HashMap::new, |headers| {
            headers
                .iter()
                .map(|h| {
                    let value = String::from_utf8_lossy(h.value.unwrap_or_default());
                    (h.key.to_owned(), value.into_owned())
                })
                .collect()
        });
        letters.push(DeadLetter {
            position: (message.partition(), message.offset()),
            value: message.payload().unwrap_or_default().to_vec(),
            headers,
        });
    }
    letters
}

#[test]
fn malformed_records_go_to_the_dead_letter_topic() {
    const GOOD: usize = 10_000;
    const BAD: usize = 1_000;
    let (broker, _state, server) = one_server("standard", &[]);
    let mut sender = Sender::new(&broker);
    let linear = std::fs::read(pmml_file("winequalityLinearRegression")).unwrap();
    let name = "winequalityLinearRegression";
    publish_model(&mut sender, &server, name, pb::PMML, &linear);

    // Every eleventh record is malformed, over both partitions.
    let rows = wine_rows();
    let malformed = malformed_records();
    let mut sent = Vec::new();
    for i in 0..GOOD + BAD {
        let value = match i % 11 {
            10 => malformed[(i / 11) % malformed.len()].clone(),
            _ => original_record(&rows[i % rows.len()]),
        };
        let index = sender.send(DATA, None, Some((i % 2) as i32), &value);
        sent.push((index, value));
    }
    let positions = sender.flush();
    let mut good = Vec::new();
    let mut bad = HashMap::new();
    for (i, (index, value)) in sent.into_iter().enumerate() {
        match i % 11 {
            10 => bad.insert(positions[index], value),
            _ => {
                good.push(positions[index]);
                None
            }
        };
    }
    assert_eq!((good.len(), bad.len()), (GOOD, BAD));

    // Every good record is served, once.
    let mut scores = Scores::new(&broker);
    for result in scores.wait_for(&good, Duration::from_secs(120)) {
        assert!(result.served, "{result:?}");
        assert_eq!(result.model, name);
    }

    // Every malformed one is a dead letter: its bytes, and where it was.
    let letters = read_dead_letters(&broker, ERRORS, BAD);
    assert_eq!(letters.len(), BAD, "one dead letter per malformed record");
    let mut seen = HashSet::new();
    for letter in &letters {
        let header = |name: &str| {
            letter.headers.get(name).unwrap_or_else(|| {
                panic!(
                    "dead letter at {:?}: no header {name} in {:?}",
                    letter.position, letter.headers
                )
            })
        };
        assert!(!header("__streams.errors.message").is_empty());
        assert_eq!(header("__streams.errors.topic"), DATA);
        let source = (
            header("__streams.errors.partition").parse::<i32>().unwrap(),
            header("__streams.errors.offset").parse::<i64>().unwrap(),
        );
        let sent = bad
            .get(&source)
            .unwrap_or_else(|| panic!("dead letter for {source:?}, not a malformed record"));
        assert_eq!(&letter.value, sent, "the bytes of {source:?}, unchanged");
        seen.insert(source);
    }
    assert_eq!(seen.len(), BAD, "each malformed record once");

    wait_until(
        "1000 dead letters counted",
        Duration::from_secs(30),
        || match server.metric("streams_task_dead_lettered_records_total") {
            Some(n) if n == BAD as f64 => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    wait_until(
        "10000 records served",
        Duration::from_secs(30),
        || match server.metric("model_server_records_total") {
            Some(n) if n == GOOD as f64 => Ok(()),
            other => Err(format!("{other:?} records scored")),
        },
    );
    scores.drain(Duration::from_secs(2));
    assert_eq!(scores.read, GOOD, "exactly one result per good record");
    assert!(
        bad.keys().all(|b| !scores.results.contains_key(b)),
        "no result for a malformed record"
    );
    assert_eq!(server.answer("/health").map(|a| a.0), Some(200));
}

/// `/state/value` once it reports `usage` with `since`.
fn wait_for_usage(server: &Server, usage: u64, since: i64) -> Value {
    wait_until(
        &format!("usage {usage} since {since} in /state/value"),
        Duration::from_secs(30),
        || match server.answer("/state/value") {
            Some((200, value)) if value["usage"] == usage && value["since"] == since => Ok(value),
            other => Err(format!("{other:?}")),
        },
    )
}

#[test]
fn since_is_wall_clock_time_and_republishing_restarts_statistics() {
    let (broker, _state, server) = one_server("standard", &[]);
    let mut sender = Sender::new(&broker);
    let mut scores = Scores::new(&broker);
    let name = "winequalityLinearRegression";
    let model = std::fs::read(pmml_file("winequalityLinearRegression")).unwrap();
    let descriptor = inline_descriptor(name, "wine", pb::PMML, &model);
    let rows = wine_rows();
    let mut serve = |sender: &mut Sender, records: std::ops::Range<usize>| {
        for result in serve_rows(sender, &mut scores, &rows, records, |_| None) {
            assert!(result.served && result.model == name, "{result:?}");
        }
    };

    let before = now_ms();
    sender.send_one(MODELS, None, &descriptor);
    let since = server.wait_for_model("wine", name);
    let after = now_ms();
    assert!(
        (before..=after).contains(&since),
        "/models: since {since}, published between {before} and {after}"
    );
    serve(&mut sender, 0..40);
    let value = wait_for_usage(&server, 40, since);
    for field in [
        "name",
        "description",
        "modelType",
        "dataType",
        "since",
        "usage",
        "duration",
        "min",
        "max",
        "instances",
        "missing",
    ] {
        assert!(value.get(field).is_some(), "no {field} in {value}");
    }
    assert_eq!(value["name"], name);
    assert_eq!(value["dataType"], "wine");
    assert_eq!(value["modelType"], "PMML");
    assert_eq!(
        value["instances"].as_array().map(Vec::len),
        Some(1),
        "{value}"
    );
    assert_eq!(value["missing"], serde_json::json!([]), "{value}");
    assert!(value["min"].as_f64().unwrap() <= value["max"].as_f64().unwrap());
    assert_eq!(
        server.answer("/state/value?dataType=wine").map(|a| a.1),
        Some(value)
    );

    // The list form, and a data type with no model.
    let (status, state) = server.answer("/state").unwrap();
    assert_eq!(status, 200, "{state}");
    assert_eq!(state["stats"][0]["usage"], 40, "{state}");
    assert_eq!(
        state["instances"].as_array().map(Vec::len),
        Some(1),
        "{state}"
    );
    assert_eq!(state["missing"], serde_json::json!([]), "{state}");
    let (status, beer) = server.answer("/state/value?dataType=beer").unwrap();
    assert_eq!(status, 404, "{beer}");
    assert!(beer["error"].is_string(), "{beer}");

    // The same model again (with a key that is not UTF-8): a new `since`,
    // statistics from zero.
    let before = now_ms();
    sender.send_one(MODELS, Some(&[0xff, 0xfe, 0x00]), &descriptor);
    let republished = wait_until(
        "the republished model",
        Duration::from_secs(60),
        || match server.model("wine")? {
            (_, again) if again != since => Ok(again),
            seen => Err(format!("{seen:?}")),
        },
    );
    let after = now_ms();
    assert!(
        republished > since && (before..=after).contains(&republished),
        "republished: since {republished} (first {since}), published between {before} and {after}"
    );
    serve(&mut sender, 40..65);
    let value = wait_for_usage(&server, 25, republished);
    assert_eq!(value["name"], name);
}

/// Publishes 50 models for `wine` (and two garbage descriptors, one of
/// another data type), restarts the server, and checks it builds the last
/// model only, then serves it and the next one published.
fn a_restart_builds_only_the_last_descriptor(store: &str) {
    let (broker, _state, mut server) = one_server(store, &[]);
    // m0, m1, ..: the PMML files in turn.
    let pmml: Vec<Vec<u8>> = original_models()
        .into_iter()
        .filter(|(_, _, kind)| *kind == pb::PMML)
        .map(|(path, _, _)| std::fs::read(path).unwrap())
        .collect();
    let model =
        |i: usize| inline_descriptor(&format!("m{i}"), "wine", pb::PMML, &pmml[i % pmml.len()]);
    // One at a time, as the original client publishes models. (Tansu, the
    // test broker, reports a partition's high watermark as the last
    // batch's base offset + 1: after a batch of several records it lies
    // below the checkpoint the server wrote, and the server would read
    // the topic again from the start.)
    let mut sender = Sender::new(&broker);
    for i in 0..50 {
        if i == 20 {
            let garbage = inline_descriptor("garbage", "wine", pb::PMML, b"<PMML");
            sender.send_one(MODELS, None, &garbage);
        }
        if i == 30 {
            let garbage = inline_descriptor("garbage", "beer", pb::PMML, b"<PMML");
            sender.send_one(MODELS, None, &garbage);
        }
        sender.send_one(MODELS, None, &model(i));
    }
    server.wait_for_model("wine", "m49");
    wait_until(
        "the garbage rejected",
        Duration::from_secs(30),
        || match server.metric("model_server_models_rejected_total") {
            Some(2.0) => Ok(()),
            other => Err(format!("{other:?} rejected")),
        },
    );

    server.restart();
    server.wait_healthy();
    server.wait_for_model("wine", "m49");
    let builds = server.metric("model_server_model_builds_total");
    assert!(
        builds.is_some_and(|b| b <= 1.0),
        "{store}: {builds:?} models built at start"
    );
    assert_eq!(
        server.metric("model_server_models_rejected_total"),
        Some(0.0),
        "{store}: descriptors from before the checkpoint read again"
    );
    let mut scores = Scores::new(&broker);
    let row = original_record(&wine_rows()[0]);
    let source = sender.send_one(DATA, None, &row);
    let result = &scores.wait_for(&[source], Duration::from_secs(60))[0];
    assert!(
        result.served && result.model == "m49",
        "{store}: {result:?}"
    );

    // The restarted instance reads what is published since.
    sender.send_one(MODELS, None, &model(50));
    server.wait_for_model("wine", "m50");
    let source = sender.send_one(DATA, None, &row);
    let result = &scores.wait_for(&[source], Duration::from_secs(60))[0];
    assert!(
        result.served && result.model == "m50",
        "{store}: {result:?}"
    );
    let builds = server.metric("model_server_model_builds_total");
    assert!(builds.is_some_and(|b| b <= 2.0), "{store}: {builds:?}");
}

#[test]
fn a_restart_builds_only_the_last_descriptor_standard() {
    a_restart_builds_only_the_last_descriptor("standard");
}

#[test]
fn a_restart_builds_only_the_last_descriptor_custom() {
    a_restart_builds_only_the_last_descriptor("custom");
}

#[test]
fn hostile_descriptors_are_rejected_and_the_previous_model_keeps_serving() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("models");
    std::fs::create_dir(&dir).unwrap();
    let linear = pmml_file("winequalityLinearRegression");
    let forest = pmml_file("winequalityRandonForrestClassification");
    let forest_bytes = std::fs::read(&forest).unwrap();
    assert!(forest_bytes.len() > 100_000);
    // Valid models, outside the directory or too large.
    std::fs::copy(&linear, root.path().join("x")).unwrap();
    std::os::unix::fs::symlink(&linear, dir.join("link.pmml")).unwrap();
    std::fs::create_dir(dir.join("subdir")).unwrap();
    std::fs::copy(&forest, dir.join("big.pmml")).unwrap();
    // And one inside it that may be read.
    let tree = pmml_file("winequalityDesisionTreeRegression");
    std::fs::copy(&tree, dir.join("tree.pmml")).unwrap();

    let dir_text = dir.to_string_lossy().into_owned();
    let (broker, _state, server) = one_server(
        "standard",
        &[
            "--model-dir",
            &dir_text,
            "--max-model-bytes",
            "100000",
            "--model-build-timeout",
            "5",
        ],
    );
    let mut sender = Sender::new(&broker);
    let mut scores = Scores::new(&broker);
    let valid = std::fs::read(&linear).unwrap();
    publish_model(&mut sender, &server, "valid", pb::PMML, &valid);
    let rows = wine_rows();
    let mut next_row = 0;
    let mut served_by = |sender: &mut Sender, name: &str, what: &str| {
        let source = sender.send_one(DATA, None, &original_record(&rows[next_row]));
        next_row += 1;
        let result = &scores.wait_for(&[source], Duration::from_secs(60))[0];
        assert!(
            result.served && result.model == name,
            "after {what}: {result:?}"
        );
    };
    served_by(&mut sender, "valid", "the valid model");

    let location =
        |path: &str| pb::descriptor("hostile", "", "wine", pb::PMML, pb::Content::Location(path));
    let linear_text = linear.to_string_lossy().into_owned();
    let hostile: Vec<(&str, Vec<u8>)> = vec![
        ("/etc/passwd", location("/etc/passwd")),
        ("D/../x", location(&format!("{dir_text}/../x"))),
        ("../x", location("../x")),
        ("a model outside D", location(&linear_text)),
        (
            "a symbolic link out of D",
            location(&format!("{dir_text}/link.pmml")),
        ),
        ("a directory", location(&format!("{dir_text}/subdir"))),
        (
            "a file over the limit",
            location(&format!("{dir_text}/big.pmml")),
        ),
        (
            "an inline model over the limit",
            inline_descriptor("hostile", "wine", pb::PMML, &forest_bytes),
        ),
        (
            "a garbage ONNX model",
            inline_descriptor("hostile", "wine", pb::ONNX, b"not an ONNX model"),
        ),
    ];
    let rejected_before = server
        .metric("model_server_models_rejected_total")
        .unwrap_or(0.0);
    for (n, (what, descriptor)) in hostile.iter().enumerate() {
        sender.send_one(MODELS, None, descriptor);
        let expected = rejected_before + n as f64 + 1.0;
        wait_until(
            &format!("{what} rejected ({expected} in all)"),
            Duration::from_secs(30),
            || match server.metric("model_server_models_rejected_total") {
                Some(n) if n == expected => Ok(()),
                other => Err(format!("{other:?} rejected")),
            },
        );
        assert_eq!(server.model("wine").unwrap().0, "valid", "after {what}");
        served_by(&mut sender, "valid", what);
    }

    // A location inside the directory is read.
    let inside = format!("{dir_text}/tree.pmml");
    let descriptor = pb::descriptor("tree", "", "wine", pb::PMML, pb::Content::Location(&inside));
    sender.send_one(MODELS, None, &descriptor);
    server.wait_for_model("wine", "tree");
    served_by(&mut sender, "tree", "a model inside D");
    assert_eq!(
        server.metric("model_server_models_rejected_total"),
        Some(rejected_before + hostile.len() as f64)
    );
    assert_eq!(server.answer("/health").map(|a| a.0), Some(200));
}

/// Files named `name` anywhere below `dir`.
fn files_named(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_named(&path, name));
        } else if path.file_name().is_some_and(|n| n == name) {
            found.push(path);
        }
    }
    found
}

#[test]
fn sigterm_closes_as_cleanly_as_ctrl_c() {
    // No commit but the final one: only a clean close commits anything.
    let broker = Broker::start();
    let state = tempfile::tempdir().unwrap();
    let app = tests::unique("sigterm");
    let mut server = Server::start_with(
        &broker,
        "standard",
        &app,
        state.path(),
        tests::apps::free_port(),
        &["-c", "commit.interval.ms=3600000"],
    );
    server.wait_healthy();
    let mut sender = Sender::new(&broker);
    let mut scores = Scores::new(&broker);
    let model = std::fs::read(pmml_file("winequalityLinearRegression")).unwrap();
    publish_model(&mut sender, &server, "linear", pb::PMML, &model);
    let rows = wine_rows();
    let sources: Vec<(i32, i64)> = serve_rows(&mut sender, &mut scores, &rows, 0..200, |_| None)
        .iter()
        .map(|result| (result.partition, result.offset))
        .collect();

    stop_with(&mut server.child, "TERM", "model-server");

    // The final commit covers every record read...
    let consumer: BaseConsumer = broker
        .client_config()
        .set("group.id", &app)
        .create()
        .unwrap();
    // (Positions as sent: Tansu's high watermark is the last batch's base
    // offset + 1.)
    let mut expected: HashMap<i32, i64> = HashMap::new();
    for &(partition, offset) in &sources {
        let next = expected.entry(partition).or_default();
        *next = (*next).max(offset + 1);
    }
    let mut ends = rdkafka::TopicPartitionList::new();
    for &partition in expected.keys() {
        ends.add_partition(DATA, partition);
    }
    assert_eq!(expected.values().sum::<i64>(), 200);
    let committed = consumer
        .committed_offsets(ends, Duration::from_secs(10))
        .unwrap();
    for element in committed.elements() {
        assert_eq!(
            element.offset(),
            rdkafka::Offset::Offset(expected[&element.partition()]),
            "partition {}",
            element.partition()
        );
    }
    // ... and the stores were checkpointed.
    assert!(
        !files_named(state.path(), ".checkpoint").is_empty(),
        "no checkpoint under {}",
        state.path().display()
    );

    // The client's publisher stops at a signal too, delivering what it sent.
    let mut publisher = Command::new(CLIENT)
        .args([
            "--bootstrap-servers",
            broker.bootstrap_servers(),
            "publish",
            "--loop",
            "--no-models",
            "--rate",
            "50",
            "--data",
        ])
        .arg(data("winequality_red.csv"))
        .env_remove("RUST_BACKTRACE")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the publisher sends", Duration::from_secs(30), || {
        let (_, high) = consumer
            .fetch_watermarks(DATA, 0, Duration::from_secs(10))
            .unwrap();
        if high > expected.get(&0).copied().unwrap_or(0) {
            Ok(())
        } else {
            Err(format!("{high} on partition 0"))
        }
    });
    stop_with(&mut publisher, "TERM", "model-client publish");
}

#[test]
fn the_server_exits_non_zero_when_its_client_stops() {
    let broker = Broker::start();
    let state = tempfile::tempdir().unwrap();
    let mut server = Server::start(
        &broker,
        "standard",
        &tests::unique("failing"),
        state.path(),
        tests::apps::free_port(),
    );
    server.wait_healthy();
    // A batch no consumer can read (labelled gzip, holding garbage) stops
    // its partition for good: the stream thread fails, and so does the
    // client, rather than stalling.
    let batch = tests::committed::raw_batch(1, 1, b"this is not gzip");
    tests::committed::produce_raw(broker.bootstrap_servers(), DATA, 0, &batch).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Ok(Some(status)) = server.child.try_wait() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "model-server still running 60 s after an unreadable batch"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success(), "model-server exited with {status}");
}

/// `model-server --engine stage` on `broker`, healthy.
fn stage_server(broker: &Broker, app: &str) -> Server {
    engine_server("stage", broker, app, &[])
}

/// `model-server --engine ENGINE` on `broker` with `extra` flags, healthy.
fn engine_server(engine: &str, broker: &Broker, app: &str, extra: &[&str]) -> Server {
    let port = tests::apps::free_port();
    let server = Server::spawn_on(broker, app, port, &[&["--engine", engine], extra].concat());
    server.wait_healthy();
    server
}

#[test]
fn the_stage_engine_serves_the_original_bytes_once_each() {
    const BATCH: usize = 100;
    let broker = Broker::start();
    let server = stage_server(&broker, &tests::unique("stage"));
    let rows = wine_rows();
    let mut sender = Sender::new(&broker);
    let mut scores = Scores::new(&broker);
    let models = [
        pmml_file("winequalityLinearRegression"),
        pmml_file("winequalityDesisionTreeRegression"),
    ];
    // No model yet: not served, with the reason.
    let source = sender.send_one(DATA, None, &original_record(&rows[0]));
    let first = &scores.wait_for(&[source], Duration::from_secs(60))[0];
    assert!(
        !first.served && first.reason.contains("no model"),
        "{first:?}"
    );
    for (i, path) in models.iter().enumerate() {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let offline = offline_scores(&broker, path);
        let model = std::fs::read(path).unwrap();
        publish_model(&mut sender, &server, &name, pb::PMML, &model);
        let batch = 1 + i * BATCH..1 + (i + 1) * BATCH;
        let results = serve_rows(&mut sender, &mut scores, &rows, batch.clone(), |_| None);
        for (row, result) in batch.zip(results) {
            assert!(
                result.served && result.model == name,
                "row {row}: {result:?}"
            );
            assert_eq!(result.result.to_bits(), offline[row].to_bits(), "row {row}");
        }
        let stats = server.get("/state/wine").unwrap();
        assert_eq!(stats["name"], name.as_str());
        assert_eq!(stats["usage"], BATCH as u64);
    }
    scores.drain(Duration::from_secs(2));
    assert_eq!(scores.read, 1 + 2 * BATCH, "one result per record");
    let state = server.get("/state").unwrap();
    assert_eq!(state["stats"].as_array().map(Vec::len), Some(1), "{state}");
    assert_eq!(server.answer("/state/rose").map(|a| a.0), Some(404));
    assert_eq!(server.metric("model_server_model_builds_total"), Some(2.0));
}

#[test]
fn a_flag_of_another_engine_is_a_clear_error() {
    let output = Command::new(SERVER)
        .args(["--engine", "stage", "--store", "memory"])
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--store does not apply to --engine stage"),
        "{stderr}"
    );
}

#[test]
fn the_actors_engine_resumes_with_its_persisted_model_and_two_instances_share_the_work() {
    const BATCH: usize = 100;
    let broker = Broker::start();
    let app = tests::unique("actors");
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let dir = |i: usize| dirs[i].path().to_string_lossy().into_owned();
    let (first_dir, second_dir) = (dir(0), dir(1));
    let mut first = engine_server("actors", &broker, &app, &["--state-dir", &first_dir]);
    let rows = wine_rows();
    let mut sender = Sender::new(&broker);
    let mut scores = Scores::new(&broker);
    let path = pmml_file("winequalityLinearRegression");
    let name = "winequalityLinearRegression";
    let offline = offline_scores(&broker, &path);
    let model = std::fs::read(&path).unwrap();
    publish_model(&mut sender, &first, name, pb::PMML, &model);
    let send_batch =
        |sender: &mut Sender, scores: &mut Scores, rows_sent: std::ops::Range<usize>| {
            // Over both partitions of `mdata`, as the original client's
            // keyless records would be.
            let results = serve_rows(sender, scores, &rows, rows_sent.clone(), |row| {
                Some(row as i32 % 2)
            });
            for (row, result) in rows_sent.zip(&results) {
                assert!(
                    result.served && result.model == name,
                    "row {row}: {result:?}"
                );
                assert_eq!(result.result.to_bits(), offline[row].to_bits(), "row {row}");
            }
            results
        };
    send_batch(&mut sender, &mut scores, 0..BATCH);
    let usage = first.get("/state/wine").unwrap()["usage"].as_u64();
    assert_eq!(usage, Some(BATCH as u64));

    // A restart: the actor serves with the model it persisted, and keeps
    // its statistics, before any descriptor is read (none is built).
    first.stop();
    first = engine_server("actors", &broker, &app, &["--state-dir", &first_dir]);
    let model_now = first.model("wine");
    assert_eq!(
        model_now.map(|m| m.0),
        Ok(name.to_owned()),
        "restored at start"
    );
    send_batch(&mut sender, &mut scores, BATCH..2 * BATCH);
    assert_eq!(first.metric("model_server_model_builds_total"), Some(0.0));
    // A clean stop committed what it answered: one result per record.
    scores.drain(Duration::from_secs(2));
    assert_eq!(scores.read, 2 * BATCH);

    // A second instance: both serve every model, and split the records.
    let second = engine_server("actors", &broker, &app, &["--state-dir", &second_dir]);
    second.wait_for_model("wine", name);
    let served = |s: &Server| s.metric("model_server_records_total").unwrap_or(0.0);
    let mut next = 2 * BATCH;
    wait_until("both instances serving", Duration::from_secs(60), || {
        let before = served(&first);
        send_batch(&mut sender, &mut scores, next..next + BATCH);
        next += BATCH;
        match (served(&first) - before, served(&second)) {
            (mine, theirs) if mine > 0.0 && theirs > 0.0 && mine < BATCH as f64 => Ok(()),
            other => Err(format!("served by each: {other:?}")),
        }
    });
    // At least once: every record has its result (checked above); records
    // whose offsets were not yet committed when the second instance took
    // their partition over are scored again there.
    scores.drain(Duration::from_secs(2));
    assert!(
        scores.read >= next,
        "{} results for {next} records",
        scores.read
    );
}
