//! What any process (not only workers) does with Redis: enqueue, schedule, and read
//! queue state. All calls go through the runtime's shared connection, so concurrent
//! callers (threads of a web server) share pipelined round trips.
//!
//! Every call has a deadline (`network_timeout`): during an outage it retries the
//! connection until then, then fails with `Error::Connection`. It never hangs.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::time::Instant;

use crate::cancel::Cancel;
use crate::error::{Error, Result};
use crate::keys::Keys;
use crate::runtime::{self, Runtime};

/// Pause between attempts while Redis is unreachable, within the call's deadline.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

pub struct Client {
    pub url: String,
    pub keys: Keys,
    pub timeout: Duration,
}

/// Counts that `Queue.stats` reports.
pub struct Stats {
    pub size: u64,
    pub scheduled: u64,
    pub processing: u64,
}

/// What a direct push came to, as the client reports it.
fn direct_outcome(queue: &str, pushed: crate::direct::Pushed) -> Result<()> {
    match pushed {
        crate::direct::Pushed::Done => Ok(()),
        crate::direct::Pushed::QueueNotRecorded(e) => Err(Error::Other(format!(
            "the job was enqueued, but Redis refused to record queue {queue:?}: {e}"
        ))),
    }
}

impl Client {
    pub fn new(url: &str, prefix: &str, timeout: Duration) -> Result<Client> {
        runtime::open(url)?;
        Ok(Client {
            url: url.to_string(),
            keys: Keys::new(prefix),
            timeout,
        })
    }

