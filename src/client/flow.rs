//! Flow control an operator applies to a queue: pausing and resuming it.
//!
//! The paused set (`Keys::paused`) is the state, one `SADD`/`SREM` (atomic on its
//! own), read by every worker's heartbeat; the announcement on `Keys::pause_channel`
//! only makes workers read it at once instead of at their next beat.

use super::{Client, Lossy};
use crate::error::Result;
use crate::runtime::cancel::Cancel;

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

    /// The paused queues, sorted.
    pub fn paused(&self, cancel: &Cancel) -> Result<Vec<String>> {
        let key = self.keys.paused();
        let names: Vec<Lossy> = self.call(cancel, |mut c| {
            let key = key.clone();
            async move { redis::cmd("SMEMBERS").arg(key).query_async(&mut c).await }
        })?;
        let mut names: Vec<String> = names.into_iter().map(String::from).collect();
        names.sort();
        Ok(names)
    }
}
