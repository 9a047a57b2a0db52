//! Failed accepts back off instead of spinning. A test binary of its own:
//! it runs this process out of file descriptors, which would break any
//! test beside it.

mod common;

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{serve, unstarted};
use streams_http::get;

/// The soft and hard limits on open files of this process.
fn open_files_limit() -> (String, String) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    (fields[3].to_owned(), fields[4].to_owned())
}

fn set_open_files_limit(soft: &str, hard: &str) {
    let status = Command::new("prlimit")
        .arg(format!("--pid={}", std::process::id()))
        .arg(format!("--nofile={soft}:{hard}"))
        .status()
        .unwrap();
    assert!(status.success());
}

/// CPU time (user and system) of the thread whose `stat` is open.
fn thread_cpu(stat: &File) -> Duration {
    let mut buf = [0u8; 1024];
    let n = stat.read_at(&mut buf, 0).unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    // Fields after the command name: state is field 3, utime 14, stime 15.
    let fields: Vec<u64> = text[text.rfind(')').unwrap() + 1..]
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // /proc counts in USER_HZ, 100 a second on Linux.
    Duration::from_millis((fields[11] + fields[12]) * 10)
}

fn unix_seconds(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

#[test]
fn failed_accepts_back_off_instead_of_spinning() {
    let (_running, host) = serve(unstarted("http-accept"));
    let port = host.port;
    // One request on a connection that both sides close (a pooled one
    // would close during the test and free descriptors).
    let mut warm_up = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    warm_up
        .write_all(b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    warm_up.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    drop(warm_up);
    // The server's thread, found by its name.
    let thread = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(Result::ok)
        .find(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|name| name.trim() == format!("http-{port}"))
        })
        .expect("the server thread");
    let stat = File::open(thread.path().join("stat")).unwrap();
    // A client in another process: it connects once this one has no
    // descriptor left, so the connection waits to be accepted.
    let script = format!(
        "import socket, sys, time\n\
         time.sleep(0.5)\n\
         s = socket.create_connection(('127.0.0.1', {port}), timeout=60)\n\
         print('connected', flush=True)\n\
         s.sendall(b'GET /health HTTP/1.1\\r\\nHost: t\\r\\nConnection: close\\r\\n\\r\\n')\n\
         data = b''\n\
         while True:\n\
         \x20   chunk = s.recv(4096)\n\
         \x20   if not chunk: break\n\
         \x20   data += chunk\n\
         print(time.time(), data.split(b'\\r\\n')[0].decode(), flush=True)\n"
    );
    let mut client = Command::new("python3")
        .arg("-c")
        .arg(script)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(client.stdout.take().unwrap()).lines();
    let (soft, hard) = open_files_limit();
    let open = std::fs::read_dir("/proc/self/fd").unwrap().count();
    set_open_files_limit(&(open + 8).to_string(), &hard);
    let mut hoard = Vec::new();
    while let Ok(file) = File::open("/dev/null") {
        hoard.push(file);
    }
    assert_eq!(lines.next().unwrap().unwrap(), "connected");
    // Every accept fails now (EMFILE): two seconds of it.
    let before = thread_cpu(&stat);
    std::thread::sleep(Duration::from_secs(2));
    let spent = thread_cpu(&stat) - before;
    eprintln!("the server thread spent {spent:?} of CPU in 2 s of failed accepts");
    let released = unix_seconds(SystemTime::now());
    drop(hoard);
    set_open_files_limit(&soft, &hard);
    // The waiting connection is served once descriptors are back.
    let answer = lines.next().unwrap().unwrap();
    let (answered, status) = answer.split_once(' ').unwrap();
    assert!(status.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answered.parse::<f64>().unwrap() >= released,
        "answered while out of descriptors: {answer}"
    );
    // A spinning accept loop burns most of a core in that time (770 ms of
    // it on a busy two-core machine); backing off, a few milliseconds.
    assert!(
        spent < Duration::from_millis(250),
        "the server thread spent {spent:?} of CPU while accepts failed"
    );
    assert!(client.wait().unwrap().success());
    assert_eq!(
        get(&host, "/health", Duration::from_secs(5), false)
            .unwrap()
            .status,
        503
    );
}
