//! A TCP proxy on loopback that delays every byte by a fixed one-way latency: a server on this
//! machine, seen as if it were across a network link (3 ms round trips are a link within one
//! cloud region). Bandwidth is not limited; only latency is added, in both directions.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// The proxy; it stops accepting when dropped (open connections end with their clients).
pub struct DelayProxy {
    port: u16,
    stopped: Arc<AtomicBool>,
}

impl DelayProxy {
    /// Listens on a free loopback port and forwards each connection to `upstream` on loopback,
    /// with `round_trip` added to every request-response exchange (half each way).
    pub fn start(upstream: u16, round_trip: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stopped = Arc::new(AtomicBool::new(false));
        let one_way = round_trip / 2;
        let stop = Arc::clone(&stopped);
        thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], upstream)))
                else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (Ok(client2), Ok(server2)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                pump(client, server2, one_way);
                pump(server, client2, one_way);
            }
        });
        Self { port, stopped }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::Relaxed);
        // Wakes the accepting thread so it sees the flag.
        let _ = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], self.port)));
    }
}

/// Copies `from` to `to`, each chunk sent `delay` after it arrived. The reader never waits for
/// the writer, so the delay adds latency without limiting throughput. An end of stream is
/// passed on (delayed too) as a shutdown of the write side; an error closes both.
fn pump(mut from: TcpStream, to: TcpStream, delay: Duration) {
    let (send, receive) = mpsc::channel::<(Instant, Option<Vec<u8>>)>();
    thread::spawn(move || {
        let mut buf = vec![0; 64 << 10];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = send.send((Instant::now() + delay, None));
                    return;
                }
                Ok(n) => {
                    if send
                        .send((Instant::now() + delay, Some(buf[..n].to_vec())))
                        .is_err()
                    {
                        let _ = from.shutdown(Shutdown::Both);
                        return;
                    }
                }
            }
        }
    });
    thread::spawn(move || {
        let mut to = to;
        for (due, chunk) in receive {
            thread::sleep(due.saturating_duration_since(Instant::now()));
            match chunk {
                Some(bytes) => {
                    if to.write_all(&bytes).is_err() {
                        let _ = to.shutdown(Shutdown::Both);
                        return;
                    }
                }
                None => {
                    let _ = to.shutdown(Shutdown::Write);
                    return;
                }
            }
        }
    });
}
