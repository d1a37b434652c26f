//! `Native::Enqueue` (`crate::client::Enqueue`): pushes, scheduled and unique jobs, for
//! `lib/fiber_job/internal/enqueue.rb`, which validates and adds keywords.

use magnus::{function, method, prelude::*, RArray, RModule, Ruby};

use super::RbHandle;
use crate::client::Enqueue;
use crate::ruby::error::to_ruby;
use crate::ruby::nogvl::{blocking, refuse_inside_a_wait};
use crate::store::payload::{self, Builder};

#[magnus::wrap(class = "FiberJob::Internal::Native::Enqueue", free_immediately, size)]
pub struct RbEnqueue(Enqueue);

impl RbEnqueue {
    fn new(handle: &RbHandle) -> Self {
        RbEnqueue(Enqueue::new(handle.shared()))
    }

    /// The enqueue fast path: payloads built here (the one builder, `payload::Builder`)
    /// from `args_list` (an Array of argument Arrays), pushed in one round trip. Returns
    /// the jids, or nil when an argument is not on the fast path (nothing was pushed;
    /// Ruby then takes its own path, which raises or writes what only it handles).
    fn enqueue(
        ruby: &Ruby,
        rb_self: &Self,
        class: String,
        queue: String,
        args_list: RArray,
    ) -> Result<Option<RArray>, magnus::Error> {
        let builder = Builder::new(&class, &queue, payload::now());
        let none = serde_json::Map::new();
        let mut payloads = Vec::with_capacity(args_list.len());
        let mut jids = Vec::with_capacity(args_list.len());
        let mut args_json = String::with_capacity(64);
        for args in args_list.into_iter() {
            let Some(args) = RArray::from_value(args) else {
                return Ok(None);
            };
            args_json.clear();
            if !crate::ruby::encode::write(args.as_value(), &mut args_json, 0) {
                return Ok(None);
            }
            let (jid, p) = builder.payload(&args_json, &none);
            payloads.push(p);
            jids.push(jid);
        }
        if !payloads.is_empty() {
            rb_self.push_payloads(ruby, &queue, &payloads)?;
        }
        Ok(Some(ruby.ary_from_vec(jids)))
    }

    /// Pushes payloads Ruby built (through `Native.payload`) and client middleware saw.
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
        refuse_inside_a_wait(ruby)?;
        let empty_before = match self.0.push_quick(queue, payloads) {
            Some(done) => done.map_err(|e| to_ruby(ruby, e))?,
            None => blocking(ruby, |c| self.0.push(c, queue, payloads, true))?,
        };
        if empty_before && self.0.should_wake(queue) {
            blocking(ruby, |c| {
                self.0.wake(c, queue);
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Scheduled jobs of one queue: `jobs` = [[epoch seconds, payload], …].
    fn schedule(
        ruby: &Ruby,
        rb_self: &Self,
        queue: String,
        jobs: Vec<(f64, String)>,
    ) -> Result<(), magnus::Error> {
        if jobs.is_empty() {
            return Ok(());
        }
        blocking(ruby, |c| rb_self.0.schedule(c, &queue, &jobs))
    }

    /// Unique jobs: `jobs` = [[digest, jid, lock TTL ms, payload], …]; `at` nil for now.
    /// Returns, per job, whether it was enqueued (false: a duplicate).
    fn push_unique(
        ruby: &Ruby,
        rb_self: &Self,
        queue: String,
        at: Option<f64>,
        jobs: Vec<(String, String, u64, String)>,
    ) -> Result<Vec<bool>, magnus::Error> {
        blocking(ruby, |c| rb_self.0.push_unique(c, &queue, at, &jobs))
    }
}

pub fn init(ruby: &Ruby, native: RModule) -> Result<(), magnus::Error> {
    let class = native.define_class("Enqueue", ruby.class_object())?;
    class.define_singleton_method("new", function!(RbEnqueue::new, 1))?;
    class.define_method("_enqueue", method!(RbEnqueue::enqueue, 3))?;
    class.define_method("_push", method!(RbEnqueue::push, 2))?;
    class.define_method("_schedule", method!(RbEnqueue::schedule, 2))?;
    class.define_method("_push_unique", method!(RbEnqueue::push_unique, 3))?;
    Ok(())
}
