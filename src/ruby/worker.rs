//! `FiberJob::Native::Worker`: the engine of one worker process, driven by
//! `lib/fiber_job/worker.rb` and its executors. Positional arguments, no defaults.
//!
//! Executors pull: `_take` (fibers: never blocks, then wait on `_wake_fd`) or
//! `_take_blocking` (threads: waits without the GVL), then report with `_ack`,
//! `_fail`, `_requeue` or `_reject`. Each taken job is a tuple
//! `[id, queue, class, args, jid, retry_count]`.

use std::os::fd::AsRawFd;
use std::time::Duration;

use magnus::{function, method, prelude::*, IntoValue, RArray, RModule, Ruby, Value};

use super::convert;
use super::error::to_ruby;
use super::nogvl::without_gvl;
use crate::cancel::Cancel;
use crate::cron::{CronDef, CronSpec};
use crate::dispatch::Handed;
use crate::engine::{Engine, QueueSpec};
use crate::error::Error;
use crate::payload::{self, Failure};

#[magnus::wrap(class = "FiberJob::Native::Worker", free_immediately, size)]
pub struct RbWorker(Engine);

fn tuple(ruby: &Ruby, engine: &Engine, h: &Handed) -> Result<Value, magnus::Error> {
    let args = ruby.ary_new_capa(h.args.len());
    for a in &h.args {
        args.push(convert::to_ruby(ruby, a)?)?;
    }
    let t = ruby.ary_new_capa(6);
    t.push(h.id)?;
    t.push(ruby.str_new(&engine.shared.queues[h.queue]))?;
    t.push(ruby.str_new(&h.class))?;
    t.push(args)?;
    t.push(ruby.str_new(&h.jid))?;
    t.push(h.retry_count)?;
    Ok(t.into_value_with(ruby))
}

impl RbWorker {
    #[allow(clippy::too_many_arguments)]
    fn new(
        ruby: &Ruby,
        url: String,
        prefix: String,
        timeout: f64,
        identity: String,
        names: Vec<String>,
        limits: Vec<usize>,
        prefetch: Vec<usize>,
    ) -> Result<Self, magnus::Error> {
        let queues = names
            .into_iter()
            .zip(limits)
            .zip(prefetch)
            .map(|((name, limit), prefetch)| QueueSpec {
                name,
                limit,
                prefetch,
            })
            .collect();
        Engine::new(
            &url,
            &prefix,
            Duration::from_secs_f64(timeout),
            identity,
            queues,
        )
        .map(RbWorker)
        .map_err(|e| to_ruby(ruby, e))
    }

