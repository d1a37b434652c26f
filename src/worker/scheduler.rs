//! The scheduler task of a worker: promotes due scheduled jobs and retries into their
//! queues, on time to the millisecond.
//!
//! It sleeps until the earliest due job of its queues, not on a fixed interval. Jobs
//! scheduled meanwhile (by any process) publish on the `scheduled` channel; a
//! subscriber task wakes the scheduler, which re-reads the earliest due time. A
//! backstop wake-up every `MAX_SLEEP` covers a message lost while pub/sub reconnects.
//! Promotion is one Lua script per queue (see `scripts::PROMOTE`), so with many worker
//! processes each job is promoted exactly once.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::Notify;

use super::state::WorkerState;
use crate::runtime::outage::Outage;
use crate::runtime::target::Link;
use crate::store::payload;
use crate::store::scripts;

/// Longest sleep without a wake-up: only a backstop for a lost pub/sub message.
const MAX_SLEEP: Duration = Duration::from_secs(5);
/// Most jobs one promotion call moves per key; a full batch is followed at once by
/// another, so a backlog drains without blocking Redis for long.
const PROMOTE_BATCH: usize = 1000;

pub async fn run(state: Arc<WorkerState>, wake: Arc<Notify>) {
    let mut outage = Outage::new("scheduler".to_string());
    let mut link = Link::new(None);
    loop {
        let result: redis::RedisResult<f64> = async {
            let c = link.get(&state.redis).await?;
            let mut next_due = f64::INFINITY;
            for queue in &state.queues {
                loop {
                    let (moved, s, r): (usize, String, String) = scripts::PROMOTE
                        .key(state.keys.schedule(queue))
                        .key(state.keys.retry(queue))
                        .key(state.keys.queue(queue))
                        .arg(payload::now())
                        .arg(PROMOTE_BATCH)
                        .invoke_async(c)
                        .await?;
                    for score in [s, r] {
                        if let Ok(at) = score.parse::<f64>() {
                            next_due = next_due.min(at);
                        }
                    }
                    if moved < PROMOTE_BATCH {
                        break;
                    }
                }
            }
            Ok(next_due)
        }
        .await;
        match result {
            Ok(next_due) => {
                outage.recovered();
                let wait = sleep_for(next_due, payload::now());
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = wake.notified() => {}
                }
            }
            Err(e) => {
                link.reset();
                outage.failed(&e).await;
            }
        }
    }
}

/// Listens on the `scheduled` and `ready` channels: wakes the scheduler for a job
/// scheduled on one of this worker's queues, and a queue's idle fetcher when its queue
/// got jobs. After every (re)subscribe everything is woken once, to re-read; while
/// unsubscribed, fetchers poll. When the Sentinel master changes it subscribes again,
/// on the new master. One connection per process, whatever the number of queues.
pub async fn listen(state: Arc<WorkerState>, wake: Arc<Notify>) {
    let mut outage = Outage::new("schedule listener".to_string());
    let scheduled = state.keys.schedule_channel();
    let ready = state.keys.ready_channel();
    let mut changes = state.redis.changes();
    loop {
        changes.borrow_and_update();
        let subscribed = async {
            let mut pubsub = state.redis.pubsub().await?;
            pubsub.subscribe(&[&scheduled, &ready]).await?;
            Ok::<_, redis::RedisError>(pubsub)
        }
        .await;
        match subscribed {
            Ok(pubsub) => {
                outage.recovered();
                wake.notify_one();
                state.set_listening(true);
                let mut messages = pubsub.into_on_message();
                let switched = loop {
                    tokio::select! {
                        msg = messages.next() => match msg {
                            Some(msg) => {
                                let queue: String = msg.get_payload().unwrap_or_default();
                                if let Some(q) = state.queues.iter().position(|n| *n == queue) {
                                    if msg.get_channel_name() == ready {
                                        state.wake(q);
                                    } else {
                                        wake.notify_one();
                                    }
                                }
                            }
                            None => break false, // the connection dropped
                        },
                        _ = changes.changed() => break true, // a new master: subscribe there
                    }
                };
                state.set_listening(false);
                if !switched {
                    outage.failed(&"subscription closed").await;
                }
            }
            Err(e) => outage.failed(&e).await,
        }
    }
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
