//! A fault-injecting HTTP/1.1 proxy on loopback, between S3 clients and a server on this machine:
//! the faults of a real network and a real object store, one request at a time. A `schedule`
//! decides each request's fault from its number, method and path (and the clock it captures),
//! so a test can script a run: random faults, then a partition, then healing.
//!
//! It reads each request whole (`Content-Length` or chunked), forwards it on a fresh upstream
//! connection (`Connection: close`, so the server's response ends where its connection does),
//! and hands the response back with the fault applied. Clients keep their connection alive
//! unless a fault ends it.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// What happens to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forwarded and answered unchanged.
    Pass,
    /// Answered after this extra delay.
    Latency(Duration),
    /// Answered at this many bytes a second.
    Bandwidth(u64),
    /// The connection is reset (RST) without an answer; the server never sees the request.
    Reset,
    /// The answer's head and half its body are sent, then nothing for this long, then a reset.
    Stall(Duration),
    /// The answer's head and half its body are sent, then the connection is closed (FIN).
    Truncate,
    /// Answered by the proxy with this status and an S3 error body (503 is `SlowDown`); the
    /// server never sees the request.
    Status(u16),
    /// Half the request's body reaches the server, then the upload's connection closes; the
    /// client's connection is reset.
    CutRequest,
    /// No answer until this instant, then a reset: a partition, as seen by a client whose
    /// requests vanish until it heals.
    Partition(Instant),
}

impl Fault {
    /// The fault's name in [`FaultProxy::counts`].
    pub fn name(&self) -> &'static str {
        match self {
            Fault::Pass => "pass",
            Fault::Latency(_) => "latency",
            Fault::Bandwidth(_) => "bandwidth",
            Fault::Reset => "reset",
            Fault::Stall(_) => "stall",
            Fault::Truncate => "truncate",
            Fault::Status(503) => "503 SlowDown",
            Fault::Status(_) => "5xx",
            Fault::CutRequest => "cut request",
            Fault::Partition(_) => "partition",
        }
    }
}

/// One request as the schedule sees it.
#[derive(Debug)]
pub struct Request<'a> {
    /// Requests through this proxy before this one.
    pub number: u64,
    pub method: &'a str,
    pub path: &'a str,
}

