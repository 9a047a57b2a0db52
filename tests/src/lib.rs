//! Test support shared by every crate's integration tests: a private,
//! real Kafka-protocol broker on a free loopback port.
//!
//! [`shared_broker`] starts one broker per test binary, the first time a test
//! asks, and it stops when the test binary exits (it watches a pipe from the
//! test process, so even a killed test run leaves no broker behind).
//! [`Broker::start`] starts a broker of a test's own, stopped on drop.
//!
//! The setup the end-to-end tests and the benchmark and trial binaries share
//! is here too: unique topics ([`Broker::unique_topics`]), settings
//! ([`Broker::streams_config`], [`apps`]), a client with a query server
//! ([`QueryInstance`]), and what a `streams-app` child process reports
//! ([`app_process`]).
//!
//! The broker is Tansu (see README.md, "Development broker"), installed by
//! `scripts/setup.sh`. When it is missing, tests fail with a message that
//! says so; they are never skipped.
//!
//! ```no_run
//! let broker = tests::shared_broker();
//! broker.create_topic("words", 3);
//! println!("bootstrap.servers={}", broker.bootstrap_servers());
//! ```

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use streams_core::serde::StringSerde;
use streams_core::{StreamsConfig, Topology};
use streams_http::{QueryServer, RunningServer};
use streams_kafka::{HostInfo, KafkaStreams};

pub mod committed;

/// How long the end-to-end tests wait for a client's state or its output.
pub const WAIT: Duration = Duration::from_secs(60);

/// Where the broker binary is: `$TANSU_BIN`, else the project's tools folder.
pub fn broker_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("TANSU_BIN") {
        return PathBuf::from(path);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.tools/bin/tansu")
}

/// A running broker on 127.0.0.1, stopped when dropped.
pub struct Broker {
    port: u16,
    bootstrap: String,
    child: Child,
    /// Held open while the broker should run; its watcher stops the broker
    /// when the pipe closes, that is when this process exits.
    lifeline: Option<ChildStdin>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("bootstrap", &self.bootstrap)
            .finish()
    }
}

/// The broker that the tests of this binary share, started on first use.
pub fn shared_broker() -> &'static Broker {
    static BROKER: OnceLock<Broker> = OnceLock::new();
    static STARTING: Mutex<()> = Mutex::new(());
    let _guard = STARTING.lock().unwrap_or_else(|e| e.into_inner());
    BROKER.get_or_init(Broker::start)
}

fn free_port() -> u16 {
    let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
        .expect("bind a free loopback port");
    listener.local_addr().expect("local address").port()
}

impl Broker {
    /// Starts a broker on a free loopback port and waits until it serves
    /// metadata. Panics, naming `scripts/setup.sh`, when the binary is missing.
    pub fn start() -> Broker {
        Self::start_with(&broker_binary())
    }

    /// Starts the broker binary at `binary`, as [`Broker::start`] does.
    pub fn start_with(binary: &std::path::Path) -> Broker {
        assert!(
            binary.exists(),
            "the development broker is not installed (looked for {}): run scripts/setup.sh, \
             or set TANSU_BIN to a Tansu binary",
            binary.display()
        );
        let mut last_error = String::new();
        // Another process may take the port between our probe and the
        // broker's bind: try a few ports before giving up.
        for _ in 0..5 {
            match Self::try_start(binary, free_port()) {
                Ok(broker) => return broker,
                Err(e) => last_error = e,
            }
        }
        panic!(
            "could not start the development broker {}: {last_error}",
            binary.display()
        );
    }

