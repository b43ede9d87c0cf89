//! The `/metrics` endpoint: the least HTTP/1.x a scraper needs, on a thread
//! of its own.
//!
//! Why not a web framework: the endpoint answers one GET, and everything
//! else it would bring is surface to defend. Why its own thread, one request
//! at a time: a scraper, slow or hostile, can then hold only this thread,
//! and only for `TIMEOUT` per connection; it never touches a worker or the
//! control thread. A request head is read up to `MAX_REQUEST` bytes; the
//! body, if any, is never read; every answer closes the connection.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;
use tracing::{debug, warn};

use super::exposition::{self, Format};
use crate::server::throttle::Throttle;

/// The only path served.
pub(crate) const METRICS_PATH: &str = "/metrics";
/// The longest request head read; Prometheus sends about 300 bytes.
const MAX_REQUEST: usize = 8 * 1024;
/// How long a scraper may hold the endpoint: from its connection to the
/// end of the answer, whatever pace it sends or reads at.
const TIMEOUT: Duration = Duration::from_secs(5);
/// How much is read and dropped after the answer (see `linger`).
const LINGER_BYTES: usize = 64 * 1024;
const WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// Serves scrapes on `listener` until the process ends.
pub(crate) fn serve(listener: TcpListener, registry: Registry) {
    let mut errors = Throttle::new(WARNING_INTERVAL);
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                let deadline = Instant::now() + TIMEOUT;
                let served =
                    answer(&stream, &registry, deadline).and_then(|()| linger(&stream, deadline));
                if let Err(e) = served {
                    debug!(%peer, error = %e, "metrics request failed");
                }
            }
            Err(e) => {
                if let Some(suppressed) = errors.event() {
                    warn!(error = %e, suppressed, "cannot accept metrics scrapes; retrying");
                }
                // Out of descriptors, most likely: do not spin on it.
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// A request as far as it matters here.
struct Request {
    method: String,
    path: String,
    accept: Option<String>,
}

fn answer(stream: &TcpStream, registry: &Registry, deadline: Instant) -> io::Result<()> {
    // Writes are bounded by the socket's buffer: an answer is a few KiB.
    stream.set_write_timeout(Some(TIMEOUT))?;
    let head = match read_head(stream, deadline)? {
        Some(head) => head,
        None => {
            return respond(
                stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                "request too large\n",
            );
        }
    };
    let Some(request) = parse(&head) else {
        return respond(stream, "400 Bad Request", "text/plain", "bad request\n");
    };
    if request.path.split('?').next() != Some(METRICS_PATH) {
        return respond(
            stream,
            "404 Not Found",
            "text/plain",
            "only /metrics is served here\n",
        );
    }
    if request.method != "GET" {
        return respond(stream, "405 Method Not Allowed", "text/plain", "only GET\n");
    }
    let format = Format::negotiate(request.accept.as_deref());
    let body = exposition::encode(registry, format);
    respond(stream, "200 OK", format.content_type(), &body)
}

/// The request head, up to its blank line; `None` if it is longer than
/// `MAX_REQUEST`.
fn read_head(stream: &TcpStream, deadline: Instant) -> io::Result<Option<String>> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        if head.len() >= MAX_REQUEST {
            return Ok(None);
        }
        let read = read_before(stream, &mut chunk, deadline)?;
        if read == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&chunk[..read]);
    }
    Ok(Some(String::from_utf8_lossy(&head).into_owned()))
}

/// Closes gently: what the client sent beyond the head (a body, the rest
/// of an oversized request) is read and dropped, up to a bound, so that
/// closing with unread data does not reset the connection before the client
/// has read the answer.
fn linger(stream: &TcpStream, deadline: Instant) -> io::Result<()> {
    stream.shutdown(Shutdown::Write)?;
    let mut left = LINGER_BYTES;
    let mut chunk = [0u8; 4096];
    while left > 0 {
        match read_before(stream, &mut chunk, deadline)? {
            0 => break,
            read => left = left.saturating_sub(read),
        }
    }
    Ok(())
}

/// One read, which fails with `TimedOut` once `deadline` has passed.
fn read_before(mut stream: &TcpStream, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::ErrorKind::TimedOut.into());
    }
    stream.set_read_timeout(Some(left))?;
    stream.read(buf)
}

fn parse(head: &str) -> Option<Request> {
    let mut lines = head.lines();
    let mut request_line = lines.next()?.split_whitespace();
    let (method, path, version) = (
        request_line.next()?,
        request_line.next()?,
        request_line.next()?,
    );
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    let accept = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("accept"))
        .map(|(_, value)| value.trim().to_string());
    Some(Request {
        method: method.to_string(),
        path: path.to_string(),
        accept,
    })
}

fn respond(mut stream: &TcpStream, status: &str, content_type: &str, body: &str) -> io::Result<()> {
    // A 405 must say what is allowed (RFC 9110, section 15.5.6).
    let allow = if status.starts_with("405") {
        "Allow: GET\r\n"
    } else {
        ""
    };
    let head = format!(
        "HTTP/1.1 {status}\r\n{allow}Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_read_for_method_path_and_accept() {
        let request = parse(
            "GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\naccept: application/openmetrics-text\r\n\r\n",
        )
        .unwrap();
        assert_eq!(request.method, "GET");
        assert_eq!(request.path, "/metrics?x=1");
        assert_eq!(
            request.accept.as_deref(),
            Some("application/openmetrics-text")
        );
        assert!(parse("GET /metrics\r\n\r\n").is_none());
        assert!(parse("GET /metrics SPDY/3\r\n\r\n").is_none());
    }
}
