//! An HTTP layer for interactive queries that any streams application can
//! mount, and that answers on whichever instance receives the request.
//!
//! | route | answer |
//! |---|---|
//! | `GET /state/instances` | every live instance: `host`, `port`, `storeNames`, `partitions` |
//! | `GET /state/keyvalue/{store}/{key}` | the key's value, from this instance or fetched from the one that holds it |
//! | `GET /state/keyvalue/{store}` | a page of the entries of every instance, merged in key order: `?limit=` (default 1,000) entries from key `?from=`, with `next`, the key to continue from (`null` at the end), and the instances that did not answer |
//! | `GET /state/windowed/{store}/{key}` | the key's windows in a window store, from the instance that holds it: `[{"start": ms, "end": ms, "value": ...}]` in window-start order, those starting from `?from=` to `?to=` (ms since the epoch, both inclusive, both optional: by default every window the store keeps) |
//! | `GET /state/session/{store}/{key}` | the key's sessions in a session store, from the instance that holds it: `[{"start": ms, "end": ms, "value": ...}]` (start and end are the first and last record's times) in start order; with `?from=` or `?to=`, those that end at or after `from` and start at or before `to` |
//! | `GET /metrics` | the runtime's metrics (and the application's) in Prometheus text |
//! | `GET /health` | 200 while running, 503 otherwise, with the state and, after a failure, its reason |
//! | `GET /` | the web console: one HTML page showing instances, throughput and lag, the topology and the application's own panels, refreshing itself (see [`console`]) |
//! | `GET /console/panels`, `/console/instances`, `/console/throughput` | the JSON the console reads (see [`console`]): its panels; every live instance with this one marked; records per second and consumer lag, sampled every second over the last five minutes, from every instance |
//! | `GET /topology` | the topology given with [`QueryServer::topology`], as `describe()` prints it (text); 404 when none was given |
//! | `GET /topology.svg` | the same as a diagram, laid out on the server ([`topology_svg`]) |
//! | `GET /topology.json` | the same as JSON ([`topology_json`]) |
//!
//! Applications add their own routes in front with [`QueryServer::route`]
//! (`/health` and `/metrics` always belong to the layer);
//! [`QueryServer::fan_out`] asks every instance the same question, for
//! routes that merge answers. Answers are JSON; errors are
//! `{"error": "..."}` with a fitting status; a handler that panics is a
//! 500, never a dead server.
//!
//! Stores are made queryable by kind: [`QueryServer::key_value_store`],
//! [`QueryServer::window_store`] and [`QueryServer::session_store`], each
//! with the store's key serde, which finds a key's partition and so its
//! instance. Key lookups (the three `{store}/{key}` routes) are forwarded
//! to the instance that holds the key and answered there; an instance
//! answers a forwarded request itself. Their errors: 400 for a key that
//! does not parse or a bad `from`/`to` (not an integer, or `from` after
//! `to`), 404 for a store not registered with that kind (and a key-value
//! key with no value; a windowed key with none is an empty list), 502
//! when the owner does not answer, 503 (retry) while no live instance
//! holds the key's partition or the store is being rebalanced.
//!
//! The server is axum's router on hyper, with the limits of
//! [`HttpLimits`]: no route takes a body (a request with one is answered
//! 413 without reading it), headers must arrive within a timeout, idle
//! connections are closed, open connections are capped, failed accepts
//! back off, and queries run on a bounded set of worker threads while
//! `/health` and `/metrics` answer even when every worker is busy. Calls
//! to other instances go through hyper's pooled client, each with a
//! deadline and a cap on the answer's size.
//!
//! ```no_run
//! use std::sync::Arc;
//! use streams_kafka::KafkaStreams;
//! use streams_core::serde::StringSerde;
//! use streams_http::QueryServer;
//! # fn app(streams: Arc<KafkaStreams>) -> std::io::Result<()> {
//! let server = QueryServer::new(streams)
//!     .key_value_store::<String, i64>("word-counts", StringSerde)
//!     .serve("127.0.0.1:8080".parse().unwrap())?;
//! println!("queries on http://{}", server.local_addr());
//! # Ok(()) }
//! ```

mod client;
pub mod console;
mod limits;
mod server;
mod topology;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body as AxumBody;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::routing::get as get_route;
use http_body_util::BodyExt;
use hyper::body::Body as _;
use percent_encoding::{AsciiSet, CONTROLS, NON_ALPHANUMERIC, utf8_percent_encode};
use prometheus_client::encoding::prometheus_text;
use prometheus_client::registry::Registry;
use serde::Serialize;
use serde_json::{Value, json};
use streams_core::state::StoreError;
use streams_core::{Result as StreamsResult, StreamsError};
use streams_kafka::{HostInfo, KafkaStreams, State as StreamsState, StreamsMetadata};
use tokio::sync::Semaphore;
use tower_http::timeout::TimeoutLayer;

use client::PeerClient;
pub use client::{HttpAnswer, get};
use console::{Console, History, Panel, Sample, SampleSource};
pub use limits::HttpLimits;
use streams_core::topology::TopologyDescription;
pub use topology::{topology_json, topology_svg};

/// The header that marks a request one instance forwarded to another: it
/// is answered locally, never forwarded again.
pub const FORWARDED_HEADER: &str = "x-streams-forwarded";

/// How long a peer may take to answer a forwarded or fanned-out request.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(5);

/// A request, as handlers see it.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, percent-decoded per segment by [`Request::segments`].
    pub path: String,
    /// Query parameters, decoded.
    pub query: Vec<(String, String)>,
    /// Whether another instance forwarded this request.
    pub forwarded: bool,
}

impl Request {
    /// A `GET` of `path_and_query` (for tests and in-process callers).
    pub fn get(path_and_query: &str) -> Request {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        Request {
            method: "GET".into(),
            path: path.to_owned(),
            query: parse_query(query),
            forwarded: false,
        }
    }

    /// The path's segments, percent-decoded.
    pub fn segments(&self) -> Vec<String> {
        self.path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(percent_decode)
            .collect()
    }

    /// The first value of query parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A response: status, content type and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: String,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A JSON answer.
    pub fn json(status: u16, value: &impl Serialize) -> Response {
        Response {
            status,
            content_type: "application/json".into(),
            body: serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec()),
        }
    }

    /// A JSON error: `{"error": message}`.
    pub fn error(status: u16, message: impl std::fmt::Display) -> Response {
        Response::json(status, &json!({ "error": message.to_string() }))
    }

    /// A plain-text answer.
    pub fn text(status: u16, content_type: &str, body: String) -> Response {
        Response {
            status,
            content_type: content_type.into(),
            body: body.into_bytes(),
        }
    }

    /// The body as JSON (for callers of [`QueryServer::handle`]).
    pub fn body_json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// A store the layer can read: keys from URL text, values to JSON.
trait QueryableStore: Send + Sync {
    /// The key parsed from the URL and serialized as the store keeps it.
    fn key_bytes(&self, key: &str) -> Result<Vec<u8>, String>;
    /// The key's value here, as JSON.
    fn get(&self, key: &str) -> StreamsResult<Option<Value>>;
    /// One page of local entries from the key `from` (URL text), as
    /// JSON pairs, and the key to continue from.
    fn page(&self, from: Option<&str>, limit: usize) -> StreamsResult<Page>;
    /// A key as JSON (as pages show them) serialized as the store keeps
    /// it, for ordering entries of several instances.
    fn json_key_bytes(&self, key: &Value) -> Option<Vec<u8>> {
        let text = match key {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        self.key_bytes(&text).ok()
    }
}

/// Entries of one page, and the key to continue from.
type Page = (Vec<(Value, Value)>, Option<Value>);

/// Entries in a page of `/state/keyvalue/{store}` unless `limit` says.
pub const DEFAULT_PAGE: usize = 1000;

/// The largest `limit` of a page.
pub const MAX_PAGE: usize = 100_000;

/// The two routes of windowed stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WindowedKind {
    /// `/state/windowed/...`: window stores.
    Window,
    /// `/state/session/...`: session stores.
    Session,
}

impl WindowedKind {
    /// The route's second path segment.
    fn segment(self) -> &'static str {
        match self {
            WindowedKind::Window => "windowed",
            WindowedKind::Session => "session",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            WindowedKind::Window => "window",
            WindowedKind::Session => "session",
        }
    }
}

