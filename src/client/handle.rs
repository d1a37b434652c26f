//! A process's handle on FiberJob's data in Redis: where Redis is (`Target`), the key
//! names (`Keys`) and the deadline of every call. Each concern's type in this folder
//! holds one (`Arc<Handle>`), so they share one connection and its pipelined round
//! trips. The reads more than one concern needs live here too.
//!
//! Every call has a deadline (`network_timeout`): during an outage it retries the
//! connection until then, then fails with `Error::Connection`. It never hangs.

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

/// What holds the jobs `Handle::jid_op` searches, as `JID_OP` names it.
#[derive(Clone, Copy, Debug)]
pub(super) enum Holder {
    List,
    Set,
    SortedSet,
}

impl Holder {
    fn name(self) -> &'static str {
        match self {
            Holder::List => "list",
            Holder::Set => "set",
            Holder::SortedSet => "zset",
        }
    }
}

/// What `Handle::jid_op` does with the job it finds.
#[derive(Clone, Copy, Debug)]
pub(super) enum JidAction {
    Find,
    Delete,
    /// Moves a scheduled job or retry to the front of its queue.
    RunNow,
}

impl JidAction {
    fn name(self) -> &'static str {
        match self {
            JidAction::Find => "find",
            JidAction::Delete => "delete",
            JidAction::RunNow => "run",
        }
    }
}

pub struct Handle {
    pub(super) target: Target,
    pub keys: Keys,
    pub timeout: Duration,
}

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

impl Handle {
    pub fn new(target: &TargetSettings, prefix: &str) -> Result<Arc<Handle>> {
        Ok(Arc::new(Handle {
            target: Target::new(target)?,
            keys: Keys::new(prefix),
            timeout: target.timeout,
        }))
    }

    /// Where this handle is connected (the Sentinel master's address asked now).
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

    /// Adds `WAIT replicas timeout` when enqueues wait for replicas: half of
    /// `network_timeout`, so the call's own deadline is not what ends it.
    pub(super) fn wait(&self, pipe: &mut redis::Pipeline) {
        let replicas = self.target.wait_replicas();
        if replicas > 0 {
            pipe.cmd("WAIT")
                .arg(replicas)
                .arg((self.timeout.as_millis() / 2).max(1) as u64);
        }
    }

    // Reads more than one concern needs.

    /// Every queue enqueued to or worked, sorted.
    pub fn queue_names(&self, cancel: &Cancel) -> Result<Vec<String>> {
        self.sorted_members(cancel, self.keys.queues())
    }

    /// The members of the set at `key`, sorted.
    pub(super) fn sorted_members(&self, cancel: &Cancel, key: String) -> Result<Vec<String>> {
        let names: Vec<Lossy> = self.call(cancel, |mut c| {
            let key = key.clone();
            async move { redis::cmd("SMEMBERS").arg(key).query_async(&mut c).await }
        })?;
        let mut names: Vec<String> = names.into_iter().map(String::from).collect();
        names.sort();
        Ok(names)
    }

    /// Identities in the process set (live, or dead and not yet reaped).
    pub(super) fn process_ids(&self, cancel: &Cancel) -> Result<Vec<String>> {
        let key = self.keys.processes();
        let ids: Vec<Lossy> = self.call(cancel, |mut c| {
            let key = key.clone();
            async move { redis::cmd("SMEMBERS").arg(key).query_async(&mut c).await }
        })?;
        Ok(ids.into_iter().map(String::from).collect())
    }

    /// Runs `JID_OP` (see `scripts.rs`) on the jobs at `key` (moving to `dest` for
    /// `RunNow`): the payload's exact bytes (to act on the member afterwards) and its
    /// run-at, of the job found, if any.
    pub(super) fn jid_op(
        &self,
        cancel: &Cancel,
        (key, holder): (&str, Holder),
        dest: &str,
        action: JidAction,
        jid: &str,
    ) -> Result<Option<(Vec<u8>, Option<f64>)>> {
        let found: Option<(Vec<u8>, Lossy)> = self.call(cancel, |mut c| {
            let mut inv = crate::store::scripts::JID_OP.prepare_invoke();
            inv.key(key)
                .key(dest)
                .arg(jid)
                .arg(holder.name())
                .arg(action.name());
            async move { inv.invoke_async(&mut c).await }
        })?;
        Ok(found.map(|(raw, score)| (raw, score.0.parse().ok())))
    }
}
