//! What any process (not only workers) does with Redis: enqueue and schedule (this
//! file, with the direct path in `direct.rs`), and what dashboards read and change
//! (`admin.rs`: metrics and processes; `jobs.rs`: jobs by queue and jid; `dead.rs`:
//! the failed list and dead set; `cron.rs`: cron records; `class_metrics.rs`: per-class
//! metrics), and what features add: `flow.rs` (pausing, unique jobs, limits per key),
//! `batch.rs` (batches) and `iteration.rs` (iterable jobs' checkpoints). Calls go through the
//! runtime's shared connection, so concurrent callers (threads of a web server) share
//! pipelined round trips; a push made alone may take the direct path.
//!
//! Every call has a deadline (`network_timeout`): during an outage it retries the
//! connection until then, then fails with `Error::Connection`. It never hangs.

mod admin;
mod batch;
mod class_metrics;
mod cron;
mod dead;
mod direct;
mod flow;
mod iteration;
mod jobs;

pub use self::batch::Opening;
pub use self::cron::CronLast;
pub use self::jobs::Waiting;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::{FromRedisValue, ParsingError, Value};
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::runtime::cancel::Cancel;
use crate::runtime::conn::Conn;
use crate::runtime::target::{Target, TargetSettings};
use crate::runtime::{self, Runtime};
use crate::store::keys::Keys;

/// Pause between attempts while Redis is unreachable, within the call's deadline.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

pub struct Client {
    target: Target,
    pub keys: Keys,
    pub timeout: Duration,
    /// When this client last woke each queue's fetchers (see `should_wake`).
    woken: std::sync::Mutex<std::collections::HashMap<String, Instant>>,
    /// Queues this client added to the queue set by a separate command (the unique
    /// enqueue path), so that it adds each once rather than a round trip per call.
    registered: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// Locks a mutex of the client's bookkeeping; a panic elsewhere leaves it usable.
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A client wakes a queue's fetchers at most this often: a fetcher that took a job
/// since the last wake-up stays hot — blocking in Redis, needing no wake-up — for
/// longer (`worker::fetch::HOT_FOR`).
const WAKE_EVERY: Duration = Duration::from_secs(1);

/// A Redis string read for display: bytes that are not UTF-8 show as U+FFFD instead
/// of failing the read; numbers read as their text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Lossy(pub String);

impl FromRedisValue for Lossy {
    fn from_redis_value(v: Value) -> std::result::Result<Self, ParsingError> {
        match v {
            Value::BulkString(bytes) => Ok(Lossy(String::from_utf8_lossy(&bytes).into_owned())),
            other => String::from_redis_value(other).map(Lossy),
        }
    }
}

impl From<Lossy> for String {
    fn from(l: Lossy) -> String {
        l.0
    }
}

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
/// the rate of concurrent pushes.) With `wait`, the last reply is WAIT's: fewer
/// replicas than asked for is an error — the jobs are stored, but not yet safe from a
/// failover.
/// `Ok` holds the job command's reply when it is a number (LPUSH: the list's length).
fn stored(
    results: Vec<redis::RedisResult<redis::Value>>,
    job: usize,
    wait: usize,
) -> redis::RedisResult<Option<i64>> {
    let mut bookkeeping = None;
    let mut reply = None;
    let last = results.len().saturating_sub(1);
    for (i, result) in results.into_iter().enumerate() {
        match result {
            Err(e) if i == job => return Err(e),
            Ok(redis::Value::Int(n)) if i == job => reply = Some(n),
            Ok(redis::Value::Int(confirmed)) if wait > 0 && i == last => {
                if (confirmed as usize) < wait {
                    // Not a connection problem: sending again would store it twice.
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::Client,
                        crate::error::NOT_REPLICATED,
                        format!("{confirmed} of {wait}"),
                    )));
                }
            }
            Err(e) => bookkeeping = Some(e),
            Ok(_) => {}
        }
    }
    if let Some(e) = bookkeeping {
        tracing::warn!("a job was stored, but Redis refused FiberJob's bookkeeping: {e}");
    }
    Ok(reply)
}

impl Client {
    pub fn new(target: &TargetSettings, prefix: &str) -> Result<Client> {
        Ok(Client {
            target: Target::new(target)?,
            keys: Keys::new(prefix),
            timeout: target.timeout,
            woken: Default::default(),
            registered: Default::default(),
        })
    }

    /// Where this client is connected (the Sentinel master's address asked now).
    pub fn where_now(&self, cancel: &Cancel) -> Result<String> {
        let rt = runtime::get()?;
        rt.tokio
            .block_on(cancel.run(self.target.where_now()))
            .ok_or_else(|| Error::Other("interrupted".into()))
    }