struct KeyValueQuery<K, V> {
    streams: Arc<KafkaStreams>,
    name: String,
    keys: Box<dyn state_stores::Serde<K>>,
    _values: std::marker::PhantomData<fn() -> V>,
}

impl<K, V> KeyValueQuery<K, V>
where
    K: FromStr + Serialize + 'static,
    V: Serialize + 'static,
{
    fn parse(&self, key: &str) -> Result<K, String> {
        parse_key(&self.name, key)
    }
}

impl<K, V> QueryableStore for KeyValueQuery<K, V>
where
    K: FromStr + Serialize + 'static,
    V: Serialize + 'static,
{
    fn key_bytes(&self, key: &str) -> Result<Vec<u8>, String> {
        serialize_key(&*self.keys, &self.parse(key)?)
    }

    fn get(&self, key: &str) -> StreamsResult<Option<Value>> {
        let key = self.parse(key).map_err(StreamsError::InvalidState)?;
        let view = self.streams.store::<K, V>(&self.name)?;
        Ok(view.get(&key)?.map(|v| to_json(&v)))
    }

    fn page(&self, from: Option<&str>, limit: usize) -> StreamsResult<Page> {
        let from = from
            .map(|key| self.parse(key))
            .transpose()
            .map_err(StreamsError::InvalidState)?;
        let view = self.streams.store::<K, V>(&self.name)?;
        let (entries, next) = view.page(from.as_ref(), limit)?;
        Ok((
            entries
                .iter()
                .map(|(k, v)| (to_json(k), to_json(v)))
                .collect(),
            next.as_ref().map(to_json),
        ))
    }
}

fn to_json(value: &impl Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// A key from URL text, parsed with `FromStr`.
fn parse_key<K: FromStr>(store: &str, key: &str) -> Result<K, String> {
    key.parse::<K>()
        .map_err(|_| format!("`{key}` is not a key of store {store}"))
}

/// `key` serialized by the store's key serde, to find its partition.
fn serialize_key<K>(keys: &dyn state_stores::Serde<K>, key: &K) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    keys.serialize_into(key, &mut out)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// Times from `from` to `to` (ms since the epoch, both inclusive) that a
/// windowed lookup covers; unbounded on a side not given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TimeRange {
    from: Option<i64>,
    to: Option<i64>,
}

impl TimeRange {
    /// `?from=` and `?to=` of `request`: integers, `from` not after `to`.
    fn of(request: &Request) -> Result<TimeRange, String> {
        let time = |name: &str| {
            request
                .param(name)
                .map(|text| {
                    text.parse::<i64>().map_err(|_| {
                        format!(
                            "{name} must be a time in ms since the epoch (an integer), not `{text}`"
                        )
                    })
                })
                .transpose()
        };
        let range = TimeRange {
            from: time("from")?,
            to: time("to")?,
        };
        if let (Some(from), Some(to)) = (range.from, range.to)
            && from > to
        {
            return Err(format!("from ({from}) is after to ({to})"));
        }
        Ok(range)
    }

    fn bounds(self) -> (i64, i64) {
        (self.from.unwrap_or(i64::MIN), self.to.unwrap_or(i64::MAX))
    }

    /// The range as a query string (`?from=..&to=..`, or nothing).
    fn query(self) -> String {
        let parts: Vec<String> = [("from", self.from), ("to", self.to)]
            .into_iter()
            .filter_map(|(name, time)| time.map(|time| format!("{name}={time}")))
            .collect();
        match parts.is_empty() {
            true => String::new(),
            false => format!("?{}", parts.join("&")),
        }
    }
}

/// A window or session store the layer can read: one key's windows (or
/// sessions) in a time range, as JSON.
trait WindowedQueryable: Send + Sync {
    /// The key parsed from the URL and serialized as the store keeps it.
    fn key_bytes(&self, key: &str) -> Result<Vec<u8>, String>;
    /// The key's windows here that `range` covers, earliest first, as
    /// `{"start", "end", "value"}` objects.
    fn windows(&self, key: &str, range: TimeRange) -> StreamsResult<Vec<Value>>;
}

fn window_json(start: i64, end: i64, value: &impl Serialize) -> Value {
    json!({ "start": start, "end": end, "value": to_json(value) })
}

struct WindowQuery<K, V> {
    streams: Arc<KafkaStreams>,
    name: String,
    keys: Box<dyn state_stores::Serde<K>>,
    _values: std::marker::PhantomData<fn() -> V>,
}

impl<K, V> WindowedQueryable for WindowQuery<K, V>
where
    K: FromStr + 'static,
    V: Serialize + 'static,
{
    fn key_bytes(&self, key: &str) -> Result<Vec<u8>, String> {
        serialize_key(&*self.keys, &parse_key(&self.name, key)?)
    }

    /// Windows that start in the range.
    fn windows(&self, key: &str, range: TimeRange) -> StreamsResult<Vec<Value>> {
        let key = parse_key::<K>(&self.name, key).map_err(StreamsError::InvalidState)?;
        let (from, to) = range.bounds();
        let view = self.streams.window_store::<K, V>(&self.name)?;
        Ok(view
            .fetch_windows(&key, from, to)?
            .iter()
            .map(|(window, value)| window_json(window.start, window.end, value))
            .collect())
    }
}

struct SessionQuery<K, V> {
    streams: Arc<KafkaStreams>,
    name: String,
    keys: Box<dyn state_stores::Serde<K>>,
    _values: std::marker::PhantomData<fn() -> V>,
}

impl<K, V> WindowedQueryable for SessionQuery<K, V>
where
    K: FromStr + 'static,
    V: Serialize + 'static,
{
    fn key_bytes(&self, key: &str) -> Result<Vec<u8>, String> {
        serialize_key(&*self.keys, &parse_key(&self.name, key)?)
    }

    /// Sessions that overlap the range: end at or after `from`, start at
    /// or before `to` (Kafka Streams' `findSessions`).
    fn windows(&self, key: &str, range: TimeRange) -> StreamsResult<Vec<Value>> {
        let key = parse_key::<K>(&self.name, key).map_err(StreamsError::InvalidState)?;
        let view = self.streams.session_store::<K, V>(&self.name)?;
        let sessions = match range {
            TimeRange {
                from: None,
                to: None,
            } => view.fetch(&key)?,
            _ => {
                let (earliest_end, latest_start) = range.bounds();
                view.find_sessions(&key, earliest_end, latest_start)?
            }
        };
        Ok(sessions
            .iter()
            .map(|(session, value)| window_json(session.window.start, session.window.end, value))
            .collect())
    }
}

type Route = Arc<dyn Fn(&Request, &QueryServer) -> Option<Response> + Send + Sync>;
type MetricsSource = Arc<dyn Fn(&mut Registry) + Send + Sync>;

/// The query layer: routes, stores it can read, the streams client, and
/// the limits it serves and calls peers with.
#[derive(Clone)]
pub struct QueryServer {
    streams: Arc<KafkaStreams>,
    stores: BTreeMap<String, Arc<dyn QueryableStore>>,
    window_stores: BTreeMap<String, Arc<dyn WindowedQueryable>>,
    session_stores: BTreeMap<String, Arc<dyn WindowedQueryable>>,
    routes: Vec<Route>,
    metrics: Vec<MetricsSource>,
    limits: HttpLimits,
    /// Made on first use, from `limits`.
    peers: Arc<OnceLock<PeerClient>>,
    console: Console,
    topology: Option<Arc<TopologyView>>,
    /// Throughput and lag, sampled while the server runs.
    history: Arc<History>,
}

/// The topology in the three forms the layer serves, made once.
struct TopologyView {
    text: String,
    svg: String,
    json: Value,
}

