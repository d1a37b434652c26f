//! `FiberJob::Native::Client`: enqueue and read queue state. Positional arguments, no
//! defaults; `lib/fiber_job/client.rb` validates and adds keywords.

use std::time::Duration;

use magnus::{function, method, prelude::*, RArray, RModule, Ruby};

use super::error::{interrupted, to_ruby};
use super::nogvl::without_gvl;
use crate::cancel::Cancel;
use crate::client::Client;

#[magnus::wrap(class = "FiberJob::Native::Client", free_immediately, size)]
pub struct RbClient(Client);

/// Runs a blocking client call without the GVL; Ctrl-C or `Thread#kill` cancels it.
fn blocking<T: Send>(
    ruby: &Ruby,
    f: impl FnOnce(&Cancel) -> crate::error::Result<T> + Send,
) -> Result<T, magnus::Error> {
    let cancel = Cancel::default();
    without_gvl(|| f(&cancel), || cancel.cancel())
        .ok_or_else(|| interrupted(ruby))?
        .map_err(|e| to_ruby(ruby, e))
}

impl RbClient {
    fn new(ruby: &Ruby, url: String, prefix: String, timeout: f64) -> Result<Self, magnus::Error> {
        Client::new(&url, &prefix, Duration::from_secs_f64(timeout))
            .map(RbClient)
            .map_err(|e| to_ruby(ruby, e))
    }

    fn push(
        ruby: &Ruby,
        rb_self: &Self,
        queue: String,
        payloads: Vec<String>,
    ) -> Result<(), magnus::Error> {
        blocking(ruby, |c| rb_self.0.push(c, &queue, &payloads))
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

pub fn init(ruby: &Ruby, native: RModule) -> Result<(), magnus::Error> {
    let class = native.define_class("Client", ruby.class_object())?;
    class.define_singleton_method("new", function!(RbClient::new, 3))?;
    class.define_method("_push", method!(RbClient::push, 2))?;
    class.define_method("_schedule", method!(RbClient::schedule, 3))?;
    class.define_method("_stats", method!(RbClient::stats, 1))?;
    class.define_method("_failed", method!(RbClient::failed, 2))?;
    Ok(())
}
