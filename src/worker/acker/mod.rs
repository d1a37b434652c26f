//! The acker task: sends every job outcome to Redis, batched, so executors never wait
//! on a round trip per job.
//!
//! Each wake-up takes up to `BATCH` messages (a small batch first waits a millisecond
//! for more: `LINGER`) and groups them by queue; all groups go in one pipeline, each
//! applied whole or not at all:
//! - a group of acks only (the hot path) is plain commands: one `SREM` of every acked
//!   job in the held set (O(1) per job, see `Keys::held`), an `LREM` per job in the
//!   processing list (taken by the blocking fetch), and a `COUNT_ONCE` call per counter:
//!   a Lua `redis.call` per job would cost Redis about a microsecond more per job than
//!   the command itself (a quarter of no-op jobs' throughput), and a transaction's
//!   QUEUED replies cost the worker. An ack is done when Redis took its command; each
//!   command Redis refused is kept and sent again (removing a job no longer held is a
//!   no-op), and so are the counts, so counters come out exact once Redis takes them —
//!   while Redis is full it takes the acks (`SREM`/`LREM` free memory) and the counts
//!   wait. Counts sent again because a reply was lost (a dropped connection) are not
//!   added twice: each call carries the group's number, which its counter's guard
//!   remembers (`scripts::COUNT_ONCE`).
//! - a group with any other outcome (a failure to retry or bury, a give-back) is one
//!   `OUTCOMES` script call, in which each outcome applies only if the process still
//!   holds its job, so it applies once however often it is sent, and which Redis
//!   runs whole even when full (see `scripts.rs`): a failure is never half recorded.
//!
//! Before any of that, the ends of batch members in the wake-up are recorded in their
//! batches (`batch::settle`, one script per batch, delivering the callbacks that
//! fired): a member is never acknowledged before its batch knows it ended.
//!
//! A group Redis does not apply — unreachable, refusing, a key of the wrong type — is
//! kept and sent again with backoff until it applies; meanwhile its jobs stay held.
//! Nothing is ever dropped.
//!
//! Submodules: `group` (a group's commands and replies, and its tests) and `metrics`
//! (per-class metrics).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::outcome::Outcome;
use super::state::WorkerState;
use crate::batch;
use crate::error::is_connection_problem;
use crate::runtime::conn::Conn;
use crate::runtime::outage::Outage;
use crate::runtime::target::Link;
use crate::store::scripts;

mod group;
mod metrics;

use group::{build, BatchEnds, Built, Group, Reply};
use metrics::Metrics;

/// Most outcomes in one wake-up: big enough to amortise the round trip, small enough
/// that one script call stays well under a millisecond of Redis time.
const BATCH: usize = 1000;

/// A wake-up with fewer outcomes than this (and no flush) waits `LINGER` for more,
/// so that jobs finishing one at a time (sleep-bound jobs at 5,000/s) share round
/// trips: sent one by one they cost Redis ~17 µs each, five commands per ack.
const LINGER_BELOW: usize = 32;
const LINGER: Duration = Duration::from_millis(1);

/// Longest pause between attempts at a group Redis refused (not unreachable): such a
/// refusal (a key of the wrong type, a read-only replica) needs a person, so retrying
/// more often only fills the log.
const REFUSED_MAX_DELAY: Duration = Duration::from_secs(5);

