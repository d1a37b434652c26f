//! `FiberJob::Internal::Native::Worker`: the engine of one worker process, driven by
//! `lib/fiber_job/worker.rb` and its executors. It calls only `Engine` methods.
//!
//! Executors pull: `_take` (fibers: never blocks, then wait on `_wake_fd`) or
//! `_take_blocking` (threads: waits without the GVL). Each taken job reaches Ruby as a
//! `FiberJob::Internal::Native::TakenJob`, built once here: its readers (`id`, `queue`,
//! `class_name`, `args`, `jid`, `retry_count`) and the verbs that end it, exactly one of
//! `ack`, `_fail` (through `TakenJob#fail` in `lib/fiber_job/taken_job.rb`), `give_back`,
//! `requeue` or `bury`, plus `payload` (the raw JSON, for middleware).

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use magnus::value::{Lazy, Opaque};
use magnus::{
    function, method, prelude::*, typed_data::Obj, RArray, RClass, RModule, RString, RStruct, Ruby,
    Value,
};

use super::connection::{target_settings, Fields};
use super::convert;
use super::error::to_ruby;
use super::nogvl::{blocking, handle_interrupts, without_gvl};
use crate::cron_expr::CronSpec;
use crate::error::Error;
use crate::hashers::BuildFnv;
use crate::runtime::cancel::Cancel;
use crate::store::payload::{self, ClassName};
use crate::store::records::Failure;
use crate::worker::cron_ticker::CronDef;
use crate::worker::{Engine, Prefetch, QueueSettings, Settings, Taken};

#[magnus::wrap(class = "FiberJob::Internal::Native::Worker", free_immediately, size)]
pub struct RbWorker(Engine, Names);

/// Most job class names a worker keeps a String for (beyond them, each job gets its own).
const CLASS_NAMES: usize = 256;

/// The frozen Strings a TakenJob carries as its `queue` and `class_name`: one per queue,
/// made with the worker, and one per class, made at its first job, rather than two
/// per job (an allocation each, and its collection: ~400 instructions of a no-op job).
/// Each is kept alive by `gc_register_mark_object` for the process's life; there are at
/// most the queues plus `CLASS_NAMES`. The classes are touched only with the GVL held,
/// so their lock is never contended (`try_lock`: a String of its own rather than a
/// wait, should it ever be).
struct Names {
    queues: Vec<Opaque<RString>>,
    classes: Mutex<ClassStrings>,
}

/// The class name Strings by name, and the last one handed out by the identity of its
/// shared name (`payload::class_name`): a run of jobs of one class hashes no name.
#[derive(Default)]
struct ClassStrings {
    by_name: HashMap<Box<str>, Opaque<RString>, BuildFnv>,
    last: Option<(ClassName, Opaque<RString>)>,
}

impl Names {
    fn new(ruby: &Ruby, engine: &Engine, queues: usize) -> Names {
        let queues = (0..queues)
            .map(|q| {
                let s = frozen(ruby, engine.queue_name(q));
                ruby.gc_register_mark_object(s);
                s.into()
            })
            .collect();
        Names {
            queues,
            classes: Mutex::default(),
        }
    }

    fn queue(&self, ruby: &Ruby, q: usize) -> RString {
        ruby.get_inner(self.queues[q])
    }

    fn class(&self, ruby: &Ruby, name: &ClassName) -> RString {
        let Ok(mut classes) = self.classes.try_lock() else {
            return frozen(ruby, name);
        };
        if let Some((last, s)) = &classes.last {
            if Arc::ptr_eq(last, name) {
                return ruby.get_inner(*s);
            }
        }
        let s = match classes.by_name.get(&**name) {
            Some(s) => *s,
            None => {
                let s = frozen(ruby, name);
                if classes.by_name.len() >= CLASS_NAMES {
                    return s;
                }
                ruby.gc_register_mark_object(s);
                classes.by_name.insert((**name).into(), s.into());
                s.into()
            }
        };
        classes.last = Some((name.clone(), s));
        ruby.get_inner(s)
    }
}

fn frozen(ruby: &Ruby, name: &str) -> RString {
    let s = ruby.str_new(name);
    s.freeze();
    s
}

/// `FiberJob::Internal::Native::TakenJob`'s members, in order. `worker` (the Native::Worker that
/// handed the job out) and `id` are the verbs' own; the rest are what a job is.
/// `throttled`: call `begin` right before its perform (its start is logged then).
const TAKEN_JOB_MEMBERS: (&str, &str, &str, &str, &str, &str, &str, &str) = (
    "worker",
    "id",
    "queue",
    "class_name",
    "args",
    "jid",
    "retry_count",
    "throttled",
);
const WORKER: usize = 0;
const ID: usize = 1;

