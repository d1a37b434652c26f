//! Cron as dashboards see it: the definitions workers register, and the last tick each
//! class fired (which `cron_ticker.rs` writes).

use redis::RedisResult;

use super::{Client, Lossy};
use crate::error::Result;
use crate::runtime::cancel::Cancel;

/// Last ticks per cron class as stored, and why the record was unreadable, if it was.
pub type CronLast = (Vec<(String, String)>, Option<String>);

impl Client {
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

    /// Cron definitions workers registered: (class, JSON {class, cron, queue, time_zone}).
    pub fn cron_defs(&self, cancel: &Cancel) -> Result<Vec<(String, String)>> {
        let key = self.keys.cron();
        let defs: RedisResult<Vec<(Lossy, Lossy)>> = self.call(cancel, |mut c| {
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
