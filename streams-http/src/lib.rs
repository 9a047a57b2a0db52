//! An HTTP layer for interactive queries that any streams application can
//! mount, and that answers on whichever instance receives the request.
//!
//! | route | answer |
//! |---|---|
//! | `GET /state/instances` | every live instance: `host`, `port`, `storeNames`, `partitions` |
//! | `GET /state/keyvalue/{store}/{key}` | the key's value, from this instance or fetched from the one that holds it |
//! | `GET /state/keyvalue/{store}` | every entry of every instance, merged, with the instances that did not answer |
//! | `GET /metrics` | the runtime's metrics (and the application's) in Prometheus text |
//! | `GET /health` | 200 while running, 503 otherwise, with the state |
//!
//! Applications add their own routes in front with [`QueryServer::route`];
//! [`QueryServer::fan_out`] asks every instance the same question, for
//! routes that merge answers. Answers are JSON; errors are
//! `{"error": "..."}` with a fitting status; a handler that panics is a
//! 500, never a dead server.
//!
//! ```no_run
//! use std::sync::Arc;
//! use streams_core::runtime::KafkaStreams;
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

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde_json::{Value, json};
use streams_core::runtime::{HostInfo, KafkaStreams, State, StreamsMetadata};
use streams_core::state::StoreError;
use streams_core::{Result as StreamsResult, StreamsError};

pub use client::{HttpAnswer, get};

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
    /// Every local entry, as JSON pairs.
    fn all(&self) -> StreamsResult<Vec<(Value, Value)>>;
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
        key.parse::<K>()
            .map_err(|_| format!("`{key}` is not a key of store {}", self.name))
    }
}

impl<K, V> QueryableStore for KeyValueQuery<K, V>
where
    K: FromStr + Serialize + 'static,
    V: Serialize + 'static,
{
    fn key_bytes(&self, key: &str) -> Result<Vec<u8>, String> {
        let key = self.parse(key)?;
        let mut out = Vec::new();
        self.keys
            .serialize_into(&key, &mut out)
            .map_err(|e| e.to_string())?;
        Ok(out)
    }

    fn get(&self, key: &str) -> StreamsResult<Option<Value>> {
        let key = self.parse(key).map_err(StreamsError::InvalidState)?;
        let view = self.streams.store::<K, V>(&self.name)?;
        Ok(view.get(&key)?.map(|v| to_json(&v)))
    }

    fn all(&self) -> StreamsResult<Vec<(Value, Value)>> {
        let view = self.streams.store::<K, V>(&self.name)?;
        Ok(view
            .all()?
            .iter()
            .map(|(k, v)| (to_json(k), to_json(v)))
            .collect())
    }
}

