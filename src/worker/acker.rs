//! The acker task: sends every job outcome to Redis, batched, so executors never wait
//! on a round trip per job.
//!
//! Each wake-up takes up to `BATCH` messages (a small batch first waits a millisecond
//! for more: `LINGER`) and groups them by queue; all groups go in one pipeline, each
//! applied whole or not at all:
//! - a group of acks only (the hot path) is plain commands: one `SREM` of every acked
//!   job in the held set (O(1) per job, see `Keys::held`), an `LREM` per job in the
//!   processing list (taken by the blocking fetch), and the counters' `INCRBY`s: a Lua
//!   `redis.call` costs Redis about a microsecond more per job than the command itself
//!   (a quarter of W1's throughput), and a transaction's QUEUED replies cost the
//!   worker. An ack is done when Redis took its command; each command Redis refused is
//!   kept and sent again (removing a job no longer held is a no-op), and so are the
//!   counts, so counters come out exact once Redis takes them — while Redis is full it
//!   takes the acks (`SREM`/`LREM` free memory) and the counts wait. Counts sent again
//!   because a reply was lost count twice.
//! - a group with any other outcome (a failure to retry or bury, a give-back) is one
//!   `OUTCOMES` script call, in which each outcome applies only if the process still
//!   holds its job, so it applies once however often it is sent, and which Redis
//!   runs whole even when full (see `scripts.rs`): a failure is never half recorded.
//!
//! A group Redis does not apply — unreachable, refusing, a key of the wrong type — is
//! kept and sent again with backoff until it applies; meanwhile its jobs stay held.
//! Nothing is ever dropped.
//!
//! (Its tests are in `acker_tests.rs`.)

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::outcome::{AfterFailure, Outcome};
use super::state::WorkerState;
use crate::error::is_connection_problem;
use crate::runtime::conn::Conn;
use crate::runtime::outage::Outage;
use crate::runtime::target::Link;
use crate::store::retention::{
    DEAD_CAP, DEAD_MAX_AGE_SECS, FAILED_CAP, STAT_WINDOW_SECS, STAT_WINDOW_TTL_SECS,
};
use crate::store::{payload, scripts};

/// Most outcomes in one wake-up: big enough to amortise the round trip, small enough
/// that one script call stays well under a millisecond of Redis time.
const BATCH: usize = 1000;

