//! Flow control: pausing and resuming a queue (an operator's), enqueueing unique jobs
//! (`unique_for`), and what limits per key hold back (`limits_concurrency`,
//! `throttle`).
//!
//! The paused set (`Keys::paused`) is the state, one `SADD`/`SREM` (atomic on its
//! own), read by every worker's heartbeat; the announcement on `Keys::pause_channel`
//! only makes workers read it at once instead of at their next beat.

use std::sync::Arc;

use redis::{FromRedisValue, RedisResult, Value};

use super::admin::QueueMetrics;
use super::{Handle, Lossy};
use crate::error::Result;
use crate::runtime::cancel::Cancel;

pub struct Flow {
    handle: Arc<Handle>,
}

impl Flow {
    pub fn new(handle: Arc<Handle>) -> Flow {
        Flow { handle }
    }

    /// Pauses or resumes `queue` for every worker. Returns whether that changed it.
    pub fn set_paused(&self, cancel: &Cancel, queue: &str, paused: bool) -> Result<bool> {
        let k = &self.handle.keys;
        self.handle.call(cancel, |mut c| {
            let mut pipe = redis::pipe();
            pipe.cmd(if paused { "SADD" } else { "SREM" })
                .arg(k.paused())
                .arg(queue);
            // A paused queue is a known one (the Web UI lists it).
            pipe.cmd("SADD").arg(k.queues()).arg(queue).ignore();
            pipe.cmd("PUBLISH")
                .arg(k.pause_channel())
                .arg(queue)
                .ignore();
            async move {
                let (changed,): (i64,) = pipe.query_async(&mut c).await?;
                Ok(changed == 1)
            }
        })
    }

    /// A unique job's lock: the jid holding it and its remaining life in ms, or None
    /// when free.
    pub fn unique_lock(
        &self,
        cancel: &Cancel,
        queue: &str,
        digest: &str,
    ) -> Result<Option<(String, i64)>> {
        let key = self.handle.keys.unique(queue, digest);
        let (holder, ttl): (Option<Lossy>, i64) = self.handle.call(cancel, |mut c| {
            let mut pipe = redis::pipe();
            pipe.cmd("GET").arg(&key).cmd("PTTL").arg(&key);
            async move { pipe.query_async(&mut c).await }
        })?;
        Ok(holder.map(|h| (h.0, ttl)))
    }

    /// The paused queues, sorted.
    pub fn paused(&self, cancel: &Cancel) -> Result<Vec<String>> {
        self.handle
            .sorted_members(cancel, self.handle.keys.paused())
    }

    /// Fills in `limited` of each queue: the lengths of its keys' waiting lists.
    pub(super) fn count_limited(
        &self,
        cancel: &Cancel,
        metrics: &mut [QueueMetrics],
    ) -> Result<()> {
        let lists: Vec<(usize, String)> = metrics
            .iter()
            .enumerate()
            .flat_map(|(i, m)| {
                m.flow_due
                    .iter()
                    .filter_map(move |member| self.handle.keys.flow_member(&m.name, member))
                    .map(move |(_, waiting)| (i, waiting))
            })
            .collect();
        if lists.is_empty() {
            return Ok(());
        }
        let lens: Vec<RedisResult<Value>> = self.handle.call(cancel, |mut c| {
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for (_, waiting) in &lists {
                pipe.cmd("LLEN").arg(waiting);
            }
            async move { pipe.query_async(&mut c).await }
        })?;
        for ((i, _), len) in lists.iter().zip(lens) {
            metrics[*i].limited += len
                .ok()
                .and_then(|v| u64::from_redis_value(v).ok())
                .unwrap_or(0);
        }
        Ok(())
    }

    /// Where a limited key stands: (jobs it counts now — running with a lease, or
    /// started in the window —, jobs waiting). `kind`: "concurrency" or "throttle";
    /// `window`: the throttle's seconds (ignored for concurrency).
    pub fn limit_state(
        &self,
        cancel: &Cancel,
        queue: &str,
        kind: &str,
        key: &str,
        window: f64,
    ) -> Result<(u64, u64)> {
        let k = &self.handle.keys;
        let (counted, waiting) = match kind {
            "throttle" => (k.throttle(queue, key), k.throttle_wait(queue, key)),
            _ => (k.concurrency(queue, key), k.concurrency_wait(queue, key)),
        };
        let now = crate::store::payload::now();
        // Leases end at their score; starts count until their score plus the window.
        let from = if kind == "throttle" {
            now - window
        } else {
            now
        };
        self.handle.call(cancel, |mut c| {
            let mut pipe = redis::pipe();
            pipe.cmd("ZCOUNT")
                .arg(&counted)
                .arg(format!("({from}"))
                .arg("+inf")
                .cmd("LLEN")
                .arg(&waiting);
            async move { pipe.query_async(&mut c).await }
        })
    }
}
