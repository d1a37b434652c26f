//! One fetcher task per queue: moves jobs from Redis into the dispatcher's buffer.
//!
//! Lifecycle: wait until the queue has room in this process; take up to that many
//! jobs in one Lua call (reliable: each lands in this process's processing list
//! atomically); when the queue is empty, block in BRPOPLPUSH on the fetcher's own
//! connection for at most `BLOCK_SECS`, so a stop is seen within that time and no
//! other Redis traffic waits behind the blocking command. Ends when the worker stops.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;

use crate::ack::Msg;
use crate::engine::Shared;
use crate::outage::Outage;
use crate::payload;
use crate::scripts;

/// Longest a blocking fetch waits: bounds how late a stop is seen. Whole seconds,
/// because Redis 5.0 takes only those.
pub const BLOCK_SECS: u64 = 1;

/// Most jobs one fetch call moves: bounds the script's run time inside Redis.
const MAX_BATCH: usize = 500;

pub async fn run(shared: Arc<Shared>, q: usize) {
    let queue = shared.queues[q].clone();
    let queue_key = shared.keys.queue(&queue);
    let processing_key = shared.keys.processing(&queue, &shared.identity);
    let mut conn: Option<MultiplexedConnection> = None;
    let mut outage = Outage::new(format!("fetcher for queue {queue:?}"));
    tokio::select! {
        _ = shared.wait_registered() => {}
        _ = shared.dispatcher.stopped() => return,
    }
    while let Some(cap) = shared.dispatcher.wait_capacity(q).await {
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match connect(&shared).await {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    outage.failed(&e).await;
                    continue;
                }
            },
        };
        let batch: redis::RedisResult<Vec<String>> = scripts::FETCH
            .key(&queue_key)
            .key(&processing_key)
            .arg(cap.min(MAX_BATCH))
            .invoke_async(c)
            .await;
        let batch = match batch {
            Ok(b) if b.is_empty() => redis::cmd("BRPOPLPUSH")
                .arg(&queue_key)
                .arg(&processing_key)
                .arg(BLOCK_SECS)
                .query_async::<Option<String>>(c)
                .await
                .map(|one| one.into_iter().collect()),
            other => other,
        };
        match batch {
            Ok(raws) => {
                outage.recovered();
                deliver(&shared, q, raws);
            }
            Err(e) => {
                conn = None;
                outage.failed(&e).await;
            }
        }
    }
}

async fn connect(shared: &Shared) -> redis::RedisResult<MultiplexedConnection> {
    // The blocking command must not trip the response timeout while it waits.
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(shared.timeout))
        .set_response_timeout(Some(Duration::from_secs(BLOCK_SECS) + shared.timeout));
    shared
        .client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// Parses what was fetched, buffers the good jobs and sends the rest where they belong:
/// unparsable payloads to the dead set, jobs fetched after a stop back to the queue.
fn deliver(shared: &Shared, q: usize, raws: Vec<String>) {
    if raws.is_empty() {
        return;
    }
    let mut good = Vec::with_capacity(raws.len());
    for raw in raws {
        match payload::parse(&raw) {
            Ok(p) => good.push((raw, p)),
            Err(reason) => {
                tracing::warn!(queue = %shared.queues[q], "{reason}; moved to the dead set");
                let dead =
                    payload::unparsable_record(&raw, &reason, &shared.queues[q], payload::now());
                shared.send(Msg::Dead {
                    q,
                    raw,
                    record: dead,
                });
            }
        }
    }
    let back = shared.dispatcher.push(q, good);
    if !back.is_empty() {
        shared.send(Msg::Requeue {
            q,
            raws: back.into_iter().map(|j| j.raw).collect(),
        });
    }
}