impl std::fmt::Debug for QueryServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryServer")
            .field("stores", &self.stores.keys().collect::<Vec<_>>())
            .field(
                "window_stores",
                &self.window_stores.keys().collect::<Vec<_>>(),
            )
            .field(
                "session_stores",
                &self.session_stores.keys().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// What every instance answered to one question.
#[derive(Debug, Clone, Default)]
pub struct FanOut {
    /// Instances that answered 200, with their JSON answer.
    pub answers: Vec<(HostInfo, Value)>,
    /// Instances that did not, with why.
    pub missing: Vec<(HostInfo, String)>,
}

impl QueryServer {
    /// A layer over `streams` with no stores yet.
    pub fn new(streams: Arc<KafkaStreams>) -> QueryServer {
        QueryServer {
            streams,
            stores: BTreeMap::new(),
            window_stores: BTreeMap::new(),
            session_stores: BTreeMap::new(),
            routes: Vec::new(),
            metrics: Vec::new(),
            limits: HttpLimits::default(),
            peers: Arc::new(OnceLock::new()),
            console: Console::framework(),
            topology: None,
            history: Arc::default(),
        }
    }

    /// Serves the topology the application runs (its `describe()`) at
    /// `GET /topology` (text), `/topology.svg` (a diagram) and
    /// `/topology.json`, and in the console's topology panel.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use streams_core::dsl::KStream;
    /// use streams_core::{StreamsBuilder, StreamsConfig};
    /// use streams_http::{QueryServer, Request};
    /// use streams_kafka::KafkaStreams;
    ///
    /// let builder = StreamsBuilder::new();
    /// let orders: KStream<String, String> = builder.stream("orders");
    /// orders.to("audit");
    /// let topology = builder.build()?;
    /// let description = topology.describe();
    /// let config = StreamsConfig::new("audit").set("bootstrap.servers", "127.0.0.1:9092");
    /// let streams = Arc::new(KafkaStreams::new(topology, config)?);
    /// let server = QueryServer::new(streams).topology(&description);
    /// let text = server.handle(&Request::get("/topology"));
    /// assert_eq!(String::from_utf8(text.body).unwrap(), description.to_string());
    /// let drawing = server.handle(&Request::get("/topology.svg"));
    /// assert_eq!(drawing.content_type, "image/svg+xml");
    /// assert!(String::from_utf8(drawing.body).unwrap().contains("data-topic=\"orders\""));
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn topology(mut self, description: &TopologyDescription) -> QueryServer {
        self.topology = Some(Arc::new(TopologyView {
            text: description.to_string(),
            svg: topology_svg(description),
            json: topology_json(description),
        }));
        self
    }

    /// Lays out the console's page with `console`'s panels instead of
    /// [`Console::framework`]'s (instances, throughput and lag, topology).
    pub fn console(mut self, console: Console) -> QueryServer {
        self.console = console;
        self
    }

    /// Adds `panel` at the end of the console's page; the application
    /// serves its URL (see [`console`]).
    pub fn console_panel(mut self, panel: Panel) -> QueryServer {
        self.console = std::mem::take(&mut self.console).panel(panel);
        self
    }

    /// Serves and calls peers with `limits` instead of
    /// [`HttpLimits::default`].
    pub fn limits(mut self, limits: HttpLimits) -> QueryServer {
        self.limits = limits;
        self.peers = Arc::new(OnceLock::new());
        self
    }

    fn peers(&self) -> &PeerClient {
        self.peers.get_or_init(|| PeerClient::new(&self.limits))
    }

    /// Makes key-value store `name` queryable: keys are parsed from the URL
    /// with `FromStr` and serialized with `keys` (the store's key serde) to
    /// find their partition; keys and values are shown as JSON.
    pub fn key_value_store<K, V>(
        mut self,
        name: &str,
        keys: impl state_stores::Serde<K> + 'static,
    ) -> QueryServer
    where
        K: FromStr + Serialize + 'static,
        V: Serialize + 'static,
    {
        self.stores.insert(
            name.to_owned(),
            Arc::new(KeyValueQuery::<K, V> {
                streams: self.streams.clone(),
                name: name.to_owned(),
                keys: Box::new(keys),
                _values: std::marker::PhantomData,
            }),
        );
        self
    }

    /// Makes window store `name` queryable at `GET
    /// /state/windowed/{name}/{key}?from=&to=`: keys are parsed from the URL
    /// with `FromStr` and serialized with `keys` (the store's key serde) to
    /// find their partition; values are shown as JSON. For the stores of
    /// windowed aggregations (`windowed_by(TimeWindows | SlidingWindows)`).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use streams_core::dsl::{Consumed, Materialized};
    /// use streams_core::serde::StringSerde;
    /// use streams_core::window::TimeWindows;
    /// use streams_core::{StreamsBuilder, StreamsConfig};
    /// use streams_http::{QueryServer, Request};
    /// use streams_kafka::KafkaStreams;
    ///
    /// let builder = StreamsBuilder::new();
    /// builder
    ///     .stream_with(["clicks"], Consumed::with(StringSerde, StringSerde))
    ///     .group_by_key()
    ///     .windowed_by(TimeWindows::of_size_with_no_grace(Duration::from_secs(60))?)
    ///     .count_with(Materialized::named("clicks-per-minute"));
    /// let config = StreamsConfig::new("clicks")
    ///     .set("bootstrap.servers", "127.0.0.1:9092")
    ///     .set("application.server", "127.0.0.1:8080");
    /// let streams = Arc::new(KafkaStreams::new(builder.build()?, config)?);
    /// let server = QueryServer::new(streams)
    ///     .window_store::<String, i64>("clicks-per-minute", StringSerde);
    /// // Once started: `[{"start": 0, "end": 60000, "value": 2}, ...]`.
    /// let answer = server.handle(&Request::get("/state/windowed/clicks-per-minute/ann?from=noon"));
    /// assert_eq!(answer.status, 400);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn window_store<K, V>(
        mut self,
        name: &str,
        keys: impl state_stores::Serde<K> + 'static,
    ) -> QueryServer
    where
        K: FromStr + 'static,
        V: Serialize + 'static,
    {
        self.window_stores.insert(
            name.to_owned(),
            Arc::new(WindowQuery::<K, V> {
                streams: self.streams.clone(),
                name: name.to_owned(),
                keys: Box::new(keys),
                _values: std::marker::PhantomData,
            }),
        );
        self
    }

    /// Makes session store `name` queryable at `GET
    /// /state/session/{name}/{key}`, as [`QueryServer::window_store`] does
    /// window stores. For the stores of session aggregations
    /// (`windowed_by(SessionWindows)`).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use streams_core::dsl::{Consumed, Materialized};
    /// use streams_core::serde::StringSerde;
    /// use streams_core::window::SessionWindows;
    /// use streams_core::{StreamsBuilder, StreamsConfig};
    /// use streams_http::{QueryServer, Request};
    /// use streams_kafka::KafkaStreams;
    ///
    /// let builder = StreamsBuilder::new();
    /// builder
    ///     .stream_with(["clicks"], Consumed::with(StringSerde, StringSerde))
    ///     .group_by_key()
    ///     .windowed_by(SessionWindows::of_inactivity_gap_with_no_grace(Duration::from_secs(300))?)
    ///     .count_with(Materialized::named("visits"));
    /// let config = StreamsConfig::new("clicks")
    ///     .set("bootstrap.servers", "127.0.0.1:9092")
    ///     .set("application.server", "127.0.0.1:8080");
    /// let streams = Arc::new(KafkaStreams::new(builder.build()?, config)?);
    /// let server = QueryServer::new(streams).session_store::<String, i64>("visits", StringSerde);
    /// // Once started: `[{"start": 1000, "end": 95000, "value": 7}, ...]`;
    /// // before, no instance holds the key's partition: retry later.
    /// assert_eq!(server.handle(&Request::get("/state/session/visits/ann")).status, 503);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn session_store<K, V>(
        mut self,
        name: &str,
        keys: impl state_stores::Serde<K> + 'static,
    ) -> QueryServer
    where
        K: FromStr + 'static,
        V: Serialize + 'static,
    {
        self.session_stores.insert(
            name.to_owned(),
            Arc::new(SessionQuery::<K, V> {
                streams: self.streams.clone(),
                name: name.to_owned(),
                keys: Box::new(keys),
                _values: std::marker::PhantomData,
            }),
        );
        self
    }

    /// Adds a route tried before the built-in ones (but for `/health`
    /// and `/metrics`, which always answer at once): `handler` answers
    /// `Some` for requests it owns. It runs on a query worker.
    pub fn route(
        mut self,
        handler: impl Fn(&Request, &QueryServer) -> Option<Response> + Send + Sync + 'static,
    ) -> QueryServer {
        self.routes.push(Arc::new(handler));
        self
    }

    /// Adds the application's metrics to `GET /metrics`: at each scrape,
    /// `source` registers its families (after the runtime's) in the
    /// registry that is then encoded.
    pub fn metrics(
        mut self,
        source: impl Fn(&mut Registry) + Send + Sync + 'static,
    ) -> QueryServer {
        self.metrics.push(Arc::new(source));
        self
    }

    /// The streams client.
    pub fn streams(&self) -> &Arc<KafkaStreams> {
        &self.streams
    }

    /// Answers one request in process, through the same router the HTTP
    /// server uses (handlers run on the calling thread).
    pub fn handle(&self, request: &Request) -> Response {
        let router = router(Arc::new(self.clone()), Exec::Inline);
        let response = block_on(call(router, to_http(request)));
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/octet-stream")
            .to_owned();
        let body = block_on(response.into_body().collect())
            .map(|b| b.to_bytes().to_vec())
            .unwrap_or_default();
        Response {
            status,
            content_type,
            body,
        }
    }

    /// The application's routes, in order; the first `Some` wins.
    fn app_route(&self, request: &Request) -> Option<Response> {
        self.routes.iter().find_map(|route| route(request, self))
    }

    fn health(&self) -> Response {
        let state = self.streams.state();
        let status = if state == StreamsState::Running {
            200
        } else {
            503
        };
        let mut body = json!({ "state": format!("{state:?}") });
        // Why the client stopped: the first error, as `KafkaStreams::error`.
        if let Some(reason) = self.streams.error() {
            body["reason"] = json!(reason.to_string());
        }
        Response::json(status, &body)
    }

    fn prometheus(&self) -> Response {
        let mut registry = Registry::default();
        self.streams
            .metrics()
            .register(&mut registry, self.streams.application_id());
        for source in &self.metrics {
            source(&mut registry);
        }
        let mut text = String::new();
        // Writing to a `String` cannot fail.
        let _ = prometheus_text::encode(&mut text, &registry);
        Response::text(200, prometheus_text::CONTENT_TYPE, text)
    }

    /// `GET /state/instances`: every live instance.
    pub fn instances_json(&self) -> Value {
        Value::Array(
            self.streams
                .all_metadata()
                .iter()
                .map(metadata_json)
                .collect(),
        )
    }

    /// This instance as others reach it, if it has an `application.server`.
    fn me(&self) -> Option<String> {
        self.streams.application_server().map(ToString::to_string)
    }

    /// `GET /`: the console's page.
    fn console_page(&self) -> Response {
        self.console
            .page(self.streams.application_id(), self.me().as_deref())
    }

    /// `GET /console/panels`.
    fn console_panels(&self) -> Response {
        Response::json(
            200,
            &self
                .console
                .panels_json(self.streams.application_id(), self.me()),
        )
    }

    /// `GET /console/instances`: every live instance, this one marked.
    pub fn console_instances_json(&self) -> Value {
        let me = self.streams.application_server();
        let instances: Vec<Value> = self
            .streams
            .all_metadata()
            .iter()
            .map(|metadata| {
                let mut entry = metadata_json(metadata);
                entry["instance"] = json!(metadata.host_info.to_string());
                entry["answering"] = json!(Some(&metadata.host_info) == me);
                entry
            })
            .collect();
        let note = me
            .is_none()
            .then_some("this instance has no application.server, so it is not in the registry");
        json!({
            "answering": me.map(ToString::to_string),
            "state": format!("{:?}", self.streams.state()),
            "reason": self.streams.error().map(|e| e.to_string()),
            "instances": instances,
            "note": note,
        })
    }

    /// `GET /console/throughput`: every live instance's samples
    /// (`?local=true`, or forwarded: this one's).
    fn console_throughput(&self, request: &Request) -> Response {
        let me = self.me().unwrap_or_else(|| "this instance".into());
        if request.forwarded || request.param("local") == Some("true") {
            return Response::json(200, &self.history.json(&me));
        }
        let fan_out = self.fan_out("/console/throughput?local=true");
        let answers: Vec<Value> = if fan_out.answers.is_empty() && fan_out.missing.is_empty() {
            // Not in the registry (no `application.server`): this one only.
            vec![self.history.json(&me)]
        } else {
            fan_out.answers.into_iter().map(|(_, a)| a).collect()
        };
        Response::json(
            200,
            &console::merge_throughput(&answers, missing_json(&fan_out.missing)),
        )
    }

    /// What the throughput history samples: records processed by every
    /// stream thread, and consumer lag per partition.
    fn sample_source(&self) -> SampleSource {
        let streams = self.streams.clone();
        Arc::new(move || {
            let metrics = streams.metrics();
            Sample {
                records: metrics.threads.values().map(|t| t.records_processed).sum(),
                lag: metrics
                    .consumer_lag
                    .iter()
                    .map(|((topic, partition), lag)| (format!("{topic}-{partition}"), *lag))
                    .collect(),
            }
        })
    }

    /// `GET /topology`, `/topology.svg` and `/topology.json`.
    fn topology_route(&self, form: &str) -> Response {
        let Some(view) = &self.topology else {
            return Response::error(
                404,
                "no topology: the application did not give it to the query layer (QueryServer::topology)",
            );
        };
        match form {
            "svg" => Response::text(200, "image/svg+xml", view.svg.clone()),
            "json" => Response::json(200, &view.json),
            _ => Response::text(200, "text/plain; charset=utf-8", view.text.clone()),
        }
    }

    fn store(&self, name: &str) -> Result<&Arc<dyn QueryableStore>, Response> {
        self.stores
            .get(name)
            .ok_or_else(|| Response::error(404, format!("no queryable store `{name}`")))
    }

    /// Answers a lookup of `key` in store `name` at the instance that
    /// holds it: `None` when that is this one (or the request was
    /// forwarded here, so is answered here), else the owner's answer to
    /// `GET path`, or why there is none.
    fn forward_to_owner(
        &self,
        request: &Request,
        name: &str,
        key: &str,
        key_bytes: impl FnOnce() -> Result<Vec<u8>, String>,
        path: impl FnOnce() -> String,
    ) -> Option<Response> {
        if request.forwarded {
            return None;
        }
        let bytes = match key_bytes() {
            Ok(bytes) => bytes,
            Err(message) => return Some(Response::error(400, message)),
        };
        let Some(owner) = self.streams.query_metadata_for_raw_key(name, &bytes) else {
            return Some(Response::error(
                503,
                format!(
                    "no live instance holds the partition of `{key}` now (rebalancing?); retry"
                ),
            ));
        };
        if Some(&owner.active_host) == self.streams.application_server() {
            return None;
        }
        Some(match self.peers().get(&owner.active_host, &path(), true) {
            Ok(answer) => Response {
                status: answer.status,
                content_type: "application/json".into(),
                body: answer.body,
            },
            Err(error) => Response::error(
                502,
                format!(
                    "{} holds `{key}` but did not answer: {error}",
                    owner.active_host
                ),
            ),
        })
    }

    fn key_lookup(&self, request: &Request, name: &str, key: &str) -> Response {
        let store = match self.store(name) {
            Ok(store) => store,
            Err(response) => return response,
        };
        let path = || {
            format!(
                "/state/keyvalue/{}/{}",
                percent_encode(name),
                percent_encode(key)
            )
        };
        if let Some(answer) =
            self.forward_to_owner(request, name, key, || store.key_bytes(key), path)
        {
            return answer;
        }
        match store.get(key) {
            Ok(Some(value)) => Response::json(
                200,
                &json!({
                    "key": key,
                    "value": value,
                    "host": self.streams.application_server().map(ToString::to_string),
                }),
            ),
            Ok(None) => Response::error(404, format!("no value for `{key}` in store {name}")),
            Err(error) => store_error(&error),
        }
    }

    /// `GET /state/windowed/{store}/{key}` and `GET
    /// /state/session/{store}/{key}`: the key's windows (sessions) in
    /// `?from=` to `?to=`, answered by the instance that holds the key.
    fn windowed_lookup(
        &self,
        request: &Request,
        kind: WindowedKind,
        name: &str,
        key: &str,
    ) -> Response {
        let stores = match kind {
            WindowedKind::Window => &self.window_stores,
            WindowedKind::Session => &self.session_stores,
        };
        let Some(store) = stores.get(name) else {
            return self.no_such_store(kind, name);
        };
        let range = match TimeRange::of(request) {
            Ok(range) => range,
            Err(message) => return Response::error(400, message),
        };
        // The key must parse here too: a forwarded request reads it below.
        let bytes = match store.key_bytes(key) {
            Ok(bytes) => bytes,
            Err(message) => return Response::error(400, message),
        };
        let path = || {
            format!(
                "/state/{}/{}/{}{}",
                kind.segment(),
                percent_encode(name),
                percent_encode(key),
                range.query()
            )
        };
        if let Some(answer) = self.forward_to_owner(request, name, key, || Ok(bytes), path) {
            return answer;
        }
        match store.windows(key, range) {
            Ok(windows) => Response::json(200, &windows),
            Err(error) => store_error(&error),
        }
    }

    /// A 404 for a `kind` store the layer does not know, naming the route
    /// that reads `name` when it is registered as another kind.
    fn no_such_store(&self, kind: WindowedKind, name: &str) -> Response {
        let elsewhere = if self.stores.contains_key(name) {
            Some("keyvalue")
        } else if self.window_stores.contains_key(name) {
            Some(WindowedKind::Window.segment())
        } else if self.session_stores.contains_key(name) {
            Some(WindowedKind::Session.segment())
        } else {
            None
        };
        let mut message = format!("no queryable {} store `{name}`", kind.noun());
        if let Some(segment) = elsewhere {
            message.push_str(&format!("; it is read at /state/{segment}/{name}/..."));
        }
        Response::error(404, message)
    }

    /// `GET /state/keyvalue/{store}`: one page (`limit`, default
    /// [`DEFAULT_PAGE`]) of entries from key `from`, in the store's key
    /// order, merged over every instance, with `next`, the key to continue
    /// from (`null` at the end).
    fn scan(&self, request: &Request, name: &str) -> Response {
        let store = match self.store(name) {
            Ok(store) => store,
            Err(response) => return response,
        };
        let limit = match request.param("limit").map(str::parse::<usize>) {
            None => DEFAULT_PAGE,
            Some(Ok(limit)) if (1..=MAX_PAGE).contains(&limit) => limit,
            Some(_) => {
                return Response::error(400, format!("limit must be from 1 to {MAX_PAGE}"));
            }
        };
        let from = request.param("from");
        if request.forwarded || request.param("scope") == Some("local") {
            return match store.page(from, limit) {
                Ok((entries, next)) => Response::json(
                    200,
                    &json!({ "entries": entries_json(entries), "next": next }),
                ),
                Err(error) => store_error(&error),
            };
        }
        let mut path = format!(
            "/state/keyvalue/{}?scope=local&limit={limit}",
            percent_encode(name)
        );
        if let Some(from) = from {
            path.push_str("&from=");
            path.push_str(&percent_encode(from));
        }
        let fan_out = self.fan_out_to(&self.streams.metadata_for_store(name), &path);
        let mut entries: Vec<(Option<Vec<u8>>, Value)> = Vec::new();
        let mut instances = Vec::new();
        // The smallest key an instance stopped at: entries past it are
        // left to the next page, since that instance's are not read yet.
        let mut bound: Option<(Vec<u8>, Value)> = None;
        for (host, answer) in &fan_out.answers {
            instances.push(host.to_string());
            if let Some(list) = answer.get("entries").and_then(Value::as_array) {
                for entry in list {
                    entries.push((store.json_key_bytes(&entry["key"]), entry.clone()));
                }
            }
            if let Some(next) = answer.get("next").filter(|next| !next.is_null())
                && let Some(bytes) = store.json_key_bytes(next)
                && bound.as_ref().is_none_or(|(least, _)| bytes < *least)
            {
                bound = Some((bytes, next.clone()));
            }
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        if let Some((least, _)) = &bound {
            entries.retain(|(key, _)| key.as_ref().is_none_or(|key| key < least));
        }
        let next = if entries.len() > limit {
            let first_left = entries[limit].1["key"].clone();
            entries.truncate(limit);
            first_left
        } else {
            bound.map_or(Value::Null, |(_, key)| key)
        };
        let entries: Vec<Value> = entries.into_iter().map(|(_, entry)| entry).collect();
        Response::json(
            200,
            &json!({
                "entries": entries,
                "next": next,
                "instances": instances,
                "missing": missing_json(&fan_out.missing),
            }),
        )
    }

    /// Asks every live instance `GET path` (this one in process), in
    /// parallel; instances that fail or time out are listed, not dropped.
    pub fn fan_out(&self, path: &str) -> FanOut {
        self.fan_out_to(&self.streams.all_metadata(), path)
    }

    /// Asks each of `instances` (each once, however often it is listed)
    /// `GET path`: peers through the pooled client, all at once, and this
    /// instance in process.
    fn fan_out_to(&self, instances: &[StreamsMetadata], path: &str) -> FanOut {
        let me = self.streams.application_server();
        let mut seen = BTreeSet::new();
        let hosts: Vec<&HostInfo> = instances
            .iter()
            .map(|instance| &instance.host_info)
            .filter(|host| seen.insert(*host))
            .collect();
        let peers = self.peers();
        // Start every peer's request before answering the local part.
        let pending: Vec<_> = hosts
            .iter()
            .map(|host| {
                (Some(*host) != me).then(|| peers.start(host, path, true, peers.deadline()))
            })
            .collect();
        let mut fan_out = FanOut::default();
        for (host, pending) in hosts.into_iter().zip(pending) {
            let answer = match pending {
                None => {
                    let mut request = Request::get(path);
                    request.forwarded = true;
                    let response = self.handle(&request);
                    Ok((response.status, response.body))
                }
                Some(Ok(receiver)) => match receiver.recv() {
                    Ok(Ok(answer)) => Ok((answer.status, answer.body)),
                    Ok(Err(error)) => Err(error.to_string()),
                    Err(_) => Err("the peer runtime stopped".to_owned()),
                },
                Some(Err(error)) => Err(error.to_string()),
            };
            let result = answer.and_then(|answer| match answer {
                (200, body) => {
                    serde_json::from_slice(&body).map_err(|e| format!("unreadable answer: {e}"))
                }
                (status, body) => Err(format!(
                    "status {status}: {}",
                    String::from_utf8_lossy(&body)
                )),
            });
            match result {
                Ok(value) => fan_out.answers.push((host.clone(), value)),
                Err(error) => fan_out.missing.push((host.clone(), error)),
            }
        }
        fan_out
    }

    /// Serves this layer on `addr` in a thread of its own until
    /// [`RunningServer::stop`] or drop, with the limits of
    /// [`QueryServer::limits`]. A port in use is an error here.
    pub fn serve(mut self, addr: SocketAddr) -> std::io::Result<RunningServer> {
        if self.topology.is_none() {
            // Said once on the page, rather than a 404 every refresh.
            for panel in &mut self.console.panels {
                if panel.kind == console::PanelKind::Topology {
                    *panel = console::Panel::not_applicable(
                        &panel.id,
                        &panel.title,
                        "the application did not give its topology to the query layer \
                         (QueryServer::topology)",
                    );
                }
            }
        }
        let limits = self.limits.clone();
        let sampler = (self.history.clone(), self.sample_source());
        serve_router(addr, limits, Some(sampler), |exec| {
            router(Arc::new(self), exec)
        })
    }
}