pub async fn run(state: Arc<WorkerState>, mut rx: mpsc::UnboundedReceiver<Outcome>) {
    let mut msgs = Vec::with_capacity(BATCH);
    let mut link = Link::new(None);
    let mut outage = Outage::new("acker".to_string());
    let mut metrics = Metrics::new();
    // Key names per queue, made once per stats window rather than every wake-up.
    let mut keys = group::KeyCache::default();
    loop {
        // Idle with runs counted: wait no longer than until they are due.
        let received = match metrics.due_in() {
            Some(wait) => tokio::time::timeout(wait, rx.recv_many(&mut msgs, BATCH))
                .await
                .unwrap_or(usize::MAX),
            None => rx.recv_many(&mut msgs, BATCH).await,
        };
        if received == 0 {
            return;
        }
        if received != usize::MAX
            && msgs.len() < LINGER_BELOW
            && !msgs.iter().any(|m| matches!(m, Outcome::Flush(_)))
        {
            tokio::time::sleep(LINGER).await;
            while msgs.len() < BATCH {
                match rx.try_recv() {
                    Ok(m) => msgs.push(m),
                    Err(_) => break,
                }
            }
        }
        let Built {
            mut groups,
            flushes,
            mut batch_ends,
        } = build(&state, msgs.drain(..), &mut metrics, &mut keys);
        let mut counting = metrics.due(!flushes.is_empty());
        let mut refusals = 0u32;
        while !batch_ends.is_empty() || !groups.is_empty() || counting {
            let c = match link.get(&state.redis).await {
                Ok(c) => c,
                Err(e) => {
                    outage.failed(&e).await;
                    continue;
                }
            };
            // Batch members' ends first: a job is acknowledged only once its batch knows.
            let sent = if batch_ends.is_empty() {
                let metrics = counting.then_some(&mut metrics);
                let sent = send(c, &state, &mut groups, metrics).await;
                counting &= sent.is_err();
                sent
            } else {
                settle_batches(c, &state, &mut batch_ends).await
            };
            match sent {
                Ok(None) => outage.recovered(),
                Ok(Some(refused)) => {
                    refusals += 1;
                    if refusals == 1 || refusals.is_multiple_of(60) {
                        tracing::error!(
                            "Redis refused to record job outcomes ({refused}); they stay in this worker's \
                             processing list and are sent again until Redis takes them"
                        );
                    }
                    let pause = Duration::from_millis(50 * 2u64.pow(refusals.min(7)));
                    tokio::time::sleep(pause.min(REFUSED_MAX_DELAY)).await;
                }
                Err(e) => {
                    link.reset();
                    outage.failed(&e).await;
                }
            }
        }
        if refusals > 0 {
            tracing::warn!("Redis took the job outcomes it had refused");
        }
        for f in flushes {
            let _ = f.send(());
        }
    }
}

/// Records each batch's ended members and delivers the callbacks that fired
/// (`batch::settle`), forgetting each batch once done. Returns like `send`.
async fn settle_batches(
    c: &mut Conn,
    state: &WorkerState,
    batch_ends: &mut BatchEnds,
) -> redis::RedisResult<Option<String>> {
    while let Some((bid, ends)) = batch_ends.first_key_value() {
        match batch::settle(c, &state.keys, bid, "", ends).await {
            Ok(_) => {}
            Err(e) if is_connection_problem(&e) => return Err(e),
            Err(e) => return Ok(Some(format!("batch {bid}: {e}"))),
        }
        batch_ends.pop_first();
    }
    Ok(None)
}

/// Sends every group in one pipeline and removes the ones Redis applied. `Ok(None)`:
/// all applied; `Ok(Some(reason))`: Redis refused some (they stay); `Err`: the
/// connection failed (they all stay; a group whose reply was lost is harmless to send
/// again).
async fn send(
    c: &mut Conn,
    state: &WorkerState,
    groups: &mut BTreeMap<usize, Group>,
    mut metrics: Option<&mut Metrics>,
) -> redis::RedisResult<Option<String>> {
    // A second round only after loading the script (Redis restarted or flushed it).
    for _ in 0..2 {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        let plans: Vec<(usize, Vec<Reply>)> = groups
            .iter()
            .map(|(q, g)| (*q, g.add_to(&mut pipe)))
            .collect();
        let metric_replies = metrics
            .as_deref()
            .map_or(0, |m| m.add_to(&state.keys, &state.identity, &mut pipe));
        let mut results = pipe
            .query_async::<Vec<redis::RedisResult<redis::Value>>>(c)
            .await?
            .into_iter();
        let mut refused = None;
        let mut missing_script = false;
        for (q, plan) in plans {
            let n = plan.len();
            let group = groups.get_mut(&q).expect("planned above");
            if let Some(e) = group.applied(plan, results.by_ref().take(n)) {
                if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) {
                    missing_script = true;
                } else if is_connection_problem(&e) {
                    return Err(e);
                } else {
                    refused = Some(e.to_string());
                }
            }
            if group.is_done() {
                groups.remove(&q);
            }
        }
        if let Some(m) = metrics.take() {
            // Bookkeeping: a refusal (another program's key) is logged, not retried.
            match results.by_ref().take(metric_replies).find_map(|r| r.err()) {
                Some(e) if is_connection_problem(&e) => return Err(e),
                Some(e)
                    if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                {
                    missing_script = true;
                    metrics = Some(m); // sent again with the script loaded
                }
                Some(e) => {
                    tracing::warn!("per-class metrics were not recorded: {e}");
                    m.sent();
                }
                None => m.sent(),
            }
        }
        if !missing_script {
            return Ok(refused);
        }
        scripts::OUTCOMES.prepare_invoke().load_async(c).await?;
        scripts::COUNT_ONCE.prepare_invoke().load_async(c).await?;
    }
    Ok(Some(
        "Redis does not keep FiberJob's script (NOSCRIPT after SCRIPT LOAD)".into(),
    ))
}
