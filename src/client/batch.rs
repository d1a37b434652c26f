//! Batches (`lib/fiber_job/batch.rb`): opening a `jobs { }` block, recording its jobs
//! before they are pushed (and forgetting the ones that were not), closing it, and
//! what the Web UI and `Batch.status` read. The keys and scripts are in
//! `store/batch_scripts.rs`; a member's end is recorded by its worker's acker.

use std::collections::HashMap;
use std::sync::Arc;

use redis::Value;

use super::Handle;
use crate::batch::{self, TTL_SECS};
use crate::error::{Error, Result};
use crate::runtime::cancel::Cancel;
use crate::store::batch_scripts::{BATCH_ADD, BATCH_OPEN, BATCH_UNDO, SWEEP_BY, SWEEP_DONE};
use crate::store::payload;

/// A `jobs { }` block that has not enqueued for this long counts as abandoned (its
/// process died): the batch may complete without it. Each enqueue in the block
/// renews it.
pub const OPEN_LEASE_SECS: f64 = 600.0;

/// What a block opens: a new batch (its description and callbacks) or an existing one.
pub enum Opening {
    New {
        description: String,
        /// (`cb:<event>`, JSON array of `[queue, jid, template, marker]`).
        callbacks: Vec<(String, String)>,
        /// The callbacks' queues (recorded in the queue set).
        queues: Vec<String>,
    },
    Reopen,
}

pub struct Batches {
    handle: Arc<Handle>,
}

impl Batches {
    pub fn new(handle: Arc<Handle>) -> Batches {
        Batches { handle }
    }

    /// Opens a `jobs { }` block of batch `bid` under `token`. Returns `ok`, `exists`,
    /// `unknown` or `succeeded` (see `BATCH_OPEN`).
    pub fn open(
        &self,
        cancel: &Cancel,
        bid: &str,
        token: &str,
        opening: &Opening,
    ) -> Result<String> {
        let keys = &self.handle.keys;
        self.handle.call(cancel, |mut c| async move {
            let now = payload::now();
            let deadline = now + OPEN_LEASE_SECS;
            // First, so that the reaper finds the block should this process die.
            let _: i64 = SWEEP_BY
                .key(keys.batch_sweep())
                .arg(deadline)
                .arg(bid)
                .invoke_async(&mut c)
                .await?;
            let mut script = BATCH_OPEN.prepare_invoke();
            for k in keys.batch(bid) {
                script.key(k);
            }
            script.arg(now).arg(TTL_SECS).arg(token).arg(deadline);
            match opening {
                Opening::Reopen => {
                    script.arg("1").arg(bid).arg("");
                }
                Opening::New {
                    description,
                    callbacks,
                    ..
                } => {
                    script.arg("0").arg(bid).arg(description);
                    for (field, value) in callbacks {
                        script.arg(field).arg(value);
                    }
                }
            }
            let answer: String = script.invoke_async(&mut c).await?;
            if answer != "ok" {
                // Nothing opened: take back the sweep entry if it is still ours.
                let _: i64 = SWEEP_DONE
                    .key(keys.batch_sweep())
                    .arg(deadline)
                    .arg(bid)
                    .arg(0)
                    .invoke_async(&mut c)
                    .await?;
            }
            if let (Opening::New { queues, .. }, "ok") = (opening, answer.as_str()) {
                let mut pipe = redis::pipe();
                pipe.cmd("ZADD")
                    .arg(keys.batches())
                    .arg(now)
                    .arg(bid)
                    .ignore();
                pipe.cmd("ZREMRANGEBYSCORE")
                    .arg(keys.batches())
                    .arg("-inf")
                    .arg(now - 3.0 * TTL_SECS as f64)
                    .ignore();
                if !queues.is_empty() {
                    pipe.cmd("SADD").arg(keys.queues()).arg(queues).ignore();
                }
                pipe.query_async::<()>(&mut c).await?;
            }
            Ok(answer)
        })
    }

    /// Records `jobs` (jid, class) as members of `bid`, before they are pushed; renews
    /// block `token`'s lease.
    pub fn add(
        &self,
        cancel: &Cancel,
        bid: &str,
        token: &str,
        jobs: &[(String, String)],
    ) -> Result<i64> {
        let keys = self.handle.keys.batch(bid);
        self.handle
            .call(cancel, |mut c| {
                let mut script = BATCH_ADD.prepare_invoke();
                for k in &keys {
                    script.key(k);
                }
                script
                    .arg(TTL_SECS)
                    .arg(token)
                    .arg(payload::now() + OPEN_LEASE_SECS);
                for (jid, class) in jobs {
                    script.arg(jid).arg(class);
                }
                async move { script.invoke_async(&mut c).await }
            })
            .map_err(|e| match e {
                Error::Other(m) if m.contains("batch is gone") => Error::Other(format!(
                "batch {bid} is gone (it expired, or was never opened); the jobs were not enqueued"
            )),
                other => other,
            })
    }

    /// Forgets recorded members that were not enqueued (the push failed, or a unique
    /// job was a duplicate).
    pub fn undo(&self, cancel: &Cancel, bid: &str, jobs: &[(String, String)]) -> Result<i64> {
        let keys = self.handle.keys.batch(bid);
        self.handle.call(cancel, |mut c| {
            let mut script = BATCH_UNDO.prepare_invoke();
            for k in &keys {
                script.key(k);
            }
            for (jid, class) in jobs {
                script.arg(jid).arg(class);
            }
            async move { script.invoke_async(&mut c).await }
        })
    }

