//! The scheduler task of a worker: promotes due scheduled jobs and retries into their
//! queues, on time to the millisecond.
//!
//! It sleeps until the earliest due job of its queues, not on a fixed interval. Jobs
//! scheduled meanwhile (by any process) publish on the `scheduled` channel; the
//! process's notifier (`notifier.rs`) marks their queue and wakes the scheduler, which promotes and
//! re-reads only the queues that were marked or are due. Every queue is looked at
//! again after each (re)subscribe and, as a backstop for a lost message, every
//! `FULL_PASS` (every `MAX_SLEEP` while unsubscribed): so an idle worker's cost does
//! not grow with its queues. Promotion is one Lua script per queue (see
//! `scripts::PROMOTE`), so with many worker processes each job is promoted exactly
//! once. Time is Redis's: the script decides what is due with `TIME`, and the sleeps
//! are measured on `runtime::clock` (local time plus the offset to Redis), so a worker
//! whose clock is off promotes neither early nor late.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::state::WorkerState;
use crate::runtime::clock;
use crate::runtime::outage::Outage;
use crate::runtime::target::Link;
use crate::store::{flow_scripts, scripts};

/// Longest sleep without a wake-up.
const MAX_SLEEP: Duration = Duration::from_secs(5);
/// How often every queue is looked at while the notifier is subscribed: a backstop
/// for a message lost on a live subscription, which TCP makes rare (a reconnect marks
/// every queue anyway).
const FULL_PASS: Duration = Duration::from_secs(300);
/// Most jobs one promotion call moves per key; a full batch is followed at once by
/// another, so a backlog drains without blocking Redis for long.
const PROMOTE_BATCH: usize = 1000;

pub async fn run(state: Arc<WorkerState>, wake: Arc<Notify>) {
    let mut outage = Outage::new("scheduler".to_string());
    let mut link = Link::new(None);
    // Per queue: its earliest scheduled job or retry (infinity: none).
    let mut due = vec![f64::NEG_INFINITY; state.queues.len()];
    let mut last_full = tokio::time::Instant::now();
    loop {
        let full_every = if state.is_listening() {
            FULL_PASS
        } else {
            MAX_SLEEP
        };
        let full = last_full.elapsed() >= full_every;
        if full {
            last_full = tokio::time::Instant::now();
        }
        let result: redis::RedisResult<f64> = async {
            let c = link.get(&state.redis).await?;
            let now = clock::now();
            for (q, queue) in state.queues.iter().enumerate() {
                if !(full || state.take_scheduled_mark(q) || due[q] <= now) {
                    continue;
                }
                due[q] = f64::INFINITY;
                loop {
                    let (moved, s, r, f): (usize, String, String, String) = scripts::PROMOTE
                        .key(state.keys.schedule(queue))
                        .key(state.keys.retry(queue))
                        .key(state.keys.queue(queue))
                        .key(state.keys.flow_due(queue))
                        .arg(PROMOTE_BATCH)
                        .invoke_async(c)
                        .await?;
                    for score in [s, r] {
                        if let Ok(at) = score.parse::<f64>() {
                            due[q] = due[q].min(at);
                        }
                    }
                    if let Ok(at) = f.parse::<f64>() {
                        let next = match at <= clock::now() {
                            true => promote_flow(&state, c, queue).await?,
                            false => Some(at),
                        };
                        due[q] = due[q].min(next.unwrap_or(f64::INFINITY));
                    }
                    if moved < PROMOTE_BATCH {
                        break;
                    }
                }
            }
            Ok(due.iter().copied().fold(f64::INFINITY, f64::min))
        }
        .await;
        match result {
            Ok(next_due) => {
                outage.recovered();
                let wait = sleep_for(next_due, clock::now());
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = wake.notified() => {}
                }
            }
            Err(e) => {
                link.reset();
                due.fill(f64::NEG_INFINITY); // look at every queue again
                outage.failed(&e).await;
            }
        }
    }
}

/// Starts the waiting jobs of `queue`'s limited keys that are due (a lease ran out, a
/// throttle's window moved on: `flow_scripts::FLOW_PROMOTE`, one call per key).
/// Returns the next time one is due.
async fn promote_flow(
    state: &WorkerState,
    c: &mut crate::runtime::conn::Conn,
    queue: &str,
) -> redis::RedisResult<Option<f64>> {
    let k = &state.keys;
    let due_key = k.flow_due(queue);
    let now = clock::now();
    let members: Vec<String> = redis::cmd("ZRANGEBYSCORE")
        .arg(&due_key)
        .arg("-inf")
        .arg(now)
        .arg("LIMIT")
        .arg(0)
        .arg(PROMOTE_BATCH)
        .query_async(c)
        .await?;
    for m in members {
        let Some((limit, waiting)) = k.flow_member(queue, &m) else {
            let _: () = redis::cmd("ZREM")
                .arg(&due_key)
                .arg(&m)
                .query_async(c)
                .await?;
            continue;
        };
        let _: i64 = flow_scripts::FLOW_PROMOTE
            .key(&due_key)
            .key(limit)
            .key(waiting)
            .key(k.queue(queue))
            .arg(&m)
            .arg(k.schedule_channel())
            .arg(queue)
            .invoke_async(c)
            .await?;
    }
    let next: Vec<(String, f64)> = redis::cmd("ZRANGE")
        .arg(&due_key)
        .arg(0)
        .arg(0)
        .arg("WITHSCORES")
        .query_async(c)
        .await?;
    Ok(next.first().map(|(_, at)| *at))
}

/// How long the scheduler sleeps: until the earliest due job (`next_due`, epoch
/// seconds; infinity when none), at most `MAX_SLEEP`.
fn sleep_for(next_due: f64, now: f64) -> Duration {
    Duration::from_secs_f64((next_due - now).clamp(0.0, MAX_SLEEP.as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleeps_until_the_next_due_job_within_the_backstop() {
        assert_eq!(sleep_for(100.25, 100.0), Duration::from_millis(250));
        assert_eq!(sleep_for(99.0, 100.0), Duration::ZERO); // overdue: promote now
        assert_eq!(sleep_for(f64::INFINITY, 100.0), MAX_SLEEP);
        assert_eq!(sleep_for(1e12, 100.0), MAX_SLEEP);
    }
}
