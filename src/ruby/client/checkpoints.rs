//! `Native::Checkpoints` (`crate::client::Checkpoints`): iterable jobs' cursors, for
//! `lib/fiber_job/iterable_job.rb`.

use magnus::{function, method, prelude::*, RModule, Ruby};

use super::RbHandle;
use crate::client::Checkpoints;
use crate::ruby::nogvl::blocking;

#[magnus::wrap(
    class = "FiberJob::Internal::Native::Checkpoints",
    free_immediately,
    size
)]
pub struct RbCheckpoints(Checkpoints);

impl RbCheckpoints {
    fn new(handle: &RbHandle) -> Self {
        RbCheckpoints(Checkpoints::new(handle.shared()))
    }

    /// Writes an iterable job's checkpoint; true when the job was cancelled.
    fn write(
        ruby: &Ruby,
        rb_self: &Self,
        queue: String,
        jid: String,
        fields: Vec<(String, String)>,
        ttl_secs: u64,
    ) -> Result<bool, magnus::Error> {
        blocking(ruby, |c| {
            rb_self.0.write(c, &queue, &jid, &fields, ttl_secs)
        })
    }

    /// An iterable job's checkpoint as [[field, value], …] (empty: none).
    fn read(
        ruby: &Ruby,
        rb_self: &Self,
        queue: String,
        jid: String,
    ) -> Result<Vec<(String, String)>, magnus::Error> {
        blocking(ruby, |c| rb_self.0.read(c, &queue, &jid))
    }

    fn delete(
        ruby: &Ruby,
        rb_self: &Self,
        queue: String,
        jid: String,
    ) -> Result<(), magnus::Error> {
        blocking(ruby, |c| rb_self.0.delete(c, &queue, &jid))
    }
}

pub fn init(ruby: &Ruby, native: RModule) -> Result<(), magnus::Error> {
    let class = native.define_class("Checkpoints", ruby.class_object())?;
    class.define_singleton_method("new", function!(RbCheckpoints::new, 1))?;
    class.define_method("_write", method!(RbCheckpoints::write, 4))?;
    class.define_method("_read", method!(RbCheckpoints::read, 2))?;
    class.define_method("_delete", method!(RbCheckpoints::delete, 2))?;
    Ok(())
}