    /// Ends block `token` of `bid`: fires what it completes (an empty batch, or one
    /// whose jobs all ended while the block ran) and delivers it.
    pub fn close(&self, cancel: &Cancel, bid: &str, token: &str) -> Result<()> {
        let keys = &self.handle.keys;
        self.handle.call(cancel, |mut c| async move {
            batch::settle(&mut c, keys, bid, token, &[]).await.map(drop)
        })
    }

    /// A batch's state: its hash without the callbacks' templates, plus `pending`,
    /// `failures`, `dead` and `open` counts; None for an unknown (or expired) bid.
    pub fn status(&self, cancel: &Cancel, bid: &str) -> Result<Option<HashMap<String, String>>> {
        let keys = self.handle.keys.batch(bid);
        self.handle.call(cancel, |mut c| {
            let mut pipe = redis::pipe();
            status_reads(&mut pipe, &keys);
            async move {
                let replies: Vec<Value> = pipe.query_async(&mut c).await?;
                status_of(replies)
            }
        })
    }

    /// Members `start..=stop` (newest first) as (jid, class, state): `pending`, `failed`
    /// (pending, failed at least once), `dead`, or `succeeded`.
    pub fn jobs(
        &self,
        cancel: &Cancel,
        bid: &str,
        start: i64,
        stop: i64,
    ) -> Result<Vec<(String, String, String)>> {
        let keys = self.handle.keys.batch(bid);
        self.handle.call(cancel, |mut c| {
            let keys = keys.clone();
            async move {
                let entries: Vec<String> = redis::cmd("LRANGE")
                    .arg(&keys[4])
                    .arg(start)
                    .arg(stop)
                    .query_async(&mut c)
                    .await?;
                let members: Vec<(&str, &str)> = entries
                    .iter()
                    .map(|e| e.split_once(' ').unwrap_or((e, "")))
                    .collect();
                let mut pipe = redis::pipe();
                for (jid, _) in &members {
                    for k in [1, 2, 3] {
                        pipe.cmd("SISMEMBER").arg(&keys[k]).arg(*jid);
                    }
                }
                let flags: Vec<bool> = pipe.query_async(&mut c).await?;
                Ok(members
                    .iter()
                    .zip(flags.chunks(3))
                    .map(|((jid, class), f)| {
                        let state = match f {
                            [_, _, true] => "dead",
                            [_, true, _] => "failed",
                            [true, ..] => "pending",
                            _ => "succeeded",
                        };
                        (jid.to_string(), class.to_string(), state.to_string())
                    })
                    .collect())
            }
        })
    }

    /// The states (as `status`) of batches `start..=stop`, newest first, with
    /// the number of batches: two round trips for a page. An entry whose batch expired
    /// is dropped from the list as it is read.
    pub fn list(
        &self,
        cancel: &Cancel,
        start: i64,
        stop: i64,
    ) -> Result<(Vec<HashMap<String, String>>, u64)> {
        let index = self.handle.keys.batches();
        let keys = &self.handle.keys;
        self.handle.call(cancel, |mut c| {
            let index = index.clone();
            async move {
                let (bids, total): (Vec<String>, u64) = redis::pipe()
                    .cmd("ZREVRANGE")
                    .arg(&index)
                    .arg(start)
                    .arg(stop)
                    .cmd("ZCARD")
                    .arg(&index)
                    .query_async(&mut c)
                    .await?;
                if bids.is_empty() {
                    return Ok((Vec::new(), total));
                }
                let mut pipe = redis::pipe();
                for bid in &bids {
                    status_reads(&mut pipe, &keys.batch(bid));
                }
                let replies: Vec<Value> = pipe.query_async(&mut c).await?;
                let mut live = Vec::with_capacity(bids.len());
                let mut gone = Vec::new();
                let mut replies = replies.into_iter();
                for bid in bids {
                    let one: Vec<Value> = replies.by_ref().take(STATUS_READS).collect();
                    match status_of(one)? {
                        Some(status) => live.push(status),
                        None => gone.push(bid),
                    }
                }
                if !gone.is_empty() {
                    redis::cmd("ZREM")
                        .arg(&index)
                        .arg(&gone)
                        .query_async::<()>(&mut c)
                        .await?;
                }
                Ok((live, total.saturating_sub(gone.len() as u64)))
            }
        })
    }
}

/// Commands `status_reads` adds per batch.
const STATUS_READS: usize = 5;

/// Reads a batch's state: its hash, then the sizes of its pending, failed and dead
/// sets and of its open blocks (`keys`: `Keys::batch`).
fn status_reads(pipe: &mut redis::Pipeline, keys: &[String]) {
    pipe.cmd("HGETALL").arg(&keys[0]);
    for (cmd, k) in [("SCARD", 1), ("SCARD", 2), ("SCARD", 3), ("ZCARD", 5)] {
        pipe.cmd(cmd).arg(&keys[k]);
    }
}

/// A batch's state from the replies to `status_reads`; None when its hash is gone.
fn status_of(replies: Vec<Value>) -> redis::RedisResult<Option<HashMap<String, String>>> {
    let mut replies = replies.into_iter();
    let mut hash: HashMap<String, String> = match replies.next() {
        Some(v) => redis::from_redis_value(v)?,
        None => return Ok(None),
    };
    if hash.is_empty() {
        return Ok(None);
    }
    hash.retain(|k, _| !k.starts_with("cb:"));
    for name in ["pending", "failures", "dead", "open"] {
        let count: u64 = match replies.next() {
            Some(v) => redis::from_redis_value(v)?,
            None => 0,
        };
        hash.insert(name.into(), count.to_string());
    }
    Ok(Some(hash))
}