    /// `cron`: [[class, queue, expression], …] of the cron jobs this worker ticks for.
    fn start(
        ruby: &Ruby,
        rb_self: &Self,
        cron: Vec<(String, String, String)>,
        utc: bool,
    ) -> Result<(), magnus::Error> {
        let defs = cron
            .into_iter()
            .map(|(class, queue, expression)| {
                CronSpec::parse(&expression)
                    .map(|spec| CronDef { class, queue, spec })
                    .map_err(|reason| {
                        Error::Cron(format!("invalid cron expression {expression:?}: {reason}"))
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| to_ruby(ruby, e))?;
        rb_self.0.start(defs, utc).map_err(|e| to_ruby(ruby, e))
    }

    fn take(ruby: &Ruby, rb_self: &Self, max: usize) -> Result<RArray, magnus::Error> {
        let handed = rb_self.0.shared.dispatcher.take(max);
        let out = ruby.ary_new_capa(handed.len());
        for h in &handed {
            out.push(tuple(ruby, &rb_self.0, h)?)?;
        }
        Ok(out)
    }

    fn take_blocking(
        ruby: &Ruby,
        rb_self: &Self,
        timeout: f64,
    ) -> Result<Option<Value>, magnus::Error> {
        let dispatcher = &rb_self.0.shared.dispatcher;
        let cancel = Cancel::default();
        let handed = without_gvl(
            || dispatcher.take_blocking(Duration::from_secs_f64(timeout), cancel.flag()),
            || {
                cancel.cancel();
                dispatcher.interrupt();
            },
        )?;
        handed.map(|h| tuple(ruby, &rb_self.0, &h)).transpose()
    }

    fn wait_stop(ruby: &Ruby, rb_self: &Self, timeout: f64) -> Result<bool, magnus::Error> {
        let dispatcher = &rb_self.0.shared.dispatcher;
        let cancel = Cancel::default();
        let _ = ruby;
        without_gvl(
            || dispatcher.wait_stopping(Duration::from_secs_f64(timeout), cancel.flag()),
            || {
                cancel.cancel();
                dispatcher.interrupt();
            },
        )
    }

    fn wake_fd(&self) -> i32 {
        self.0.shared.dispatcher.wake_fd().as_raw_fd()
    }

    fn ack(&self, id: u64) {
        self.0.ack(id)
    }

    fn payload(&self, id: u64) -> Option<String> {
        self.0.shared.dispatcher.payload(id)
    }

    fn requeue(&self, id: u64) {
        self.0.requeue(id)
    }

    fn reject(&self, id: u64, error_class: String, reason: String) {
        self.0.reject(id, &error_class, &reason)
    }

    fn fail(
        &self,
        id: u64,
        error_class: String,
        message: String,
        backtrace: Vec<String>,
        retry_at: Option<f64>,
        priority: bool,
    ) {
        let failure = Failure {
            error_class,
            error_message: message,
            backtrace,
            failed_at: payload::now(),
        };
        self.0.fail(id, failure, retry_at, priority)
    }

    fn stop(&self) {
        self.0.request_stop()
    }

    fn quiet(&self) {
        self.0.quiet()
    }

    fn is_stopping(&self) -> bool {
        self.0.shared.dispatcher.is_stopping()
    }

    fn running(&self) -> usize {
        self.0.shared.dispatcher.running().iter().sum()
    }

    fn identity(&self) -> String {
        self.0.shared.identity.clone()
    }

    fn shutdown(ruby: &Ruby, rb_self: &Self) -> Result<(), magnus::Error> {
        let cancel = Cancel::default();
        without_gvl(|| rb_self.0.shutdown(&cancel), || cancel.cancel())?
            .map_err(|e| to_ruby(ruby, e))
    }
}

pub fn init(ruby: &Ruby, native: RModule) -> Result<(), magnus::Error> {
    let class = native.define_class("Worker", ruby.class_object())?;
    class.define_singleton_method("new", function!(RbWorker::new, 7))?;
    class.define_method("_start", method!(RbWorker::start, 2))?;
    class.define_method("_take", method!(RbWorker::take, 1))?;
    class.define_method("_take_blocking", method!(RbWorker::take_blocking, 1))?;
    class.define_method("_wait_stop", method!(RbWorker::wait_stop, 1))?;
    class.define_method("_wake_fd", method!(RbWorker::wake_fd, 0))?;
    class.define_method("_ack", method!(RbWorker::ack, 1))?;
    class.define_method("_payload", method!(RbWorker::payload, 1))?;
    class.define_method("_requeue", method!(RbWorker::requeue, 1))?;
    class.define_method("_reject", method!(RbWorker::reject, 3))?;
    class.define_method("_fail", method!(RbWorker::fail, 6))?;
    class.define_method("_stop", method!(RbWorker::stop, 0))?;
    class.define_method("_quiet", method!(RbWorker::quiet, 0))?;
    class.define_method("_stopping?", method!(RbWorker::is_stopping, 0))?;
    class.define_method("_running", method!(RbWorker::running, 0))?;
    class.define_method("_identity", method!(RbWorker::identity, 0))?;
    class.define_method("_shutdown", method!(RbWorker::shutdown, 0))?;
    Ok(())
}