/// An HTTP server for an application that has no streams client (the
/// model server's `stage` engine, say), on the same stack and with the
/// same limits as [`QueryServer`]: `handler` answers every GET on a query
/// worker (`None`: 404), other methods get 405, and bodies 413.
///
/// ```no_run
/// use streams_http::{AppServer, Response};
///
/// let mut running = AppServer::new(|request| match request.path.as_str() {
///     "/health" => Some(Response::json(200, &"up")),
///     _ => None,
/// })
/// .serve("127.0.0.1:5500".parse().unwrap())?;
/// running.stop();
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct AppServer {
    handler: AppHandler,
    limits: HttpLimits,
    console: Option<Arc<AppConsole>>,
}

type AppHandler = Arc<dyn Fn(&Request) -> Option<Response> + Send + Sync>;

/// An [`AppServer`]'s console: its page, and its throughput samples.
struct AppConsole {
    console: Console,
    history: Arc<History>,
}

impl AppConsole {
    /// The console's own routes: the page, its files, `/console/panels`,
    /// and `/console/throughput` when the console samples.
    fn route(&self, request: &Request) -> Option<Response> {
        const TITLE: &str = "application";
        match request.path.as_str() {
            "/" => Some(self.console.page(TITLE, None)),
            "/console/panels" => Some(Response::json(200, &self.console.panels_json(TITLE, None))),
            "/console/throughput" if self.console.throughput.is_some() => {
                Some(Response::json(200, &self.history.json("this instance")))
            }
            path => console::asset(path),
        }
    }
}

