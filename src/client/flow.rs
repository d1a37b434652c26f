//! Flow control: pausing and resuming a queue (an operator's), enqueueing unique jobs
//! (`unique_for`), and what limits per key hold back (`limits_concurrency`,
//! `throttle`).
//!
//! The paused set (`Keys::paused`) is the state, one `SADD`/`SREM` (atomic on its
//! own), read by every worker's heartbeat; the announcement on `Keys::pause_channel`
//! only makes workers read it at once instead of at their next beat.

use redis::{FromRedisValue, RedisResult, Value};

use super::admin::QueueMetrics;
use super::{lock, Client, Lossy};
use crate::error::Result;
use crate::runtime::cancel::Cancel;
use crate::store::scripts;

impl Client {
    /// Pauses or resumes `queue` for every worker. Returns whether that changed it.
    pub fn set_paused(&self, cancel: &Cancel, queue: &str, paused: bool) -> Result<bool> {
        let k = &self.keys;
        self.call(cancel, |mut c| {
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

    /// Enqueues unique jobs of one queue, now (`at` None) or scheduled: each only if it
    /// takes its lock, in one script (`UNIQUE_ENQUEUE`). `jobs`: (digest, jid, lock TTL
    /// in ms, payload). Returns, per job, whether it was enqueued (false: a duplicate).
    pub fn push_unique(
        &self,
        cancel: &Cancel,
        queue: &str,
        at: Option<f64>,
        jobs: &[(String, String, u64, String)],
    ) -> Result<Vec<bool>> {
        let k = &self.keys;
        let target = match at {
            Some(_) => k.schedule(queue),
            None => k.queue(queue),
        };
        let flags: Vec<i64> = self.call(cancel, |mut c| {
            let mut inv = scripts::UNIQUE_ENQUEUE.prepare_invoke();
            inv.key(&target)
                .arg(at.map(|t| t.to_string()).unwrap_or_default())
                .arg(k.schedule_channel())
                .arg(queue);
            for (digest, jid, ttl_ms, payload) in jobs {
                inv.key(k.unique(queue, digest))
                    .arg(jid)
                    .arg(*ttl_ms)
                    .arg(payload);
            }
            let known = lock(&self.registered).contains(queue);
            let mut register = redis::cmd("SADD");
            register.arg(k.queues()).arg(queue);
            async move {
                let flags: Vec<i64> = inv.invoke_async(&mut c).await?;
                if !known {
                    register.query_async::<()>(&mut c).await?;
                }
                Ok(flags)
            }
        })?;
        lock(&self.registered).insert(queue.to_string());
        Ok(flags.into_iter().map(|f| f == 1).collect())
    }

    /// A unique job's lock: the jid holding it and its remaining life in ms, or None
    /// when free.
    pub fn unique_lock(
        &self,
        cancel: &Cancel,
        queue: &str,
        digest: &str,
    ) -> Result<Option<(String, i64)>> {
        let key = self.keys.unique(queue, digest);
        let (holder, ttl): (Option<Lossy>, i64) = self.call(cancel, |mut c| {
            let mut pipe = redis::pipe();
            pipe.cmd("GET").arg(&key).cmd("PTTL").arg(&key);
            async move { pipe.query_async(&mut c).await }
        })?;
        Ok(holder.map(|h| (h.0, ttl)))
    }

    /// The paused queues, sorted.
    pub fn paused(&self, cancel: &Cancel) -> Result<Vec<String>> {
        self.sorted_members(cancel, self.keys.paused())
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
                    .filter_map(move |member| self.keys.flow_member(&m.name, member))
                    .map(move |(_, waiting)| (i, waiting))
            })
            .collect();
        if lists.is_empty() {
            return Ok(());
        }
        let lens: Vec<RedisResult<Value>> = self.call(cancel, |mut c| {
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
        let k = &self.keys;
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
        self.call(cancel, |mut c| {
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
