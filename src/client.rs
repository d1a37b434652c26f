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

use crate::admin::Lossy;
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

/// Last ticks per cron class as stored, and why the record was unreadable, if it was.
pub type CronLast = (Vec<(String, String)>, Option<String>);

/// An enqueue Redis refused for want of memory says so, and that the job is not stored.
fn not_stored(e: Error) -> Error {
    match e {
        Error::RedisFull(m) => Error::RedisFull(format!("the job was not stored: {m}")),
        other => other,
    }
}

/// Reads an enqueue's replies: the command at `job` (the one LPUSH or ZADD that writes
/// the jobs) alone decides whether they were stored; an error of the others (the
/// queue's name, the wake-up) is bookkeeping and only logged. So an enqueue raises
/// exactly when its jobs were not stored. (A `MULTI` around them would cost a fifth of
/// the rate of concurrent pushes.)
fn stored(results: Vec<redis::RedisResult<redis::Value>>, job: usize) -> redis::RedisResult<()> {
    let mut bookkeeping = None;
    for (i, result) in results.into_iter().enumerate() {
        match result {
            Err(e) if i == job => return Err(e),
            Err(e) => bookkeeping = Some(e),
            Ok(_) => {}
        }
    }
    if let Some(e) = bookkeeping {
        tracing::warn!("a job was stored, but Redis refused FiberJob's bookkeeping: {e}");
    }
    Ok(())
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
                Ok(()) => return Ok(()),
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
            pipe.ignore_errors();
            pipe.cmd("SADD").arg(&queues).arg(queue);
            pipe.cmd("LPUSH").arg(&qkey).arg(payloads);
            async move { stored(pipe.query_async(&mut c).await?, 1) }
        })
        .map_err(not_stored)
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
            Ok(()) => Some(Ok(())),
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
            pipe.ignore_errors();
            pipe.cmd("SADD").arg(&queues).arg(queue);
            pipe.cmd("ZADD").arg(&skey).arg(at).arg(payload);
            pipe.cmd("PUBLISH").arg(&channel).arg(queue);
            async move { stored(pipe.query_async(&mut c).await?, 1) }
        })
        .map_err(not_stored)
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

    /// `LRANGE`/`ZREVRANGE`-style read of `key`, `start..=stop`, for display.
    fn range(
        &self,
        cancel: &Cancel,
        command: &str,
        key: String,
        start: i64,
        stop: i64,
    ) -> Result<Vec<String>> {
        let entries: Vec<Lossy> = self.call(cancel, |mut c| {
            let mut cmd = redis::cmd(command);
            cmd.arg(&key).arg(start).arg(stop);
            async move { cmd.query_async(&mut c).await }
        })?;
        Ok(entries.into_iter().map(String::from).collect())
    }

    /// Dead-set members, exactly as stored: the one whose jid is `jid` (found by the
    /// `JID_OP` script, not by reading the set here), or every member when `None`.
    fn dead_members(&self, cancel: &Cancel, jid: Option<&str>) -> Result<Vec<Vec<u8>>> {
        let dead = self.keys.dead();
        match jid {
            Some(jid) => Ok(self
                .jid_op_bytes(cancel, &dead, &dead, "zset", "find", jid)?
                .map(|(raw, _)| raw)
                .into_iter()
                .collect()),
            None => self.call(cancel, |mut c| {
                let dead = dead.clone();
                async move {
                    redis::cmd("ZRANGE")
                        .arg(dead)
                        .arg(0)
                        .arg(-1)
                        .query_async(&mut c)
                        .await
                }
            }),
        }
    }

    /// Moves dead jobs (one jid, or all) back to their queues with a fresh retry
    /// count. Returns how many moved; each moves once even under concurrent calls.
    pub fn retry_dead(&self, cancel: &Cancel, jid: Option<&str>) -> Result<usize> {
        let mut moved = 0;
        for member in self.dead_members(cancel, jid)? {
            let entry = String::from_utf8_lossy(&member);
            let Some((queue, job)) = crate::payload::revived(&entry, crate::payload::now()) else {
                continue;
            };
            let dead = self.keys.dead();
            let qkey = self.keys.queue(&queue);
            let queues = self.keys.queues();
            let n: i64 = self.call(cancel, |mut c| {
                let mut inv = crate::scripts::DEAD_RETRY.prepare_invoke();
                inv.key(&dead)
                    .key(&qkey)
                    .key(&queues)
                    .arg(&member)
                    .arg(&job)
                    .arg(&queue);
                async move { inv.invoke_async(&mut c).await }
            })?;
            moved += n as usize;
        }
        Ok(moved)
    }

    /// Deletes dead jobs (one jid, or all, in one atomic step). Returns how many.
    pub fn delete_dead(&self, cancel: &Cancel, jid: Option<&str>) -> Result<usize> {
        let key = self.keys.dead();
        match jid {
            Some(jid) => Ok(self
                .jid_op(cancel, &key, &key, "zset", "delete", jid)?
                .map_or(0, |_| 1)),
            None => self.call(cancel, |mut c| {
                let mut pipe = redis::pipe();
                pipe.atomic()
                    .cmd("ZCARD")
                    .arg(&key)
                    .cmd("DEL")
                    .arg(&key)
                    .ignore();
                async move {
                    let (n,): (usize,) = pipe.query_async(&mut c).await?;
                    Ok(n)
                }
            }),
        }
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

    /// The Web UI's signing secret: `candidate` if none is stored yet, else the stored
    /// one, so every web process signs with the same.
    pub fn web_secret(&self, cancel: &Cancel, candidate: &str) -> Result<String> {
        let key = self.keys.web_secret();
        self.call(cancel, |mut c| {
            let mut pipe = redis::pipe();
            pipe.cmd("SET").arg(&key).arg(candidate).arg("NX").ignore();
            pipe.cmd("GET").arg(&key);
            async move {
                let (secret,): (String,) = pipe.query_async(&mut c).await?;
                Ok(secret)
            }
        })
    }

    /// Last fired tick per cron class, as stored (epoch seconds, unless something else
    /// wrote there), and why it could not be read at all (a key of the wrong type).
    pub fn cron_last(&self, cancel: &Cancel) -> Result<CronLast> {
        let key = self.keys.cron_last();
        let read: redis::RedisResult<Vec<(Lossy, Lossy)>> = self.call(cancel, |mut c| {
            let key = key.clone();
            async move {
                let mut pipe = redis::pipe();
                pipe.ignore_errors().cmd("HGETALL").arg(key);
                let (read,): (redis::RedisResult<Vec<(Lossy, Lossy)>>,) =
                    pipe.query_async(&mut c).await?;
                Ok(read)
            }
        })?;
        Ok(match read {
            Ok(pairs) => (pairs.into_iter().map(|(k, v)| (k.0, v.0)).collect(), None),
            Err(e) => (Vec::new(), Some(format!("{key} is not a hash ({e})"))),
        })
    }
}
