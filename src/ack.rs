//! The acker task: sends every job outcome to Redis, batched into one pipeline per
//! wake-up, so executors never wait on a round trip per job.
//!
//! Every change adds before it removes (the failure record and the retry or dead entry
//! first, the processing-list entry last), so a connection lost halfway can duplicate a
//! job but never lose one. A batch that cannot be sent is kept and retried with
//! backoff; meanwhile its jobs stay in the processing list (at least once).

use std::collections::HashMap;
use std::sync::Arc;

use redis::aio::MultiplexedConnection;
use tokio::sync::{mpsc, oneshot};

use crate::engine::Shared;
use crate::error::is_connection_problem;
use crate::outage::Outage;
use crate::payload;
use crate::scripts;

/// Most outcomes in one pipeline: big enough to amortise the round trip, small enough
/// that one pipeline stays well under a millisecond of Redis time.
const BATCH: usize = 1000;

/// Failure records kept in `failed` (newest first); older ones are trimmed.
/// Throughput windows: 10-second counters, kept an hour (the dashboard shows 5 minutes).
pub const STAT_WINDOW_SECS: i64 = 10;
pub const STAT_WINDOW_TTL_SECS: i64 = 3600;
pub const FAILED_CAP: isize = 1000;
/// Dead-set bounds, Sidekiq's defaults: 10,000 jobs, 180 days.
pub const DEAD_CAP: isize = 10_000;
pub const DEAD_MAX_AGE_SECS: f64 = 180.0 * 24.0 * 3600.0;

pub enum Next {
    Retry { at: f64, payload: String },
    Dead { payload: String },
}

pub enum Msg {
    /// Performed successfully.
    Ack { q: usize, raw: String },
    /// Failed: record it, then retry or bury it.
    Fail {
        q: usize,
        raw: String,
        record: String,
        next: Next,
    },
    /// Taken but not started (or interrupted at shutdown): back to the queue's front.
    Requeue { q: usize, raws: Vec<String> },
    /// Cannot run at all (bad payload, unknown class): straight to the dead set.
    Dead {
        q: usize,
        raw: String,
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
        let batch = Batch::build(&shared, msgs.drain(..));
        loop {
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
            match batch.send(&shared, c).await {
                Ok(()) => {
                    outage.recovered();
                    break;
                }
                Err(e) if is_connection_problem(&e) => {
                    conn = None;
                    outage.failed(&e).await;
                }
                Err(e) => {
                    // Redis refused a command (e.g. a key of the wrong type). The jobs
                    // stay in the processing list and are recovered later: logged, not lost.
                    tracing::error!("acker: Redis rejected a batch: {e}");
                    break;
                }
            }
        }
        for f in batch.flushes {
            let _ = f.send(());
        }
    }
}

struct Batch {
    pipe: redis::Pipeline,
    requeues: Vec<(usize, Vec<String>)>,
    flushes: Vec<oneshot::Sender<()>>,
}

impl Batch {
    fn build(shared: &Shared, msgs: impl Iterator<Item = Msg>) -> Batch {
        let k = &shared.keys;
        let mut pipe = redis::pipe();
        let mut requeues = Vec::new();
        let mut flushes = Vec::new();
        let mut processed: HashMap<usize, i64> = HashMap::new();
        let mut failed: HashMap<usize, i64> = HashMap::new();
        let mut dead_added = false;
        let now = payload::now();
        for msg in msgs {
            match msg {
                Msg::Ack { q, raw } => {
                    pipe.cmd("LREM")
                        .arg(shared.processing_key(q))
                        .arg(-1)
                        .arg(raw)
                        .ignore();
                    *processed.entry(q).or_default() += 1;
                }
                Msg::Fail {
                    q,
                    raw,
                    record,
                    next,
                } => {
                    pipe.cmd("LPUSH").arg(k.failed()).arg(record).ignore();
                    match next {
                        Next::Retry { at, payload } => {
                            let queue = &shared.queues[q];
                            pipe.cmd("ZADD")
                                .arg(k.retry(queue))
                                .arg(at)
                                .arg(payload)
                                .ignore();
                            pipe.cmd("PUBLISH")
                                .arg(k.schedule_channel())
                                .arg(queue)
                                .ignore();
                        }
                        Next::Dead { payload } => {
                            pipe.cmd("ZADD")
                                .arg(k.dead())
                                .arg(now)
                                .arg(payload)
                                .ignore();
                            dead_added = true;
                        }
                    }
                    pipe.cmd("LREM")
                        .arg(shared.processing_key(q))
                        .arg(-1)
                        .arg(raw)
                        .ignore();
                    *failed.entry(q).or_default() += 1;
                }
                Msg::Dead { q, raw, record } => {
                    pipe.cmd("ZADD").arg(k.dead()).arg(now).arg(record).ignore();
                    pipe.cmd("LREM")
                        .arg(shared.processing_key(q))
                        .arg(-1)
                        .arg(raw)
                        .ignore();
                    dead_added = true;
                }
                Msg::Requeue { q, raws } => requeues.push((q, raws)),
                Msg::Flush(tx) => flushes.push(tx),
            }
        }
        if !failed.is_empty() {
            pipe.cmd("LTRIM")
                .arg(k.failed())
                .arg(0)
                .arg(FAILED_CAP - 1)
                .ignore();
        }
        if dead_added {
            pipe.cmd("ZREMRANGEBYSCORE")
                .arg(k.dead())
                .arg("-inf")
                .arg(now - DEAD_MAX_AGE_SECS)
                .ignore();
            pipe.cmd("ZREMRANGEBYRANK")
                .arg(k.dead())
                .arg(0)
                .arg(-(DEAD_CAP + 1))
                .ignore();
        }
        for (name, counts) in [("processed", &processed), ("failed", &failed)] {
            let total: i64 = counts.values().sum();
            if total > 0 {
                pipe.cmd("INCRBY").arg(k.stat(name)).arg(total).ignore();
                let window = k.stat_window(name, (now as i64) / STAT_WINDOW_SECS);
                pipe.cmd("INCRBY").arg(&window).arg(total).ignore();
                pipe.cmd("EXPIRE")
                    .arg(&window)
                    .arg(STAT_WINDOW_TTL_SECS)
                    .ignore();
            }
            for (q, n) in counts {
                pipe.cmd("INCRBY")
                    .arg(k.stat_queue(name, &shared.queues[*q]))
                    .arg(*n)
                    .ignore();
            }
        }
        Batch {
            pipe,
            requeues,
            flushes,
        }
    }

    async fn send(&self, shared: &Shared, c: &mut MultiplexedConnection) -> redis::RedisResult<()> {
        for (q, raws) in &self.requeues {
            scripts::REQUEUE
                .key(shared.keys.queue(&shared.queues[*q]))
                .key(shared.processing_key(*q))
                .arg(raws.as_slice())
                .invoke_async::<i64>(c)
                .await?;
        }
        if !self.pipe.is_empty() {
            self.pipe.query_async::<()>(c).await?;
        }
        Ok(())
    }
}