impl AppServer {
    /// A server whose routes are `handler`'s.
    pub fn new(handler: impl Fn(&Request) -> Option<Response> + Send + Sync + 'static) -> Self {
        AppServer {
            handler: Arc::new(handler),
            limits: HttpLimits::default(),
            console: None,
        }
    }

    /// Replaces the default limits.
    pub fn limits(mut self, limits: HttpLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Serves the web console at `GET /` with `console`'s panels (see
    /// [`console`]): the page, its files and `/console/panels` come from the
    /// layer, and `/console/throughput` too when `console` has a
    /// [`Console::throughput_source`]; every other panel's URL is the
    /// handler's to answer.
    ///
    /// ```
    /// use streams_http::console::{Console, Panel, not_applicable};
    /// use streams_http::{AppServer, get};
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use std::sync::Arc;
    /// use std::time::Duration;
    ///
    /// let processed = Arc::new(AtomicU64::new(0));
    /// let counter = processed.clone();
    /// let console = Console::new("pipeline")
    ///     .panel(Panel::throughput())
    ///     .panel(Panel::table("jobs", "Jobs", "/console/jobs"))
    ///     .throughput_source(move || streams_http::console::Sample {
    ///         records: counter.load(Ordering::Relaxed),
    ///         ..Default::default()
    ///     });
    /// let running = AppServer::new(|request| match request.path.as_str() {
    ///     "/console/jobs" => Some(not_applicable("no jobs in this build")),
    ///     _ => None,
    /// })
    /// .console(console)
    /// .serve("127.0.0.1:0".parse().unwrap())?;
    /// let host = streams_kafka::HostInfo {
    ///     host: "127.0.0.1".into(),
    ///     port: running.local_addr().port(),
    /// };
    /// let page = get(&host, "/", Duration::from_secs(5), false)?;
    /// assert!(String::from_utf8(page.body).unwrap().contains("id=\"panel-jobs\""));
    /// let samples = get(&host, "/console/throughput", Duration::from_secs(5), false)?;
    /// assert_eq!(samples.status, 200);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn console(mut self, console: Console) -> Self {
        self.console = Some(Arc::new(AppConsole {
            console,
            history: Arc::default(),
        }));
        self
    }

