//! The jobs in each queue and sorted set, for dashboards: listing them, finding one
//! anywhere by jid, and acting on one by jid. Changes of one job are one Lua script
//! (`JID_OP`), so a job clicked twice, or promoted by a scheduler at the same moment,
//! moves exactly once.

use std::sync::Arc;

use super::handle::{Holder, JidAction};
use super::{Handle, Lossy};
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

pub struct Jobs {
    handle: Arc<Handle>,
}

impl Jobs {
    pub fn new(handle: Arc<Handle>) -> Jobs {
        Jobs { handle }
    }

    /// Ready jobs of a queue, oldest first, `offset..offset+limit`.
    pub fn queue_jobs(
        &self,
        cancel: &Cancel,
        queue: &str,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<String>> {
        // The oldest job is at the right end (LPUSH enqueues, the right end is taken).
        let key = self.handle.keys.queue(queue);
        let jobs: Vec<Lossy> = self.handle.call(cancel, |mut c| {
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
        let jobs: Vec<(Lossy, f64)> = self.handle.call(cancel, |mut c| {
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
            Waiting::Scheduled => self.handle.keys.schedule(queue),
            Waiting::Retry => self.handle.keys.retry(queue),
        }
    }

    /// Deletes the ready job `jid` from `queue`. Returns whether it was there.
    pub fn delete_queued(&self, cancel: &Cancel, queue: &str, jid: &str) -> Result<bool> {
        let key = self.handle.keys.queue(queue);
        Ok(self
            .handle
            .jid_op(cancel, (&key, Holder::List), &key, JidAction::Delete, jid)?
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
            .handle
            .jid_op(
                cancel,
                (&key, Holder::SortedSet),
                &key,
                JidAction::Delete,
                jid,
            )?
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
        let qkey = self.handle.keys.queue(queue);
        Ok(self
            .handle
            .jid_op(
                cancel,
                (&key, Holder::SortedSet),
                &qkey,
                JidAction::RunNow,
                jid,
            )?
            .is_some())
    }

    /// Empties a queue's ready jobs. Returns how many were deleted.
    pub fn clear_queue(&self, cancel: &Cancel, queue: &str) -> Result<u64> {
        let key = self.handle.keys.queue(queue);
        self.handle.call(cancel, |mut c| {
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
        let ids = self.handle.process_ids(cancel)?;
        // Every queue's limited keys with waiting jobs, in one round trip.
        let due: Vec<Vec<Lossy>> = self.handle.call(cancel, |mut c| {
            let mut pipe = redis::pipe();
            for q in queues {
                pipe.cmd("ZRANGE")
                    .arg(self.handle.keys.flow_due(q))
                    .arg(0)
                    .arg(-1);
            }
            async move { pipe.query_async(&mut c).await }
        })?;
        for (q, members) in queues.iter().zip(due) {
            let places = [
                ("enqueued", self.handle.keys.queue(q), Holder::List),
                ("scheduled", self.handle.keys.schedule(q), Holder::SortedSet),
                ("retry", self.handle.keys.retry(q), Holder::SortedSet),
            ];
            let limited = members
                .into_iter()
                .map(String::from)
                .filter_map(|m| self.handle.keys.flow_member(q, &m))
                .map(|(_, waiting)| ("limited", waiting, Holder::List));
            let places = places.into_iter().chain(limited);
            let processing = ids.iter().flat_map(|id| {
                [
                    ("processing", self.handle.keys.held(q, id), Holder::Set),
                    (
                        "processing",
                        self.handle.keys.processing(q, id),
                        Holder::List,
                    ),
                ]
            });
            for (state, key, kind) in places.chain(processing) {
                if let Some((raw, score)) =
                    self.handle
                        .jid_op(cancel, (&key, kind), &key, JidAction::Find, jid)?
                {
                    return Ok(Some(Found {
                        state,
                        queue: q.clone(),
                        raw: String::from_utf8_lossy(&raw).into_owned(),
                        score,
                    }));
                }
            }
        }
        for q in queues {
            let dead = self.handle.keys.dead(q);
            if let Some((raw, _)) = self.handle.jid_op(
                cancel,
                (&dead, Holder::SortedSet),
                &dead,
                JidAction::Find,
                jid,
            )? {
                return Ok(Some(Found {
                    state: "dead",
                    queue: q.clone(),
                    raw: String::from_utf8_lossy(&raw).into_owned(),
                    score: None,
                }));
            }
        }
        Ok(None)
    }
}