/// The Struct class, defined by `init` (a constant: never collected).
static TAKEN_JOB: Lazy<RClass> = Lazy::new(|ruby| {
    ruby.class_object()
        .const_get::<_, RModule>("FiberJob")
        .and_then(|m| m.const_get::<_, RModule>("Internal"))
        .and_then(|m| m.const_get::<_, RModule>("Native"))
        .and_then(|m| m.const_get("TakenJob"))
        .expect("FiberJob::Internal::Native::TakenJob is defined by init")
});

/// `rb_worker` is the Ruby object of `worker` (the job's verbs find it there).
fn taken_job(
    ruby: &Ruby,
    rb_worker: Value,
    worker: &RbWorker,
    job: &Taken,
) -> Result<Value, magnus::Error> {
    use magnus::rb_sys::{AsRawValue, FromRawValue};
    use magnus::IntoValue;
    let names = &worker.1;
    // SAFETY (the raw calls below): with the GVL held (from a method of the worker);
    // none can raise but for memory, as a fresh Array or Struct is not frozen and every
    // index is within it. The values stay on this stack, which Ruby's GC scans, until
    // the struct holds them.
    let args = ruby.ary_new_capa(job.args.len());
    for a in job.args.iter() {
        let v = convert::arg_to_ruby(ruby, a)?;
        unsafe { rb_sys::rb_ary_push(args.as_raw(), v.as_raw()) };
    }
    // `throttled` stays nil unless true: one member fewer to write for most jobs.
    let members: [Value; 8] = [
        rb_worker,
        job.id.into_value_with(ruby),
        names.queue(ruby, job.queue).as_value(),
        names.class(ruby, &job.class).as_value(),
        args.as_value(),
        ruby.str_new(&job.jid).as_value(),
        job.retry_count.into_value_with(ruby),
        ruby.qtrue().as_value(),
    ];
    let filled = if job.throttled { 8 } else { 7 };
    // Filled in place rather than through `Struct#initialize` (a Ruby method call with
    // eight arguments: ~2,000 instructions of a no-op job's ~50,000).
    unsafe {
        let job = rb_sys::rb_struct_alloc_noinit(ruby.get_inner(&TAKEN_JOB).as_raw());
        for (i, v) in members[..filled].iter().enumerate() {
            rb_sys::rb_struct_aset(job, rb_sys::LONG2FIX(i as _), v.as_raw());
        }
        Ok(Value::from_raw(job))
    }
}

/// The worker wrapped in `value` (a `Native::Worker`), checked without `rb_protect`:
/// magnus's checked conversion protects a call that cannot raise once the type is known,
/// ~150 instructions on every verb of every job.
fn worker_in<'a>(value: Value) -> Result<&'a RbWorker, magnus::Error> {
    use magnus::rb_sys::AsRawValue;
    // `DataType` is `repr(transparent)` over the C struct.
    let data_type = <RbWorker as magnus::TypedData>::data_type() as *const magnus::DataType
        as *const rb_sys::rb_data_type_t;
    // SAFETY: with the GVL held; `rb_typeddata_is_kind_of` only reads the object, and
    // the data of an object of this type is the boxed RbWorker, which lives while the
    // object does: the caller holds `value` (a receiver, or a member of one) for 'a.
    unsafe {
        if rb_sys::rb_typeddata_is_kind_of(value.as_raw(), data_type) == 0 {
            return Err(magnus::Error::new(
                Ruby::get_with(value).exception_type_error(),
                "not a FiberJob::Internal::Native::Worker",
            ));
        }
        Ok(&*(rb_sys::RTYPEDDATA_GET_DATA(value.as_raw()) as *const RbWorker))
    }
}

/// A TakenJob's engine and id, for its verbs (read without `rb_protect`, as above).
fn owner<'a>(job: RStruct) -> Result<(&'a RbWorker, u64), magnus::Error> {
    use magnus::rb_sys::{AsRawValue, FromRawValue};
    // SAFETY: `job` is a TakenJob (the verbs are its methods), whose members are these.
    let (worker, id) = unsafe {
        let at = |i: usize| {
            Value::from_raw(rb_sys::rb_struct_aref(
                job.as_raw(),
                rb_sys::LONG2FIX(i as _),
            ))
        };
        (at(WORKER), at(ID))
    };
    Ok((worker_in(worker)?, u64::try_convert(id)?))
}

