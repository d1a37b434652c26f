//! `Native::Jobs` (`crate::client::Jobs`): jobs by queue and jid — list, find, delete,
//! run now, clear — for `FiberJob::Queue` and the Web UI.

use magnus::{function, method, prelude::*, IntoValue, RHash, RModule, Ruby};

use super::RbHandle;
use crate::client::{Jobs, Waiting};
use crate::ruby::convert::record;
use crate::ruby::nogvl::blocking;

#[magnus::wrap(class = "FiberJob::Internal::Native::Jobs", free_immediately, size)]
pub struct RbJobs(Jobs);

fn waiting(ruby: &Ruby, set: &str) -> Result<Waiting, magnus::Error> {
    match set {
        "scheduled" => Ok(Waiting::Scheduled),
        "retry" => Ok(Waiting::Retry),
        other => Err(magnus::Error::new(
            ruby.exception_arg_error(),
            format!("no sorted set {other:?}; use \"scheduled\" or \"retry\""),
        )),
    }
}

impl RbJobs {
    fn new(handle: &RbHandle) -> Self {
        RbJobs(Jobs::new(handle.shared()))
    }

    fn queue_jobs(
        ruby: &Ruby,
        rb_self: &Self,
        queue: String,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<String>, magnus::Error> {
        blocking(ruby, |c| rb_self.0.queue_jobs(c, &queue, offset, limit))
    }

    fn waiting_jobs(
        ruby: &Ruby,
        rb_self: &Self,
        set: String,
        queue: String,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<(String, f64)>, magnus::Error> {
        let set = waiting(ruby, &set)?;
        blocking(ruby, |c| {
            rb_self.0.waiting_jobs(c, set, &queue, offset, limit)
        })
    }

    fn delete_queued(
        ruby: &Ruby,
        rb_self: &Self,
        queue: String,
        jid: String,
    ) -> Result<bool, magnus::Error> {
        blocking(ruby, |c| rb_self.0.delete_queued(c, &queue, &jid))
    }

    fn delete_waiting(
        ruby: &Ruby,
        rb_self: &Self,
        set: String,
        queue: String,
        jid: String,
    ) -> Result<bool, magnus::Error> {
        let set = waiting(ruby, &set)?;
        blocking(ruby, |c| rb_self.0.delete_waiting(c, set, &queue, &jid))
    }

    fn run_waiting_now(
        ruby: &Ruby,
        rb_self: &Self,
        set: String,
        queue: String,
        jid: String,
    ) -> Result<bool, magnus::Error> {
        let set = waiting(ruby, &set)?;
        blocking(ruby, |c| rb_self.0.run_waiting_now(c, set, &queue, &jid))
    }

    fn clear_queue(ruby: &Ruby, rb_self: &Self, queue: String) -> Result<u64, magnus::Error> {
        blocking(ruby, |c| rb_self.0.clear_queue(c, &queue))
    }

    /// { state:, queue:, payload: (raw JSON), run_at: (epoch seconds or nil) }, or nil.
    fn find(
        ruby: &Ruby,
        rb_self: &Self,
        queues: Vec<String>,
        jid: String,
    ) -> Result<Option<RHash>, magnus::Error> {
        let found = blocking(ruby, |c| rb_self.0.find(c, &queues, &jid))?;
        found
            .map(|f| {
                record(
                    ruby,
                    [
                        ("state", f.state.to_string().into_value_with(ruby)),
                        ("queue", f.queue.into_value_with(ruby)),
                        ("payload", f.raw.into_value_with(ruby)),
                        ("run_at", f.score.into_value_with(ruby)),
                    ],
                )
            })
            .transpose()
    }
}

pub fn init(ruby: &Ruby, native: RModule) -> Result<(), magnus::Error> {
    let class = native.define_class("Jobs", ruby.class_object())?;
    class.define_singleton_method("new", function!(RbJobs::new, 1))?;
    class.define_method("_queue", method!(RbJobs::queue_jobs, 3))?;
    class.define_method("_waiting", method!(RbJobs::waiting_jobs, 4))?;
    class.define_method("_delete_queued", method!(RbJobs::delete_queued, 2))?;
    class.define_method("_delete_waiting", method!(RbJobs::delete_waiting, 3))?;
    class.define_method("_run_waiting_now", method!(RbJobs::run_waiting_now, 3))?;
    class.define_method("_clear", method!(RbJobs::clear_queue, 1))?;
    class.define_method("_find", method!(RbJobs::find, 2))?;
    Ok(())
}
