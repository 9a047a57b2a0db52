//! Instance-to-instance requests, on hyper's pooled client (hyper-util):
//! each call has a whole-request deadline (connect, headers and body
//! together) and a cap on the answer's size, and connections to a peer are
//! reused. A peer is another instance of the application, but its address
//! comes from a topic anyone can write to: nothing it sends is trusted.
//!
//! Callers are blocking handlers, so requests run on one small runtime of
//! the process's own ([`peer_runtime`]) and callers wait on a channel.

use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::Duration;

use axum::http::{Request, Uri, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::{Body, Bytes};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use streams_kafka::{HostInfo, validate_endpoint};

use crate::{FORWARDED_HEADER, HttpLimits};

/// A peer's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpAnswer {
    /// HTTP status.
    pub status: u16,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The body.
    pub body: Vec<u8>,
}

/// `GET path` on `host`, answered in full within `timeout` (connecting,
/// the headers and the body together); `forwarded` marks the request as
/// coming from another instance. Answers over
/// [`HttpLimits::peer_max_response_bytes`] (by default) are errors.
/// Connections are pooled and reused across calls.
pub fn get(
    host: &HostInfo,
    path: &str,
    timeout: Duration,
    forwarded: bool,
) -> std::io::Result<HttpAnswer> {
    static DEFAULT: OnceLock<PeerClient> = OnceLock::new();
    DEFAULT
        .get_or_init(|| PeerClient::new(&HttpLimits::default()))
        .get_within(host, path, forwarded, timeout)
}

/// The runtime that drives every peer request of the process: one thread,
/// started on first use, that lives as long as the process.
fn peer_runtime() -> std::io::Result<&'static tokio::runtime::Handle> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Handle, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
                .build()
                .map_err(|e| e.to_string())?;
            let handle = runtime.handle().clone();
            std::thread::Builder::new()
                .name("http-peers".into())
                .spawn(move || runtime.block_on(std::future::pending::<()>()))
                .map_err(|e| e.to_string())?;
            Ok(handle)
        })
        .as_ref()
        .map_err(|e| std::io::Error::other(format!("the peer runtime did not start: {e}")))
}

/// A pooled client for calls to peer instances.
#[derive(Clone, Debug)]
pub(crate) struct PeerClient {
    client: Client<HttpConnector, Empty<Bytes>>,
    deadline: Duration,
    max_response_bytes: usize,
}

/// One pending answer of [`PeerClient::start`].
pub(crate) type Pending = mpsc::Receiver<std::io::Result<HttpAnswer>>;

impl PeerClient {
    pub(crate) fn new(limits: &HttpLimits) -> PeerClient {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(limits.peer_deadline));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(limits.peer_pool_idle_timeout)
            .pool_max_idle_per_host(limits.peer_max_idle_per_host)
            .build(connector);
        PeerClient {
            client,
            deadline: limits.peer_deadline,
            max_response_bytes: limits.peer_max_response_bytes,
        }
    }

    /// `GET path` on `host` within the client's deadline.
    pub(crate) fn get(
        &self,
        host: &HostInfo,
        path: &str,
        forwarded: bool,
    ) -> std::io::Result<HttpAnswer> {
        self.get_within(host, path, forwarded, self.deadline)
    }

    fn get_within(
        &self,
        host: &HostInfo,
        path: &str,
        forwarded: bool,
        deadline: Duration,
    ) -> std::io::Result<HttpAnswer> {
        self.start(host, path, forwarded, deadline)?
            .recv()
            .map_err(|_| std::io::Error::other("the peer runtime stopped"))?
    }

    /// Starts `GET path` on `host`; the answer (or why there is none)
    /// arrives on the returned channel within `deadline`.
    pub(crate) fn start(
        &self,
        host: &HostInfo,
        path: &str,
        forwarded: bool,
        deadline: Duration,
    ) -> std::io::Result<Pending> {
        let (sender, receiver) = mpsc::channel();
        let request = self.fetch(host, path, forwarded, deadline);
        peer_runtime()?.spawn(async move {
            let _ = sender.send(request.await);
        });
        Ok(receiver)
    }

    pub(crate) fn deadline(&self) -> Duration {
        self.deadline
    }

    fn fetch(
        &self,
        host: &HostInfo,
        path: &str,
        forwarded: bool,
        deadline: Duration,
    ) -> impl Future<Output = std::io::Result<HttpAnswer>> + Send + 'static {
        let client = self.client.clone();
        let cap = self.max_response_bytes;
        let request = build_request(host, path, forwarded);
        let host = host.clone();
        async move {
            let request = request?;
            let answer = async {
                let response = client
                    .request(request)
                    .await
                    .map_err(|e| std::io::Error::other(format!("{host}: {e}")))?;
                let status = response.status().as_u16();
                let content_type = response
                    .headers()
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let body = response.into_body();
                // A declared length over the cap is refused before reading.
                if body.size_hint().lower() > cap as u64 {
                    return Err(std::io::Error::other(format!(
                        "{host} announced an answer of {} bytes, over the cap of {cap}",
                        body.size_hint().lower()
                    )));
                }
                let body = Limited::new(body, cap)
                    .collect()
                    .await
                    .map_err(|e| std::io::Error::other(format!("{host}: reading the answer: {e}")))?
                    .to_bytes();
                std::io::Result::Ok(HttpAnswer {
                    status,
                    content_type,
                    body: body.to_vec(),
                })
            };
            tokio::time::timeout(deadline, answer)
                .await
                .unwrap_or_else(|_| {
                    Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("{host} gave no complete answer within {deadline:?}"),
                    ))
                })
        }
    }
}

fn build_request(
    host: &HostInfo,
    path: &str,
    forwarded: bool,
) -> std::io::Result<Request<Empty<Bytes>>> {
    let invalid = |message: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, message);
    validate_endpoint(&host.host, host.port)
        .map_err(|why| invalid(format!("not calling {host}: {why}")))?;
    let authority = if host.host.contains(':') && !host.host.starts_with('[') {
        format!("[{}]:{}", host.host, host.port)
    } else {
        host.to_string()
    };
    let uri: Uri = format!("http://{authority}{path}")
        .parse()
        .map_err(|e| invalid(format!("not calling {host}{path}: {e}")))?;
    let mut request = Request::get(uri).header(header::ACCEPT, "application/json");
    if forwarded {
        request = request.header(FORWARDED_HEADER, "1");
    }
    request
        .body(Empty::new())
        .map_err(|e| invalid(format!("not calling {host}{path}: {e}")))
}
