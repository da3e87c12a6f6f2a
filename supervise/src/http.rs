//! One plain HTTP GET with a timeout, for reading a broker's `/metrics` and `/status` on
//! loopback.
//!
//! Hand-written over `TcpStream` (HTTP/1.0, so the server closes the connection after the
//! body and no chunked decoding or keep-alive is needed) rather than taken from a crate:
//! this crate links into the `hearth` binary, and even `ureq` with default features off
//! brings URL parsing with its Unicode (IDNA) tables, an HTTP types crate and a parser —
//! more code than the whole use needs, which is one request to the broker's own server,
//! on loopback, whose answers this repository writes. A real HTTP client is the right tool
//! for anything beyond that; this is not one.
//!
//! Every step has the timeout (connect, write, each read): a frozen broker's kernel still
//! accepts the connection, but nothing answers.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::error::{Error, Result};

/// The most of an answer that is read; a broker's `/metrics` is a few KiB.
const MAX_ANSWER: u64 = 16 << 20;

/// A server's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body, as text (invalid UTF-8 replaced).
    pub body: String,
}

/// GET `path` at `addr`, waiting at most `timeout` to connect and as long for each write
/// and read; the answer whatever its status.
pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<Response> {
    let fail = |why: String| Error::Http {
        addr: addr.to_string(),
        path: path.to_owned(),
        why,
    };
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| fail(format!("connect: {e}")))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .and_then(|()| write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n"))
        .map_err(|e| fail(format!("send: {e}")))?;
    let mut raw = Vec::new();
    stream
        .take(MAX_ANSWER)
        .read_to_end(&mut raw)
        .map_err(|e| fail(format!("read: {e}")))?;
    parse(&String::from_utf8_lossy(&raw)).ok_or_else(|| fail("not an HTTP answer".into()))
}

/// GET `path` at `addr` (as [`get`]); the body of a 200 answer, an error for any other.
pub fn get_ok(addr: SocketAddr, path: &str, timeout: Duration) -> Result<String> {
    let answer = get(addr, path, timeout)?;
    if answer.status != 200 {
        return Err(Error::Http {
            addr: addr.to_string(),
            path: path.to_owned(),
            why: format!("status {}", answer.status),
        });
    }
    Ok(answer.body)
}

/// `HTTP/1.x CODE reason\r\n headers \r\n\r\n body`.
fn parse(text: &str) -> Option<Response> {
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut status_line = head.lines().next()?.split_whitespace();
    if !status_line.next()?.starts_with("HTTP/") {
        return None;
    }
    Some(Response {
        status: status_line.next()?.parse().ok()?,
        body: body.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn parses_status_and_body() {
        let answer = parse("HTTP/1.1 503 Service Unavailable\r\nA: b\r\n\r\nstalled\n");
        assert_eq!(
            answer,
            Some(Response {
                status: 503,
                body: "stalled\n".into()
            })
        );
        assert_eq!(parse("SSH-2.0\r\n\r\n"), None);
        assert_eq!(parse("HTTP/1.0 200 OK\r\n"), None);
    }

    #[test]
    fn gets_from_a_server_and_times_out_on_a_silent_one() {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        let answering = std::thread::spawn(move || {
            let (mut peer, _) = server.accept().unwrap();
            let mut request = [0u8; 1024];
            let n = peer.read(&mut request).unwrap();
            assert!(request[..n].starts_with(b"GET /metrics HTTP/1.0\r\n"));
            peer.write_all(b"HTTP/1.0 200 OK\r\n\r\nhearth_up 1\n")
                .unwrap();
            drop(peer);
            // The silent one: accepted by the kernel, never answered.
            server.accept().unwrap()
        });
        let body = get_ok(addr, "/metrics", Duration::from_secs(5)).unwrap();
        assert_eq!(body, "hearth_up 1\n");
        let err = get(addr, "/metrics", Duration::from_millis(100)).unwrap_err();
        assert!(err.to_string().contains("read"), "{err}");
        drop(answering.join().unwrap());
    }
}
