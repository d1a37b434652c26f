//! The outcome of one job this process took: what an executor's report becomes, on its
//! way to the acker (`acker/`), which writes it to Redis. Payloads travel as bytes:
//! a job is found in its held set or processing list by its exact bytes.

use tokio::sync::oneshot;

use crate::batch::End;
use crate::store::payload::{ClassName, Parsed};

/// Where a failed job goes.
pub enum AfterFailure {
    /// To its queue's retry set, due at `at` (epoch seconds).
    Retry { at: f64, payload: String },
    /// To the dead set: no retries left.
    Dead { payload: String },
}

/// A run for the per-class metrics: the job's class and how long it ran.
pub struct Ran {
    pub class: ClassName,
    pub secs: f64,
}

pub enum Outcome {
    /// Performed successfully. `listed`: the job is in the processing list, not the
    /// held set (see `Keys::held`).
    Acked {
        q: usize,
        raw: Vec<u8>,
        listed: bool,
        ran: Ran,
    },
    /// Failed: recorded, then retried or buried.
    Failed {
        q: usize,
        raw: Vec<u8>,
        record: String,
        then: AfterFailure,
        ran: Ran,
    },
    /// Taken but not started (or interrupted at shutdown): back to the queue's front,
    /// oldest first.
    GivenBack { q: usize, raws: Vec<Vec<u8>> },
    /// Stopped early by the job itself (an iterable job past `max_iteration_runtime`):
    /// to the back of its queue, behind the jobs waiting.
    Requeued { q: usize, raw: Vec<u8> },
    /// Cannot run at all (not a job payload, not a job class), or `expired` (not
    /// started by its `expires_at`, and counted so): to the dead set as `entry`.
    Buried {
        q: usize,
        raw: Vec<u8>,
        entry: String,
        expired: bool,
    },
    /// Frees a unique job's lock (`digest`) if the job `jid` still holds it.
    Unlock {
        q: usize,
        digest: String,
        jid: String,
    },
    /// Ends the lease of `jid` on concurrency key `key`; its next waiters start.
    EndLease { q: usize, key: String, jid: String },
    /// A throttled job started: its member (`log`) of throttle `key`'s start log counts
    /// from now instead of as a hold (`store::flow_scripts`).
    Started {
        q: usize,
        key: String,
        log: String,
        per: f64,
    },
    /// A member of batch `bid` ended (`batch::settle`). Reported before the job's own
    /// outcome, and the acker records it first, so a job is never acknowledged before
    /// its batch knows.
    BatchEnd {
        bid: Box<str>,
        jid: String,
        end: End,
    },
    /// Answers once everything sent before it is in Redis.
    Flush(oneshot::Sender<()>),
}

impl Outcome {
    /// The message that frees the lock of a unique job of queue `q` that is over
    /// (only while it still holds it: with `until: :start` a newer job may by now).
    pub fn unlock(q: usize, job: &Parsed) -> Option<Outcome> {
        job.unique.as_ref().map(|(digest, _)| Outcome::Unlock {
            q,
            digest: digest.clone(),
            jid: job.jid.to_string(),
        })
    }

    /// The message that ends the lease of a concurrency-limited job of queue `q` whose
    /// run is over (acked, failed, buried or expired).
    pub fn end_lease(q: usize, job: &Parsed) -> Option<Outcome> {
        job.concurrency().map(|c| Outcome::EndLease {
            q,
            key: c.key.clone(),
            jid: job.jid.to_string(),
        })
    }
}