fn to_json(value: &impl Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

type Route = Arc<dyn Fn(&Request, &QueryServer) -> Option<Response> + Send + Sync>;
type MetricsSource = Arc<dyn Fn() -> String + Send + Sync>;

/// The query layer: routes, stores it can read, and the streams client.
#[derive(Clone)]
pub struct QueryServer {
    streams: Arc<KafkaStreams>,
    stores: BTreeMap<String, Arc<dyn QueryableStore>>,
    routes: Vec<Route>,
    metrics: Vec<MetricsSource>,
}

impl std::fmt::Debug for QueryServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryServer")
            .field("stores", &self.stores.keys().collect::<Vec<_>>())
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
            routes: Vec::new(),
            metrics: Vec::new(),
        }
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

    /// Adds a route tried before the built-in ones: `handler` answers
    /// `Some` for requests it owns.
    pub fn route(
        mut self,
        handler: impl Fn(&Request, &QueryServer) -> Option<Response> + Send + Sync + 'static,
    ) -> QueryServer {
        self.routes.push(Arc::new(handler));
        self
    }

    /// Adds Prometheus text appended to `GET /metrics`.
    pub fn metrics(mut self, source: impl Fn() -> String + Send + Sync + 'static) -> QueryServer {
        self.metrics.push(Arc::new(source));
        self
    }

    /// The streams client.
    pub fn streams(&self) -> &Arc<KafkaStreams> {
        &self.streams
    }

    /// Answers one request (what the HTTP server calls for each request).
    pub fn handle(&self, request: &Request) -> Response {
        for route in &self.routes {
            if let Some(response) = route(request, self) {
                return response;
            }
        }
        if request.method != "GET" {
            return Response::error(405, format!("{} is not supported", request.method));
        }
        let segments = request.segments();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        match segments.as_slice() {
            ["health"] => self.health(),
            ["metrics"] => self.prometheus(),
            ["state", "instances"] => Response::json(200, &self.instances_json()),
            ["state", "keyvalue", store, key] => self.key_lookup(request, store, key),
            ["state", "keyvalue", store] => self.scan(request, store),
            _ => Response::error(404, format!("no route for {}", request.path)),
        }
    }

    fn health(&self) -> Response {
        let state = self.streams.state();
        let status = if state == State::Running { 200 } else { 503 };
        Response::json(status, &json!({ "state": format!("{state:?}") }))
    }

    fn prometheus(&self) -> Response {
        let mut text = self
            .streams
            .metrics()
            .to_prometheus(self.streams.application_id());
        for source in &self.metrics {
            text.push_str(&source());
        }
        Response::text(200, "text/plain; version=0.0.4", text)
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

    fn store(&self, name: &str) -> Result<&Arc<dyn QueryableStore>, Response> {
        self.stores
            .get(name)
            .ok_or_else(|| Response::error(404, format!("no queryable store `{name}`")))
    }

    fn key_lookup(&self, request: &Request, name: &str, key: &str) -> Response {
        let store = match self.store(name) {
            Ok(store) => store,
            Err(response) => return response,
        };
        let me = self.streams.application_server();
        if !request.forwarded {
            let bytes = match store.key_bytes(key) {
                Ok(bytes) => bytes,
                Err(message) => return Response::error(400, message),
            };
            let Some(owner) = self.streams.query_metadata_for_raw_key(name, &bytes) else {
                return Response::error(
                    503,
                    format!(
                        "no live instance holds the partition of `{key}` now (rebalancing?); retry"
                    ),
                );
            };
            if Some(&owner.active_host) != me {
                let path = format!(
                    "/state/keyvalue/{}/{}",
                    percent_encode(name),
                    percent_encode(key)
                );
                return match get(&owner.active_host, &path, PEER_TIMEOUT, true) {
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
                };
            }
        }
        match store.get(key) {
            Ok(Some(value)) => Response::json(
                200,
                &json!({
                    "key": key,
                    "value": value,
                    "host": me.map(ToString::to_string),
                }),
            ),
            Ok(None) => Response::error(404, format!("no value for `{key}` in store {name}")),
            Err(error) => store_error(&error),
        }
    }

    fn scan(&self, request: &Request, name: &str) -> Response {
        let store = match self.store(name) {
            Ok(store) => store,
            Err(response) => return response,
        };
        if request.forwarded || request.param("scope") == Some("local") {
            return match store.all() {
                Ok(entries) => Response::json(200, &json!({ "entries": entries_json(entries) })),
                Err(error) => store_error(&error),
            };
        }
        let path = format!("/state/keyvalue/{}?scope=local", percent_encode(name));
        let fan_out = self.fan_out_to(&self.streams.metadata_for_store(name), &path);
        let mut entries = Vec::new();
        let mut instances = Vec::new();
        for (host, answer) in &fan_out.answers {
            instances.push(host.to_string());
            if let Some(list) = answer.get("entries").and_then(Value::as_array) {
                entries.extend(list.iter().cloned());
            }
        }
        Response::json(
            200,
            &json!({
                "entries": entries,
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

    fn fan_out_to(&self, instances: &[StreamsMetadata], path: &str) -> FanOut {
        let me = self.streams.application_server();
        let results: Vec<(HostInfo, Result<Value, String>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = instances
                .iter()
                .map(|instance| {
                    let host = instance.host_info.clone();
                    let local = Some(&host) == me;
                    scope.spawn(move || {
                        let answer = if local {
                            let mut request = Request::get(path);
                            request.forwarded = true;
                            let response = self.handle(&request);
                            (response.status, response.body)
                        } else {
                            match get(&host, path, PEER_TIMEOUT, true) {
                                Ok(answer) => (answer.status, answer.body),
                                Err(error) => return (host, Err(error.to_string())),
                            }
                        };
                        let result = match answer {
                            (200, body) => serde_json::from_slice(&body)
                                .map_err(|e| format!("unreadable answer: {e}")),
                            (status, body) => Err(format!(
                                "status {status}: {}",
                                String::from_utf8_lossy(&body)
                            )),
                        };
                        (host, result)
                    })
                })
                .collect();
            handles.into_iter().filter_map(|h| h.join().ok()).collect()
        });
        let mut fan_out = FanOut::default();
        for (host, result) in results {
            match result {
                Ok(value) => fan_out.answers.push((host, value)),
                Err(error) => fan_out.missing.push((host, error)),
            }
        }
        fan_out
    }

    /// Serves this layer on `addr` in a thread of its own until
    /// [`RunningServer::stop`] or drop. A port in use is an error here.
    pub fn serve(self, addr: SocketAddr) -> std::io::Result<RunningServer> {
        let listener = std::net::TcpListener::bind(addr)
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
        listener.set_nonblocking(true)?;
        let local_addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .max_blocking_threads(32)
            .build()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let server = Arc::new(self);
        let thread = std::thread::Builder::new()
            .name(format!("http-{}", local_addr.port()))
            .spawn(move || runtime.block_on(accept_loop(listener, server, stopping)))?;
        Ok(RunningServer {
            local_addr,
            stop,
            thread: Some(thread),
        })
    }
}

async fn accept_loop(
    listener: std::net::TcpListener,
    server: Arc<QueryServer>,
    stop: Arc<AtomicBool>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(error) => {
            log::error!("http: {error}");
            return;
        }
    };
    while !stop.load(Ordering::Relaxed) {
        // Wake up now and then to notice a stop.
        let accepted = tokio::time::timeout(Duration::from_millis(100), listener.accept()).await;
        let stream = match accepted {
            Ok(Ok((stream, _))) => stream,
            Ok(Err(error)) => {
                log::warn!("http: accepting a connection: {error}");
                continue;
            }
            Err(_) => continue,
        };
        let server = server.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: hyper::Request<Incoming>| {
                let server = server.clone();
                async move { Ok::<_, Infallible>(respond(server, request).await) }
            });
            if let Err(error) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                log::debug!("http connection: {error}");
            }
        });
    }
}

