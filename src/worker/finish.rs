//! How a job a worker handed out ends: the `Engine` methods executors call (ack, fail,
//! bury, give back, requeue). Each frees the job's slot at once and reports its outcome
//! to the acker; a batch member's end is reported first (`Outcome::BatchEnd`).

use super::outcome::{AfterFailure, Outcome, Ran};
use super::Engine;
use crate::batch::End;
use crate::runtime::clock;
use crate::store::payload;
use crate::store::records::{self, Failure};

impl Engine {
    /// A job performed successfully.
    pub fn ack(&self, id: u64) {
        if let Some(job) = self.state.dispatcher.finish(id) {
            let (q, parsed) = (job.queue, job.parsed);
            self.state.batch_end(&parsed, End::Succeeded);
            let ran = Ran {
                class: parsed.class.clone(),
                secs: job.ran_for.map_or(0.0, |d| d.as_secs_f64()),
            };
            self.state.report(Outcome::Acked {
                q,
                raw: job.raw.into_bytes(),
                listed: job.listed,
                ran,
            });
            self.state.run_over(q, &parsed, true);
        }
    }

    /// Gives a busy job back to the front of its queue (interrupted, not at fault).
    pub fn give_back(&self, id: u64) {
        if let Some(job) = self.state.dispatcher.finish(id) {
            self.state.report(Outcome::GivenBack {
                q: job.queue,
                raws: vec![job.raw.into_bytes()],
            });
        }
    }

    /// A job that stopped early on its own (an iterable job past its
    /// `max_iteration_runtime`): to the back of its queue.
    pub fn requeue(&self, id: u64) {
        if let Some(job) = self.state.dispatcher.finish(id) {
            self.state.report(Outcome::Requeued {
                q: job.queue,
                raw: job.raw.into_bytes(),
            });
            self.state.run_over(job.queue, &job.parsed, false);
        }
    }

    /// A job that must not run (not a job class): to the dead set.
    pub fn bury(&self, id: u64, error_class: &str, reason: &str) {
        if let Some(job) = self.state.dispatcher.finish(id) {
            tracing::warn!(jid = %job.parsed.jid, "{reason}; moved to the dead set");
            let entry = records::dead_entry(&job.raw, error_class, reason, payload::now());
            self.state.batch_end(&job.parsed, End::Died);
            self.state.report(Outcome::Buried {
                q: job.queue,
                raw: job.raw.into_bytes(),
                entry,
                expired: false,
            });
            self.state.run_over(job.queue, &job.parsed, true);
        }
    }

    /// A failed attempt. `retry_at` (epoch seconds) schedules a retry (to the front of
    /// the queue when due if `priority`); `None` buries it.
    pub fn fail(&self, id: u64, failure: Failure, retry_at: Option<f64>, priority: bool) {
        let Some(job) = self.state.dispatcher.finish(id) else {
            return;
        };
        let queue = &self.state.queues[job.queue];
        let retry = retry_at.map(|_| priority);
        let failed = records::failed(&job.raw, &failure, queue, retry);
        let then = match retry_at {
            // Ruby computed `at` on this process's clock; the scheduler decides on
            // Redis's (`runtime::clock`).
            Some(at) => AfterFailure::Retry {
                at: clock::from_local(at),
                payload: failed.payload,
            },
            None => AfterFailure::Dead {
                payload: failed.payload,
            },
        };
        let end = if retry_at.is_some() {
            End::Failed
        } else {
            End::Died
        };
        self.state.batch_end(&job.parsed, end);
        let ran = Ran {
            class: job.parsed.class.clone(),
            secs: job.ran_for.map_or(0.0, |d| d.as_secs_f64()),
        };
        self.state.report(Outcome::Failed {
            q: job.queue,
            raw: job.raw.into_bytes(),
            record: failed.record,
            then,
            ran,
        });
        // A retry keeps a unique job's lock (the job is still pending); death frees it.
        self.state
            .run_over(job.queue, &job.parsed, retry_at.is_none());
    }
}
