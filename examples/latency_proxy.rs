//! A TCP proxy that puts a network between the bench's workers and its Redis: every
//! round trip takes `LATENCY_US` microseconds (default 1,000) longer, half each way, as
//! across a datacenter network — Sidekiq's own load test adds 1 ms. It is a
//! delay line, not a pause per chunk: what a connection sends meanwhile is on its way
//! too, so pipelining and batching pay the latency once per round trip, as on a real
//! network, and the proxy adds no limit of its own. Rust, so that on the bench's two
//! cores it costs next to nothing (two threads per direction of each connection).
//!
//! `latency_proxy UPSTREAM_PORT`: prints its own port on the first line of stdout, then
//! relays until killed.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn main() -> std::io::Result<()> {
    let upstream: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("usage: latency_proxy UPSTREAM_PORT");
    let round_trip = Duration::from_micros(
        std::env::var("LATENCY_US")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000),
    );
    let latency = round_trip / 2;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    println!("{}", listener.local_addr()?.port());
    for client in listener.incoming() {
        let Ok(client) = client else { continue };
        if let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) {
            relay(client, server, latency)?;
        }
    }
    Ok(())
}

/// Two delay lines, one each way; either side closing closes the other.
fn relay(client: TcpStream, server: TcpStream, latency: Duration) -> std::io::Result<()> {
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    delay_line(client.try_clone()?, server.try_clone()?, latency);
    delay_line(server, client, latency);
    Ok(())
}

/// A reader thread stamps each chunk with when it is due; a writer thread sleeps until
/// then (a thread's sleep is precise to tens of microseconds; tokio's timer rounds up
/// to whole milliseconds) and passes it on.
fn delay_line(mut from: TcpStream, mut to: TcpStream, latency: Duration) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65_536];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break, // dropping `tx` ends the writer after the rest
                Ok(n) => {
                    if tx
                        .send((Instant::now() + latency, buf[..n].to_vec()))
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    });
    std::thread::spawn(move || {
        for (due, bytes) in rx {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if to.write_all(&bytes).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Both);
    });
}
