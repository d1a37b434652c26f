//! One fetcher task per queue: moves jobs from Redis into the dispatcher's buffer.
//!
//! Lifecycle: wait until the queue has room in this process; take up to that many
//! jobs in one Lua call (reliable: each lands in this process's held set atomically,
//! see `Keys::held`), on the connection every fetcher of the process shares. When the queue
//! is empty, it waits in one of two ways:
//! - **hot** (jobs were found in the last `HOT_FOR`): blocks in `BRPOPLPUSH` for up to
//!   `BLOCK_SECS` on a connection of its own, so a job enqueued now is taken the
//!   instant Redis stores it (the pickup latency of a job enqueued to an idle worker); such a job lands in the processing
//!   list (`BRPOPLPUSH` moves list to list) and is acked there;
//! - **cold**: gives that connection back and waits for a wake-up on the ready channel
//!   (an enqueue or a script that found the queue empty publishes one; see
//!   `Keys::ready_channel`), or a backstop poll at the latest — one second, doubling
//!   while the queue stays empty up to `IDLE_BACKSTOP`.
//!
//! So a busy queue is served as fast as Redis allows, and an idle worker costs Redis
//! its heartbeat and one pub/sub connection, whatever the number of its queues.
//! Ends when the worker stops.

use std::sync::Arc;
use std::time::Duration;

use super::flow::admit::{self, Fetched};
use super::outcome::Outcome;
use super::state::WorkerState;
use crate::batch::End;
use crate::error::is_connection_problem;
use crate::runtime::clock;
use crate::runtime::conn::Conn;
use crate::runtime::outage::Outage;
use crate::runtime::target::Link;
use crate::store::scripts;
use crate::store::{payload, records};

/// Longest an idle fetcher waits for a wake-up before it looks at its queue anyway:
/// what a lost wake-up (a program pushing to the list without publishing) can cost in
/// latency on a queue idle for a while. While the notifier is not subscribed, idle
/// fetchers poll every second instead.
pub const IDLE_BACKSTOP: Duration = Duration::from_secs(60);
const FIRST_BACKSTOP: Duration = Duration::from_secs(1);
/// How long after its last jobs a queue stays hot (blocking fetch). Longer than the
/// clients' `WAKE_EVERY`, which relies on it.
pub const HOT_FOR: Duration = Duration::from_secs(10);
/// Longest a hot fetcher blocks in Redis: bounds how late a stop is seen. Whole
/// seconds, because Redis 5.0 takes only those.
pub const BLOCK_SECS: u64 = 1;

/// Most jobs one fetch call moves: bounds the script's run time inside Redis.
const MAX_BATCH: usize = 500;