type Schedule = dyn Fn(&Request<'_>) -> Fault + Send + Sync;

struct Shared {
    upstream: u16,
    schedule: Box<Schedule>,
    requests: AtomicU64,
    counts: Mutex<BTreeMap<&'static str, u64>>,
    stopped: AtomicBool,
}

/// The proxy; it stops accepting when dropped.
pub struct FaultProxy {
    port: u16,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream` on loopback, each request
    /// under the fault `schedule` gives it.
    pub fn start(
        upstream: u16,
        schedule: impl Fn(&Request<'_>) -> Fault + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            upstream,
            schedule: Box::new(schedule),
            requests: AtomicU64::new(0),
            counts: Mutex::new(BTreeMap::new()),
            stopped: AtomicBool::new(false),
        });
        let accepting = Arc::clone(&shared);
        thread::spawn(move || {
            for client in listener.incoming() {
                if accepting.stopped.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(client) = client else { continue };
                let shared = Arc::clone(&accepting);
                thread::spawn(move || {
                    let _ = serve(client, &shared);
                });
            }
        });
        Self { port, shared }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Requests seen so far, by the name of the fault each was given.
    pub fn counts(&self) -> BTreeMap<&'static str, u64> {
        self.shared.counts.lock().unwrap().clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::Relaxed);
        // Wakes the accepting thread so it sees the flag.
        let _ = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], self.port)));
    }
}

/// Serves one client connection, request after request, until it closes or a fault ends it.
fn serve(client: TcpStream, shared: &Shared) -> io::Result<()> {
    client.set_nodelay(true)?;
    let mut reader = Buffered::new(client.try_clone()?);
    let mut client = client;
    while let Some(request) = read_message(&mut reader, true)? {
        let head = std::str::from_utf8(&request.raw[..request.head_len]).unwrap_or("");
        let mut words = head.split_whitespace();
        let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let fault = (shared.schedule)(&Request {
            number: shared.requests.fetch_add(1, Ordering::Relaxed),
            method,
            path,
        });
        *shared
            .counts
            .lock()
            .unwrap()
            .entry(fault.name())
            .or_default() += 1;
        match fault {
            Fault::Reset => return reset(client),
            Fault::Partition(until) => {
                thread::sleep(until.saturating_duration_since(Instant::now()));
                return reset(client);
            }
            Fault::Status(code) => client.write_all(&error_response(code))?,
            Fault::CutRequest => {
                let body = request.raw.len() - request.head_len;
                let mut upstream = connect(shared.upstream)?;
                upstream.write_all(&request.raw[..request.head_len + body / 2])?;
                upstream.shutdown(Shutdown::Write)?;
                let _ = io::copy(&mut upstream, &mut io::sink());
                return reset(client);
            }
            answered => {
                let head_only = method == "HEAD";
                let response = forward(shared.upstream, &request, head_only)?;
                let cut = cut_point(&response);
                match answered {
                    Fault::Latency(delay) => {
                        thread::sleep(delay);
                        client.write_all(&response.raw)?;
                    }
                    Fault::Bandwidth(per_second) => {
                        throttled(&mut client, &response.raw, per_second)?
                    }
                    Fault::Stall(pause) => {
                        client.write_all(&response.raw[..cut])?;
                        thread::sleep(pause);
                        return reset(client);
                    }
                    Fault::Truncate => {
                        client.write_all(&response.raw[..cut])?;
                        client.shutdown(Shutdown::Both)?;
                        return Ok(());
                    }
                    _ => client.write_all(&response.raw)?,
                }
                if !response.delimited {
                    client.shutdown(Shutdown::Both)?;
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}

/// Where a cut answer ends: half its body, or half its head when it has no body.
fn cut_point(response: &Message) -> usize {
    let body = response.raw.len() - response.head_len;
    if body == 0 {
        response.head_len / 2
    } else {
        response.head_len + body / 2
    }
}

/// Ends `client`'s connection with a reset: linger zero, then close.
fn reset(client: TcpStream) -> io::Result<()> {
    socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO))?;
    drop(client);
    Ok(())
}

fn connect(port: u16) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port)))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    Ok(stream)
}

/// Sends `request` upstream on a connection of its own and reads the whole response.
fn forward(port: u16, request: &Message, head_only: bool) -> io::Result<Message> {
    let mut upstream = connect(port)?;
    let head = with_header(&request.raw[..request.head_len], "Connection: close");
    upstream.write_all(&head)?;
    upstream.write_all(&request.raw[request.head_len..])?;
    let mut raw = Vec::new();
    upstream.read_to_end(&mut raw)?;
    let head_len = find_end_of_head(&raw)
        .ok_or_else(|| io::Error::other("the server's response has no complete head"))?;
    // The client's connection stays open: the server's `Connection: close` was for the proxy.
    let head = with_header(&raw[..head_len], "");
    let status = std::str::from_utf8(&head)
        .ok()
        .and_then(|h| h.split_whitespace().nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .unwrap_or(0);
    let delimited = head_only
        || status == 204
        || status == 304
        || header(&head, "content-length").is_some()
        || header(&head, "transfer-encoding").is_some_and(|t| t.contains("chunked"));
    let head_len = head.len();
    let mut message = head;
    message.extend_from_slice(&raw[find_end_of_head(&raw).unwrap_or(raw.len())..]);
    Ok(Message {
        raw: message,
        head_len,
        delimited,
    })
}

/// `head` without its `Connection` header, and with `extra` (a header line without its line
/// end) when it is not empty.
fn with_header(head: &[u8], extra: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(head);
    let mut lines: Vec<&str> = text
        .trim_end_matches("\r\n")
        .split("\r\n")
        .filter(|line| !line.to_ascii_lowercase().starts_with("connection:"))
        .collect();
    if !extra.is_empty() {
        lines.push(extra);
    }
    let mut out = lines.join("\r\n").into_bytes();
    out.extend_from_slice(b"\r\n\r\n");
    out
}

/// An S3 error response with `status` (503: `SlowDown`, anything else: `InternalError`).
fn error_response(status: u16) -> Vec<u8> {
    let (code, reason) = match status {
        503 => ("SlowDown", "Service Unavailable"),
        _ => ("InternalError", "Internal Server Error"),
    };
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
         <Message>injected by the test's fault proxy</Message><RequestId>fault</RequestId></Error>"
    );
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Writes `bytes` at about `per_second` bytes a second, in twentieths of a second.
fn throttled(client: &mut TcpStream, bytes: &[u8], per_second: u64) -> io::Result<()> {
    let chunk = usize::try_from(per_second / 20)
        .unwrap_or(usize::MAX)
        .max(1);
    for piece in bytes.chunks(chunk) {
        client.write_all(piece)?;
        thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// One HTTP message as read: its bytes, the length of its head, and whether its length is
/// known without the connection's end.
struct Message {
    raw: Vec<u8>,
    head_len: usize,
    delimited: bool,
}

/// A reader that keeps what it read past the end of one message for the next.
struct Buffered {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Buffered {
    fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            buffer: Vec::new(),
        }
    }

    /// Reads more into the buffer; false at the end of the stream.
    fn fill(&mut self) -> io::Result<bool> {
        let mut chunk = [0; 64 << 10];
        let n = self.stream.read(&mut chunk)?;
        self.buffer.extend_from_slice(&chunk[..n]);
        Ok(n > 0)
    }

    /// Takes `n` bytes, reading until there are.
    fn take(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buffer.len() < n {
            if !self.fill()? {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(self.buffer.drain(..n).collect())
    }

    /// Takes one line, with its line end.
    fn line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\r\n") {
                return self.take(end + 2);
            }
            if !self.fill()? {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }
}

/// Reads one request (a client's): its head, then its body by `Content-Length` or chunks.
/// `None` when the client closed its connection between requests.
fn read_message(reader: &mut Buffered, request: bool) -> io::Result<Option<Message>> {
    let head_len = loop {
        if let Some(end) = find_end_of_head(&reader.buffer) {
            break end;
        }
        if !reader.fill()? {
            return if reader.buffer.is_empty() {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
    };
    let mut raw = reader.take(head_len)?;
    if header(&raw, "transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        loop {
            let size_line = reader.line()?;
            let size = std::str::from_utf8(&size_line)
                .ok()
                .and_then(|l| usize::from_str_radix(l.trim().split(';').next()?, 16).ok())
                .ok_or_else(|| io::Error::other("a bad chunk size"))?;
            raw.extend_from_slice(&size_line);
            if size == 0 {
                // Trailers, then the empty line.
                loop {
                    let line = reader.line()?;
                    raw.extend_from_slice(&line);
                    if line == b"\r\n" {
                        break;
                    }
                }
                break;
            }
            raw.extend_from_slice(&reader.take(size + 2)?);
        }
    } else if let Some(length) = header(&raw, "content-length").and_then(|l| l.parse().ok()) {
        raw.extend_from_slice(&reader.take(length)?);
    }
    Ok(Some(Message {
        raw,
        head_len,
        delimited: request,
    }))
}

/// The length of the head at the start of `bytes` (through its empty line), once complete.
fn find_end_of_head(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 4)
}

/// The value of header `name` (lower case) in `head`.
fn header(head: &[u8], name: &str) -> Option<String> {
    String::from_utf8_lossy(head)
        .split("\r\n")
        .skip(1)
        .find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
}
