//! `Native::Cron` (`crate::client::Cron`): cron definitions and their last ticks, for
//! `FiberJob::CronJob` and `FiberJob::Queue.cron_jobs`.

use magnus::{function, method, prelude::*, RModule, Ruby};

use super::RbHandle;
use crate::client::{Cron, CronLast};
use crate::ruby::nogvl::blocking;

#[magnus::wrap(class = "FiberJob::Internal::Native::Cron", free_immediately, size)]
pub struct RbCron(Cron);

impl RbCron {
    fn new(handle: &RbHandle) -> Self {
        RbCron(Cron::new(handle.shared()))
    }

    fn register(
        ruby: &Ruby,
        rb_self: &Self,
        entries: Vec<(String, String)>,
    ) -> Result<(), magnus::Error> {
        blocking(ruby, |c| rb_self.0.register(c, &entries))
    }

    /// [[[class, last tick as stored], …], why the record is unreadable or nil]
    fn last(ruby: &Ruby, rb_self: &Self) -> Result<CronLast, magnus::Error> {
        blocking(ruby, |c| rb_self.0.last(c))
    }

    fn definitions(ruby: &Ruby, rb_self: &Self) -> Result<Vec<(String, String)>, magnus::Error> {
        blocking(ruby, |c| rb_self.0.definitions(c))
    }
}

pub fn init(ruby: &Ruby, native: RModule) -> Result<(), magnus::Error> {
    let class = native.define_class("Cron", ruby.class_object())?;
    class.define_singleton_method("new", function!(RbCron::new, 1))?;
    class.define_method("_register", method!(RbCron::register, 1))?;
    class.define_method("_last", method!(RbCron::last, 0))?;
    class.define_method("_defs", method!(RbCron::definitions, 0))?;
    Ok(())
}
