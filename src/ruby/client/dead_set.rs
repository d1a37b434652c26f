//! `Native::DeadSet` (`crate::client::DeadSet`): the failed list and the dead set —
//! read, retry, delete — for `FiberJob::Queue` and the Web UI.

use magnus::{function, method, prelude::*, RArray, RModule, Ruby};

use super::RbHandle;
use crate::client::DeadSet;
use crate::ruby::nogvl::blocking;

#[magnus::wrap(class = "FiberJob::Internal::Native::DeadSet", free_immediately, size)]
pub struct RbDeadSet(DeadSet);

impl RbDeadSet {
    fn new(handle: &RbHandle) -> Self {
        RbDeadSet(DeadSet::new(handle.shared()))
    }

    fn failed(ruby: &Ruby, rb_self: &Self, start: i64, stop: i64) -> Result<RArray, magnus::Error> {
        let records = blocking(ruby, |c| rb_self.0.failed(c, start, stop))?;
        Ok(ruby.ary_from_vec(records))
    }

    fn dead(ruby: &Ruby, rb_self: &Self, start: i64, stop: i64) -> Result<RArray, magnus::Error> {
        let entries = blocking(ruby, |c| rb_self.0.dead(c, start, stop))?;
        Ok(ruby.ary_from_vec(entries))
    }

    fn retry(ruby: &Ruby, rb_self: &Self, jid: Option<String>) -> Result<usize, magnus::Error> {
        blocking(ruby, |c| rb_self.0.retry(c, jid.as_deref()))
    }

    fn delete(ruby: &Ruby, rb_self: &Self, jid: Option<String>) -> Result<usize, magnus::Error> {
        blocking(ruby, |c| rb_self.0.delete(c, jid.as_deref()))
    }
}

pub fn init(ruby: &Ruby, native: RModule) -> Result<(), magnus::Error> {
    let class = native.define_class("DeadSet", ruby.class_object())?;
    class.define_singleton_method("new", function!(RbDeadSet::new, 1))?;
    class.define_method("_failed", method!(RbDeadSet::failed, 2))?;
    class.define_method("_dead", method!(RbDeadSet::dead, 2))?;
    class.define_method("_retry", method!(RbDeadSet::retry, 1))?;
    class.define_method("_delete", method!(RbDeadSet::delete, 1))?;
    Ok(())
}