    /// Serves on `addr` in a thread of its own until [`RunningServer::stop`]
    /// or drop. A port in use is an error here.
    pub fn serve(self, addr: SocketAddr) -> std::io::Result<RunningServer> {
        let handler = self.handler;
        let console = self.console;
        let sampler = console.as_ref().and_then(|c| {
            let source = c.console.throughput.clone()?;
            Some((c.history.clone(), source))
        });
        serve_router(addr, self.limits, sampler, move |exec| {
            Router::new()
                .fallback(app_handler)
                .with_state((handler, console, exec))
        })
    }
}

async fn app_handler(
    State((handler, console, exec)): State<(AppHandler, Option<Arc<AppConsole>>, Exec)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> HttpResponse {
    if method != Method::GET && method != Method::HEAD {
        return method_not_allowed(method).await;
    }
    let request = request_of(&method, &uri, &headers);
    // The console's own routes are cheap: answered on the I/O thread.
    if let Some(answer) = console.as_ref().and_then(|c| c.route(&request)) {
        return into_http(answer);
    }
    let path = uri.path().to_owned();
    let answer = exec.query(move || handler(&request)).await;
    into_http(match answer {
        Ok(Some(response)) | Err(response) => response,
        Ok(None) => Response::error(404, format!("no route for {path}")),
    })
}

/// Serves the router `make_router` builds on `addr`, with `limits`; with
/// a `sampler`, samples its source into its history every second.
fn serve_router(
    addr: SocketAddr,
    limits: HttpLimits,
    sampler: Option<(Arc<History>, SampleSource)>,
    make_router: impl FnOnce(Exec) -> Router,
) -> std::io::Result<RunningServer> {
    let limits = Arc::new(limits);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        // Query workers, and spare threads for `/metrics`.
        .max_blocking_threads(limits.query_workers.max(1) + SPARE_THREADS)
        .build()?;
    let listener = {
        let _entered = runtime.enter();
        listen(addr, limits.accept_backlog)
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?
    };
    let local_addr = listener.local_addr()?;
    let workers = Arc::new(Semaphore::new(limits.query_workers.max(1)));
    let exec = Exec::Workers(workers, limits.query_queue_timeout);
    let router = make_router(exec)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            limits.request_timeout,
        ))
        .layer(middleware::from_fn(refuse_bodies));
    if let Some((history, source)) = sampler {
        // On the server's own thread: it ends with the server.
        runtime.spawn(async move {
            let every = Duration::from_millis(console::SAMPLE_INTERVAL_MS as u64);
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                history.push(console::now_ms(), source());
            }
        });
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let thread = std::thread::Builder::new()
        .name(format!("http-{}", local_addr.port()))
        .spawn(move || {
            runtime.block_on(server::accept_loop(listener, router, limits, stopped));
            // Handlers still running on workers are not waited for long.
            runtime.shutdown_timeout(Duration::from_secs(1));
        })?;
    Ok(RunningServer {
        local_addr,
        stop,
        thread: Some(thread),
    })
}

/// Blocking threads beyond the query workers: `/metrics` runs on them.
const SPARE_THREADS: usize = 4;

fn listen(addr: SocketAddr, backlog: u32) -> std::io::Result<tokio::net::TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Where handlers run.
#[derive(Clone)]
enum Exec {
    /// On the calling thread ([`QueryServer::handle`]).
    Inline,
    /// Queries on a blocking thread holding one of the worker permits,
    /// waiting at most the given time for one.
    Workers(Arc<Semaphore>, Duration),
}

impl Exec {
    /// Runs query work `f`: a 503 when no worker frees up in time, a 500
    /// when `f` panics.
    async fn query<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Response> {
        match self {
            Exec::Inline => std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
                .map_err(|_| Response::error(500, "the handler failed")),
            Exec::Workers(workers, wait) => {
                let permit = tokio::time::timeout(*wait, workers.clone().acquire_owned()).await;
                let Ok(Ok(permit)) = permit else {
                    return Err(Response::error(503, "every query worker is busy; retry"));
                };
                // The permit goes with the work: a request that times out
                // does not free its worker before the work ends (which is
                // why this is not tower's `ConcurrencyLimit`, whose permit
                // is released when the request's future is dropped).
                tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    f()
                })
                .await
                .map_err(|_| Response::error(500, "the handler failed"))
            }
        }
    }

    /// Runs `f` without waiting for a query worker.
    async fn spare(&self, f: impl FnOnce() -> Response + Send + 'static) -> Response {
        match self {
            Exec::Inline => std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
                .unwrap_or_else(|_| Response::error(500, "the handler failed")),
            Exec::Workers(..) => tokio::task::spawn_blocking(f)
                .await
                .unwrap_or_else(|_| Response::error(500, "the handler failed")),
        }
    }
}

#[derive(Clone)]
struct Ctx {
    server: Arc<QueryServer>,
    exec: Exec,
}

/// The layer's routes; application routes go first, from a middleware.
fn router(server: Arc<QueryServer>, exec: Exec) -> Router {
    let ctx = Ctx { server, exec };
    Router::new()
        .route("/health", get_route(health))
        .route("/metrics", get_route(metrics))
        .route("/", get_route(console_page))
        .route("/console/panels", get_route(console_panels))
        .route("/console/instances", get_route(console_instances))
        .route("/console/throughput", get_route(console_throughput))
        .route("/console/{file}", get_route(console_asset))
        .route("/topology", topology("text"))
        .route("/topology.svg", topology("svg"))
        .route("/topology.json", topology("json"))
        .route("/state/instances", get_route(instances))
        .route("/state/keyvalue/{store}", get_route(scan))
        .route("/state/keyvalue/{store}/{key}", get_route(key_lookup))
        .route("/state/windowed/{store}/{key}", get_route(window_lookup))
        .route("/state/session/{store}/{key}", get_route(session_lookup))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            ctx.clone(),
            app_routes_first,
        ))
        .with_state(ctx)
}

type HttpResponse = axum::response::Response;

async fn health(State(ctx): State<Ctx>) -> HttpResponse {
    // Cheap: answered on the I/O thread, never waiting for a worker.
    into_http(ctx.server.health())
}

async fn metrics(State(ctx): State<Ctx>) -> HttpResponse {
    let server = ctx.server.clone();
    into_http(ctx.exec.spare(move || server.prometheus()).await)
}

