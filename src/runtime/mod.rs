//! The process-wide tokio runtime, and how a process reaches Redis. Submodules:
//! `settings` (what the configuration says, as plain values), `target` (where Redis is:
//! the one place that builds connections), `sentinel` (a Sentinel master's address),
//! `tls` (rustls from the TLS settings), `route` (where the direct enqueue path
//! connects, and its rustls configuration), `cluster` (a Redis Cluster's client), `conn`
//! (`Conn`: one Redis or a Cluster; Cluster pipelines split by key), `clock` (Redis's
//! time, for decisions shared by processes), `cancel` (unblock tokens), `outage`
//! (log-once and backoff) and `log` (the tracing bridge to Ruby's logger).
//!
//! It records the pid it was built in. After `fork` the child has none of the parent's
//! threads, so the first use in the child builds a new runtime and new connections; the
//! parent's are leaked on purpose (dropping them would try to join threads that do not
//! exist in the child).

pub mod cancel;
pub mod clock;
pub mod cluster;
pub mod conn;
pub mod log;
pub mod outage;
pub mod route;
pub mod sentinel;
pub mod settings;
pub mod target;
pub mod tls;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{Error, Result};

/// Two worker threads: the runtime only does I/O (fetching, acking, timers), which two
/// threads keep up with at the measured rates (no-op jobs as fast as they go); more would compete with the
/// Ruby threads that run jobs.
const WORKER_THREADS: usize = 2;

pub struct Runtime {
    pid: u32,
    pub tokio: tokio::runtime::Runtime,
}

static RUNTIME: Mutex<Option<Arc<Runtime>>> = Mutex::new(None);

/// The runtime of this process, built on first use and rebuilt after a fork.
pub fn get() -> Result<Arc<Runtime>> {
    let mut slot = RUNTIME.lock().unwrap_or_else(|p| p.into_inner());
    let pid = std::process::id();
    if let Some(rt) = slot.as_ref() {
        if rt.pid == pid {
            return Ok(rt.clone());
        }
    }
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .thread_name("fiber_job-tokio")
        .enable_all()
        .build()
        .map_err(|e| Error::Other(format!("cannot start the tokio runtime: {e}")))?;
    let rt = Arc::new(Runtime { pid, tokio });
    if let Some(old) = slot.replace(rt.clone()) {
        // Built in the parent before a fork: its threads are gone here, never drop it.
        std::mem::forget(old);
    }
    Ok(rt)
}

pub fn timed_out(target: &str, timeout: Duration) -> Error {
    Error::Connection(format!(
        "Redis at {target} did not answer within {:.1}s; check that it is running (network_timeout sets this limit)",
        timeout.as_secs_f64()
    ))
}

/// A Redis URL with its password replaced by `***`, for messages and logs.
pub fn mask_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &creds[..colon],
                    &url[at..]
                ),
                None => format!("{}***{}", &url[..scheme + 3], &url[at..]),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn masks_passwords() {
        assert_eq!(
            super::mask_password("redis://u:secret@h:1/0"),
            "redis://u:***@h:1/0"
        );
        assert_eq!(super::mask_password("redis://secret@h"), "redis://***@h");
        assert_eq!(super::mask_password("redis://h:6379"), "redis://h:6379");
    }
}
