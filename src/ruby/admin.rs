//! The admin half of `FiberJob::Native::Client` (see `crate::admin`): metrics, job
//! listings and actions by jid, for `FiberJob::Queue`, the Web UI and `/metrics`.

use magnus::{method, prelude::*, RClass, Ruby};

use super::client::{blocking, RbClient};
use crate::admin::Waiting;

type MetricsRow = (String, u64, u64, u64, u64, u64, u64, Option<f64>);
/// [state, queue, payload, run_at or nil]
type FoundRow = (String, String, String, Option<f64>);

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

impl RbClient {
    fn queue_names(ruby: &Ruby, rb_self: &Self) -> Result<Vec<String>, magnus::Error> {
        blocking(ruby, |c| rb_self.0.queue_names(c))
    }

    /// [[name, processed, failed, size, scheduled, retries, busy, oldest_enqueued_at], …]
    fn metrics(
        ruby: &Ruby,
        rb_self: &Self,
        queues: Vec<String>,
    ) -> Result<Vec<MetricsRow>, magnus::Error> {
        let rows = blocking(ruby, |c| rb_self.0.metrics(c, &queues))?;
        Ok(rows
            .into_iter()
            .map(|m| {
                (
                    m.name,
                    m.processed,
                    m.failed,
                    m.size,
                    m.scheduled,
                    m.retries,
                    m.busy,
                    m.oldest_enqueued_at,
                )
            })
            .collect())
    }

    /// [processed, failed, dead, failure_records]
    fn totals(ruby: &Ruby, rb_self: &Self) -> Result<(u64, u64, u64, u64), magnus::Error> {
        let t = blocking(ruby, |c| rb_self.0.totals(c))?;
        Ok((t.processed, t.failed, t.dead, t.failure_records))
    }

    fn processes(ruby: &Ruby, rb_self: &Self) -> Result<Vec<Vec<(String, String)>>, magnus::Error> {
        blocking(ruby, |c| rb_self.0.processes(c))
    }

    fn taken(
        ruby: &Ruby,
        rb_self: &Self,
        identity: String,
        queues: Vec<String>,
    ) -> Result<Vec<(String, String)>, magnus::Error> {
        blocking(ruby, |c| rb_self.0.taken(c, &identity, &queues))
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

    /// [state, queue, payload, run_at or nil], or nil.
    fn find(
        ruby: &Ruby,
        rb_self: &Self,
        queues: Vec<String>,
        jid: String,
    ) -> Result<Option<FoundRow>, magnus::Error> {
        let found = blocking(ruby, |c| rb_self.0.find(c, &queues, &jid))?;
        Ok(found.map(|f| (f.state.to_string(), f.queue, f.raw, f.score)))
    }

    fn throughput(
        ruby: &Ruby,
        rb_self: &Self,
        windows: i64,
    ) -> Result<Vec<(i64, u64, u64)>, magnus::Error> {
        blocking(ruby, |c| rb_self.0.throughput(c, windows))
    }

    fn cron_defs(ruby: &Ruby, rb_self: &Self) -> Result<Vec<(String, String)>, magnus::Error> {
        blocking(ruby, |c| rb_self.0.cron_defs(c))
    }

    fn redis_info(ruby: &Ruby, rb_self: &Self) -> Result<String, magnus::Error> {
        blocking(ruby, |c| rb_self.0.redis_info(c))
    }
}

pub fn init(class: RClass) -> Result<(), magnus::Error> {
    class.define_method("_queue_names", method!(RbClient::queue_names, 0))?;
    class.define_method("_metrics", method!(RbClient::metrics, 1))?;
    class.define_method("_totals", method!(RbClient::totals, 0))?;
    class.define_method("_processes", method!(RbClient::processes, 0))?;
    class.define_method("_taken", method!(RbClient::taken, 2))?;
    class.define_method("_queue_jobs", method!(RbClient::queue_jobs, 3))?;
    class.define_method("_waiting_jobs", method!(RbClient::waiting_jobs, 4))?;
    class.define_method("_delete_queued", method!(RbClient::delete_queued, 2))?;
    class.define_method("_delete_waiting", method!(RbClient::delete_waiting, 3))?;
    class.define_method("_run_waiting_now", method!(RbClient::run_waiting_now, 3))?;
    class.define_method("_clear_queue", method!(RbClient::clear_queue, 1))?;
    class.define_method("_find", method!(RbClient::find, 2))?;
    class.define_method("_redis_info", method!(RbClient::redis_info, 0))?;
    class.define_method("_cron_defs", method!(RbClient::cron_defs, 0))?;
    class.define_method("_throughput", method!(RbClient::throughput, 1))?;
    Ok(())
}
