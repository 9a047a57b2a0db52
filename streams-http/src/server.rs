//! Accepting and serving connections: hyper's HTTP/1 connection with its
//! header-read timeout, a cap on open connections, an idle timeout, and a
//! back-off after failed accepts. Requests go to the axum router.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::HttpLimits;

/// Accepts connections until `stop` turns true, serving each on `router`.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    router: Router,
    limits: Arc<HttpLimits>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut backoff = limits.accept_backoff;
    loop {
        // At the cap, wait for a connection to close before accepting:
        // the rest wait in the kernel's queue (or the kernel refuses them).
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot,
            _ = stop.wait_for(|stop| *stop) => return,
        };
        let Ok(slot) = slot else { return };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stop| *stop) => return,
        };
        match accepted {
            Ok((stream, _)) => {
                backoff = limits.accept_backoff;
                tokio::spawn(serve_connection(
                    stream,
                    router.clone(),
                    limits.clone(),
                    slot,
                ));
            }
            Err(error) => {
                // EMFILE and the like last a while: retrying at once would
                // spin a core and flood the log.
                log::warn!("http: accepting a connection: {error}; retrying in {backoff:?}");
                drop(slot);
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.wait_for(|stop| *stop) => return,
                }
                backoff = (backoff * 2).min(limits.accept_backoff_max);
            }
        }
    }
}

/// When a connection last did something, and whether a request is in
/// progress on it.
struct Activity {
    opened: Instant,
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn touch(&self) {
        self.last_ms
            .store(self.opened.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// When the connection becomes idle too long, if it stays quiet.
    fn idle_deadline(&self, idle_timeout: Duration) -> Instant {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return Instant::now() + idle_timeout;
        }
        self.opened + Duration::from_millis(self.last_ms.load(Ordering::Relaxed)) + idle_timeout
    }
}

/// Counts a request in progress until dropped (answered or abandoned).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn new(activity: &Arc<Activity>) -> InFlight {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn serve_connection(
    stream: TcpStream,
    router: Router,
    limits: Arc<HttpLimits>,
    _slot: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity {
        opened: Instant::now(),
        last_ms: AtomicU64::new(0),
        in_flight: AtomicUsize::new(0),
    });
    let io = TokioIo::new(Tracked {
        inner: stream,
        activity: activity.clone(),
    });
    let counted = activity.clone();
    let service =
        hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            let in_flight = InFlight::new(&counted);
            let mut router = router.clone();
            async move {
                let response = tower::Service::call(&mut router, request).await;
                drop(in_flight);
                response
            }
        });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let mut closing = false;
    loop {
        let deadline = activity.idle_deadline(limits.idle_timeout);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    log::debug!("http connection: {error}");
                }
                return;
            }
            _ = tokio::time::sleep_until(deadline.into()), if !closing => {
                if Instant::now() >= activity.idle_deadline(limits.idle_timeout) {
                    // Closes at once when idle; a request that just began
                    // is answered first.
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}

/// A socket that notes when bytes last moved, for the idle timeout (a
/// client that trickles headers is not idle: the header-read timeout is
/// what cuts it off).
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        result
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