impl RbWorker {
    fn ack(job: RStruct) -> Result<(), magnus::Error> {
        let (worker, id) = owner(job)?;
        worker.0.ack(id);
        Ok(())
    }

    fn begin(job: RStruct) -> Result<(), magnus::Error> {
        let (worker, id) = owner(job)?;
        worker.0.begin(id);
        Ok(())
    }

    fn give_back(job: RStruct) -> Result<(), magnus::Error> {
        let (worker, id) = owner(job)?;
        worker.0.give_back(id);
        Ok(())
    }

    fn requeue(job: RStruct) -> Result<(), magnus::Error> {
        let (worker, id) = owner(job)?;
        worker.0.requeue(id);
        Ok(())
    }

    fn bury(job: RStruct, error_class: String, reason: String) -> Result<(), magnus::Error> {
        let (worker, id) = owner(job)?;
        worker.0.bury(id, &error_class, &reason);
        Ok(())
    }

    /// `TakenJob#fail(error_class:, message:, backtrace:, retry_at:, priority:)` calls
    /// this with its keywords in that order: a retry at `retry_at` (epoch seconds), or
    /// the dead set when it is nil.
    fn fail(
        job: RStruct,
        error_class: String,
        message: String,
        backtrace: Vec<String>,
        retry_at: Option<f64>,
        priority: bool,
    ) -> Result<(), magnus::Error> {
        let (worker, id) = owner(job)?;
        let failure = Failure {
            error_class,
            error_message: message,
            backtrace,
            failed_at: payload::now(),
        };
        worker.0.fail(id, failure, retry_at, priority);
        Ok(())
    }

    fn payload(job: RStruct) -> Result<Option<String>, magnus::Error> {
        let (worker, id) = owner(job)?;
        Ok(worker.0.payload(id))
    }
}

impl RbWorker {
    /// `settings`: { connection: (see `connection.rs`), prefix:, identity:, queues:
    /// [[name, concurrency, prefetch or nil for auto], …], sidekiq_compat:, health:
    /// "host:port" or nil }, every key present; converted here once.
    fn new(ruby: &Ruby, settings: Value) -> Result<Self, magnus::Error> {
        let mut f = Fields::new(ruby, settings, "worker")?;
        let queues: Vec<(String, usize, Option<usize>)> = f.get(ruby, "queues")?;
        let settings = Settings {
            target: target_settings(ruby, f.get(ruby, "connection")?)?,
            prefix: f.get(ruby, "prefix")?,
            identity: f.get(ruby, "identity")?,
            queues: queues
                .into_iter()
                .map(|(name, limit, prefetch)| QueueSettings {
                    name,
                    limit,
                    prefetch: prefetch.map_or(Prefetch::Auto, Prefetch::Fixed),
                })
                .collect(),
            sidekiq_compat: f.get(ruby, "sidekiq_compat")?,
            health: f.nullable(ruby, "health")?,
        };
        f.finish(ruby)?;
        let queues = settings.queues.len();
        let engine = Engine::new(settings).map_err(|e| to_ruby(ruby, e))?;
        let names = Names::new(ruby, &engine, queues);
        Ok(RbWorker(engine, names))
    }

