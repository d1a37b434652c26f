//! The acker task: sends every job outcome to Redis, batched, so executors never wait
//! on a round trip per job.
//!
//! Each wake-up takes up to `BATCH` messages and groups them by queue; each group is
//! one `OUTCOMES` script call (all of a group's calls go in one pipeline). A script is
//! all or nothing, also when Redis is full (see `scripts.rs`), and each outcome in it
//! applies only if its job is still in this process's processing list, so a group sent
//! twice applies once. A group Redis does not apply — unreachable, refusing, a key of
//! the wrong type — is kept and sent again with backoff until it applies; meanwhile its
//! jobs stay in the processing list. Nothing is ever dropped.

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

/// One queue's outcomes of a batch, as `OUTCOMES` takes them.
struct Group {
    keys: [String; 11],
    args: Vec<Vec<u8>>,
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
        let args = &mut groups
            .entry(q)
            .or_insert_with(|| Group::new(shared, q, now))
            .args;
        match msg {
            Msg::Ack { raw, .. } => args.extend([b"A".to_vec(), raw]),
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
            args: [
                now.to_string(),
                FAILED_CAP.to_string(),
                DEAD_CAP.to_string(),
                DEAD_MAX_AGE_SECS.to_string(),
                STAT_WINDOW_TTL_SECS.to_string(),
                k.schedule_channel(),
                queue.clone(),
            ]
            .into_iter()
            .map(String::into_bytes)
            .collect(),
        }
    }

    fn command(&self) -> redis::Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(scripts::OUTCOMES.get_hash())
            .arg(self.keys.len())
            .arg(&self.keys[..])
            .arg(&self.args);
        cmd
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
        for g in groups.values() {
            pipe.add_command(g.command());
        }
        let results: Vec<redis::RedisResult<(i64, i64, i64)>> = pipe.query_async(c).await?;
        let queues: Vec<usize> = groups.keys().copied().collect();
        let mut refused = None;
        let mut missing_script = false;
        for (q, result) in queues.into_iter().zip(results) {
            match result {
                Ok((_, _, problems)) => {
                    if problems > 0 {
                        tracing::warn!(
                            "{problems} FiberJob counter(s) in Redis are not integers and were not updated"
                        );
                    }
                    groups.remove(&q);
                }
                Err(e)
                    if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                {
                    missing_script = true
                }
                Err(e) if is_connection_problem(&e) => return Err(e),
                Err(e) => refused = Some(e.to_string()),
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
