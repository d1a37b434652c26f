//! The acker task: sends every job outcome to Redis, batched, so executors never wait
//! on a round trip per job.
//!
//! Each wake-up takes up to `BATCH` messages and groups them by queue; all groups go in
//! one pipeline, each applied whole or not at all:
//! - a group of acks only (the hot path) is one transaction, `MULTI`, an `LREM` per job,
//!   the counters, `EXEC`. Plain commands: a Lua `redis.call` costs Redis about a
//!   microsecond more per job than the command itself, which is a quarter of W1's
//!   throughput. Redis refuses the transaction whole while it is full (the counters may
//!   grow memory); the acks wait, their jobs stay in the processing list. A transaction
//!   sent twice (its reply lost) removes nothing twice but counts twice.
//! - a group with any other outcome (a failure to retry or bury, a give-back) is one
//!   `OUTCOMES` script call, in which each outcome applies only if its job is still in
//!   the processing list, so it applies once however often it is sent, and which Redis
//!   runs whole even when full (see `scripts.rs`): a failure is never half recorded.
//! A group Redis does not apply — unreachable, refusing, a key of the wrong type — is
//! kept and sent again with backoff until it applies; meanwhile its jobs stay in the
//! processing list. Nothing is ever dropped.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tokio::sync::{mpsc, oneshot};

use crate::engine::Shared;
use crate::error::is_connection_problem;
use crate::outage::Outage;
use crate::payload;
use crate::scripts;

/// Most outcomes in one wake-up: big enough to amortise the round trip, small enough
/// that one script call stays well under a millisecond of Redis time.
const BATCH: usize = 1000;

/// Failure records kept in `failed` (newest first); older ones are trimmed.
pub const FAILED_CAP: isize = 1000;
/// Dead-set bounds, Sidekiq's defaults: 10,000 jobs, 180 days.
pub const DEAD_CAP: isize = 10_000;
pub const DEAD_MAX_AGE_SECS: f64 = 180.0 * 24.0 * 3600.0;
/// Throughput windows: 10-second counters, kept an hour (the dashboard shows 5 minutes).
pub const STAT_WINDOW_SECS: i64 = 10;
pub const STAT_WINDOW_TTL_SECS: i64 = 3600;

/// Longest pause between attempts at a group Redis refused (not unreachable): such a
/// refusal (a key of the wrong type, a read-only replica) needs a person, so retrying
/// more often only fills the log.
const REFUSED_MAX_DELAY: Duration = Duration::from_secs(5);

pub enum Next {
    Retry { at: f64, payload: String },
    Dead { payload: String },
}

pub enum Msg {
    /// Performed successfully.
    Ack { q: usize, raw: Vec<u8> },
    /// Failed: record it, then retry or bury it.
    Fail {
        q: usize,
        raw: Vec<u8>,
        record: String,
        next: Next,
    },
    /// Taken but not started (or interrupted at shutdown): back to the queue's front,
    /// oldest first.
    Requeue { q: usize, raws: Vec<Vec<u8>> },
    /// Cannot run at all (bad payload, unknown class): straight to the dead set.
    Dead {
        q: usize,
        raw: Vec<u8>,
        record: String,
    },
    /// Answers once everything sent before it is in Redis.
    Flush(oneshot::Sender<()>),
}

