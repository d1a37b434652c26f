//! The heartbeat: registers this worker process and proves it alive every
//! `HEARTBEAT_EVERY`, with what dashboards show (queues, concurrency, busy, RSS), and
//! reads which queues are paused (at once when a pause is announced); it also keeps
//! this process's offset to Redis's clock (`runtime::clock`). Its
//! counterpart is the reaper (`reaper.rs`), which recovers the jobs of a process whose
//! heartbeat expired. Beats come from tokio, so a job holding the GVL does not delay
//! them, and they are a script Redis runs even when full (see `scripts.rs`), so a
//! worker is not taken for dead while Redis is out of memory.

use std::sync::Arc;
use std::time::Duration;

use super::flow::leases;
use super::state::WorkerState;
use crate::error::is_connection_problem;
use crate::runtime::clock;
use crate::runtime::conn::Conn;
use crate::runtime::outage::Outage;
use crate::runtime::target::Link;
use crate::store::{payload, scripts};

/// How often a worker refreshes its heartbeat.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// How long a heartbeat lives: five missed beats mean the process is gone, and its
/// jobs are recovered by another worker (so recovery takes about this long).
pub const HEARTBEAT_TTL_SECS: u64 = 5;
/// How soon a change in the jobs running shows in `Queue.stats` (`processing`) and the
/// process list, between beats.
pub const BUSY_EVERY: Duration = Duration::from_millis(50);

/// Registers this process and keeps its heartbeat alive.
pub async fn run(state: Arc<WorkerState>) {
    let mut outage = Outage::new("heartbeat".to_string());
    let started_at = payload::now();
    let queues = serde_json::to_string(&state.queues).unwrap_or_default();
    let concurrency = serde_json::to_string(&state.limits).unwrap_or_default();
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let mut link = Link::new(None);
    let key = state.keys.process(&state.identity);
    loop {
        let busy_now = state.dispatcher.busy();
        let busy: usize = busy_now.iter().sum();
        let busy_by_queue = serde_json::to_string(&busy_now).unwrap_or_default();
        let mut beat = scripts::HEARTBEAT.prepare_invoke();
        beat.key(&key)
            .arg(HEARTBEAT_TTL_SECS)
            .arg("identity")
            .arg(&state.identity)
            .arg("hostname")
            .arg(&hostname)
            .arg("pid")
            .arg(std::process::id())
            .arg("queues")
            .arg(&queues)
            .arg("concurrency")
            .arg(&concurrency)
            .arg("busy")
            .arg(busy)
            .arg("busy_by_queue")
            .arg(&busy_by_queue)
            .arg("quiet")
            .arg(if state.dispatcher.is_quiet() {
                "true"
            } else {
                "false"
            })
            .arg("rss")
            .arg(rss_kb())
            .arg("started_at")
            .arg(started_at)
            .arg("beat")
            .arg(clock::now());
        let result = async {
            let c = link.get(&state.redis).await?;
            // Redis's clock, for this process's time decisions (`clock.rs`): learned
            // before the first registration, so fetchers start with it.
            clock::sync(c).await?;
            beat.invoke_async::<()>(c).await?;
            // A refused renewal (Redis full) is retried at the next beat; only a lost
            // connection fails the beat.
            match leases::renew(&state, c).await {
                Err(e) if is_connection_problem(&e) => return Err(e),
                _ => {}
            }
            register(&state, c).await
        }
        .await;
        match result {
            Ok(paused) => {
                outage.recovered();
                state.pulses.beat();
                // Before the first registration: fetchers start knowing what is paused.
                if let Some(paused) = paused {
                    state.apply_paused(&paused);
                }
                if state.mark_registered() {
                    if let Ok(c) = link.get(&state.redis).await {
                        warn_if_evicting(c).await;
                    }
                }
                if let Err(e) = between_beats(&state, &mut link, &key, busy_now).await {
                    link.reset();
                    outage.failed(&e).await;
                }
            }
            Err(e) => {
                link.reset();
                outage.failed(&e).await;
            }
        }
    }
}

/// Until the next beat is due (or a pause is announced): every `BUSY_EVERY`, when the
/// jobs running changed since what Redis has (`written`), writes the new counts into
/// the heartbeat (`BUSY`) — so a job that started shows as processing within that, not
/// at the next beat. On the beat's own connection, so writes never pass each other;
/// nothing per job, no command while nothing changes. A failure ends the wait: the
/// beat reconnects and reports.
async fn between_beats(
    state: &WorkerState,
    link: &mut Link,
    key: &str,
    mut written: Vec<usize>,
) -> redis::RedisResult<()> {
    let next_beat = tokio::time::Instant::now() + HEARTBEAT_EVERY;
    loop {
        let left = next_beat.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() || state.beat_pause(left.min(BUSY_EVERY)).await {
            return Ok(());
        }
        let busy_now = state.dispatcher.busy();
        if busy_now == written {
            continue;
        }
        let busy: usize = busy_now.iter().sum();
        let mut write = scripts::BUSY.prepare_invoke();
        write
            .key(key)
            .arg("busy")
            .arg(busy)
            .arg("busy_by_queue")
            .arg(serde_json::to_string(&busy_now).unwrap_or_default());
        write
            .invoke_async::<i64>(link.get(&state.redis).await?)
            .await?;
        written = busy_now;
    }
}

/// Adds this process to the process set and its queues to the queue set, on every
/// beat (a reaper that took the process for dead, after a long pause, removed it), and
/// reads the paused queues. These keys live in other Cluster slots than the heartbeat
/// hash, so they are commands of their own; Redis refuses them while full, which
/// matters only before the first registration: later the beat alone keeps the process
/// alive (and the paused queues stay as last read: `None`).
async fn register(state: &WorkerState, c: &mut Conn) -> redis::RedisResult<Option<Vec<String>>> {
    let mut pipe = redis::pipe();
    pipe.cmd("SADD")
        .arg(state.keys.processes())
        .arg(&state.identity)
        .ignore();
    // One command for every queue: its cost must not grow with them.
    pipe.cmd("SADD")
        .arg(state.keys.queues())
        .arg(&state.queues)
        .ignore();
    pipe.cmd("SMEMBERS").arg(state.keys.paused());
    match pipe.query_async::<(Vec<String>,)>(c).await {
        Ok((paused,)) => Ok(Some(paused)),
        Err(e) if state.is_registered() && e.code() == Some("OOM") => Ok(None),
        Err(e) => Err(e),
    }
}

/// Logs, once per worker start, when Redis may evict keys to make room: with any
/// `maxmemory-policy` but `noeviction`, a full Redis deletes keys — queued jobs,
/// heartbeats — instead of refusing writes that FiberJob would retry or report.
async fn warn_if_evicting(c: &mut Conn) {
    let Ok(info) = redis::cmd("INFO")
        .arg("memory")
        .query_async::<String>(c)
        .await
    else {
        return;
    };
    let policy = info
        .lines()
        .find_map(|l| l.strip_prefix("maxmemory_policy:"))
        .map(str::trim);
    if let Some(policy) = policy.filter(|p| *p != "noeviction") {
        tracing::warn!(
            "Redis has maxmemory-policy {policy}: when it is full it deletes keys, which may be queued \
             jobs or worker heartbeats. Set maxmemory-policy noeviction (FiberJob then reports a full Redis \
             instead of losing data)"
        );
    }
}

/// Resident set size of this process in KiB (Linux), 0 where unknown.
pub fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
