//! The jobs in each queue and sorted set, for dashboards: listing them, finding one
//! anywhere by jid, and acting on one by jid. Changes of one job are one Lua script
//! (`JID_OP`), so a job clicked twice, or promoted by a scheduler at the same moment,
//! moves exactly once.

use super::{Client, Lossy};
use crate::error::Result;
use crate::runtime::cancel::Cancel;

/// The sorted sets of one queue that hold jobs waiting for a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waiting {
    Scheduled,
    Retry,
}

/// Where `find` saw a job.
#[derive(Debug)]
pub struct Found {
    pub state: &'static str,
    pub queue: String,
    pub raw: String,
    /// Run-at for scheduled and retry jobs.
    pub score: Option<f64>,
}

impl Client {
    /// Ready jobs of a queue, oldest first, `offset..offset+limit`.
    pub fn queue_jobs(
        &self,
        cancel: &Cancel,
        queue: &str,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<String>> {
        // The oldest job is at the right end (LPUSH enqueues, the right end is taken).
        let key = self.keys.queue(queue);
        let jobs: Vec<Lossy> = self.call(cancel, |mut c| {
            let key = key.clone();
            async move {
                redis::cmd("LRANGE")
                    .arg(key)
                    .arg(-offset - limit)
                    .arg(-offset - 1)
                    .query_async(&mut c)
                    .await
            }
        })?;
        Ok(jobs.into_iter().rev().map(String::from).collect())
    }

    /// Jobs of one queue's scheduled or retry set, soonest first, with run-at times.
    pub fn waiting_jobs(
        &self,
        cancel: &Cancel,
        set: Waiting,
        queue: &str,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<(String, f64)>> {
        let key = self.waiting_key(set, queue);
        let jobs: Vec<(Lossy, f64)> = self.call(cancel, |mut c| {
            let key = key.clone();
            async move {
                redis::cmd("ZRANGE")
                    .arg(key)
                    .arg(offset)
                    .arg(offset + limit - 1)
                    .arg("WITHSCORES")
                    .query_async(&mut c)
                    .await
            }
        })?;
        Ok(jobs.into_iter().map(|(j, at)| (j.0, at)).collect())
    }

    fn waiting_key(&self, set: Waiting, queue: &str) -> String {
        match set {
            Waiting::Scheduled => self.keys.schedule(queue),
            Waiting::Retry => self.keys.retry(queue),
        }
    }

    /// Deletes the ready job `jid` from `queue`. Returns whether it was there.
    pub fn delete_queued(&self, cancel: &Cancel, queue: &str, jid: &str) -> Result<bool> {
        let key = self.keys.queue(queue);
        Ok(self
            .jid_op(cancel, &key, &key, "list", "delete", jid)?
            .is_some())
    }

    /// Deletes a scheduled or retry job. Returns whether it was there.
    pub fn delete_waiting(
        &self,
        cancel: &Cancel,
        set: Waiting,
        queue: &str,
        jid: &str,
    ) -> Result<bool> {
        let key = self.waiting_key(set, queue);
        Ok(self
            .jid_op(cancel, &key, &key, "zset", "delete", jid)?
            .is_some())
    }

    /// Moves a scheduled or retry job to the front of its queue (it runs next).
    /// Returns whether it was there (a scheduler may have promoted it meanwhile).
    pub fn run_waiting_now(
        &self,
        cancel: &Cancel,
        set: Waiting,
        queue: &str,
        jid: &str,
    ) -> Result<bool> {
        let key = self.waiting_key(set, queue);
        let qkey = self.keys.queue(queue);
        Ok(self
            .jid_op(cancel, &key, &qkey, "zset", "run", jid)?
            .is_some())
    }

    /// Empties a queue's ready jobs. Returns how many were deleted.
    pub fn clear_queue(&self, cancel: &Cancel, queue: &str) -> Result<u64> {
        let key = self.keys.queue(queue);
        self.call(cancel, |mut c| {
            let mut pipe = redis::pipe();
            pipe.atomic();
            pipe.cmd("LLEN").arg(&key);
            pipe.cmd("DEL").arg(&key).ignore();
            async move {
                let (n,): (u64,) = pipe.query_async(&mut c).await?;
                Ok(n)
            }
        })
    }

    /// Looks for `jid` among the ready, scheduled, retry, limited (waiting for a limit
    /// per key) and processing jobs of `queues`, then in their dead sets.
    pub fn find(&self, cancel: &Cancel, queues: &[String], jid: &str) -> Result<Option<Found>> {
        if queues.is_empty() {
            return Ok(None);
        }
        let ids = self.process_ids(cancel)?;
        // Every queue's limited keys with waiting jobs, in one round trip.
        let due: Vec<Vec<Lossy>> = self.call(cancel, |mut c| {
            let mut pipe = redis::pipe();
            for q in queues {
                pipe.cmd("ZRANGE").arg(self.keys.flow_due(q)).arg(0).arg(-1);
            }
            async move { pipe.query_async(&mut c).await }
        })?;
        for (q, members) in queues.iter().zip(due) {
            let places = [
                ("enqueued", self.keys.queue(q), "list"),
                ("scheduled", self.keys.schedule(q), "zset"),
                ("retry", self.keys.retry(q), "zset"),
            ];
            let limited = members
                .into_iter()
                .map(String::from)
                .filter_map(|m| self.keys.flow_member(q, &m))
                .map(|(_, waiting)| ("limited", waiting, "list"));
            let places = places.into_iter().chain(limited);
            let processing = ids.iter().flat_map(|id| {
                [
                    ("processing", self.keys.held(q, id), "set"),
                    ("processing", self.keys.processing(q, id), "list"),
                ]
            });
            for (state, key, kind) in places.chain(processing) {
                if let Some((raw, score)) = self.jid_op(cancel, &key, &key, kind, "find", jid)? {
                    return Ok(Some(Found {
                        state,
                        queue: q.clone(),
                        raw,
                        score,
                    }));
                }
            }
        }
        for q in queues {
            let dead = self.keys.dead(q);
            if let Some((raw, _)) = self.jid_op(cancel, &dead, &dead, "zset", "find", jid)? {
                return Ok(Some(Found {
                    state: "dead",
                    queue: q.clone(),
                    raw,
                    score: None,
                }));
            }
        }
        Ok(None)
    }

    /// Runs `JID_OP` (see `scripts.rs`): (payload, run-at) of the job found, if any.
    pub(crate) fn jid_op(
        &self,
        cancel: &Cancel,
        key: &str,
        dest: &str,
        kind: &str,
        action: &str,
        jid: &str,
    ) -> Result<Option<(String, Option<f64>)>> {
        Ok(self
            .jid_op_bytes(cancel, key, dest, kind, action, jid)?
            .map(|(raw, score)| (String::from_utf8_lossy(&raw).into_owned(), score)))
    }

    /// `jid_op` with the payload's exact bytes (to act on the member afterwards).
    pub(crate) fn jid_op_bytes(
        &self,
        cancel: &Cancel,
        key: &str,
        dest: &str,
        kind: &str,
        action: &str,
        jid: &str,
    ) -> Result<Option<(Vec<u8>, Option<f64>)>> {
        let found: Option<(Vec<u8>, Lossy)> = self.call(cancel, |mut c| {
            let mut inv = crate::store::scripts::JID_OP.prepare_invoke();
            inv.key(key).key(dest).arg(jid).arg(kind).arg(action);
            async move { inv.invoke_async(&mut c).await }
        })?;
        Ok(found.map(|(raw, score)| (raw, score.0.parse().ok())))
    }
}