// The console's page, files, panel list and topology are made in memory:
// answered on the I/O thread. Instances and throughput ask other
// instances: on a query worker.
async fn console_page(State(ctx): State<Ctx>) -> HttpResponse {
    into_http(ctx.server.console_page())
}

async fn console_panels(State(ctx): State<Ctx>) -> HttpResponse {
    into_http(ctx.server.console_panels())
}

async fn console_asset(uri: Uri) -> HttpResponse {
    into_http(
        console::asset(uri.path())
            .unwrap_or_else(|| Response::error(404, format!("no route for {}", uri.path()))),
    )
}

async fn console_instances(asked: Asked) -> HttpResponse {
    asked
        .query(|server, _| Response::json(200, &server.console_instances_json()))
        .await
}

async fn console_throughput(asked: Asked) -> HttpResponse {
    asked
        .query(|server, request| server.console_throughput(request))
        .await
}

/// `/topology`, `/topology.svg` or `/topology.json`: the topology in `form`.
fn topology(form: &'static str) -> axum::routing::MethodRouter<Ctx> {
    get_route(
        move |State(ctx): State<Ctx>| async move { into_http(ctx.server.topology_route(form)) },
    )
}

async fn instances(asked: Asked) -> HttpResponse {
    asked
        .query(|server, _| Response::json(200, &server.instances_json()))
        .await
}

async fn scan(asked: Asked, Path(store): Path<String>) -> HttpResponse {
    asked
        .query(move |server, request| server.scan(request, &store))
        .await
}

async fn key_lookup(asked: Asked, Path((store, key)): Path<(String, String)>) -> HttpResponse {
    asked
        .query(move |server, request| server.key_lookup(request, &store, &key))
        .await
}

async fn window_lookup(asked: Asked, Path((store, key)): Path<(String, String)>) -> HttpResponse {
    asked
        .query(move |server, request| {
            server.windowed_lookup(request, WindowedKind::Window, &store, &key)
        })
        .await
}

async fn session_lookup(asked: Asked, Path((store, key)): Path<(String, String)>) -> HttpResponse {
    asked
        .query(move |server, request| {
            server.windowed_lookup(request, WindowedKind::Session, &store, &key)
        })
        .await
}

/// What a route that queries takes: its server, and the request as the
/// handlers see it.
struct Asked {
    ctx: Ctx,
    request: Request,
}

impl axum::extract::FromRequestParts<Ctx> for Asked {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        ctx: &Ctx,
    ) -> Result<Self, Self::Rejection> {
        Ok(Asked {
            ctx: ctx.clone(),
            request: request_of(&parts.method, &parts.uri, &parts.headers),
        })
    }
}

impl Asked {
    /// Answers with `f` on a query worker: it may read stores or ask other
    /// instances.
    async fn query(
        self,
        f: impl FnOnce(&QueryServer, &Request) -> Response + Send + 'static,
    ) -> HttpResponse {
        let Asked { ctx, request } = self;
        let server = ctx.server.clone();
        query(&ctx, move || f(&server, &request)).await
    }
}

async fn query(ctx: &Ctx, f: impl FnOnce() -> Response + Send + 'static) -> HttpResponse {
    into_http(ctx.exec.query(f).await.unwrap_or_else(|error| error))
}

async fn not_found(method: Method, uri: Uri) -> HttpResponse {
    // Every route is a GET: any other method is not supported anywhere.
    if method != Method::GET && method != Method::HEAD {
        return method_not_allowed(method).await;
    }
    into_http(Response::error(404, format!("no route for {}", uri.path())))
}

async fn method_not_allowed(method: Method) -> HttpResponse {
    into_http(Response::error(405, format!("{method} is not supported")))
}

/// Tries the application's routes on a query worker before the layer's
/// own (but `/health` and `/metrics` go straight to the layer).
async fn app_routes_first(
    State(ctx): State<Ctx>,
    request: axum::extract::Request,
    next: Next,
) -> HttpResponse {
    let path = request.uri().path();
    if ctx.server.routes.is_empty() || path == "/health" || path == "/metrics" {
        return next.run(request).await;
    }
    let asked = request_of(request.method(), request.uri(), request.headers());
    let server = ctx.server.clone();
    match ctx.exec.query(move || server.app_route(&asked)).await {
        Ok(Some(response)) | Err(response) => into_http(response),
        Ok(None) => next.run(request).await,
    }
}

/// No route takes a body: one is refused before any of it is read, and
/// the connection is closed so that hyper need not read it either.
/// (tower-http's `RequestBodyLimitLayer` refuses a declared length at
/// once, but a chunked body only once a handler reads it, and none does.)
async fn refuse_bodies(request: axum::extract::Request, next: Next) -> HttpResponse {
    if request.body().is_end_stream() {
        return next.run(request).await;
    }
    let mut response = into_http(Response::error(413, "no route takes a request body"));
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The handlers' view of an HTTP request.
fn request_of(method: &Method, uri: &Uri, headers: &HeaderMap) -> Request {
    Request {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: parse_query(uri.query().unwrap_or("")),
        forwarded: headers.contains_key(FORWARDED_HEADER),
    }
}

/// Characters that may not appear raw in a URI's path.
const PATH_ESCAPES: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'^')
    .add(b'|')
    .add(b'\\');

/// An in-process request as an HTTP one, for the router.
fn to_http(request: &Request) -> axum::http::Request<AxumBody> {
    let mut uri = utf8_percent_encode(&request.path, PATH_ESCAPES).to_string();
    if !request.query.is_empty() {
        uri.push('?');
        uri.push_str(
            &form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&request.query)
                .finish(),
        );
    }
    let method = Method::from_bytes(request.method.as_bytes()).unwrap_or(Method::GET);
    let mut http = axum::http::Request::builder().method(method).uri(&uri);
    if request.forwarded {
        http = http.header(FORWARDED_HEADER, "1");
    }
    http.body(AxumBody::empty()).unwrap_or_else(|_| {
        // A path that is no URI even escaped: let the fallback say so.
        let mut fallback = axum::http::Request::new(AxumBody::empty());
        *fallback.uri_mut() = Uri::from_static("/invalid-path");
        fallback
    })
}

