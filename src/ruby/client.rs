//! `FiberJob::Native::Client`: enqueue and read queue state. Positional arguments, no
//! defaults; `lib/fiber_job/client.rb` validates and adds keywords.

use std::fmt::Write;
use std::time::Duration;

use magnus::{function, method, prelude::*, RArray, RModule, Ruby};

use super::error::to_ruby;
use super::nogvl::without_gvl;
use crate::cancel::Cancel;
use crate::client::Client;

#[magnus::wrap(class = "FiberJob::Native::Client", free_immediately, size)]
pub struct RbClient(pub(super) Client);

/// Runs a blocking client call without the GVL; Ctrl-C or `Thread#kill` cancels it.
pub(super) fn blocking<T: Send>(
    ruby: &Ruby,
    f: impl FnOnce(&Cancel) -> crate::error::Result<T> + Send,
) -> Result<T, magnus::Error> {
    let cancel = Cancel::default();
    without_gvl(|| f(&cancel), || cancel.cancel())?.map_err(|e| to_ruby(ruby, e))
}

impl RbClient {
    fn new(ruby: &Ruby, url: String, prefix: String, timeout: f64) -> Result<Self, magnus::Error> {
        Client::new(&url, &prefix, Duration::from_secs_f64(timeout))
            .map(RbClient)
            .map_err(|e| to_ruby(ruby, e))
    }

    /// The enqueue fast path: payloads built here from `args_list` (an Array of argument
    /// Arrays), pushed in one round trip. Returns the jids, or nil when an argument is
    /// not on the fast path (nothing was pushed; Ruby then takes its own path).
    fn enqueue(
        ruby: &Ruby,
        rb_self: &Self,
        class: String,
        queue: String,
        args_list: RArray,
    ) -> Result<Option<RArray>, magnus::Error> {
        let now = crate::payload::now();
        let class_json = serde_json::to_string(&class).unwrap_or_default();
        let queue_json = serde_json::to_string(&queue).unwrap_or_default();
        let mut payloads = Vec::with_capacity(args_list.len());
        let mut jids = Vec::with_capacity(args_list.len());
        for args in args_list.into_iter() {
            let Some(args) = RArray::from_value(args) else {
                return Ok(None);
            };
            let jid = crate::payload::new_jid();
            let mut p = String::with_capacity(160);
            p.push_str("{\"class\":");
            p.push_str(&class_json);
            p.push_str(",\"args\":");
            if !super::encode::write(args.as_value(), &mut p, 0) {
                return Ok(None);
            }
            let _ = write!(
                p,
                ",\"jid\":\"{jid}\",\"queue\":{queue_json},\"created_at\":{now:?},\"enqueued_at\":{now:?},\"retry_count\":0}}"
            );
            payloads.push(p);
            jids.push(jid);
        }
        if !payloads.is_empty() {
            rb_self.push_payloads(ruby, &queue, &payloads)?;
        }
        Ok(Some(ruby.ary_from_vec(jids)))
    }

    fn push(
        ruby: &Ruby,
        rb_self: &Self,
        queue: String,
        payloads: Vec<String>,
    ) -> Result<(), magnus::Error> {
        rb_self.push_payloads(ruby, &queue, &payloads)
    }

    /// The quick direct step with the GVL held, then (if needed) the rest without it.
    fn push_payloads(
        &self,
        ruby: &Ruby,
        queue: &str,
        payloads: &[String],
    ) -> Result<(), magnus::Error> {
        if let Some(done) = self.0.push_quick(queue, payloads) {
            return done.map_err(|e| to_ruby(ruby, e));
        }
        blocking(ruby, |c| self.0.push(c, queue, payloads))
    }

    fn schedule(
        ruby: &Ruby,
        rb_self: &Self,
        queue: String,
        at: f64,
        payload: String,
    ) -> Result<(), magnus::Error> {
        blocking(ruby, |c| rb_self.0.schedule(c, &queue, at, &payload))
    }

    fn stats(ruby: &Ruby, rb_self: &Self, queue: String) -> Result<(u64, u64, u64), magnus::Error> {
        let s = blocking(ruby, |c| rb_self.0.stats(c, &queue))?;
        Ok((s.size, s.scheduled, s.processing))
    }

    fn failed(ruby: &Ruby, rb_self: &Self, start: i64, stop: i64) -> Result<RArray, magnus::Error> {
        let records = blocking(ruby, |c| rb_self.0.failed(c, start, stop))?;
        Ok(ruby.ary_from_vec(records))
    }
}

impl RbClient {
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
    fn cron_last(ruby: &Ruby, rb_self: &Self) -> Result<crate::client::CronLast, magnus::Error> {
        blocking(ruby, |c| rb_self.0.cron_last(c))
    }
}

impl RbClient {
    fn web_secret(ruby: &Ruby, rb_self: &Self, candidate: String) -> Result<String, magnus::Error> {
        blocking(ruby, |c| rb_self.0.web_secret(c, &candidate))
    }
}

/// `FiberJob::Native.cron_next(expression, utc, after)`: the first run after `after`
/// (epoch seconds), or raises InvalidCronError with the reason.
fn cron_next(ruby: &Ruby, expression: String, utc: bool, after: f64) -> Result<f64, magnus::Error> {
    use chrono::{DateTime, Local, Utc};
    let spec = crate::cron::CronSpec::parse(&expression).map_err(|reason| {
        to_ruby(
            ruby,
            crate::error::Error::Cron(format!("invalid cron expression {expression:?}: {reason}")),
        )
    })?;
    let after = DateTime::<Utc>::from_timestamp(after.floor() as i64, 0).unwrap_or_else(Utc::now);
    let next = if utc {
        spec.next_after(&after).map(|t| t.timestamp())
    } else {
        spec.next_after(&after.with_timezone(&Local))
            .map(|t| t.timestamp())
    };
    next.map(|t| t as f64).ok_or_else(|| {
        to_ruby(
            ruby,
            crate::error::Error::Cron(format!("cron expression {expression:?} never runs")),
        )
    })
}

/// `FiberJob::Native.mask_password(url)`: the URL with its password as `***`.
fn mask_password(url: String) -> String {
    crate::mask_password(&url)
}

pub fn init(ruby: &Ruby, native: RModule) -> Result<(), magnus::Error> {
    let class = native.define_class("Client", ruby.class_object())?;
    class.define_singleton_method("new", function!(RbClient::new, 3))?;
    class.define_method("_push", method!(RbClient::push, 2))?;
    class.define_method("_enqueue", method!(RbClient::enqueue, 3))?;
    class.define_method("_schedule", method!(RbClient::schedule, 3))?;
    class.define_method("_stats", method!(RbClient::stats, 1))?;
    class.define_method("_failed", method!(RbClient::failed, 2))?;
    class.define_method("_dead", method!(RbClient::dead, 2))?;
    class.define_method("_retry_dead", method!(RbClient::retry_dead, 1))?;
    class.define_method("_delete_dead", method!(RbClient::delete_dead, 1))?;
    class.define_method("_register_cron", method!(RbClient::register_cron, 1))?;
    class.define_method("_cron_last", method!(RbClient::cron_last, 0))?;
    class.define_method("_web_secret", method!(RbClient::web_secret, 1))?;
    native.define_module_function("cron_next", function!(cron_next, 3))?;
    native.define_module_function("mask_password", function!(mask_password, 1))?;
    super::admin::init(class)?;
    Ok(())
}
