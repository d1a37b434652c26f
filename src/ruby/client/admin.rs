//! `Native::Admin` (`crate::client::Admin`): what dashboards read — queue metrics,
//! totals, processes, throughput, Redis's INFO — and the Web UI's secret, for
//! `FiberJob::Queue`, the Web UI and `/metrics`.

use magnus::{function, method, prelude::*, IntoValue, RArray, RHash, RModule, Ruby};

use super::RbHandle;
use crate::client::Admin;
use crate::ruby::convert::record;
use crate::ruby::nogvl::blocking;

#[magnus::wrap(class = "FiberJob::Internal::Native::Admin", free_immediately, size)]
pub struct RbAdmin(Admin);

impl RbAdmin {
    fn new(handle: &RbHandle) -> Self {
        RbAdmin(Admin::new(handle.shared()))
    }

    fn queue_names(ruby: &Ruby, rb_self: &Self) -> Result<Vec<String>, magnus::Error> {
        blocking(ruby, |c| rb_self.0.queue_names(c))
    }

    /// [{ name:, processed:, failed:, expired:, size:, scheduled:, retries:, held:,
    /// running:, oldest_enqueued_at: (epoch seconds or nil), paused:, limited: }, …]
    fn metrics(ruby: &Ruby, rb_self: &Self, queues: Vec<String>) -> Result<RArray, magnus::Error> {
        let rows = blocking(ruby, |c| rb_self.0.metrics(c, &queues))?;
        let out = ruby.ary_new_capa(rows.len());
        for m in rows {
            out.push(record(
                ruby,
                [
                    ("name", m.name.into_value_with(ruby)),
                    ("processed", m.processed.into_value_with(ruby)),
                    ("failed", m.failed.into_value_with(ruby)),
                    ("expired", m.expired.into_value_with(ruby)),
                    ("size", m.size.into_value_with(ruby)),
                    ("scheduled", m.scheduled.into_value_with(ruby)),
                    ("retries", m.retries.into_value_with(ruby)),
                    ("held", m.held.into_value_with(ruby)),
                    ("running", m.running.into_value_with(ruby)),
                    (
                        "oldest_enqueued_at",
                        m.oldest_enqueued_at.into_value_with(ruby),
                    ),
                    ("paused", m.paused.into_value_with(ruby)),
                    ("limited", m.limited.into_value_with(ruby)),
                ],
            )?)?;
        }
        Ok(out)
    }

    /// { processed:, failed:, dead:, failure_records: }
    fn totals(ruby: &Ruby, rb_self: &Self) -> Result<RHash, magnus::Error> {
        let t = blocking(ruby, |c| rb_self.0.totals(c))?;
        record(
            ruby,
            [
                ("processed", t.processed.into_value_with(ruby)),
                ("failed", t.failed.into_value_with(ruby)),
                ("dead", t.dead.into_value_with(ruby)),
                ("failure_records", t.failure_records.into_value_with(ruby)),
            ],
        )
    }

    fn processes(ruby: &Ruby, rb_self: &Self) -> Result<Vec<Vec<(String, String)>>, magnus::Error> {
        blocking(ruby, |c| rb_self.0.processes(c))
    }

    fn processing_jobs(
        ruby: &Ruby,
        rb_self: &Self,
        identity: String,
        queues: Vec<String>,
    ) -> Result<Vec<(String, String)>, magnus::Error> {
        blocking(ruby, |c| rb_self.0.processing_jobs(c, &identity, &queues))
    }

    /// [{ at: (window start, epoch seconds), processed:, failed: }, …], oldest first.
    fn throughput(ruby: &Ruby, rb_self: &Self, windows: i64) -> Result<RArray, magnus::Error> {
        let rows = blocking(ruby, |c| rb_self.0.throughput(c, windows))?;
        let out = ruby.ary_new_capa(rows.len());
        for (at, processed, failed) in rows {
            out.push(record(
                ruby,
                [
                    ("at", at.into_value_with(ruby)),
                    ("processed", processed.into_value_with(ruby)),
                    ("failed", failed.into_value_with(ruby)),
                ],
            )?)?;
        }
        Ok(out)
    }

    fn redis_info(ruby: &Ruby, rb_self: &Self) -> Result<String, magnus::Error> {
        blocking(ruby, |c| rb_self.0.redis_info(c))
    }

    fn web_secret(ruby: &Ruby, rb_self: &Self, candidate: String) -> Result<String, magnus::Error> {
        blocking(ruby, |c| rb_self.0.web_secret(c, &candidate))
    }
}

pub fn init(ruby: &Ruby, native: RModule) -> Result<(), magnus::Error> {
    let class = native.define_class("Admin", ruby.class_object())?;
    class.define_singleton_method("new", function!(RbAdmin::new, 1))?;
    class.define_method("_queue_names", method!(RbAdmin::queue_names, 0))?;
    class.define_method("_metrics", method!(RbAdmin::metrics, 1))?;
    class.define_method("_totals", method!(RbAdmin::totals, 0))?;
    class.define_method("_processes", method!(RbAdmin::processes, 0))?;
    class.define_method("_processing_jobs", method!(RbAdmin::processing_jobs, 2))?;
    class.define_method("_throughput", method!(RbAdmin::throughput, 1))?;
    class.define_method("_redis_info", method!(RbAdmin::redis_info, 0))?;
    class.define_method("_web_secret", method!(RbAdmin::web_secret, 1))?;
    Ok(())
}