    /// `cron`: [[class, queue, expression, extra fields as a JSON object], …] of the
    /// cron jobs this worker ticks for.
    fn start(
        ruby: &Ruby,
        rb_self: &Self,
        cron: Vec<(String, String, String, String)>,
        utc: bool,
    ) -> Result<(), magnus::Error> {
        let defs = cron
            .into_iter()
            .map(|(class, queue, expression, extra)| {
                let extra = serde_json::from_str(&extra).map_err(|e| {
                    Error::Other(format!(
                        "cron {class}: its fields are not a JSON object: {e}"
                    ))
                })?;
                CronSpec::parse(&expression)
                    .map(|spec| CronDef {
                        class,
                        queue,
                        spec,
                        extra,
                    })
                    .map_err(|reason| {
                        Error::Cron(format!("invalid cron expression {expression:?}: {reason}"))
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| to_ruby(ruby, e))?;
        rb_self.0.start(defs, utc).map_err(|e| to_ruby(ruby, e))
    }

    fn take(ruby: &Ruby, rb_self: Value, max: usize) -> Result<RArray, magnus::Error> {
        let worker = worker_in(rb_self)?;
        let taken = worker.0.take(max);
        let out = ruby.ary_new_capa(taken.len());
        for job in &taken {
            out.push(taken_job(ruby, rb_self, worker, job)?)?;
        }
        Ok(out)
    }

    /// One job that may start now, or nil (a worker fiber going straight on to its
    /// next job: no Array for one job).
    fn take_one(ruby: &Ruby, rb_self: Value) -> Result<Option<Value>, magnus::Error> {
        let worker = worker_in(rb_self)?;
        match worker.0.take_one() {
            Some(job) => Ok(Some(taken_job(ruby, rb_self, worker, &job)?)),
            None => Ok(None),
        }
    }

    fn take_blocking(
        ruby: &Ruby,
        rb_self: Obj<Self>,
        timeout: f64,
    ) -> Result<Option<Value>, magnus::Error> {
        let engine = &rb_self.0;
        let cancel = Cancel::default();
        let taken = without_gvl(
            || engine.take_blocking(Duration::from_secs_f64(timeout), cancel.flag()),
            || {
                cancel.cancel();
                engine.interrupt();
            },
        )?;
        taken
            .map(|job| taken_job(ruby, rb_self.as_value(), &rb_self, &job))
            .transpose()
    }

    fn wait_stop(&self, timeout: f64) -> Result<bool, magnus::Error> {
        let engine = &self.0;
        let cancel = Cancel::default();
        without_gvl(
            || engine.wait_stopping(Duration::from_secs_f64(timeout), cancel.flag()),
            || {
                cancel.cancel();
                engine.interrupt();
            },
        )
    }

    fn wake_fd(&self) -> i32 {
        self.0.wake_socket().as_raw_fd()
    }

    fn batch_of(&self, jid: String) -> Option<String> {
        self.0.batch_of(&jid)
    }

    fn pulse(&self) {
        self.0.pulse()
    }

    fn busy_payload(&self, jid: String) -> Option<String> {
        self.0.busy_payload(&jid)
    }

    fn stop(&self) {
        self.0.request_stop()
    }

    fn quiet(&self) {
        self.0.quiet()
    }

    fn is_stopping(&self) -> bool {
        self.0.is_stopping()
    }

    fn identity(&self) -> String {
        self.0.identity().to_string()
    }

    /// Waits for the worker's shutdown. What interrupts the wait runs (a signal trap:
    /// a second TERM only asks to stop again), and the wait goes on; an exception it
    /// raises (Interrupt, `Thread#kill`) ends the wait, and the shutdown goes on in the
    /// background — what it does not finish is recovered by another worker.
    fn shutdown(ruby: &Ruby, rb_self: &Self) -> Result<(), magnus::Error> {
        loop {
            if blocking(ruby, |c| rb_self.0.shutdown(c))?.is_some() {
                return Ok(());
            }
            handle_interrupts()?;
        }
    }
}

pub fn init(ruby: &Ruby, native: RModule) -> Result<(), magnus::Error> {
    let class = native.define_class("Worker", ruby.class_object())?;
    class.define_singleton_method("new", function!(RbWorker::new, 1))?;
    class.define_method("_start", method!(RbWorker::start, 2))?;
    class.define_method("_take", method!(RbWorker::take, 1))?;
    class.define_method("_take_one", method!(RbWorker::take_one, 0))?;
    class.define_method("_take_blocking", method!(RbWorker::take_blocking, 1))?;
    class.define_method("_wait_stop", method!(RbWorker::wait_stop, 1))?;
    class.define_method("_wake_fd", method!(RbWorker::wake_fd, 0))?;
    class.define_method("_batch_of", method!(RbWorker::batch_of, 1))?;
    class.define_method("_busy_payload", method!(RbWorker::busy_payload, 1))?;
    class.define_method("_pulse", method!(RbWorker::pulse, 0))?;
    class.define_method("_stop", method!(RbWorker::stop, 0))?;
    class.define_method("_quiet", method!(RbWorker::quiet, 0))?;
    class.define_method("_stopping?", method!(RbWorker::is_stopping, 0))?;
    class.define_method("_identity", method!(RbWorker::identity, 0))?;
    class.define_method("_shutdown", method!(RbWorker::shutdown, 0))?;

    let job = ruby.define_struct(None, TAKEN_JOB_MEMBERS)?;
    native.const_set("TakenJob", job)?;
    Lazy::force(&TAKEN_JOB, ruby);
    job.define_method("ack", method!(RbWorker::ack, 0))?;
    job.define_method("begin", method!(RbWorker::begin, 0))?;
    job.define_method("give_back", method!(RbWorker::give_back, 0))?;
    job.define_method("requeue", method!(RbWorker::requeue, 0))?;
    job.define_method("bury", method!(RbWorker::bury, 2))?;
    job.define_method("_fail", method!(RbWorker::fail, 5))?;
    job.define_method("payload", method!(RbWorker::payload, 0))?;
    Ok(())
}
