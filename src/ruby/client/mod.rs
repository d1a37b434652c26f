//! The concerns of `crate::client` as Ruby classes under `FiberJob::Internal::Native`,
//! one class per Rust type, each in its file: `Enqueue` (`enqueue.rs`), `Admin`
//! (`admin.rs`), `ClassMetrics` (`class_metrics.rs`), `Jobs` (`jobs.rs`), `DeadSet`
//! (`dead_set.rs`), `Flow` (`flow.rs`), `Batches` (`batches.rs`), `Cron` (`cron.rs`)
//! and `Checkpoints` (`checkpoints.rs`). Each is made from a `Handle` (this file), the
//! process's connection for a configuration, so they share it:
//! `Native::Jobs.new(handle)`. Positional arguments, no defaults: the Ruby classes that
//! wrap them (`lib/fiber_job/internal/natives.rb` names which) validate and add
//! keywords. Records come back as symbol-keyed Hashes (`convert::record`).

mod admin;
mod batches;
mod checkpoints;
mod class_metrics;
mod cron;
mod dead_set;
mod enqueue;
mod flow;
mod jobs;

use std::sync::Arc;

use magnus::{function, method, prelude::*, RModule, Ruby, Value};

use super::error::to_ruby;
use super::nogvl::blocking;
use crate::client::Handle;

#[magnus::wrap(class = "FiberJob::Internal::Native::Handle", free_immediately, size)]
pub struct RbHandle(Arc<Handle>);

impl RbHandle {
    /// `connection`: `Configuration#connection` (see `connection.rs`).
    fn new(ruby: &Ruby, connection: Value, prefix: String) -> Result<Self, magnus::Error> {
        let target = super::connection::target_settings(ruby, connection)?;
        Handle::new(&target, &prefix)
            .map(RbHandle)
            .map_err(|e| to_ruby(ruby, e))
    }

    /// Where the handle is connected now (a Sentinel master's current address).
    fn connected_to(ruby: &Ruby, rb_self: &Self) -> Result<String, magnus::Error> {
        blocking(ruby, |c| rb_self.0.where_now(c))
    }

    /// The shared connection, for a concern's constructor.
    fn shared(&self) -> Arc<Handle> {
        self.0.clone()
    }
}

pub fn init(ruby: &Ruby, native: RModule) -> Result<(), magnus::Error> {
    let class = native.define_class("Handle", ruby.class_object())?;
    class.define_singleton_method("new", function!(RbHandle::new, 2))?;
    class.define_method("_connected_to", method!(RbHandle::connected_to, 0))?;
    enqueue::init(ruby, native)?;
    admin::init(ruby, native)?;
    class_metrics::init(ruby, native)?;
    jobs::init(ruby, native)?;
    dead_set::init(ruby, native)?;
    flow::init(ruby, native)?;
    batches::init(ruby, native)?;
    cron::init(ruby, native)?;
    checkpoints::init(ruby, native)?;
    Ok(())
}
