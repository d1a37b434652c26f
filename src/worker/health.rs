//! Health checks for orchestrators (`fiber_job --health-port 7433`): a minimal HTTP/1.1
//! server on the engine's runtime, so it answers while Ruby is busy.
//!
//! - `GET /live`: 200 while the process's executor is responsive — its pulse (a fiber
//!   in the reactor, or a thread, calling `_pulse` every second) came within
//!   `LIVE_WITHIN` — and the engine's runtime answers (this reply); else 503. A job that
//!   blocks the reactor (CPU-bound Ruby that never yields, a C call holding the GVL)
//!   stops the pulse.
//! - `GET /ready`: 200 when registered, the last heartbeat reached Redis within its
//!   TTL, and the process is neither quiet nor stopping; else 503 with the reason.
//!
//! Each reply is one line of text; the connection is closed after it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::heartbeat::HEARTBEAT_TTL_SECS;
use super::state::WorkerState;
use crate::store::payload;

/// `/live` fails when the executor's last pulse is older than this.
pub const LIVE_WITHIN: Duration = Duration::from_secs(5);
/// A request must arrive whole within this, and be at most `MAX_REQUEST` bytes.
const READ_WITHIN: Duration = Duration::from_secs(2);
const MAX_REQUEST: usize = 8192;

/// Epoch milliseconds of events the checks look at.
#[derive(Default)]
pub struct Pulses {
    /// The executor's last pulse (0: none yet).
    executor: AtomicU64,
    /// The last heartbeat Redis took.
    beat: AtomicU64,
}

fn now_ms() -> u64 {
    (payload::now() * 1000.0) as u64
}

impl Pulses {
    pub fn executor_pulse(&self) {
        self.executor.store(now_ms(), Ordering::Relaxed);
    }

    pub fn beat(&self) {
        self.beat.store(now_ms(), Ordering::Relaxed);
    }

    fn age(at: &AtomicU64) -> Option<Duration> {
        match at.load(Ordering::Relaxed) {
            0 => None,
            t => Some(Duration::from_millis(now_ms().saturating_sub(t))),
        }
    }
}

pub async fn serve(state: Arc<WorkerState>, listener: std::net::TcpListener) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("health checks are off: {e}");
            return;
        }
    };
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(answer(state.clone(), stream));
            }
            Err(e) => {
                tracing::warn!("health check connection failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn answer(state: Arc<WorkerState>, mut stream: TcpStream) {
    let mut buf = Vec::with_capacity(512);
    let read = tokio::time::timeout(READ_WITHIN, async {
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < MAX_REQUEST {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    let (status, body) = match read {
        Ok(Ok(())) => route(&state, &buf),
        _ => (408, "request timeout".to_string()),
    };
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        _ => "Service Unavailable",
    };
    let reply = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}\n",
        body.len() + 1
    );
    let _ = stream.write_all(reply.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// The status and one line for a request's bytes.
fn route(state: &WorkerState, request: &[u8]) -> (u16, String) {
    let line = request.split(|b| *b == b'\r').next().unwrap_or_default();
    let mut parts = std::str::from_utf8(line).unwrap_or("").split(' ');
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method != "GET" && method != "HEAD" {
        return (405, "only GET".into());
    }
    match path.split('?').next().unwrap_or("") {
        "/live" => live(state),
        "/ready" => ready(state),
        _ => (404, "try /live or /ready".into()),
    }
}

fn live(state: &WorkerState) -> (u16, String) {
    match Pulses::age(&state.pulses.executor) {
        Some(age) if age <= LIVE_WITHIN => (200, "live".into()),
        Some(age) => (
            503,
            format!(
                "not live: the executor has not answered for {:.1}s (a job is blocking its reactor or holding the GVL)",
                age.as_secs_f64()
            ),
        ),
        None => (503, "not live: the executor has not started".into()),
    }
}

fn ready(state: &WorkerState) -> (u16, String) {
    if !state.is_registered() {
        return (503, "not ready: not registered in Redis yet".into());
    }
    match Pulses::age(&state.pulses.beat) {
        Some(age) if age <= Duration::from_secs(HEARTBEAT_TTL_SECS) => {}
        _ => {
            return (
                503,
                "not ready: Redis has not taken a heartbeat within its TTL (unreachable?)".into(),
            )
        }
    }
    if state.dispatcher.is_stopping() {
        return (503, "not ready: stopping".into());
    }
    if state.dispatcher.is_quiet() {
        return (503, "not ready: quiet (TSTP)".into());
    }
    (200, "ready".into())
}
