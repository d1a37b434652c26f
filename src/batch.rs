//! Batches' Redis work shared by the acker (members that end), the reaper (batches
//! named in `batch-sweep`) and the client (a `jobs { }` block's end): settle a batch
//! and deliver the callbacks it fired (see `store/batch_scripts.rs` for why each is
//! enqueued exactly once).

use redis::Value;

use crate::runtime::clock;
use crate::runtime::conn::Conn;
use crate::store::batch_scripts::{BATCH_SETTLE, CALLBACK_PUSH, SWEEP_DONE};
use crate::store::keys::Keys;

/// A batch and everything about it lives this long after its last change (30 days).
pub const TTL_SECS: u64 = 30 * 86_400;

/// How a member's run ended, as `BATCH_SETTLE` takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    Succeeded,
    /// Failed, a retry follows.
    Failed,
    /// Failed for good: to the dead set (no retries left, not a job, expired).
    Died,
}

impl End {
    fn op(self) -> &'static str {
        match self {
            End::Succeeded => "S",
            End::Failed => "F",
            End::Died => "D",
        }
    }
}

/// Records `ends` (jid, how) of batch `bid` and, when `closing` names a `jobs { }`
/// block's token, that block's end; then delivers every fired callback not yet in
/// its queue. Returns the earliest deadline of a block still open (0.0: none).
pub async fn settle(
    c: &mut Conn,
    keys: &Keys,
    bid: &str,
    closing: &str,
    ends: &[(String, End)],
) -> redis::RedisResult<f64> {
    let mut script = BATCH_SETTLE.prepare_invoke();
    for k in keys.batch(bid) {
        script.key(k);
    }
    script.arg(clock::now()).arg(TTL_SECS).arg(closing);
    for (jid, end) in ends {
        script.arg(end.op()).arg(jid);
    }
    let reply: Vec<Value> = script.invoke_async(c).await?;
    let mut reply = reply.into_iter();
    let next: String = match reply.next() {
        Some(v) => redis::from_redis_value(v)?,
        None => "0".into(),
    };
    for entry in reply {
        let entry: String = redis::from_redis_value(entry)?;
        deliver(c, keys, bid, &entry).await?;
    }
    Ok(next.parse().unwrap_or(0.0))
}

/// Puts one outbox entry (`[queue, jid, payload]`) in its queue, once, then takes it
/// out of the outbox. An entry that is not that shape (written by hand) is dropped
/// with an error in the log rather than blocking the batch.
async fn deliver(c: &mut Conn, keys: &Keys, bid: &str, entry: &str) -> redis::RedisResult<()> {
    match serde_json::from_str::<(String, String, String)>(entry) {
        Ok((queue, jid, job)) => {
            let _: i64 = CALLBACK_PUSH
                .key(keys.queue(&queue))
                .key(keys.batch_callback(&queue, &jid))
                .arg(&job)
                .arg(TTL_SECS)
                .invoke_async(c)
                .await?;
        }
        Err(e) => tracing::error!("batch {bid}: an outbox entry is not a callback ({e}): {entry}"),
    }
    let outbox = &keys.batch(bid)[6];
    redis::cmd("LREM")
        .arg(outbox)
        .arg(1)
        .arg(entry)
        .query_async(c)
        .await
}

/// The reaper's pass over `batch-sweep`: every batch whose time has come is settled
/// (blocks past their deadline end, fired callbacks are delivered) and looked at again
/// at its next block deadline, or not again. Returns how many it looked at.
pub async fn sweep(c: &mut Conn, keys: &Keys) -> redis::RedisResult<usize> {
    let sweep = keys.batch_sweep();
    let due: Vec<(String, String)> = redis::cmd("ZRANGEBYSCORE")
        .arg(&sweep)
        .arg("-inf")
        .arg(clock::now())
        .arg("WITHSCORES")
        .arg("LIMIT")
        .arg(0)
        .arg(100)
        .query_async(c)
        .await?;
    for (bid, seen) in &due {
        let next = settle(c, keys, bid, "", &[]).await?;
        let _: i64 = SWEEP_DONE
            .key(&sweep)
            .arg(seen)
            .arg(bid)
            .arg(next)
            .invoke_async(c)
            .await?;
    }
    Ok(due.len())
}
