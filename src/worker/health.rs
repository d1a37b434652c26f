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

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::heartbeat::HEARTBEAT_TTL_SECS;
use super::state::WorkerState;

/// `/live` fails when the executor's last pulse is older than this.
pub const LIVE_WITHIN: Duration = Duration::from_secs(5);
/// A request must arrive whole within this, and be at most `MAX_REQUEST` bytes.
const READ_WITHIN: Duration = Duration::from_secs(2);
const MAX_REQUEST: usize = 8192;

/// Binds the health checks' address (`host:port`), at the engine's creation: a taken
/// port fails the start.
pub fn bind(addr: &str) -> crate::error::Result<std::net::TcpListener> {
    use crate::error::Error;
    let listener = std::net::TcpListener::bind(addr).map_err(|e| {
        Error::Config(format!(
            "cannot serve health checks on {addr}: {e}; choose another --health-port"
        ))
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::Other(format!("health checks: {e}")))?;
    Ok(listener)
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
    match state.pulses.executor_age() {
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
    match state.pulses.beat_age() {
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