    fn try_start(binary: &std::path::Path, port: u16) -> Result<Broker, String> {
        let address = format!("127.0.0.1:{port}");
        let url = format!("tcp://{address}");
        // The watcher shell runs the broker and kills it once its stdin (our
        // lifeline) reaches end of file.
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#"bin="$1"; shift; "$bin" "$@" </dev/null & pid=$!; cat >/dev/null; kill "$pid" 2>/dev/null; wait "$pid""#)
            .arg("tansu-watch")
            .arg(binary)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawning sh: {e}"))?;
        let lifeline = child.stdin.take();
        let mut broker = Broker {
            port,
            bootstrap: address,
            child,
            lifeline,
        };
        broker.wait_ready(Duration::from_secs(20))?;
        Ok(broker)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.port);
        while TcpStream::connect_timeout(&addr.into(), Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                let mut stderr = String::new();
                if let Some(mut pipe) = self.child.stderr.take() {
                    std::io::Read::read_to_string(&mut pipe, &mut stderr).ok();
                }
                return Err(format!("broker exited with {status}: {}", stderr.trim()));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "broker did not listen on {} within {timeout:?}",
                    self.bootstrap
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Listening is not serving: wait for a metadata answer too.
        let consumer: BaseConsumer = self.client_config().create().map_err(|e| e.to_string())?;
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1));
        consumer
            .fetch_metadata(None, left)
            .map_err(|e| format!("broker does not answer metadata: {e}"))?;
        Ok(())
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// The broker's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A client configuration pointing at this broker, with timeouts short
    /// enough for tests.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap)
            .set("socket.timeout.ms", "10000");
        config
    }

    /// Creates a topic with explicit configs (the broker reports none for a
    /// topic created without them, and some clients then fail), waiting for
    /// the result. An existing topic is left as it is.
    pub fn create_topic(&self, name: &str, partitions: i32) {
        let config = streams_core::StreamsConfig::new("test-admin")
            .set("bootstrap.servers", &self.bootstrap)
            .set("replication.factor", "1");
        if let Err(e) = streams_kafka::create_topics_if_missing(&config, &[(name, partitions)]) {
            panic!("creating topic {name}: {e}");
        }
    }

    /// Topics named after `prefixes`, made [`unique`], each created with
    /// `partitions` partitions.
    pub fn unique_topics<const N: usize>(
        &self,
        prefixes: [&str; N],
        partitions: i32,
    ) -> [String; N] {
        prefixes.map(|prefix| {
            let topic = unique(prefix);
            self.create_topic(&topic, partitions);
            topic
        })
    }

    /// The tests' settings ([`apps::config`]) for application `app` on
    /// this broker, with its state under `state_dir`.
    pub fn streams_config(&self, app: &str, state_dir: &Path) -> StreamsConfig {
        apps::config(app, &self.bootstrap, state_dir.to_str().unwrap())
    }

    /// Writes `records` (key, value) to `topic` and waits until they are
    /// delivered.
    pub fn produce(&self, topic: &str, records: &[(Option<&str>, &str)]) {
        use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
        let producer: BaseProducer = self.client_config().create().expect("create a producer");
        for (key, value) in records {
            let mut record = BaseRecord::<str, str>::to(topic).payload(*value);
            if let Some(key) = key {
                record = record.key(*key);
            }
            producer.send(record).map_err(|(e, _)| e).expect("send");
        }
        producer
            .flush(Duration::from_secs(10))
            .expect("deliver within 10 s");
    }

    /// A consumer assigned to every partition of `topic` from the start.
    /// It has a group id only because librdkafka wants one for `assign`;
    /// it never joins or commits, and it reports "unknown group" events
    /// that readers skip.
    pub fn read_from_start(&self, topic: &str, partitions: i32) -> BaseConsumer {
        let consumer: BaseConsumer = self
            .client_config()
            .set("group.id", "test-reader")
            .set("enable.auto.commit", "false")
            .create()
            .expect("create a reader");
        let mut assignment = rdkafka::TopicPartitionList::new();
        for p in 0..partitions {
            assignment
                .add_partition_offset(topic, p, rdkafka::Offset::Beginning)
                .expect("add a partition");
        }
        consumer.assign(&assignment).expect("assign");
        consumer
    }

    /// Stops the broker now.
    pub fn stop(&mut self) {
        // Closing the lifeline makes the watcher kill the broker.
        if let Some(mut lifeline) = self.lifeline.take() {
            let _ = lifeline.flush();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `prefix` made unique to this test process and call, for topic and
/// application names that tests sharing a broker do not trip over.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

#[path = "../../streams-core/examples/word_count/topology.rs"]
mod word_count_topology;

/// Topologies and settings shared by the end-to-end tests and the
/// `streams-app` child process.
pub mod apps {
    use streams_core::dsl::{Consumed, Grouped, Materialized, Produced};
    use streams_core::serde::{I64Serde, Nullable, StringSerde};
    use streams_core::{StreamsBuilder, StreamsConfig, Topology};
    use streams_kafka::{HostInfo, KafkaStreams};

    /// Lines in, a count per word out; counts kept in RocksDB (the
    /// examples' word count).
    pub fn word_count(input: &str, output: &str, store: &str) -> streams_core::Result<Topology> {
        crate::word_count_topology::word_count(input, output, store)
    }

    /// Each record's key counted in a RocksDB store; every update out.
    pub fn id_count(input: &str, output: &str, store: &str) -> streams_core::Result<Topology> {
        id_count_in(input, output, Materialized::named(store))
    }

    /// [`id_count`] with the store as `materialized` says.
    pub fn id_count_in(
        input: &str,
        output: &str,
        materialized: Materialized<String, i64>,
    ) -> streams_core::Result<Topology> {
        let builder = StreamsBuilder::new();
        builder
            .stream_with([input], Consumed::with(StringSerde, StringSerde))
            .group_by_key_with(Grouped::default())
            .count_with(materialized)
            .to_stream()
            .to_with(output, Produced::with(StringSerde, Nullable(I64Serde)));
        builder.build()
    }

    /// `config` with `application.server` on loopback `port` and a fast
    /// instance registry (heartbeat 200 ms, dead after 2 s), and consumer
    /// lag reported every 500 ms.
    pub fn query_config(config: StreamsConfig, port: u16) -> StreamsConfig {
        config
            .set("application.server", format!("127.0.0.1:{port}"))
            .set("registry.heartbeat.interval.ms", "200")
            .set("registry.instance.timeout.ms", "2000")
            .set("consumer.statistics.interval.ms", "500")
    }

    /// A loopback port that was free a moment ago.
    pub fn free_port() -> u16 {
        super::free_port()
    }

    /// Port `port` on 127.0.0.1.
    pub fn loopback(port: u16) -> HostInfo {
        HostInfo {
            host: "127.0.0.1".into(),
            port,
        }
    }

    /// A client of `topology` on `config`, started.
    pub fn start(topology: Topology, config: StreamsConfig) -> KafkaStreams {
        let streams = KafkaStreams::new(topology, config).unwrap();
        streams.start().unwrap();
        streams
    }

    /// Settings for tests: short group timeouts and commit interval.
    pub fn config(application_id: &str, bootstrap: &str, state_dir: &str) -> StreamsConfig {
        StreamsConfig::new(application_id)
            .set("bootstrap.servers", bootstrap)
            .set("state.dir", state_dir)
            .set("commit.interval.ms", "200")
            .set("replication.factor", "1")
            .set("consumer.session.timeout.ms", "3000")
            .set("consumer.heartbeat.interval.ms", "500")
            .set("consumer.topic.metadata.refresh.interval.ms", "1000")
    }
}

/// A started streams client with a query server, on its
/// `application.server` port, for one of its key-value stores.
pub struct QueryInstance {
    /// The client.
    pub streams: Arc<KafkaStreams>,
    /// The query server; it stops on drop.
    pub server: RunningServer,
    /// Where the query server listens.
    pub host: HostInfo,
    /// The client's state directory, removed on drop.
    _dir: tempfile::TempDir,
}

impl QueryInstance {
    /// Starts `topology` on the settings `config` makes for a fresh state
    /// directory, with `application.server` on a free loopback port and a
    /// fast instance registry ([`apps::query_config`]), and serves queries
    /// of its store `store` (string keys, i64 values) on that port.
    pub fn start(
        topology: Topology,
        config: impl FnOnce(&str) -> StreamsConfig,
        store: &str,
    ) -> Result<QueryInstance, Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let port = apps::free_port();
        let config = apps::query_config(config(dir.path().to_str().ok_or("state dir")?), port);
        let streams = Arc::new(KafkaStreams::new(topology, config)?);
        streams.start()?;
        let server = QueryServer::new(streams.clone())
            .key_value_store::<String, i64>(store, StringSerde)
            .serve(([127, 0, 0, 1], port).into())?;
        Ok(QueryInstance {
            streams,
            server,
            host: apps::loopback(port),
            _dir: dir,
        })
    }
}

/// What a `streams-app` child process reports: its state changes on its
/// standard output, its partitions in its log.
pub mod app_process {
    use std::io::{BufRead, BufReader};
    use std::process::ChildStdout;
    use std::sync::{Mutex, mpsc};
    use std::time::{Duration, Instant};

    /// The states `stdout` reports (its `STATE <state>` lines), as they come.
    pub fn states(stdout: ChildStdout) -> mpsc::Receiver<String> {
        let (tx, states) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(state) = line.strip_prefix("STATE ") {
                    let _ = tx.send(state.to_owned());
                }
            }
        });
        states
    }

    /// Waits until `states` reports `state`; panics after `timeout`.
    pub fn wait_for(states: &mpsc::Receiver<String>, state: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match states.recv_timeout(left) {
                Ok(s) if s == state => return,
                Ok(_) => {}
                Err(_) => panic!("streams-app did not reach {state} within {timeout:?}"),
            }
        }
    }

    /// Notes in `assigned` the partitions of `input` the instance holds, when
    /// its log `line` says they changed.
    pub fn note_assignment(line: &str, input: &str, assigned: &Mutex<Vec<i32>>) {
        if line.contains("partitions revoked: ") {
            assigned.lock().unwrap().clear();
        } else if let Some((_, list)) = line.split_once("partitions assigned: ") {
            let prefix = format!("{input}[");
            *assigned.lock().unwrap() = list
                .split(", ")
                .filter_map(|tp| tp.strip_prefix(&prefix)?.strip_suffix(']')?.parse().ok())
                .collect();
        }
    }
}