    /// Runs `op` on the shared connection, retrying connection failures until the
    /// deadline. Blocks the calling thread (call it without the GVL).
    pub fn call<T, F, Fut>(&self, cancel: &Cancel, op: F) -> Result<T>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let rt: Arc<Runtime> = runtime::get()?;
        let work = async {
            let deadline = Instant::now() + self.timeout;
            loop {
                let attempt = async {
                    let conn = rt.client(&self.url, self.timeout).await?;
                    op(conn).await.map_err(Error::from)
                };
                match tokio::time::timeout_at(deadline, attempt).await {
                    Ok(Err(Error::Connection(m))) => {
                        if Instant::now() + RETRY_PAUSE >= deadline {
                            return Err(Error::Connection(m));
                        }
                        tokio::time::sleep(RETRY_PAUSE).await;
                    }
                    Ok(result) => return result,
                    Err(_) => return Err(runtime::timed_out(&self.url, self.timeout)),
                }
            }
        };
        rt.tokio
            .block_on(cancel.run(work))
            .unwrap_or_else(|| Err(Error::Other("interrupted while waiting for Redis".into())))
    }

    /// Adds payloads to the back of a queue (in order) and records the queue name.
    /// Alone, on the calling thread's direct connection; with company, or when that
    /// fails, on the shared one (see `direct.rs`).
    pub fn push(&self, cancel: &Cancel, queue: &str, payloads: &[String]) -> Result<()> {
        let qkey = self.keys.queue(queue);
        let queues = self.keys.queues();
        let flight = crate::direct::Flight::start();
        // A request `push_quick` wrote must be finished on its own connection.
        if crate::direct::pending() || self.direct_allowed(&flight) {
            let pushed = crate::direct::push(
                &self.url,
                self.timeout,
                cancel,
                &qkey,
                &queues,
                queue,
                payloads,
            );
            match pushed {
                Ok(pushed) => return direct_outcome(queue, pushed),
                Err(_) if cancel.is_cancelled() => {
                    return Err(Error::Other("interrupted while waiting for Redis".into()))
                }
                // Redis took the whole network_timeout: waiting again on the shared
                // path would double the deadline.
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                    ) =>
                {
                    return Err(runtime::timed_out(&self.url, self.timeout))
                }
                Err(_) => {} // refused or dropped: the shared path retries until the deadline
            }
        }
        self.call(cancel, |mut c| {
            let mut pipe = redis::pipe();
            pipe.cmd("LPUSH").arg(&qkey).arg(payloads).ignore();
            pipe.cmd("SADD").arg(&queues).arg(queue).ignore();
            async move { pipe.query_async::<()>(&mut c).await }
        })
    }

    /// The direct push's first step, with the GVL held (see `direct.rs`). `Some`: done
    /// (or refused); `None`: finish with `push`, without the GVL.
    pub fn push_quick(&self, queue: &str, payloads: &[String]) -> Option<Result<()>> {
        let flight = crate::direct::Flight::start();
        if !self.direct_allowed(&flight) {
            return None;
        }
        let (qkey, queues) = (self.keys.queue(queue), self.keys.queues());
        match crate::direct::push_quick(&self.url, &qkey, &queues, queue, payloads)? {
            Ok(pushed) => Some(direct_outcome(queue, pushed)),
            Err(_) => None, // `push` tries again, then the shared path
        }
    }

    /// Alone, and on plain TCP: the direct connection may serve this push.
    fn direct_allowed(&self, flight: &crate::direct::Flight) -> bool {
        flight.alone() && self.url.starts_with("redis://")
    }

    /// Stores a job to run at `at` (epoch seconds) and tells schedulers about it.
    pub fn schedule(&self, cancel: &Cancel, queue: &str, at: f64, payload: &str) -> Result<()> {
        let skey = self.keys.schedule(queue);
        let queues = self.keys.queues();
        let channel = self.keys.schedule_channel();
        self.call(cancel, |mut c| {
            let mut pipe = redis::pipe();
            pipe.cmd("ZADD").arg(&skey).arg(at).arg(payload).ignore();
            pipe.cmd("SADD").arg(&queues).arg(queue).ignore();
            pipe.cmd("PUBLISH").arg(&channel).arg(queue).ignore();
            async move { pipe.query_async::<()>(&mut c).await }
        })
    }

    /// `Queue.stats`: a view of `metrics` (two round trips).
    pub fn stats(&self, cancel: &Cancel, queue: &str) -> Result<Stats> {
        let m = self
            .metrics(cancel, &[queue.to_string()])?
            .pop()
            .unwrap_or_default();
        Ok(Stats {
            size: m.size,
            scheduled: m.scheduled + m.retries,
            processing: m.busy,
        })
    }

    /// Failure records, newest first, `start..=stop` (Redis LRANGE indexes).
    pub fn failed(&self, cancel: &Cancel, start: i64, stop: i64) -> Result<Vec<String>> {
        self.range(cancel, "LRANGE", self.keys.failed(), start, stop)
    }

    /// Dead-set entries, newest first, `start..=stop`.
    pub fn dead(&self, cancel: &Cancel, start: i64, stop: i64) -> Result<Vec<String>> {
        self.range(cancel, "ZREVRANGE", self.keys.dead(), start, stop)
    }

    /// `LRANGE`/`ZREVRANGE`-style read of `key`, `start..=stop`.
    fn range(
        &self,
        cancel: &Cancel,
        command: &str,
        key: String,
        start: i64,
        stop: i64,
    ) -> Result<Vec<String>> {
        self.call(cancel, |mut c| {
            let mut cmd = redis::cmd(command);
            cmd.arg(&key).arg(start).arg(stop);
            async move { cmd.query_async(&mut c).await }
        })
    }

    /// Dead-set members whose jid is `jid` (every member when `None`).
    pub(crate) fn dead_members(&self, cancel: &Cancel, jid: Option<&str>) -> Result<Vec<String>> {
        let all = self.dead(cancel, 0, -1)?;
        Ok(match jid {
            None => all,
            Some(jid) => all
                .into_iter()
                .filter(|m| {
                    serde_json::from_str::<serde_json::Value>(m)
                        .ok()
                        .and_then(|v| v.get("jid").and_then(|j| j.as_str()).map(|j| j == jid))
                        .unwrap_or(false)
                })
                .collect(),
        })
    }

    /// Moves dead jobs (one jid, or all) back to their queues with a fresh retry
    /// count. Returns how many moved; each moves once even under concurrent calls.
    pub fn retry_dead(&self, cancel: &Cancel, jid: Option<&str>) -> Result<usize> {
        let mut moved = 0;
        for member in self.dead_members(cancel, jid)? {
            let Some((queue, job)) = crate::payload::revived(&member, crate::payload::now()) else {
                continue;
            };
            let dead = self.keys.dead();
            let qkey = self.keys.queue(&queue);
            let queues = self.keys.queues();
            let n: i64 = self.call(cancel, |mut c| {
                let (dead, qkey, queues, member, job, queue) = (
                    dead.clone(),
                    qkey.clone(),
                    queues.clone(),
                    member.clone(),
                    job.clone(),
                    queue.clone(),
                );
                async move {
                    redis::cmd("SADD")
                        .arg(queues)
                        .arg(queue)
                        .query_async::<()>(&mut c)
                        .await?;
                    crate::scripts::DEAD_RETRY
                        .key(dead)
                        .key(qkey)
                        .arg(member)
                        .arg(job)
                        .invoke_async(&mut c)
                        .await
                }
            })?;
            moved += n as usize;
        }
        Ok(moved)
    }

    /// Deletes dead jobs (one jid, or all). Returns how many were deleted.
    pub fn delete_dead(&self, cancel: &Cancel, jid: Option<&str>) -> Result<usize> {
        let key = self.keys.dead();
        if jid.is_none() {
            let n: usize = self.call(cancel, |mut c| {
                let key = key.clone();
                async move {
                    let n: usize = redis::cmd("ZCARD").arg(&key).query_async(&mut c).await?;
                    redis::cmd("DEL")
                        .arg(&key)
                        .query_async::<()>(&mut c)
                        .await?;
                    Ok(n)
                }
            })?;
            return Ok(n);
        }
        let members = self.dead_members(cancel, jid)?;
        if members.is_empty() {
            return Ok(0);
        }
        self.call(cancel, |mut c| {
            let (key, members) = (key.clone(), members.clone());
            async move {
                redis::cmd("ZREM")
                    .arg(key)
                    .arg(members)
                    .query_async(&mut c)
                    .await
            }
        })
    }

    /// Records cron definitions (class → JSON) so dashboards can list them.
    pub fn register_cron(&self, cancel: &Cancel, entries: &[(String, String)]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let key = self.keys.cron();
        self.call(cancel, |mut c| {
            let mut cmd = redis::cmd("HSET");
            cmd.arg(&key);
            for (class, def) in entries {
                cmd.arg(class).arg(def);
            }
            async move { cmd.query_async::<()>(&mut c).await }
        })
    }

    /// Last fired tick per cron class (epoch seconds).
    pub fn cron_last(&self, cancel: &Cancel) -> Result<Vec<(String, i64)>> {
        let key = self.keys.cron_last();
        self.call(cancel, |mut c| {
            let key = key.clone();
            async move { redis::cmd("HGETALL").arg(key).query_async(&mut c).await }
        })
    }
}