pub async fn run(state: Arc<WorkerState>, q: usize) {
    let queue = state.queues[q].clone();
    let queue_key = state.keys.queue(&queue);
    let processing_key = state.keys.processing(&queue, &state.identity);
    let held_key = state.keys.held(&queue, &state.identity);
    let mut outage = Outage::new(format!("fetcher for queue {queue:?}"));
    // After a failed fetch the command may have run with its reply lost: the job is
    // then in our processing list but not in memory. Reconcile before fetching again.
    let mut reconcile_first = false;
    let mut backstop = FIRST_BACKSTOP;
    let mut last_found: Option<tokio::time::Instant> = None;
    // The hot fetcher's own connection: the blocking command must not hold up the
    // shared one, nor trip the response timeout while it waits.
    let mut blocking = Link::new(Some(Duration::from_secs(BLOCK_SECS) + state.timeout));
    tokio::select! {
        _ = state.wait_registered() => {}
        _ = state.dispatcher.stopped() => return,
    }
    while let Some(cap) = state.dispatcher.wait_capacity(q).await {
        let mut c = match state.redis.shared_connection().await {
            Ok(c) => c,
            Err(e) => {
                outage.failed(&e).await;
                continue;
            }
        };
        if reconcile_first {
            match reconcile(&state, q, &queue_key, &processing_key, &held_key, &mut c).await {
                Ok(true) => reconcile_first = false,
                Ok(false) => continue, // the acker could not flush yet: try again
                Err(e) => {
                    state.redis.forget_shared().await;
                    outage.failed(&e).await;
                    continue;
                }
            }
        }
        let issued = tokio::time::Instant::now();
        // Bytes, not Strings: a payload that is not UTF-8 must reach `buffer` (and the
        // dead set), not fail the read and block the queue.
        let batch: redis::RedisResult<Taken> = scripts::FETCH
            .key(&queue_key)
            .key(&held_key)
            .key(&processing_key)
            .arg(cap.min(MAX_BATCH))
            .invoke_async(&mut c)
            .await;
        let hot = last_found.is_some_and(|at| at.elapsed() < HOT_FOR);
        let (batch, on_shared) = match batch {
            Ok((b, _)) if b.is_empty() && hot => match blocking.get(&state.redis).await {
                Ok(bc) => (
                    redis::cmd("BRPOPLPUSH")
                        .arg(&queue_key)
                        .arg(&processing_key)
                        .arg(BLOCK_SECS)
                        .query_async::<Option<Vec<u8>>>(bc)
                        .await
                        .map(|one| {
                            let listed = if one.is_some() { vec![1] } else { vec![] };
                            (one.into_iter().collect(), listed)
                        }),
                    false,
                ),
                Err(e) => (Err(e), false),
            },
            other => (other, true),
        };
        match batch {
            Ok((raws, _)) if raws.is_empty() && hot => outage.recovered(), // fetch again
            Ok((raws, _)) if raws.is_empty() => {
                outage.recovered();
                blocking.reset(); // cold: no connection held for this queue
                tokio::select! {
                    _ = state.idle(q, backstop) => {}
                    _ = state.dispatcher.stopped() => {}
                }
                backstop = (backstop * 2).min(IDLE_BACKSTOP);
            }
            Ok((raws, listed)) => {
                backstop = FIRST_BACKSTOP;
                last_found = Some(tokio::time::Instant::now());
                outage.recovered();
                let bytes = raws.iter().map(Vec::len).sum::<usize>() / raws.len();
                let jobs = read_batch(&state, q, raws, &listed);
                let (jobs, admitted) = admit::admit(&state, q, &mut c, jobs).await;
                buffer(&state, q, jobs);
                if on_shared && admitted.is_ok() {
                    // A FETCH's round trip (a blocking read's time is mostly waiting; a
                    // failed admission's, the network timeout).
                    state.dispatcher.fetched(q, issued.elapsed(), bytes);
                }
                if let Err(e) = admitted {
                    // Limited jobs left in the held set: given back before the next fetch.
                    if is_connection_problem(&e) {
                        state.redis.forget_shared().await;
                    }
                    reconcile_first = true;
                    outage.failed(&e).await;
                }
            }
            // Redis answered with an error (full, a key of the wrong type): the command
            // did not run, so nothing was taken and the connection is fine.
            Err(e) if !is_connection_problem(&e) => outage.refused(&e).await,
            Err(e) => {
                if on_shared {
                    state.redis.forget_shared().await;
                } else {
                    blocking.reset();
                }
                reconcile_first = true;
                outage.failed(&e).await;
            }
        }
    }
}

/// What `FETCH` (or a `BRPOPLPUSH`) took: the payloads, oldest first, and the 1-based
/// positions of those that landed in the processing list rather than the held set.
type Taken = (Vec<Vec<u8>>, Vec<usize>);

/// Gives back to the queue's front every job in this process's processing list and
/// held set that the process does not hold in memory (fetched by a command whose reply
/// was lost). The acker is flushed first, so jobs that finished are already gone.
/// Returns false when the flush did not complete in time (nothing was changed).
async fn reconcile(
    state: &WorkerState,
    q: usize,
    queue_key: &str,
    processing_key: &str,
    held_key: &str,
    c: &mut Conn,
) -> redis::RedisResult<bool> {
    // What this process holds, read before the flush: a job that finishes after this
    // read is in it, and one that finished before has its ack ahead of the flush, so
    // no finished job whose ack is still on its way is taken for a stray one.
    let mut processing = state.dispatcher.processing_payloads(q);
    if !flush_acks(state).await {
        return Ok(false);
    }
    let mut taken: Vec<Vec<u8>> = redis::cmd("LRANGE")
        .arg(processing_key)
        .arg(0)
        .arg(-1)
        .query_async(c)
        .await?;
    let held: Vec<Vec<u8>> = redis::cmd("SMEMBERS").arg(held_key).query_async(c).await?;
    taken.extend(held);
    // By copies, not bytes: a stray copy of a job this process also holds (the job
    // queued twice, one copy fetched by a command whose reply was lost) is given back.
    taken.retain(|raw| match processing.get_mut(raw) {
        Some(n) if *n > 0 => {
            *n -= 1;
            false
        }
        _ => true,
    });
    // A job that ended just as `processing` was read (out of it, its ack reported a
    // moment later) is acked by this second flush; RECOVER then finds it gone.
    if !taken.is_empty() && !flush_acks(state).await {
        return Ok(false);
    }
    let mut moved = 0;
    for raw in taken {
        moved += scripts::RECOVER
            .key(processing_key)
            .key(queue_key)
            .key(held_key)
            .arg(raw)
            .invoke_async::<i64>(c)
            .await?;
    }
    if moved > 0 {
        tracing::warn!(
            "put {moved} job(s) back on queue {:?}: fetched while the connection broke",
            state.queues[q]
        );
    }
    Ok(true)
}