/// A wake-up with fewer outcomes than this (and no flush) waits `LINGER` for more,
/// so that jobs finishing one at a time (W2: sleep-bound jobs at 5,000/s) share round
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
    loop {
        if rx.recv_many(&mut msgs, BATCH).await == 0 {
            return;
        }
        if msgs.len() < LINGER_BELOW && !msgs.iter().any(|m| matches!(m, Outcome::Flush(_))) {
            tokio::time::sleep(LINGER).await;
            while msgs.len() < BATCH {
                match rx.try_recv() {
                    Ok(m) => msgs.push(m),
                    Err(_) => break,
                }
            }
        }
        let (mut groups, flushes) = build(&state, msgs.drain(..));
        let mut refusals = 0u32;
        while !groups.is_empty() {
            let c = match link.get(&state.redis).await {
                Ok(c) => c,
                Err(e) => {
                    outage.failed(&e).await;
                    continue;
                }
            };
            match send(c, &mut groups).await {
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

/// One queue's outcomes of a batch.
struct Group {
    /// `OUTCOMES`'s keys, all in the queue's Cluster slot.
    keys: [String; 9],
    /// `OUTCOMES`'s arguments before the outcomes.
    fixed: [String; 6],
    /// Payloads of the acked jobs in the held set (an ack changes only its own job, so
    /// acks may go first whatever their order among other outcomes).
    acks: Vec<Vec<u8>>,
    /// Payloads of the acked jobs in the processing list.
    listed_acks: Vec<Vec<u8>>,
    /// The other outcomes, as `OUTCOMES` takes them; with none, the group is sent as
    /// plain commands instead of the script.
    others: Vec<Vec<u8>>,
    /// The counters the group adds to (see `Counter`), each in a slot of its own.
    counters: [String; 5],
    /// What is not yet added to each counter.
    uncounted: [usize; 5],
}

/// The counters of `Group::counters`, by index. The queue's processed counter is in
/// the queue's slot, so the script adds to it itself; the process-wide ones are
/// plain `INCRBY`s next to the script, by what the group's outcomes should add (a
/// job a reaper already gave back is still counted: bookkeeping, not a decision).
#[derive(Clone, Copy)]
enum Counter {
    Processed = 0,
    QueueProcessed = 1,
    ProcessedWindow = 2,
    Failed = 3,
    FailedWindow = 4,
}

impl Counter {
    fn is_window(self) -> bool {
        matches!(self, Counter::ProcessedWindow | Counter::FailedWindow)
    }
}

const COUNTERS: [Counter; 5] = [
    Counter::Processed,
    Counter::QueueProcessed,
    Counter::ProcessedWindow,
    Counter::Failed,
    Counter::FailedWindow,
];

/// What one reply of a group's commands answers.
enum Reply {
    /// The script (every outcome but the process-wide counts).
    Script,
    /// The `SREM` of every job in `acks`.
    Acks,
    /// The `LREM` of `listed_acks[i]`.
    ListedAck(usize),
    /// The `INCRBY` of a counter.
    Count(Counter),
    /// An `EXPIRE` (of a window that already counts; nothing to keep).
    Expire,
}

fn build(
    state: &WorkerState,
    msgs: impl Iterator<Item = Outcome>,
) -> (BTreeMap<usize, Group>, Vec<oneshot::Sender<()>>) {
    let now = payload::now();
    let mut groups: BTreeMap<usize, Group> = BTreeMap::new();
    let mut flushes = Vec::new();
    for msg in msgs {
        let q = match &msg {
            Outcome::Acked { q, .. }
            | Outcome::Failed { q, .. }
            | Outcome::GivenBack { q, .. }
            | Outcome::Buried { q, .. } => *q,
            Outcome::Flush(_) => usize::MAX,
        };
        if let Outcome::Flush(tx) = msg {
            flushes.push(tx);
            continue;
        }
        let group = groups.entry(q).or_insert_with(|| Group::new(state, q, now));
        let args = &mut group.others;
        match msg {
            Outcome::Acked { raw, listed, .. } => {
                if listed {
                    group.listed_acks.push(raw);
                } else {
                    group.acks.push(raw);
                }
                group.count(&[
                    Counter::Processed,
                    Counter::QueueProcessed,
                    Counter::ProcessedWindow,
                ]);
            }
            Outcome::Failed {
                raw, record, then, ..
            } => {
                match then {
                    AfterFailure::Retry { at, payload } => args.extend([
                        b"R".to_vec(),
                        raw,
                        record.into_bytes(),
                        at.to_string().into_bytes(),
                        payload.into_bytes(),
                    ]),
                    AfterFailure::Dead { payload } => args.extend([
                        b"D".to_vec(),
                        raw,
                        record.into_bytes(),
                        payload.into_bytes(),
                    ]),
                }
                group.count(&[Counter::Failed, Counter::FailedWindow]);
            }
            Outcome::Buried {
                raw,
                entry,
                expired,
                ..
            } => {
                let op = if expired {
                    b"E".to_vec()
                } else {
                    b"X".to_vec()
                };
                args.extend([op, raw, entry.into_bytes()])
            }
            // Each RPUSH goes to the front: the newest first, so the oldest ends first.
            Outcome::GivenBack { raws, .. } => {
                for raw in raws.into_iter().rev() {
                    args.extend([b"Q".to_vec(), raw]);
                }
            }
            Outcome::Flush(_) => unreachable!("handled above"),
        }
    }
    (groups, flushes)
}

impl Group {
    fn new(state: &WorkerState, q: usize, now: f64) -> Group {
        let k = &state.keys;
        let queue = &state.queues[q];
        let bucket = (now as i64) / STAT_WINDOW_SECS;
        Group {
            keys: [
                state.processing_key(q).to_string(),
                k.queue(queue),
                k.retry(queue),
                k.dead(queue),
                k.failed(queue),
                k.stat_queue("processed", queue),
                k.stat_queue("failed", queue),
                state.held_key(q).to_string(),
                k.stat_queue("expired", queue),
            ],
            fixed: [
                now.to_string(),
                FAILED_CAP.to_string(),
                DEAD_CAP.to_string(),
                DEAD_MAX_AGE_SECS.to_string(),
                k.schedule_channel(),
                queue.clone(),
            ],
            acks: Vec::new(),
            listed_acks: Vec::new(),
            others: Vec::new(),
            counters: [
                k.stat("processed"),
                k.stat_queue("processed", queue),
                k.stat_window("processed", bucket),
                k.stat("failed"),
                k.stat_window("failed", bucket),
            ],
            uncounted: [0; 5],
        }
    }

    fn count(&mut self, counters: &[Counter]) {
        for c in counters {
            self.uncounted[*c as usize] += 1;
        }
    }

    /// Adds the group's commands to `pipe`; returns what each of their replies answers.
    fn add_to(&self, pipe: &mut redis::Pipeline) -> Vec<Reply> {
        let mut replies = Vec::with_capacity(self.listed_acks.len() + 7);
        let scripted = !self.others.is_empty();
        if scripted {
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(scripts::OUTCOMES.get_hash())
                .arg(self.keys.len())
                .arg(&self.keys[..])
                .arg(&self.fixed[..]);
            for raw in self.acks.iter().chain(&self.listed_acks) {
                cmd.arg(&b"A"[..]).arg(raw);
            }
            cmd.arg(&self.others);
            pipe.add_command(cmd);
            replies.push(Reply::Script);
        } else {
            if !self.acks.is_empty() {
                pipe.cmd("SREM").arg(&self.keys[7]).arg(&self.acks);
                replies.push(Reply::Acks);
            }
            for (i, raw) in self.listed_acks.iter().enumerate() {
                pipe.cmd("LREM").arg(&self.keys[0]).arg(-1).arg(raw);
                replies.push(Reply::ListedAck(i));
            }
        }
        for counter in COUNTERS {
            let (key, n) = (
                &self.counters[counter as usize],
                self.uncounted[counter as usize],
            );
            if n == 0 || (scripted && matches!(counter, Counter::QueueProcessed)) {
                continue;
            }
            pipe.cmd("INCRBY").arg(key).arg(n);
            replies.push(Reply::Count(counter));
            if counter.is_window() {
                pipe.cmd("EXPIRE").arg(key).arg(STAT_WINDOW_TTL_SECS);
                replies.push(Reply::Expire);
            }
        }
        replies
    }

    /// Takes the replies to `add_to`'s commands: forgets what Redis applied. Returns
    /// the first refusal (what is left is sent again).
    fn applied(
        &mut self,
        plan: Vec<Reply>,
        replies: impl Iterator<Item = redis::RedisResult<redis::Value>>,
    ) -> Option<redis::RedisError> {
        let mut refused = None;
        let mut done = vec![false; self.listed_acks.len()];
        for (what, reply) in plan.into_iter().zip(replies) {
            match (what, reply) {
                (Reply::Script, Ok(v)) => {
                    if let Ok((_, _, problems @ 1..)) =
                        redis::from_redis_value::<(i64, i64, i64)>(v)
                    {
                        tracing::warn!(
                            "{problems} FiberJob counter(s) in Redis are not integers and were not updated"
                        );
                    }
                    // The script counted the queue's processed jobs itself.
                    done.iter_mut().for_each(|d| *d = true);
                    self.acks.clear();
                    self.others.clear();
                    self.uncounted[Counter::QueueProcessed as usize] = 0;
                }
                (Reply::Acks, Ok(_)) => self.acks.clear(),
                (Reply::ListedAck(i), Ok(_)) => done[i] = true,
                (Reply::Count(c), Ok(_)) => self.uncounted[c as usize] = 0,
                (Reply::Count(c), Err(e)) if matches!(e.code(), Some("ERR" | "WRONGTYPE")) => {
                    // Not a number (another program wrote it): counting is bookkeeping.
                    tracing::warn!("a FiberJob counter in Redis was not updated: {e}");
                    self.uncounted[c as usize] = 0;
                }
                (Reply::Expire, _) => {}
                (_, Err(e)) => {
                    refused.get_or_insert(e);
                }
            }
        }
        let mut done = done.into_iter();
        self.listed_acks.retain(|_| !done.next().unwrap_or(false));
        refused
    }

    fn is_done(&self) -> bool {
        self.acks.is_empty()
            && self.listed_acks.is_empty()
            && self.others.is_empty()
            && self.uncounted == [0; 5]
    }
}

/// Sends every group in one pipeline and removes the ones Redis applied. `Ok(None)`:
/// all applied; `Ok(Some(reason))`: Redis refused some (they stay); `Err`: the
/// connection failed (they all stay; a group whose reply was lost is harmless to send
/// again).
async fn send(
    c: &mut Conn,
    groups: &mut BTreeMap<usize, Group>,
) -> redis::RedisResult<Option<String>> {
    // A second round only after loading the script (Redis restarted or flushed it).
    for _ in 0..2 {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        let plans: Vec<(usize, Vec<Reply>)> = groups
            .iter()
            .map(|(q, g)| (*q, g.add_to(&mut pipe)))
            .collect();
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
        if !missing_script {
            return Ok(refused);
        }
        scripts::OUTCOMES.prepare_invoke().load_async(c).await?;
    }
    Ok(Some(
        "Redis does not keep FiberJob's script (NOSCRIPT after SCRIPT LOAD)".into(),
    ))
}

#[cfg(test)]
#[path = "acker_tests.rs"]
mod tests;
