//! `FiberJob::Native::Admin`: what dashboards read and change (`crate::client`'s
//! admin, jobs, dead and cron calls), for `FiberJob::Queue`, the Web UI and `/metrics`.
//! Positional arguments, no defaults; records come back as symbol-keyed Hashes
//! (`convert::record`), lists as Arrays of them.

use std::collections::HashMap;

use magnus::{function, method, prelude::*, IntoValue, RArray, RHash, RModule, Ruby, Value};

use super::convert::record;
use super::error::to_ruby;
use super::nogvl::blocking;
use crate::client::{Client, CronLast, Waiting};

#[magnus::wrap(class = "FiberJob::Native::Admin", free_immediately, size)]
pub struct RbAdmin(Client);

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

impl RbAdmin {
    /// `connection`: `Configuration#connection` (see `connection.rs`).
    fn new(ruby: &Ruby, connection: Value, prefix: String) -> Result<Self, magnus::Error> {
        let target = super::connection::target_settings(ruby, connection)?;
        Client::new(&target, &prefix)
            .map(RbAdmin)
            .map_err(|e| to_ruby(ruby, e))
    }

    /// Where the admin is connected now (a Sentinel master's current address).
    fn connected_to(ruby: &Ruby, rb_self: &Self) -> Result<String, magnus::Error> {
        blocking(ruby, |c| rb_self.0.where_now(c))
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

    /// Whether it changed the queue's state.
    fn set_paused(
        ruby: &Ruby,
        rb_self: &Self,
        queue: String,
        paused: bool,
    ) -> Result<bool, magnus::Error> {
        blocking(ruby, |c| rb_self.0.set_paused(c, &queue, paused))
    }

    /// { held_by: jid, expires_in_ms: } of a unique job's lock, or nil when free.
    fn unique_lock(
        ruby: &Ruby,
        rb_self: &Self,
        queue: String,
        digest: String,
    ) -> Result<Option<RHash>, magnus::Error> {
        let lock = blocking(ruby, |c| rb_self.0.unique_lock(c, &queue, &digest))?;
        lock.map(|(jid, ms)| {
            record(
                ruby,
                [
                    ("held_by", jid.into_value_with(ruby)),
                    ("expires_in_ms", ms.into_value_with(ruby)),
                ],
            )
        })
        .transpose()
    }

    /// { counted:, waiting: } of a limit per key: the jobs it counts now (running, or
    /// started in the window) and those waiting in Redis for it.
    fn limit_state(
        ruby: &Ruby,
        rb_self: &Self,
        queue: String,
        kind: String,
        key: String,
        window: f64,
    ) -> Result<RHash, magnus::Error> {
        let (counted, waiting) = blocking(ruby, |c| {
            rb_self.0.limit_state(c, &queue, &kind, &key, window)
        })?;
        record(
            ruby,
            [
                ("counted", counted.into_value_with(ruby)),
                ("waiting", waiting.into_value_with(ruby)),
            ],
        )
    }

    fn paused(ruby: &Ruby, rb_self: &Self) -> Result<Vec<String>, magnus::Error> {
        blocking(ruby, |c| rb_self.0.paused(c))
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

    fn cron_defs(ruby: &Ruby, rb_self: &Self) -> Result<Vec<(String, String)>, magnus::Error> {
        blocking(ruby, |c| rb_self.0.cron_defs(c))
    }

    fn redis_info(ruby: &Ruby, rb_self: &Self) -> Result<String, magnus::Error> {
        blocking(ruby, |c| rb_self.0.redis_info(c))
    }
}

impl RbAdmin {
    fn failed(ruby: &Ruby, rb_self: &Self, start: i64, stop: i64) -> Result<RArray, magnus::Error> {
        let records = blocking(ruby, |c| rb_self.0.failed(c, start, stop))?;
        Ok(ruby.ary_from_vec(records))
    }

    fn dead(ruby: &Ruby, rb_self: &Self, start: i64, stop: i64) -> Result<RArray, magnus::Error> {
        let entries = blocking(ruby, |c| rb_self.0.dead(c, start, stop))?;
        Ok(ruby.ary_from_vec(entries))
    }

    fn retry_dead(
        ruby: &Ruby,
        rb_self: &Self,
        jid: Option<String>,
    ) -> Result<usize, magnus::Error> {
        blocking(ruby, |c| rb_self.0.retry_dead(c, jid.as_deref()))
    }

    fn delete_dead(
        ruby: &Ruby,
        rb_self: &Self,
        jid: Option<String>,
    ) -> Result<usize, magnus::Error> {
        blocking(ruby, |c| rb_self.0.delete_dead(c, jid.as_deref()))
    }

    fn register_cron(
        ruby: &Ruby,
        rb_self: &Self,
        entries: Vec<(String, String)>,
    ) -> Result<(), magnus::Error> {
        blocking(ruby, |c| rb_self.0.register_cron(c, &entries))
    }

    /// [[[class, last tick as stored], …], why the record is unreadable or nil]
    fn cron_last(ruby: &Ruby, rb_self: &Self) -> Result<CronLast, magnus::Error> {
        blocking(ruby, |c| rb_self.0.cron_last(c))
    }

    /// [all-time fields, [[minute epoch seconds, fields], …]] (per-class metrics).
    #[allow(clippy::type_complexity)]
    fn class_metrics(
        ruby: &Ruby,
        rb_self: &Self,
        minutes: i64,
    ) -> Result<(HashMap<String, u64>, Vec<(i64, HashMap<String, u64>)>), magnus::Error> {
        blocking(ruby, |c| rb_self.0.class_metrics(c, minutes))
    }

    fn web_secret(ruby: &Ruby, rb_self: &Self, candidate: String) -> Result<String, magnus::Error> {
        blocking(ruby, |c| rb_self.0.web_secret(c, &candidate))
    }
}

pub fn init(ruby: &Ruby, native: RModule) -> Result<(), magnus::Error> {
    let class = native.define_class("Admin", ruby.class_object())?;
    class.define_singleton_method("new", function!(RbAdmin::new, 2))?;
    class.define_method("_connected_to", method!(RbAdmin::connected_to, 0))?;
    class.define_method("_failed", method!(RbAdmin::failed, 2))?;
    class.define_method("_dead", method!(RbAdmin::dead, 2))?;
    class.define_method("_retry_dead", method!(RbAdmin::retry_dead, 1))?;
    class.define_method("_delete_dead", method!(RbAdmin::delete_dead, 1))?;
    class.define_method("_register_cron", method!(RbAdmin::register_cron, 1))?;
    class.define_method("_cron_last", method!(RbAdmin::cron_last, 0))?;
    class.define_method("_web_secret", method!(RbAdmin::web_secret, 1))?;
    class.define_method("_class_metrics", method!(RbAdmin::class_metrics, 1))?;

    class.define_method("_queue_names", method!(RbAdmin::queue_names, 0))?;
    class.define_method("_metrics", method!(RbAdmin::metrics, 1))?;
    class.define_method("_totals", method!(RbAdmin::totals, 0))?;
    class.define_method("_processes", method!(RbAdmin::processes, 0))?;
    class.define_method("_processing_jobs", method!(RbAdmin::processing_jobs, 2))?;
    class.define_method("_queue_jobs", method!(RbAdmin::queue_jobs, 3))?;
    class.define_method("_waiting_jobs", method!(RbAdmin::waiting_jobs, 4))?;
    class.define_method("_delete_queued", method!(RbAdmin::delete_queued, 2))?;
    class.define_method("_delete_waiting", method!(RbAdmin::delete_waiting, 3))?;
    class.define_method("_run_waiting_now", method!(RbAdmin::run_waiting_now, 3))?;
    class.define_method("_clear_queue", method!(RbAdmin::clear_queue, 1))?;
    class.define_method("_set_paused", method!(RbAdmin::set_paused, 2))?;
    class.define_method("_paused", method!(RbAdmin::paused, 0))?;
    class.define_method("_limit_state", method!(RbAdmin::limit_state, 4))?;
    class.define_method("_unique_lock", method!(RbAdmin::unique_lock, 2))?;
    class.define_method("_find", method!(RbAdmin::find, 2))?;
    class.define_method("_redis_info", method!(RbAdmin::redis_info, 0))?;
    class.define_method("_cron_defs", method!(RbAdmin::cron_defs, 0))?;
    class.define_method("_throughput", method!(RbAdmin::throughput, 1))?;
    Ok(())
}