/// Waits until the acker has written every outcome reported so far; false when that
/// took longer than the network timeout.
async fn flush_acks(state: &WorkerState) -> bool {
    let (tx, rx) = tokio::sync::oneshot::channel();
    state.report(Outcome::Flush(tx));
    tokio::time::timeout(state.timeout, rx).await.is_ok()
}

/// Parses what was fetched and sends what cannot run where it belongs: payloads that
/// are not UTF-8 JSON job objects to the dead set (kept byte for byte), expired jobs
/// too (counted). Returns the jobs, in order.
fn read_batch(state: &WorkerState, q: usize, raws: Vec<Vec<u8>>, listed: &[usize]) -> Vec<Fetched> {
    let mut good = Vec::with_capacity(raws.len());
    let now = clock::now();
    for (i, raw) in raws.into_iter().enumerate() {
        match read(raw) {
            Ok((text, parsed)) if parsed.expires_at.is_some_and(|at| at < now) => {
                expire(state, q, text, &parsed, now)
            }
            Ok((text, parsed)) => good.push((text, parsed, listed.contains(&(i + 1)))),
            Err((reason, raw)) => {
                tracing::warn!(queue = %state.queues[q], "{reason}; moved to the dead set");
                let entry = records::unreadable_entry(&raw, &reason, &state.queues[q], now);
                state.report(Outcome::Buried {
                    q,
                    raw,
                    entry,
                    expired: false,
                });
            }
        }
    }
    good
}

/// Buffers jobs that may run; jobs fetched after a stop go back to the queue.
fn buffer(state: &WorkerState, q: usize, good: Vec<Fetched>) {
    if good.is_empty() {
        return;
    }
    let back = state.dispatcher.buffer(q, good);
    if !back.is_empty() {
        state.report(Outcome::GivenBack {
            q,
            raws: back.into_iter().map(|j| j.raw.into_bytes()).collect(),
        });
    }
}

/// A job taken after its `expires_at` (`expires_in`): not run, counted, and kept in
/// the dead set as `FiberJob::Expired`, where a person can still see it or retry it.
fn expire(state: &WorkerState, q: usize, text: String, job: &payload::Parsed, now: f64) {
    let late = now - job.expires_at.unwrap_or(now);
    let reason = format!("expired: not started by its deadline (expires_in), {late:.3}s late");
    tracing::warn!(queue = %state.queues[q], class = %job.class, jid = %job.jid, "{reason}; moved to the dead set");
    let entry = records::dead_entry(&text, "FiberJob::Expired", &reason, now);
    state.batch_end(job, End::Died);
    state.report(Outcome::Buried {
        q,
        raw: text.into_bytes(),
        entry,
        expired: true,
    });
    // Its lock is freed, and a lease kept for it (a waiter started for it) ends.
    state.run_over(q, job, true);
}

/// A fetched payload as a job, or why it cannot run, with its exact bytes.
fn read(raw: Vec<u8>) -> Result<(String, payload::Parsed), (String, Vec<u8>)> {
    match String::from_utf8(raw) {
        Ok(text) => match payload::parse(&text) {
            Ok(p) => Ok((text, p)),
            Err(reason) => Err((reason, text.into_bytes())),
        },
        Err(e) => {
            let reason = format!(
                "payload is not valid UTF-8 (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            );
            Err((reason, e.into_bytes()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::read;

    #[test]
    fn reads_jobs_and_keeps_the_bytes_of_what_cannot_run() {
        let good = br#"{"class":"A","args":[1],"jid":"j"}"#.to_vec();
        let (text, job) = read(good.clone()).unwrap();
        assert_eq!((text.as_bytes(), &*job.class), (&good[..], "A"));

        let binary = b"{\"class\":\"A\",\"args\":[\"\xff\"]}".to_vec();
        let (reason, raw) = read(binary.clone()).unwrap_err();
        assert!(
            reason.contains("not valid UTF-8 (invalid byte at offset 22)"),
            "{reason}"
        );
        assert_eq!(raw, binary);

        let (reason, raw) = read(b"[1]".to_vec()).unwrap_err();
        assert!(reason.contains("not a JSON object"));
        assert_eq!(raw, b"[1]");
    }
}
