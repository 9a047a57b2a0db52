//! The limits of the query layer's server and of its calls to peers.

use std::time::Duration;

/// Limits and timeouts of the HTTP layer, each with a default fit for a
/// query layer on a private network. Set them with
/// [`QueryServer::limits`](crate::QueryServer::limits).
///
/// No route takes a body: a request that has one is answered 413 and the
/// connection closed, without reading the body. That is not a setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    /// How long a client may take to send a request's headers, counted
    /// from when the server starts waiting for them (hyper's
    /// `header_read_timeout`): a client that trickles them is cut off.
    /// hyper starts this clock as soon as a kept-alive connection waits
    /// for its next request, so it also bounds an idle connection's life.
    /// Default 10 s.
    pub header_read_timeout: Duration,
    /// How long a connection may stay open with no request in progress
    /// and no bytes received before the server closes it. Default 5 s.
    pub idle_timeout: Duration,
    /// The most connections served at once. Beyond it the server stops
    /// accepting until one closes: new connections wait in the kernel's
    /// accept queue (of [`HttpLimits::accept_backlog`]) or are refused by
    /// the kernel. Default 1,024.
    pub max_connections: usize,
    /// The length of the kernel's queue of connections not yet accepted.
    /// Default 1,024.
    pub accept_backlog: u32,
    /// The first pause after a failed accept (out of file descriptors,
    /// say); it doubles with each failure in a row, up to
    /// [`HttpLimits::accept_backoff_max`], instead of spinning. Default
    /// 10 ms.
    pub accept_backoff: Duration,
    /// The longest pause after failed accepts. Default 1 s.
    pub accept_backoff_max: Duration,
    /// Threads that answer queries (every route but `/health` and
    /// `/metrics`, which answer even while every query worker is busy).
    /// Default 32.
    pub query_workers: usize,
    /// How long a request waits for a free query worker before it is
    /// answered 503. Default 10 s.
    pub query_queue_timeout: Duration,
    /// The longest a request may take, from its headers to its answer
    /// (tower-http's `TimeoutLayer`); then it is answered 503. Default
    /// 30 s.
    pub request_timeout: Duration,
    /// The deadline of a call to a peer instance: connecting, its headers
    /// and its whole body. Default 5 s
    /// ([`PEER_TIMEOUT`](crate::PEER_TIMEOUT)).
    pub peer_deadline: Duration,
    /// The largest answer read from a peer, in bytes; a larger one is an
    /// error (and a declared larger `Content-Length` is refused before any
    /// of the body is read). Default 64 MiB.
    pub peer_max_response_bytes: usize,
    /// How long an idle connection to a peer is kept for reuse. It is
    /// below the default [`HttpLimits::idle_timeout`], so that the client,
    /// not the peer, closes idle connections. Default 2 s.
    pub peer_pool_idle_timeout: Duration,
    /// Idle connections kept per peer. Default 8.
    pub peer_max_idle_per_host: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(5),
            max_connections: 1024,
            accept_backlog: 1024,
            accept_backoff: Duration::from_millis(10),
            accept_backoff_max: Duration::from_secs(1),
            query_workers: 32,
            query_queue_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            peer_deadline: crate::PEER_TIMEOUT,
            peer_max_response_bytes: 64 << 20,
            peer_pool_idle_timeout: Duration::from_secs(2),
            peer_max_idle_per_host: 8,
        }
    }
}