/// Runs the (blocking) handler off the I/O thread; a panic is a 500.
async fn respond(
    server: Arc<QueryServer>,
    request: hyper::Request<Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let forwarded = request.headers().contains_key(FORWARDED_HEADER);
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let query = parse_query(request.uri().query().unwrap_or(""));
    // Bodies are not used by any route; drain it so the connection stays usable.
    let _ = request.into_body().collect().await;
    let request = Request {
        method,
        path,
        query,
        forwarded,
    };
    let response = tokio::task::spawn_blocking(move || server.handle(&request))
        .await
        .unwrap_or_else(|_| Response::error(500, "the handler failed"));
    hyper::Response::builder()
        .status(response.status)
        .header("content-type", response.content_type)
        .body(Full::new(Bytes::from(response.body)))
        .unwrap_or_else(|_| hyper::Response::new(Full::new(Bytes::from_static(b"{}"))))
}

/// A running HTTP server; stops on drop.
#[derive(Debug)]
pub struct RunningServer {
    local_addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RunningServer {
    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting and returns once the server thread ends.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
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
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// Decodes `%XX` escapes (and `+` as a space in queries is not used here).
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(byte) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Escapes everything but unreserved characters, for a path segment.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

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
        let config = streams_core::StreamsConfig::new("http-unit")
            .set("bootstrap.servers", "127.0.0.1:1")
            .set("application.server", "127.0.0.1:7");
        let builder = streams_core::StreamsBuilder::new();
        builder
            .stream(
                &["in"],
                streams_core::dsl::Consumed::with(
                    streams_core::serde::StringSerde,
                    streams_core::serde::StringSerde,
                ),
            )
            .group_by_key(streams_core::dsl::Grouped::default())
            .count(streams_core::dsl::Materialized::named("counts"));
        let streams = KafkaStreams::new(builder.build().unwrap(), config).unwrap();
        QueryServer::new(Arc::new(streams))
            .key_value_store::<String, i64>("counts", streams_core::serde::StringSerde)
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
        let mut running = server.serve("127.0.0.1:0".parse().unwrap()).unwrap();
        let host = HostInfo {
            host: "127.0.0.1".into(),
            port: running.local_addr().port(),
        };
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
    fn requests_split_paths_and_queries() {
        let request = Request::get("/state/keyvalue/s/a%20b?scope=local&x");
        assert_eq!(request.segments(), ["state", "keyvalue", "s", "a b"]);
        assert_eq!(request.param("scope"), Some("local"));
        assert_eq!(request.param("x"), Some(""));
        assert_eq!(request.param("y"), None);
    }
}
