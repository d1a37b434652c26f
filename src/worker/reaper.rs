//! Crash recovery: any live worker gives the jobs of a dead one back to their queues.
//!
//! Every `REAP_EVERY`, the worker that takes the short reaper lock looks at each
//! registered process whose heartbeat key has expired (it stopped beating for
//! `HEARTBEAT_TTL_SECS`: killed, crashed, or cut off from Redis) and moves each job in
//! its processing lists and held sets back to the front of its queue (`RECOVER`:
//! atomic, and a no-op for a job its owner finished meanwhile). The processes looked at
//! are those in `processes`. Each recovery of a job is counted; the `MAX_RECOVERIES`-th sends it to the dead set instead, so a job that kills its
//! worker (a poison pill) cannot take down workers forever.
//!
//! Right after this worker's own Redis outage it waits one heartbeat TTL before reaping:
//! the other workers' heartbeats may have lapsed during the same outage while they are
//! alive and about to beat again.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::heartbeat::HEARTBEAT_TTL_SECS;
use super::state::WorkerState;
use crate::batch;
use crate::runtime::clock;
use crate::runtime::conn::Conn;
use crate::runtime::outage::Outage;
use crate::runtime::target::Link;
use crate::store::{payload, records, scripts};

/// How often a worker tries to reap.
pub const REAP_EVERY: Duration = Duration::from_secs(1);
/// A job whose worker died this many times while running it goes to the dead set.
pub const MAX_RECOVERIES: i64 = 3;
/// How long a recovery count is kept: a job recovered again within a day is a suspect.
const RECOVERY_COUNT_TTL_SECS: u64 = 86_400;

pub async fn run(state: Arc<WorkerState>) {
    let mut outage = Outage::new("reaper".to_string());
    let mut link = Link::new(None);
    let mut quiet_until = Instant::now();
    loop {
        tokio::time::sleep(REAP_EVERY).await;
        if Instant::now() < quiet_until {
            continue;
        }
        let result = async {
            let c = link.get(&state.redis).await?;
            reap(&state, c).await
        }
        .await;
        match result {
            Ok(()) => outage.recovered(),
            Err(e) => {
                link.reset();
                outage.failed(&e).await;
                quiet_until = Instant::now() + Duration::from_secs(HEARTBEAT_TTL_SECS + 1);
            }
        }
    }
}

async fn reap(state: &WorkerState, c: &mut Conn) -> redis::RedisResult<()> {
    let k = &state.keys;
    let locked: Option<String> = redis::cmd("SET")
        .arg(k.reaper_lock())
        .arg(&state.identity)
        .arg("NX")
        .arg("PX")
        .arg(REAP_EVERY.as_millis() as u64)
        .query_async(c)
        .await?;
    if locked.is_none() {
        return Ok(());
    }
    let processes: Vec<String> = redis::cmd("SMEMBERS")
        .arg(k.processes())
        .query_async(c)
        .await?;
    for id in processes.iter().filter(|id| **id != state.identity) {
        let alive: bool = redis::cmd("EXISTS")
            .arg(k.process(id))
            .query_async(c)
            .await?;
        if alive {
            continue;
        }
        let queues: Vec<String> = redis::cmd("SMEMBERS")
            .arg(k.queues())
            .query_async(c)
            .await?;
        let mut moved = 0;
        let mut buried = 0;
        for queue in &queues {
            let keys = (k.processing(queue, id), k.held(queue, id));
            // Newest first: each RPUSH puts its job at the front, so the oldest ends
            // first (a set has no order: its jobs go after the list's).
            let mut jobs: Vec<Vec<u8>> = redis::cmd("SMEMBERS").arg(&keys.1).query_async(c).await?;
            let listed: Vec<Vec<u8>> = redis::cmd("LRANGE")
                .arg(&keys.0)
                .arg(0)
                .arg(-1)
                .query_async(c)
                .await?;
            jobs.extend(listed);
            for raw in jobs {
                match recover_one(state, c, queue, &keys, raw).await? {
                    Recovered::Requeued => moved += 1,
                    Recovered::Buried => buried += 1,
                    Recovered::Gone => {}
                }
            }
        }
        redis::cmd("SREM")
            .arg(k.processes())
            .arg(id)
            .query_async::<()>(c)
            .await?;
        if moved + buried > 0 {
            tracing::warn!(
                "worker {id} stopped beating; put {moved} of its job(s) back on their queues{}",
                if buried > 0 {
                    format!(", moved {buried} to the dead set")
                } else {
                    String::new()
                }
            );
        }
    }
    // Batches whose `jobs { }` block was abandoned, or whose block's end fired
    // callbacks its process may not have delivered.
    batch::sweep(c, k).await?;
    Ok(())
}

enum Recovered {
    Requeued,
    Buried,
    /// No longer held: its owner finished it after all.
    Gone,
}

/// Requeues one job of a dead process, or buries it past `MAX_RECOVERIES`: one script,
/// so the job is in exactly one place whatever happens to this connection.
async fn recover_one(
    state: &WorkerState,
    c: &mut Conn,
    queue: &str,
    (processing, held): &(String, String),
    raw: Vec<u8>,
) -> redis::RedisResult<Recovered> {
    let k = &state.keys;
    // Bytes that are not UTF-8 have no jid to count by; the fetcher buries them.
    let parsed = std::str::from_utf8(&raw)
        .ok()
        .and_then(|text| payload::parse(text).ok().map(|p| (text, p)));
    let outcome: i64 = match parsed.filter(|(_, p)| !p.jid.is_empty()) {
        Some((text, p)) => {
            let reason = format!(
                "the worker running this job died {MAX_RECOVERIES} times while running it (killed, crashed or exited); moved to the dead set as a likely poison pill"
            );
            let now = clock::now();
            let record = records::dead_entry(text, "FiberJob::WorkerLost", &reason, now);
            let outcome = scripts::RECOVER_COUNTED
                .key(processing)
                .key(k.queue(queue))
                .key(k.dead(queue))
                .key(k.recoveries(queue, &p.jid))
                .key(held)
                .arg(&raw)
                .arg(MAX_RECOVERIES)
                .arg(RECOVERY_COUNT_TTL_SECS)
                .arg(now)
                .arg(record)
                .invoke_async(c)
                .await?;
            if outcome == 2 {
                tracing::error!(jid = %p.jid, class = %p.class, "{reason}");
                if let Some(bid) = &p.bid {
                    batch::settle(c, k, bid, "", &[(p.jid.to_string(), batch::End::Died)]).await?;
                }
            }
            outcome
        }
        None => {
            scripts::RECOVER
                .key(processing)
                .key(k.queue(queue))
                .key(held)
                .arg(&raw)
                .invoke_async(c)
                .await?
        }
    };
    Ok(match outcome {
        0 => Recovered::Gone,
        2 => Recovered::Buried,
        _ => Recovered::Requeued,
    })
}