fn into_http(response: Response) -> HttpResponse {
    let mut http = HttpResponse::new(AxumBody::from(response.body));
    *http.status_mut() =
        StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(value) = HeaderValue::from_str(&response.content_type) {
        http.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    http
}

async fn call(mut router: Router, request: axum::http::Request<AxumBody>) -> HttpResponse {
    match tower::Service::call(&mut router, request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// Runs `future` on this thread. In process, handlers run inline, so the
/// router's futures are ready at once; parking covers any that are not.
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut context = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        match future.as_mut().poll(&mut context) {
            Poll::Ready(output) => return output,
            Poll::Pending => std::thread::park(),
        }
    }
}

/// A running HTTP server; stops on drop.
#[derive(Debug)]
pub struct RunningServer {
    local_addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RunningServer {
    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting and returns once the server thread ends (open
    /// connections are closed with it).
    pub fn stop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn store_error(error: &StreamsError) -> Response {
    let retriable =
        error.is_retriable() || matches!(error, StreamsError::Store(StoreError::Closed { .. }));
    if retriable {
        Response::error(503, format!("{error}; retry"))
    } else if matches!(error, StreamsError::InvalidState(_)) {
        Response::error(400, error)
    } else {
        Response::error(500, error)
    }
}

fn metadata_json(metadata: &StreamsMetadata) -> Value {
    json!({
        "host": metadata.host_info.host,
        "port": metadata.host_info.port,
        "storeNames": metadata.state_store_names,
        "partitions": metadata
            .topic_partitions
            .iter()
            .map(|(topic, partition)| json!({ "topic": topic, "partition": partition }))
            .collect::<Vec<_>>(),
    })
}

fn entries_json(entries: Vec<(Value, Value)>) -> Value {
    Value::Array(
        entries
            .into_iter()
            .map(|(key, value)| json!({ "key": key, "value": value }))
            .collect(),
    )
}

/// `[{"instance": "host:port", "error": "..."}]`.
pub fn missing_json(missing: &[(HostInfo, String)]) -> Value {
    Value::Array(
        missing
            .iter()
            .map(|(host, error)| json!({ "instance": host.to_string(), "error": error }))
            .collect(),
    )
}

fn parse_query(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

/// Decodes `%XX` escapes; a `%` not followed by two hex digits stays.
pub fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// Escapes everything but unreserved characters, for a path segment.
pub fn percent_encode(text: &str) -> String {
    const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    utf8_percent_encode(text, UNRESERVED).to_string()
}

// The unit tests set up as the integration tests do, with their helpers,
// which name this crate as those tests see it.
#[cfg(test)]
extern crate self as streams_http;
#[cfg(test)]
#[path = "../tests/common/mod.rs"]
mod test_common;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_coding_round_trips_and_tolerates_junk() {
        for text in ["plain", "a b/c?d=e&f", "naïve", "100%"] {
            assert_eq!(percent_decode(&percent_encode(text)), text);
        }
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%41%42"), "AB");
    }

    fn unstarted() -> QueryServer {
        crate::test_common::unstarted("http-unit")
    }

    #[test]
    fn every_request_gets_a_clear_answer_before_start() {
        let server = unstarted();
        let status = |path: &str| server.handle(&Request::get(path)).status;
        assert_eq!(status("/health"), 503, "not running yet");
        assert_eq!(status("/state/instances"), 200);
        assert_eq!(status("/nowhere"), 404);
        assert_eq!(status("/state/keyvalue/unknown/k"), 404);
        // Before start no instance holds any partition: retry later.
        assert_eq!(status("/state/keyvalue/counts/k"), 503);
        let mut local = Request::get("/state/keyvalue/counts/k");
        local.forwarded = true;
        assert_eq!(server.handle(&local).status, 503, "store not queryable yet");
        let mut post = Request::get("/health");
        post.method = "POST".into();
        assert_eq!(server.handle(&post).status, 405);
        let metrics = server.handle(&Request::get("/metrics"));
        assert_eq!(metrics.status, 200);
        assert!(metrics.content_type.starts_with("text/plain"));
    }

    #[test]
    fn app_routes_come_first_and_a_panicking_handler_is_a_500() {
        let server = unstarted()
            .route(|request, _| (request.path == "/hello").then(|| Response::json(200, &"hi")))
            .route(|request, _| {
                if request.path == "/boom" {
                    panic!("handler bug");
                }
                None
            });
        assert_eq!(
            server.handle(&Request::get("/hello")).body_json(),
            Some(json!("hi"))
        );
        let (mut running, host) = crate::test_common::serve(server);
        let answer = get(&host, "/boom", Duration::from_secs(5), false).unwrap();
        assert_eq!(answer.status, 500);
        // The server is still there.
        let answer = get(&host, "/hello", Duration::from_secs(5), false).unwrap();
        assert_eq!(answer.status, 200);
        running.stop();
        assert!(get(&host, "/hello", Duration::from_secs(1), false).is_err());
    }

    #[test]
    fn a_port_in_use_is_a_clear_error() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let error = unstarted().serve(addr).unwrap_err();
        assert!(
            error
                .to_string()
                .contains(&format!("cannot listen on {addr}")),
            "{error}"
        );
    }

    #[test]
    fn time_ranges_parse_and_travel_with_forwarded_requests() {
        let range = |path: &str| TimeRange::of(&Request::get(path));
        let whole = range("/x").unwrap();
        assert_eq!(whole.bounds(), (i64::MIN, i64::MAX));
        assert_eq!(whole.query(), "");
        for path in ["/x?from=-5", "/x?to=7", "/x?from=3&to=3", "/x?to=9&from=1"] {
            let parsed = range(path).unwrap();
            // What a forwarded request carries reads back the same.
            assert_eq!(
                range(&format!("/x{}", parsed.query())),
                Ok(parsed),
                "{path}"
            );
        }
        assert_eq!(range("/x?to=9&from=1").unwrap().bounds(), (1, 9));
        assert_eq!(range("/x?from=-5").unwrap().bounds(), (-5, i64::MAX));
        assert!(range("/x?from=1&to=0").unwrap_err().contains("after"));
        assert!(range("/x?to=1e3").unwrap_err().contains("`1e3`"));
    }

    #[test]
    fn requests_split_paths_and_queries() {
        let request = Request::get("/state/keyvalue/s/a%20b?scope=local&x");
        assert_eq!(request.segments(), ["state", "keyvalue", "s", "a b"]);
        assert_eq!(request.param("scope"), Some("local"));
        assert_eq!(request.param("x"), Some(""));
        assert_eq!(request.param("y"), None);
    }

    /// A peer that reads the request and answers with `answer`, sent a
    /// byte every `pause`; counts its connections.
    fn hostile_peer(
        answer: &'static [u8],
        pause: Duration,
    ) -> (HostInfo, Arc<std::sync::atomic::AtomicUsize>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let host = HostInfo {
            host: "127.0.0.1".into(),
            port: listener.local_addr().unwrap().port(),
        };
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = connections.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                std::thread::spawn(move || {
                    let mut buf = [0u8; 1024];
                    let _ = stream.read(&mut buf);
                    if pause.is_zero() {
                        let _ = stream.write_all(answer);
                    } else {
                        for byte in answer {
                            if stream.write_all(&[*byte]).is_err() {
                                return;
                            }
                            std::thread::sleep(pause);
                        }
                    }
                    // Hold the connection open, as a stuck peer would.
                    std::thread::sleep(Duration::from_secs(30));
                });
            }
        });
        (host, connections)
    }

    fn metadata(host: &HostInfo) -> StreamsMetadata {
        StreamsMetadata {
            host_info: host.clone(),
            state_store_names: BTreeSet::from(["counts".to_owned()]),
            topic_partitions: BTreeSet::new(),
        }
    }

    #[test]
    fn hostile_peers_are_missing_within_the_deadline_and_asked_once() {
        let deadline = Duration::from_secs(2);
        let server = unstarted().limits(HttpLimits {
            peer_deadline: deadline,
            ..HttpLimits::default()
        });
        let (huge, huge_connections) = hostile_peer(
            b"HTTP/1.1 200 OK\r\nContent-Length: 100000000000\r\n\r\n{",
            Duration::ZERO,
        );
        let (slow, slow_connections) = hostile_peer(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
            Duration::from_secs(4),
        );
        let bad = HostInfo {
            host: "evil host".into(),
            port: 80,
        };
        // Listed twice, asked once.
        let instances = [
            metadata(&huge),
            metadata(&slow),
            metadata(&huge),
            metadata(&bad),
            metadata(&slow),
        ];
        let started = std::time::Instant::now();
        let fan_out = server.fan_out_to(&instances, "/state/keyvalue/counts?scope=local");
        let took = started.elapsed();
        assert!(fan_out.answers.is_empty(), "{:?}", fan_out.answers);
        let missing: Vec<&HostInfo> = fan_out.missing.iter().map(|(h, _)| h).collect();
        assert_eq!(missing, [&huge, &slow, &bad], "{:?}", fan_out.missing);
        assert!(
            fan_out.missing[0].1.contains("cap"),
            "{:?}",
            fan_out.missing[0]
        );
        assert!(
            fan_out.missing[1].1.contains("within"),
            "{:?}",
            fan_out.missing[1]
        );
        assert!(
            fan_out.missing[2].1.contains("not calling"),
            "{:?}",
            fan_out.missing[2]
        );
        assert!(took < deadline + Duration::from_secs(3), "took {took:?}");
        use std::sync::atomic::Ordering::Relaxed;
        assert_eq!(huge_connections.load(Relaxed), 1);
        assert_eq!(slow_connections.load(Relaxed), 1);
        // The scan route reports them in `missing` the same way.
        let json = missing_json(&fan_out.missing);
        assert_eq!(json.as_array().map(Vec::len), Some(3));
    }

    #[test]
    fn peer_connections_are_reused() {
        use std::io::{Read, Write};
        // A peer that answers every request of a kept-alive connection.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let host = HostInfo {
            host: "127.0.0.1".into(),
            port: listener.local_addr().unwrap().port(),
        };
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = connections.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                std::thread::spawn(move || {
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 1024];
                    while let Ok(n @ 1..) = stream.read(&mut buf) {
                        seen.extend_from_slice(&buf[..n]);
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            seen.drain(..end + 4);
                            let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
                            if stream.write_all(answer).is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        let peers = PeerClient::new(&HttpLimits::default());
        for _ in 0..5 {
            let answer = peers.get(&host, "/state/instances", true).unwrap();
            assert_eq!((answer.status, answer.body), (200, b"{}".to_vec()));
        }
        assert_eq!(connections.load(std::sync::atomic::Ordering::Relaxed), 1);
    }
}
