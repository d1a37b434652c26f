//! Cron as dashboards see it: the definitions workers register, and the last tick each
//! class fired (which `cron_ticker.rs` writes).

use std::sync::Arc;

use redis::RedisResult;

use super::{Handle, Lossy};
use crate::error::Result;
use crate::runtime::cancel::Cancel;

/// Last ticks per cron class as stored, and why the record was unreadable, if it was.
pub type CronLast = (Vec<(String, String)>, Option<String>);

pub struct Cron {
    handle: Arc<Handle>,
}

impl Cron {
    pub fn new(handle: Arc<Handle>) -> Cron {
        Cron { handle }
    }

    /// Records cron definitions (class → JSON) so dashboards can list them.
    pub fn register(&self, cancel: &Cancel, entries: &[(String, String)]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let key = self.handle.keys.cron();
        self.handle.call(cancel, |mut c| {
            let mut cmd = redis::cmd("HSET");
            cmd.arg(&key);
            for (class, def) in entries {
                cmd.arg(class).arg(def);
            }
            async move { cmd.query_async::<()>(&mut c).await }
        })
    }

    /// Last fired tick per cron class, as stored (epoch seconds, unless something else
    /// wrote there), and why some could not be read (a key of the wrong type). Each
    /// queue keeps its classes' ticks; the queues are the registered definitions'.
    pub fn last(&self, cancel: &Cancel) -> Result<CronLast> {
        let mut queues: Vec<String> = self
            .definitions(cancel)?
            .iter()
            .map(|(_, def)| {
                serde_json::from_str::<serde_json::Value>(def)
                    .ok()
                    .and_then(|v| v.get("queue").and_then(|q| q.as_str()).map(String::from))
                    .unwrap_or_else(|| "default".to_string())
            })
            .collect();
        queues.sort();
        queues.dedup();
        let keys: Vec<String> = queues
            .iter()
            .map(|q| self.handle.keys.cron_last(q))
            .collect();
        if keys.is_empty() {
            return Ok(CronLast::default());
        }
        let reads: Vec<RedisResult<Vec<(Lossy, Lossy)>>> = self.handle.call(cancel, |mut c| {
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for key in &keys {
                pipe.cmd("HGETALL").arg(key);
            }
            async move { pipe.query_async(&mut c).await }
        })?;
        let mut last = Vec::new();
        let mut problems = Vec::new();
        for (key, read) in keys.iter().zip(reads) {
            match read {
                Ok(pairs) => last.extend(pairs.into_iter().map(|(k, v)| (k.0, v.0))),
                Err(e) => problems.push(format!("{key} is not a hash ({e})")),
            }
        }
        Ok((last, (!problems.is_empty()).then(|| problems.join("; "))))
    }

    /// Cron definitions workers registered: (class, JSON {class, cron, queue, time_zone}).
    pub fn definitions(&self, cancel: &Cancel) -> Result<Vec<(String, String)>> {
        let key = self.handle.keys.cron();
        let defs: RedisResult<Vec<(Lossy, Lossy)>> = self.handle.call(cancel, |mut c| {
            let key = key.clone();
            async move {
                let mut pipe = redis::pipe();
                pipe.ignore_errors().cmd("HGETALL").arg(key);
                let (defs,): (RedisResult<Vec<(Lossy, Lossy)>>,) = pipe.query_async(&mut c).await?;
                Ok(defs)
            }
        })?;
        // Not a hash: no definitions to show (the workers' own classes still list).
        let mut defs: Vec<(String, String)> = defs
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k.0, v.0))
            .collect();
        defs.sort();
        Ok(defs)
    }
}
