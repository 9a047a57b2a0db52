//! The model server as users run it: the `model-server` and `model-client`
//! binaries against a real broker, two server instances per test.
//!
//! - `standard`: 2,000 records and a model; every record has a result in
//!   `mscores` equal to the model's reference prediction (onnxruntime's),
//!   `/state/value` on either instance reports usage 2,000 in total,
//!   `/state/instances` lists both; after one instance restarts the total
//!   is still 2,000.
//! - `custom` keeps its statistics over a restart too; `memory` loses the
//!   restarted instance's share.
//! - Bad flags, an unreachable broker and a port in use are clear errors.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{data, reference_columns, wine_rows};
use proto::{Message, ServingResult, WineRecord};
use rdkafka::consumer::Consumer;
use rdkafka::message::Message as _;
use serde_json::Value;
use streams_core::runtime::HostInfo;
use tests::Broker;

const SERVER: &str = env!("CARGO_BIN_EXE_model-server");
const CLIENT: &str = env!("CARGO_BIN_EXE_model-client");
const MODEL: &str = "wine_random_forest_regression";

/// A model-server process, stopped (SIGINT, then SIGKILL) on drop.
struct Server {
    child: Child,
    port: u16,
    args: Vec<String>,
}

impl Server {
    fn start(broker: &Broker, store: &str, app: &str, state_dir: &Path, port: u16) -> Server {
        let args: Vec<String> = [
            "--store",
            store,
            "--bootstrap-servers",
            broker.bootstrap_servers(),
            "--application-id",
            app,
            "--port",
            &port.to_string(),
            "--state-dir",
            &state_dir.to_string_lossy(),
            "-c",
            "commit.interval.ms=200",
            "-c",
            "replication.factor=1",
            "-c",
            "consumer.session.timeout.ms=3000",
            "-c",
            "consumer.heartbeat.interval.ms=500",
            "-c",
            "consumer.topic.metadata.refresh.interval.ms=1000",
            "-c",
            "registry.heartbeat.interval.ms=200",
            "-c",
            "registry.instance.timeout.ms=2000",
        ]
        .iter()
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
        HostInfo {
            host: "127.0.0.1".into(),
            port: self.port,
        }
    }

    /// `GET path` as JSON, or `None` while the server does not answer 200.
    fn get(&self, path: &str) -> Option<Value> {
        let answer = streams_http::get(&self.host(), path, Duration::from_secs(5), false).ok()?;
        (answer.status == 200)
            .then(|| serde_json::from_slice(&answer.body).ok())
            .flatten()
    }

    /// Stops the process as Ctrl-C would and waits for it to exit.
    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(40);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "model-server exited with {status}");
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        panic!("model-server did not stop within 40 s of SIGINT");
    }

    fn restart(&mut self) {
        self.stop();
        *self = Server::spawn(self.args.clone(), self.port);
    }
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

/// Total usage of the data type `wine` in a merged `/state/value` (0
/// when no instance has statistics for it), once every live instance
/// answered.
fn merged_usage(server: &Server) -> Option<u64> {
    let value = server.get("/state/value")?;
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
    assert!(err.contains("memory, standard or custom"), "{err}");
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
