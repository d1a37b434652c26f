//! Enqueueing: pushes to a queue (alone on the calling thread's direct connection, see
//! `direct.rs`; with company on the shared one), scheduled jobs, unique jobs, and the
//! wake-up of idle fetchers after a push that found a queue empty.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use tokio::time::{Duration, Instant};

use super::Handle;
use crate::error::{Error, Result};
use crate::runtime::{self, cancel::Cancel};
use crate::store::scripts;

pub struct Enqueue {
    handle: Arc<Handle>,
    /// When this process last woke each queue's fetchers (see `should_wake`).
    woken: Mutex<HashMap<String, Instant>>,
    /// Queues this process added to the queue set by a separate command (the unique
    /// enqueue path), so that it adds each once rather than a round trip per call.
    registered: Mutex<HashSet<String>>,
}

/// Locks a mutex of the bookkeeping; a panic elsewhere leaves it usable.
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A process wakes a queue's fetchers at most this often: a fetcher that took a job
/// since the last wake-up stays hot — blocking in Redis, needing no wake-up — for
/// longer (`worker::fetch::HOT_FOR`).
const WAKE_EVERY: Duration = Duration::from_secs(1);

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

impl Enqueue {
    pub fn new(handle: Arc<Handle>) -> Enqueue {
        Enqueue {
            handle,
            woken: Default::default(),
            registered: Default::default(),
        }
    }

    /// Adds payloads to the back of a queue (in order) and records the queue name.
    /// Alone, on the calling thread's direct connection; with company, or when that
    /// fails, on the shared one (see `direct.rs`). Returns whether the queue was empty
    /// before: then idle fetchers wait for a `wake`. `continuing`: called right after
    /// `push_quick` returned `None` for these payloads, so a request it wrote is finished
    /// on its own connection, wherever the target is now; any other call first drops a
    /// request left pending by an earlier push that was interrupted before it finished.
    pub fn push(
        &self,
        cancel: &Cancel,
        queue: &str,
        payloads: &[String],
        continuing: bool,
    ) -> Result<bool> {
        let qkey = self.handle.keys.queue(queue);
        let queues = self.handle.keys.queues();
        let push = super::direct::InFlightPush::start();
        let pending = if continuing {
            super::direct::pending()
        } else {
            super::direct::forget_pending();
            None
        };
        let direct = pending.or_else(|| {
            push.alone()
                .then(|| self.handle.target.direct_route())
                .flatten()
        });
        if let Some(route) = direct {
            let pushed = super::direct::push(
                &route,
                self.handle.timeout,
                cancel,
                &qkey,
                &queues,
                queue,
                payloads,
            );
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
                    return Err(runtime::timed_out(
                        self.handle.target.describe(),
                        self.handle.timeout,
                    ))
                }
                Err(_) => {} // refused or dropped: the shared path retries until the deadline
            }
        }
        self.handle
            .call(cancel, |mut c| {
                let mut pipe = redis::pipe();
                pipe.ignore_errors();
                pipe.cmd("SADD").arg(&queues).arg(queue);
                pipe.cmd("LPUSH").arg(&qkey).arg(payloads);
                self.handle.wait(&mut pipe);
                let wait = self.handle.target.wait_replicas();
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
        let channel = self.handle.keys.ready_channel();
        let published = self.handle.call(cancel, |mut c| {
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
        // A request an interrupted push left pending is not this push's: whatever this
        // returns, the `push` that follows must find only this one's.
        super::direct::forget_pending();
        let push = super::direct::InFlightPush::start();
        let route = push
            .alone()
            .then(|| self.handle.target.direct_route())
            .flatten()?;
        let (qkey, queues) = (self.handle.keys.queue(queue), self.handle.keys.queues());
        match super::direct::push_quick(&route, &qkey, &queues, queue, payloads)? {
            Ok(empty_before) => Some(Ok(empty_before)),
            Err(_) => None, // `push` tries again, then the shared path
        }
    }

    /// Stores jobs to run later, each at its own time (`(epoch seconds, payload)`), in
    /// one round trip, and tells schedulers about them.
    pub fn schedule(&self, cancel: &Cancel, queue: &str, jobs: &[(f64, String)]) -> Result<()> {
        let skey = self.handle.keys.schedule(queue);
        let queues = self.handle.keys.queues();
        let channel = self.handle.keys.schedule_channel();
        self.handle
            .call(cancel, |mut c| {
                let mut pipe = redis::pipe();
                pipe.ignore_errors();
                pipe.cmd("SADD").arg(&queues).arg(queue);
                let zadd = pipe.cmd("ZADD").arg(&skey);
                for (at, payload) in jobs {
                    zadd.arg(*at).arg(payload);
                }
                pipe.cmd("PUBLISH").arg(&channel).arg(queue);
                self.handle.wait(&mut pipe);
                let wait = self.handle.target.wait_replicas();
                async move { stored(pipe.query_async(&mut c).await?, 1, wait).map(drop) }
            })
            .map_err(not_stored)
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
        let k = &self.handle.keys;
        let target = match at {
            Some(_) => k.schedule(queue),
            None => k.queue(queue),
        };
        let flags: Vec<i64> = self.handle.call(cancel, |mut c| {
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
            // `redis_wait_replicas` holds for unique jobs too: the lock and the job are
            // on that many replicas before the jids return.
            let mut replicated = redis::pipe();
            self.handle.wait(&mut replicated);
            let wait = self.handle.target.wait_replicas();
            async move {
                let flags: Vec<i64> = inv.invoke_async(&mut c).await?;
                if !known {
                    register.query_async::<()>(&mut c).await?;
                }
                if wait > 0 {
                    stored(replicated.query_async(&mut c).await?, usize::MAX, wait)?;
                }
                Ok(flags)
            }
        })?;
        lock(&self.registered).insert(queue.to_string());
        Ok(flags.into_iter().map(|f| f == 1).collect())
    }
}
