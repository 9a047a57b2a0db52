//! The HTTP layer's limits, each on a real socket against a server in this
//! process (whose streams client is never started: `/health` answers 503,
//! which is an answer).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{serve, unstarted};
use streams_http::{HttpLimits, Response, get};

/// Tests that measure memory or load the machine run one at a time.
static HEAVY: Mutex<()> = Mutex::new(());

fn heavy() -> std::sync::MutexGuard<'static, ()> {
    HEAVY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS in /proc/self/status");
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap();
    kb * 1024
}

/// Reads what the server sends until it closes (or `limit` passes).
fn read_all(stream: &mut TcpStream, limit: Duration) -> Vec<u8> {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Sends `head` and then a chunked body of `total` bytes in 64 KiB chunks,
/// while another thread reads the answer; returns the answer and how many
/// body bytes the server let through before it closed.
fn post_chunked(addr: SocketAddr, total: u64) -> (String, u64) {
    let mut stream = TcpStream::connect(addr).unwrap();
    let mut reader = stream.try_clone().unwrap();
    let answer = std::thread::spawn(move || read_all(&mut reader, Duration::from_secs(60)));
    let head = "POST /health HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n";
    stream.write_all(head.as_bytes()).unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
    framed.extend_from_slice(&chunk);
    framed.extend_from_slice(b"\r\n");
    let mut sent = 0u64;
    while sent < total {
        if stream.write_all(&framed).is_err() {
            break;
        }
        sent += chunk.len() as u64;
    }
    if sent >= total {
        let _ = stream.write_all(b"0\r\n\r\n");
    }
    let answer = answer.join().unwrap();
    (String::from_utf8_lossy(&answer).into_owned(), sent)
}

#[test]
fn a_huge_chunked_body_is_refused_unread_and_memory_stays_flat() {
    let _heavy = heavy();
    let (_running, host) = serve(unstarted("http-limits"));
    let addr: SocketAddr = format!("{host}").parse().unwrap();
    // Warm up: the first connection allocates the runtime's buffers.
    assert_eq!(
        get(&host, "/health", Duration::from_secs(5), false)
            .unwrap()
            .status,
        503
    );
    let before = resident_bytes();
    let (answer, sent) = post_chunked(addr, 1536 << 20);
    let grown = resident_bytes().saturating_sub(before);
    eprintln!(
        "1.5 GB body: {} KB sent before the server closed; resident memory grew by {} KB",
        sent >> 10,
        grown >> 10
    );
    assert!(answer.starts_with("HTTP/1.1 413"), "answer: {answer:?}");
    assert!(
        grown < 50 << 20,
        "resident memory grew by {} MB while {} MB of body were sent",
        grown >> 20,
        sent >> 20
    );
    // A declared length is refused just the same.
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: t\r\nContent-Length: 1610612736\r\n\r\nxx")
        .unwrap();
    let answer =
        String::from_utf8_lossy(&read_all(&mut stream, Duration::from_secs(30))).into_owned();
    assert!(answer.starts_with("HTTP/1.1 413"), "answer: {answer:?}");
    // The server still answers.
    assert_eq!(
        get(&host, "/health", Duration::from_secs(5), false)
            .unwrap()
            .status,
        503
    );
}

#[test]
fn a_client_that_trickles_its_headers_is_cut_at_the_timeout() {
    let timeout = Duration::from_secs(1);
    let (_running, host) = serve(unstarted("http-limits").limits(HttpLimits {
        header_read_timeout: timeout,
        ..HttpLimits::default()
    }));
    let mut stream = TcpStream::connect(format!("{host}")).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    let trickle = std::thread::spawn(move || {
        for byte in b"GET /health HTTP/1.1\r\nHost: slow\r\n\r\n" {
            if stopping.load(Ordering::Relaxed) || writer.write_all(&[*byte]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    let answer = read_all(&mut stream, Duration::from_secs(30));
    let cut_after = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    trickle.join().unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        !answer.contains("200 OK") && !answer.contains("503"),
        "{answer:?}"
    );
    // The whole head would take 35 s; the timeout is 1 s.
    assert!(
        cut_after < Duration::from_secs(6),
        "cut after {cut_after:?}"
    );
}

#[test]
fn an_idle_connection_is_closed() {
    let (_running, host) = serve(unstarted("http-limits").limits(HttpLimits {
        idle_timeout: Duration::from_secs(1),
        ..HttpLimits::default()
    }));
    let mut stream = TcpStream::connect(format!("{host}")).unwrap();
    // One request, then silence on the kept-alive connection.
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: idle\r\n\r\n")
        .unwrap();
    let started = Instant::now();
    let answer =
        String::from_utf8_lossy(&read_all(&mut stream, Duration::from_secs(30))).into_owned();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn two_thousand_connections_get_answers_or_refusals_and_health_still_answers() {
    let _heavy = heavy();
    let limits = HttpLimits {
        max_connections: 200,
        accept_backlog: 128,
        idle_timeout: Duration::from_secs(1),
        ..HttpLimits::default()
    };
    let (_running, host) = serve(unstarted("http-limits").limits(limits));
    let addr: SocketAddr = format!("{host}").parse().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // 2,000 requests at once: each is answered or refused, none hangs.
    let (answered, refused) = runtime.block_on(async {
        let tasks: Vec<_> = (0..2000)
            .map(|_| {
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let exchange = async {
                        let mut stream = tokio::net::TcpStream::connect(addr).await?;
                        stream
                            .write_all(b"GET /state/instances HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                            .await?;
                        let mut answer = Vec::new();
                        stream.read_to_end(&mut answer).await?;
                        std::io::Result::Ok(answer)
                    };
                    match tokio::time::timeout(Duration::from_secs(120), exchange).await {
                        Ok(Ok(answer)) => answer.starts_with(b"HTTP/1.1 200"),
                        _ => false,
                    }
                })
            })
            .collect();
        let mut answered = 0;
        let mut refused = 0;
        for task in tasks {
            if task.await.unwrap() {
                answered += 1;
            } else {
                refused += 1;
            }
        }
        (answered, refused)
    });
    assert_eq!(answered + refused, 2000);
    assert!(answered > 0, "nothing answered ({refused} refused)");
    // 2,000 connections that say nothing and stay open: /health answers
    // once idle ones are closed.
    let held = runtime.block_on(async {
        let tasks: Vec<_> = (0..2000)
            .map(|_| {
                tokio::spawn(async move {
                    tokio::time::timeout(
                        Duration::from_secs(3),
                        tokio::net::TcpStream::connect(addr),
                    )
                    .await
                    .ok()
                    .and_then(Result::ok)
                })
            })
            .collect();
        let mut held = Vec::new();
        for task in tasks {
            held.extend(task.await.unwrap());
        }
        held
    });
    let started = Instant::now();
    let health = get(&host, "/health", Duration::from_secs(30), false).unwrap();
    assert_eq!(health.status, 503, "not running, but answering");
    assert!(started.elapsed() < Duration::from_secs(30));
    drop(held);
    assert_eq!(
        get(&host, "/health", Duration::from_secs(10), false)
            .unwrap()
            .status,
        503
    );
}

#[test]
fn health_and_metrics_answer_while_every_query_worker_is_busy() {
    let release = Arc::new(AtomicBool::new(false));
    let released = release.clone();
    let server = unstarted("http-limits")
        .limits(HttpLimits {
            query_workers: 2,
            query_queue_timeout: Duration::from_millis(500),
            ..HttpLimits::default()
        })
        .route(move |request, _| {
            (request.path == "/slow").then(|| {
                let deadline = Instant::now() + Duration::from_secs(30);
                while !released.load(Ordering::Relaxed) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Response::json(200, &"done")
            })
        });
    let (_running, host) = serve(server);
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let host = host.clone();
            std::thread::spawn(move || get(&host, "/slow", Duration::from_secs(60), false))
        })
        .collect();
    // Both workers are taken once a further query waits in vain.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = get(&host, "/state/instances", Duration::from_secs(5), false).unwrap();
        if answer.status == 503 {
            assert!(String::from_utf8_lossy(&answer.body).contains("busy"));
            break;
        }
        assert!(Instant::now() < deadline, "the workers never got busy");
        std::thread::sleep(Duration::from_millis(20));
    }
    let health = get(&host, "/health", Duration::from_secs(2), false).unwrap();
    assert_eq!(health.status, 503);
    assert!(String::from_utf8_lossy(&health.body).contains("state"));
    let metrics = get(&host, "/metrics", Duration::from_secs(2), false).unwrap();
    assert_eq!(metrics.status, 200);
    release.store(true, Ordering::Relaxed);
    for request in slow {
        assert_eq!(request.join().unwrap().unwrap().status, 200);
    }
    assert_eq!(
        get(&host, "/state/instances", Duration::from_secs(5), false)
            .unwrap()
            .status,
        200
    );
}
