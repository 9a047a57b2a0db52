//! A small blocking HTTP/1.1 client for instance-to-instance requests: one
//! `GET`, one connection, bounded in time. Peers are this layer's own
//! servers, so only what they send is understood: a status line, headers
//! with `Content-Length` or none (read to the end), and a body.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use streams_core::runtime::HostInfo;

use crate::FORWARDED_HEADER;

/// A peer's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpAnswer {
    /// HTTP status.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
}

/// `GET path` on `host`, within `timeout` for connecting and for each
/// read; `forwarded` marks the request as coming from another instance.
pub fn get(
    host: &HostInfo,
    path: &str,
    timeout: Duration,
    forwarded: bool,
) -> std::io::Result<HttpAnswer> {
    let address = (host.host.as_str(), host.port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{host} does not resolve")))?;
    let mut stream = TcpStream::connect_timeout(&address, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nAccept: application/json\r\n"
    );
    if forwarded {
        request.push_str(FORWARDED_HEADER);
        request.push_str(": 1\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line from {host}: {line:?}")))?;
    let mut length = None;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse::<usize>().ok();
        }
    }
    let mut body = Vec::new();
    match length {
        Some(length) => {
            body.resize(length, 0);
            reader.read_exact(&mut body)?;
        }
        None => {
            reader.read_to_end(&mut body)?;
        }
    }
    Ok(HttpAnswer { status, body })
}
