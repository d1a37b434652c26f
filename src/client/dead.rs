//! The failure records and the dead sets: reading them, and retrying or deleting dead
//! jobs (one by jid with the atomic `JID_OP` script, or all).
//!
//! Each queue has its own (in the queue's Cluster slot, next to the jobs the outcome
//! script moves there); what dashboards show is every queue's, merged newest first.
//! A page `start..=stop` reads the first `stop + 1` entries of each queue, so deep
//! pages of many queues cost more: an admin read, not a worker path.

use std::cmp::Ordering;
use std::sync::Arc;

use redis::{RedisResult, Value};

use super::handle::{Holder, JidAction};
use super::{Handle, Lossy};
use crate::error::Result;
use crate::runtime::cancel::Cancel;
use crate::store::{payload, records, scripts};

pub struct DeadSet {
    handle: Arc<Handle>,
}

impl DeadSet {
    pub fn new(handle: Arc<Handle>) -> DeadSet {
        DeadSet { handle }
    }

    /// Failure records of every queue, newest first, `start..=stop` (LRANGE-style
    /// indexes, not negative).
    pub fn failed(&self, cancel: &Cancel, start: i64, stop: i64) -> Result<Vec<String>> {
        let keys = self.per_queue(cancel, |q| self.handle.keys.failed(q))?;
        if keys.is_empty() {
            return Ok(Vec::new()); // (an empty pipeline is an error)
        }
        let lists: Vec<RedisResult<Vec<Lossy>>> = self.handle.call(cancel, |mut c| {
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for key in &keys {
                pipe.cmd("LRANGE").arg(key).arg(0).arg(stop.max(0));
            }
            async move { pipe.query_async(&mut c).await }
        })?;
        // A record without a readable time sorts as oldest.
        let entries = lists
            .into_iter()
            .flat_map(|l| l.unwrap_or_default())
            .map(|e| {
                let at = serde_json::from_str::<serde_json::Value>(&e.0)
                    .ok()
                    .and_then(|v| {
                        v.get("failed_at")
                            .and_then(crate::store::payload::epoch_seconds)
                    })
                    .unwrap_or(f64::MIN);
                (e.0, at)
            });
        Ok(newest_first(entries, start, stop))
    }

    /// Dead-set entries of every queue, newest first, `start..=stop`.
    pub fn dead(&self, cancel: &Cancel, start: i64, stop: i64) -> Result<Vec<String>> {
        let keys = self.per_queue(cancel, |q| self.handle.keys.dead(q))?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let sets: Vec<RedisResult<Vec<(Lossy, f64)>>> = self.handle.call(cancel, |mut c| {
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for key in &keys {
                pipe.cmd("ZREVRANGE")
                    .arg(key)
                    .arg(0)
                    .arg(stop.max(0))
                    .arg("WITHSCORES");
            }
            async move { pipe.query_async(&mut c).await }
        })?;
        let entries = sets
            .into_iter()
            .flat_map(|s| s.unwrap_or_default())
            .map(|(e, at)| (e.0, at));
        Ok(newest_first(entries, start, stop))
    }

    /// Sizes of every queue's dead set and failure records: (dead, records).
    pub(super) fn dead_and_failed_counts(&self, cancel: &Cancel) -> Result<(u64, u64)> {
        let queues = self.handle.queue_names(cancel)?;
        if queues.is_empty() {
            return Ok((0, 0));
        }
        let counts: Vec<RedisResult<Value>> = self.handle.call(cancel, |mut c| {
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for q in &queues {
                pipe.cmd("ZCARD").arg(self.handle.keys.dead(q));
                pipe.cmd("LLEN").arg(self.handle.keys.failed(q));
            }
            async move { pipe.query_async(&mut c).await }
        })?;
        let n = |v: &RedisResult<Value>| match v {
            Ok(Value::Int(n)) => *n as u64,
            _ => 0,
        };
        Ok(counts
            .chunks(2)
            .fold((0, 0), |(d, f), pair| (d + n(&pair[0]), f + n(&pair[1]))))
    }

    /// `key_of` each known queue.
    fn per_queue(&self, cancel: &Cancel, key_of: impl Fn(&str) -> String) -> Result<Vec<String>> {
        Ok(self
            .handle
            .queue_names(cancel)?
            .iter()
            .map(|q| key_of(q))
            .collect())
    }