    /// Runs `op` on the shared connection, retrying connection problems (a dropped
    /// connection, a failover's READONLY: each retry reconnects, and with Sentinel asks
    /// for the master again) until the deadline. Blocks the calling thread (call it
    /// without the GVL). At the deadline it reports the last problem it saw.
    pub fn call<T, F, Fut>(&self, cancel: &Cancel, op: F) -> Result<T>
    where
        F: Fn(Conn) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let rt: Arc<Runtime> = runtime::get()?;
        let work = async {
            let deadline = Instant::now() + self.timeout;
            let mut last: Option<Error> = None;
            loop {
                let attempt = async {
                    let conn = self.target.shared_connection().await?;
                    op(conn).await.map_err(Error::from)
                };
                match tokio::time::timeout_at(deadline, attempt).await {
                    Ok(Err(Error::Connection(m))) => {
                        self.target.forget_shared().await;
                        if Instant::now() + RETRY_PAUSE >= deadline {
                            return Err(Error::Connection(m));
                        }
                        last = Some(Error::Connection(m));
                        tokio::time::sleep(RETRY_PAUSE).await;
                    }
                    Ok(result) => return result,
                    Err(_) => {
                        self.target.forget_shared().await;
                        return Err(last.unwrap_or_else(|| {
                            runtime::timed_out(self.target.describe(), self.timeout)
                        }));
                    }
                }
            }
        };
        rt.tokio
            .block_on(cancel.run(work))
            .unwrap_or_else(|| Err(Error::Other("interrupted while waiting for Redis".into())))
    }

    /// Adds payloads to the back of a queue (in order) and records the queue name.
    /// Alone, on the calling thread's direct connection; with company, or when that
    /// fails, on the shared one (see `direct.rs`). Returns whether the queue was empty
    /// before: then idle fetchers wait for a `wake`.
    pub fn push(&self, cancel: &Cancel, queue: &str, payloads: &[String]) -> Result<bool> {
        let qkey = self.keys.queue(queue);
        let queues = self.keys.queues();
        let push = self::direct::InFlightPush::start();
        // A request `push_quick` wrote must be finished on its own connection.
        let direct = self
            .target
            .plain_url()
            .filter(|_| self::direct::pending() || push.alone());
        if let Some(url) = direct {
            let pushed =
                self::direct::push(url, self.timeout, cancel, &qkey, &queues, queue, payloads);
            match pushed {
                Ok(empty_before) => return Ok(empty_before),
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
                    return Err(runtime::timed_out(self.target.describe(), self.timeout))
                }
                Err(_) => {} // refused or dropped: the shared path retries until the deadline
            }
        }
        self.call(cancel, |mut c| {
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            pipe.cmd("SADD").arg(&queues).arg(queue);
            pipe.cmd("LPUSH").arg(&qkey).arg(payloads);
            self.wait(&mut pipe);
            let wait = self.target.wait_replicas();
            let pushed = payloads.len() as i64;
            async move {
                let length = stored(pipe.query_async(&mut c).await?, 1, wait)?;
                Ok(length == Some(pushed))
            }
        })
        .map_err(not_stored)
    }

    /// Whether a push that found `queue` empty should `wake` its fetchers: not when this
    /// client did less than `WAKE_EVERY` ago. The job pushed then was taken since (the
    /// queue was empty again), so some fetcher is still hot and takes this one.
    pub fn should_wake(&self, queue: &str) -> bool {
        let mut woken = lock(&self.woken);
        let now = Instant::now();
        if let Some(at) = woken.get_mut(queue) {
            if now.duration_since(*at) < WAKE_EVERY {
                return false;
            }
            *at = now;
            return true;
        }
        if woken.len() >= 10_000 {
            woken.clear(); // a bound for apps that make up queue names
        }
        woken.insert(queue.to_string(), now);
        true
    }

    /// Tells idle fetchers that `queue` has jobs (see `Keys::ready_channel`): after a
    /// push that found the queue empty. The jobs are stored already, so a failure is
    /// only logged; fetchers find the jobs at their next backstop poll.
    pub fn wake(&self, cancel: &Cancel, queue: &str) {
        let channel = self.keys.ready_channel();
        let published = self.call(cancel, |mut c| {
            let mut cmd = redis::cmd("PUBLISH");
            cmd.arg(&channel).arg(queue);
            async move { cmd.query_async::<i64>(&mut c).await }
        });
        if let Err(e) = published {
            tracing::debug!("could not wake the fetchers of queue {queue:?}: {e}");
        }
    }

    /// The direct push's first step, with the GVL held (see `direct.rs`). `Some`: done
    /// (or refused); `None`: finish with `push`, without the GVL.
    pub fn push_quick(&self, queue: &str, payloads: &[String]) -> Option<Result<bool>> {
        let push = self::direct::InFlightPush::start();
        let url = self.target.plain_url().filter(|_| push.alone())?;
        let (qkey, queues) = (self.keys.queue(queue), self.keys.queues());
        match self::direct::push_quick(url, &qkey, &queues, queue, payloads)? {
            Ok(empty_before) => Some(Ok(empty_before)),
            Err(_) => None, // `push` tries again, then the shared path
        }
    }

    /// Adds `WAIT replicas timeout` when enqueues wait for replicas: half of
    /// `network_timeout`, so the call's own deadline is not what ends it.
    fn wait(&self, pipe: &mut redis::Pipeline) {
        let replicas = self.target.wait_replicas();
        if replicas > 0 {
            pipe.cmd("WAIT")
                .arg(replicas)
                .arg((self.timeout.as_millis() / 2).max(1) as u64);
        }
    }

    /// Stores jobs to run later, each at its own time (`(epoch seconds, payload)`), in
    /// one round trip, and tells schedulers about them.
    pub fn schedule(&self, cancel: &Cancel, queue: &str, jobs: &[(f64, String)]) -> Result<()> {
        let skey = self.keys.schedule(queue);
        let queues = self.keys.queues();
        let channel = self.keys.schedule_channel();
        self.call(cancel, |mut c| {
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            pipe.cmd("SADD").arg(&queues).arg(queue);
            let zadd = pipe.cmd("ZADD").arg(&skey);
            for (at, payload) in jobs {
                zadd.arg(*at).arg(payload);
            }
            pipe.cmd("PUBLISH").arg(&channel).arg(queue);
            self.wait(&mut pipe);
            let wait = self.target.wait_replicas();
            async move { stored(pipe.query_async(&mut c).await?, 1, wait).map(drop) }
        })
        .map_err(not_stored)
    }
}
