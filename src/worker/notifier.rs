//! The notifier: the worker process's one pub/sub subscriber, for every queue. It
//! turns messages into wake-ups — the scheduler for a job scheduled on one of this
//! worker's queues (`scheduled`), a queue's idle fetcher when its queue got jobs
//! (`ready`), the heartbeat when a queue was paused or resumed (`pause`) — so that idle
//! tasks wait instead of polling. While it is unsubscribed, fetchers poll and the
//! scheduler looks at every queue on a timer.

use std::sync::Arc;

use futures_util::StreamExt;
use tokio::sync::Notify;

use super::state::WorkerState;
use crate::runtime::outage::Outage;

/// Listens on the `scheduled`, `ready` and `pause` channels: wakes the scheduler for a
/// job scheduled on one of this worker's queues, a queue's idle fetcher when its queue
/// got jobs, and the heartbeat when a queue was paused or resumed. After every
/// (re)subscribe everything is woken once, to re-read; while unsubscribed, fetchers
/// poll. When the Sentinel master changes it subscribes again,
/// on the new master. One connection per process, whatever the number of queues.
pub async fn run(state: Arc<WorkerState>, wake: Arc<Notify>) {
    let mut outage = Outage::new("notifier".to_string());
    let scheduled = state.keys.schedule_channel();
    let ready = state.keys.ready_channel();
    let pause = state.keys.pause_channel();
    let mut changes = state.redis.changes();
    loop {
        changes.borrow_and_update();
        let subscribed = async {
            let mut pubsub = state.redis.pubsub().await?;
            pubsub.subscribe(&[&scheduled, &ready, &pause]).await?;
            Ok::<_, redis::RedisError>(pubsub)
        }
        .await;
        match subscribed {
            Ok(pubsub) => {
                outage.recovered();
                state.set_listening(true); // (marks every queue for the scheduler too)
                wake.notify_one();
                let mut messages = pubsub.into_on_message();
                let switched = loop {
                    tokio::select! {
                        msg = messages.next() => match msg {
                            Some(msg) if msg.get_channel_name() == pause => state.pause_announced(),
                            Some(msg) => {
                                let queue: String = msg.get_payload().unwrap_or_default();
                                if let Some(q) = state.queues.iter().position(|n| *n == queue) {
                                    if msg.get_channel_name() == ready {
                                        state.wake(q);
                                    } else {
                                        state.mark_scheduled(q);
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
