//! The failed list and the dead set: reading them, and retrying or deleting dead jobs
//! (one by jid with the atomic `JID_OP` script, or all).

use super::{Client, Lossy};
use crate::error::Result;
use crate::runtime::cancel::Cancel;
use crate::store::{payload, records, scripts};

impl Client {
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
            let Some((queue, job)) = records::revived(&entry, payload::now()) else {
                continue;
            };
            let dead = self.keys.dead();
            let qkey = self.keys.queue(&queue);
            let queues = self.keys.queues();
            let n: i64 = self.call(cancel, |mut c| {
                let mut inv = scripts::DEAD_RETRY.prepare_invoke();
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
}