pub async fn run(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Msg>) {
    let mut msgs = Vec::with_capacity(BATCH);
    let mut conn: Option<MultiplexedConnection> = None;
    let mut outage = Outage::new("acker".to_string());
    loop {
        if rx.recv_many(&mut msgs, BATCH).await == 0 {
            return;
        }
        let (mut groups, flushes) = build(&shared, msgs.drain(..));
        let mut refusals = 0u32;
        while !groups.is_empty() {
            let c = match conn.as_mut() {
                Some(c) => c,
                None => match shared.client.get_multiplexed_async_connection().await {
                    Ok(c) => conn.insert(c),
                    Err(e) => {
                        outage.failed(&e).await;
                        continue;
                    }
                },
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
                    conn = None;
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
    /// `OUTCOMES`'s keys (the transaction uses some of them).
    keys: [String; 11],
    /// `OUTCOMES`'s arguments before the outcomes.
    fixed: [String; 7],
    /// Payloads of the acked jobs (an ack changes only its own job, so acks may go
    /// first whatever their order among other outcomes).
    acks: Vec<Vec<u8>>,
    /// The other outcomes, as `OUTCOMES` takes them; with none, the group is sent as
    /// a transaction of plain commands instead of the script.
    others: Vec<Vec<u8>>,
}

fn build(
    shared: &Shared,
    msgs: impl Iterator<Item = Msg>,
) -> (BTreeMap<usize, Group>, Vec<oneshot::Sender<()>>) {
    let now = payload::now();
    let mut groups: BTreeMap<usize, Group> = BTreeMap::new();
    let mut flushes = Vec::new();
    for msg in msgs {
        let q = match &msg {
            Msg::Ack { q, .. }
            | Msg::Fail { q, .. }
            | Msg::Requeue { q, .. }
            | Msg::Dead { q, .. } => *q,
            Msg::Flush(_) => usize::MAX,
        };
        if let Msg::Flush(tx) = msg {
            flushes.push(tx);
            continue;
        }
        let group = groups
            .entry(q)
            .or_insert_with(|| Group::new(shared, q, now));
        let args = &mut group.others;
        match msg {
            Msg::Ack { raw, .. } => group.acks.push(raw),
            Msg::Fail {
                raw, record, next, ..
            } => match next {
                Next::Retry { at, payload } => args.extend([
                    b"R".to_vec(),
                    raw,
                    record.into_bytes(),
                    at.to_string().into_bytes(),
                    payload.into_bytes(),
                ]),
                Next::Dead { payload } => args.extend([
                    b"D".to_vec(),
                    raw,
                    record.into_bytes(),
                    payload.into_bytes(),
                ]),
            },
            Msg::Dead { raw, record, .. } => args.extend([b"X".to_vec(), raw, record.into_bytes()]),
            // Each RPUSH goes to the front: the newest first, so the oldest ends first.
            Msg::Requeue { raws, .. } => {
                for raw in raws.into_iter().rev() {
                    args.extend([b"Q".to_vec(), raw]);
                }
            }
            Msg::Flush(_) => unreachable!("handled above"),
        }
    }
    (groups, flushes)
}

impl Group {
    fn new(shared: &Shared, q: usize, now: f64) -> Group {
        let k = &shared.keys;
        let queue = &shared.queues[q];
        let bucket = (now as i64) / STAT_WINDOW_SECS;
        Group {
            keys: [
                shared.processing_key(q).to_string(),
                k.queue(queue),
                k.retry(queue),
                k.dead(),
                k.failed(),
                k.stat("processed"),
                k.stat("failed"),
                k.stat_queue("processed", queue),
                k.stat_queue("failed", queue),
                k.stat_window("processed", bucket),
                k.stat_window("failed", bucket),
            ],
            fixed: [
                now.to_string(),
                FAILED_CAP.to_string(),
                DEAD_CAP.to_string(),
                DEAD_MAX_AGE_SECS.to_string(),
                STAT_WINDOW_TTL_SECS.to_string(),
                k.schedule_channel(),
                queue.clone(),
            ],
            acks: Vec::new(),
            others: Vec::new(),
        }
    }

    /// Adds the group's commands to `pipe`; returns how many replies they bring.
    fn add_to(&self, pipe: &mut redis::Pipeline) -> usize {
        if !self.others.is_empty() {
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(scripts::OUTCOMES.get_hash())
                .arg(self.keys.len())
                .arg(&self.keys[..])
                .arg(&self.fixed[..]);
            for raw in &self.acks {
                cmd.arg(&b"A"[..]).arg(raw);
            }
            cmd.arg(&self.others);
            pipe.add_command(cmd);
            return 1;
        }
        let [processing, _, _, _, _, total, _, per_queue, _, window, _] = &self.keys;
        pipe.cmd("MULTI");
        for raw in &self.acks {
            pipe.cmd("LREM").arg(processing).arg(-1).arg(raw);
        }
        let n = self.acks.len();
        for key in [total, per_queue, window] {
            pipe.cmd("INCRBY").arg(key).arg(n);
        }
        pipe.cmd("EXPIRE").arg(window).arg(STAT_WINDOW_TTL_SECS);
        pipe.cmd("EXEC");
        n + 6
    }
}

/// Sends every group in one pipeline and removes the ones Redis applied. `Ok(None)`:
/// all applied; `Ok(Some(reason))`: Redis refused some (they stay); `Err`: the
/// connection failed (they all stay; a group whose reply was lost is harmless to send
/// again).
async fn send(
    c: &mut MultiplexedConnection,
    groups: &mut BTreeMap<usize, Group>,
) -> redis::RedisResult<Option<String>> {
    // A second round only after loading the script (Redis restarted or flushed it).
    for _ in 0..2 {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        let spans: Vec<(usize, usize)> = groups
            .iter()
            .map(|(q, g)| (*q, g.add_to(&mut pipe)))
            .collect();
        let mut results = pipe
            .query_async::<Vec<redis::RedisResult<redis::Value>>>(c)
            .await?
            .into_iter();
        let mut refused = None;
        let mut missing_script = false;
        for (q, replies) in spans {
            // A group's outcome is its last reply: the script's, or EXEC's. When Redis
            // refused the transaction (EXECABORT), the command it refused says why.
            let replies: Vec<_> = results.by_ref().take(replies).collect();
            let cause = replies
                .iter()
                .rev()
                .skip(1)
                .find_map(|r| r.as_ref().err().cloned());
            match replies.into_iter().last() {
                Some(Ok(v)) => {
                    let counts = redis::from_redis_value::<(i64, i64, i64)>(v);
                    if let Ok((_, _, problems @ 1..)) = counts {
                        tracing::warn!(
                            "{problems} FiberJob counter(s) in Redis are not integers and were not updated"
                        );
                    }
                    groups.remove(&q);
                }
                Some(Err(e)) => {
                    let e = cause.unwrap_or(e);
                    if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) {
                        missing_script = true;
                    } else if is_connection_problem(&e) {
                        return Err(e);
                    } else {
                        refused = Some(e.to_string());
                    }
                }
                None => refused = Some("Redis sent fewer replies than commands".into()),
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