    /// Dead-set members as stored, with their dead set: the one whose jid is `jid`
    /// (found by the `JID_OP` script, not by reading the sets here), or every member
    /// when `None`.
    fn dead_members(&self, cancel: &Cancel, jid: Option<&str>) -> Result<Vec<(String, Vec<u8>)>> {
        let mut found = Vec::new();
        for key in self.per_queue(cancel, |q| self.handle.keys.dead(q))? {
            match jid {
                Some(jid) => {
                    if let Some((raw, _)) = self.handle.jid_op(
                        cancel,
                        (&key, Holder::SortedSet),
                        &key,
                        JidAction::Find,
                        jid,
                    )? {
                        found.push((key, raw));
                        break;
                    }
                }
                None => {
                    let members: Vec<Vec<u8>> = self.handle.call(cancel, |mut c| {
                        let key = key.clone();
                        async move {
                            redis::cmd("ZRANGE")
                                .arg(key)
                                .arg(0)
                                .arg(-1)
                                .query_async(&mut c)
                                .await
                        }
                    })?;
                    found.extend(members.into_iter().map(|m| (key.clone(), m)));
                }
            }
        }
        Ok(found)
    }

    /// Moves dead jobs (one jid, or all) back to their queues with a fresh retry
    /// count. Returns how many moved; each moves once even under concurrent calls.
    pub fn retry(&self, cancel: &Cancel, jid: Option<&str>) -> Result<usize> {
        let mut moved = 0;
        for (dead, member) in self.dead_members(cancel, jid)? {
            let entry = String::from_utf8_lossy(&member);
            let Some((queue, job)) = records::revived(&entry, payload::now()) else {
                continue;
            };
            let queue_key = self.handle.keys.queue(&queue);
            // The job's own queue is normally the dead set's; one that names another
            // queue (edited by hand) cannot move in one script in a Cluster.
            if self.handle.keys.dead(&queue) != dead {
                tracing::warn!(
                    "dead job {entry} names queue {queue:?} but is in {dead}; left there"
                );
                continue;
            }
            let queues = self.handle.keys.queues();
            let n: i64 = self.handle.call(cancel, |mut c| {
                let mut inv = scripts::DEAD_RETRY.prepare_invoke();
                inv.key(&dead).key(&queue_key).arg(&member).arg(&job);
                if let Some((digest, jid, ttl_ms)) = unique_lock(&job) {
                    inv.key(self.handle.keys.unique(&queue, &digest))
                        .arg(jid)
                        .arg(ttl_ms);
                }
                let mut register = redis::cmd("SADD");
                register.arg(&queues).arg(&queue);
                async move {
                    let n: i64 = inv.invoke_async(&mut c).await?;
                    if n > 0 {
                        register.query_async::<()>(&mut c).await?;
                    }
                    Ok(n)
                }
            })?;
            moved += n as usize;
        }
        Ok(moved)
    }

    /// Deletes dead jobs (one jid, or all, each queue's in one atomic step). Returns
    /// how many.
    pub fn delete(&self, cancel: &Cancel, jid: Option<&str>) -> Result<usize> {
        let mut deleted = 0;
        for key in self.per_queue(cancel, |q| self.handle.keys.dead(q))? {
            match jid {
                Some(jid) => {
                    if self
                        .handle
                        .jid_op(
                            cancel,
                            (&key, Holder::SortedSet),
                            &key,
                            JidAction::Delete,
                            jid,
                        )?
                        .is_some()
                    {
                        return Ok(1);
                    }
                }
                None => {
                    deleted += self.handle.call(cancel, |mut c| {
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
                    })?;
                }
            }
        }
        Ok(deleted)
    }
}

/// Entries `start..=stop` of `entries` sorted newest first by their time.
fn newest_first(
    entries: impl Iterator<Item = (String, f64)>,
    start: i64,
    stop: i64,
) -> Vec<String> {
    let mut entries: Vec<(String, f64)> = entries.collect();
    // Stable: one queue's entries with equal times keep their stored order.
    entries.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(Ordering::Equal));
    let start = start.max(0) as usize;
    let stop = (stop.max(-1) + 1) as usize;
    entries
        .into_iter()
        .skip(start)
        .take(stop.saturating_sub(start))
        .map(|(e, _)| e)
        .collect()
}

/// A unique job's lock to take again when it is retried by hand: (digest, jid, TTL ms).
fn unique_lock(payload: &[u8]) -> Option<(String, String, u64)> {
    let job: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let digest = job.get("unique_key")?.as_str()?.to_string();
    let jid = job.get("jid")?.as_str()?.to_string();
    let seconds = job.get("unique_for")?.as_f64()?;
    Some((digest, jid, (seconds * 1000.0).ceil().max(1.0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_merge_the_queues_newest_first() {
        let entries = [("a1", 1.0), ("a3", 3.0), ("b2", 2.0), ("b4", 4.0)]
            .into_iter()
            .map(|(e, t)| (e.to_string(), t));
        assert_eq!(newest_first(entries.clone(), 0, 1), ["b4", "a3"]);
        assert_eq!(newest_first(entries.clone(), 2, 9), ["b2", "a1"]);
        assert!(newest_first(entries, 4, 9).is_empty());
    }
}
