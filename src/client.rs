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
    pub fn push(&self, cancel: &Cancel, queue: &str, payloads: &[String]) -> Result<()> {
        let qkey = self.keys.queue(queue);
        let queues = self.keys.queues();
        self.call(cancel, |mut c| {
            let mut pipe = redis::pipe();
            pipe.cmd("LPUSH").arg(&qkey).arg(payloads).ignore();
            pipe.cmd("SADD").arg(&queues).arg(queue).ignore();
            async move { pipe.query_async::<()>(&mut c).await }
        })
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

    pub fn stats(&self, cancel: &Cancel, queue: &str) -> Result<Stats> {
        let k = &self.keys;
        let (size, scheduled, retries, processes): (u64, u64, u64, Vec<String>) =
            self.call(cancel, |mut c| {
                let mut pipe = redis::pipe();
                pipe.cmd("LLEN").arg(k.queue(queue));
                pipe.cmd("ZCARD").arg(k.schedule(queue));
                pipe.cmd("ZCARD").arg(k.retry(queue));
                pipe.cmd("SMEMBERS").arg(k.processes());
                async move { pipe.query_async(&mut c).await }
            })?;
        let processing: Vec<u64> = if processes.is_empty() {
            Vec::new()
        } else {
            self.call(cancel, |mut c| {
                let mut pipe = redis::pipe();
                for id in &processes {
                    pipe.cmd("LLEN").arg(k.processing(queue, id));
                }
                async move { pipe.query_async(&mut c).await }
            })?
        };
        Ok(Stats {
            size,
            scheduled: scheduled + retries,
            processing: processing.iter().sum(),
        })
    }

    /// Failure records, newest first, `start..=stop` (Redis LRANGE indexes).
    pub fn failed(&self, cancel: &Cancel, start: i64, stop: i64) -> Result<Vec<String>> {
        let key = self.keys.failed();
        self.call(cancel, |mut c| {
            let key = key.clone();
            async move {
                redis::cmd("LRANGE")
                    .arg(key)
                    .arg(start)
                    .arg(stop)
                    .query_async(&mut c)
                    .await
            }
        })
    }
}
