//! `Native::Flow` (`crate::client::Flow`): pausing queues, unique locks and what limits
//! per key hold back, for `FiberJob::Queue` and the Web UI.

use magnus::{function, method, prelude::*, IntoValue, RHash, RModule, Ruby};

use super::RbHandle;
use crate::client::Flow;
use crate::ruby::convert::record;
use crate::ruby::nogvl::blocking;

#[magnus::wrap(class = "FiberJob::Internal::Native::Flow", free_immediately, size)]
pub struct RbFlow(Flow);

impl RbFlow {
    fn new(handle: &RbHandle) -> Self {
        RbFlow(Flow::new(handle.shared()))
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

    fn paused(ruby: &Ruby, rb_self: &Self) -> Result<Vec<String>, magnus::Error> {
        blocking(ruby, |c| rb_self.0.paused(c))
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
}

pub fn init(ruby: &Ruby, native: RModule) -> Result<(), magnus::Error> {
    let class = native.define_class("Flow", ruby.class_object())?;
    class.define_singleton_method("new", function!(RbFlow::new, 1))?;
    class.define_method("_set_paused", method!(RbFlow::set_paused, 2))?;
    class.define_method("_paused", method!(RbFlow::paused, 0))?;
    class.define_method("_limit_state", method!(RbFlow::limit_state, 4))?;
    class.define_method("_unique_lock", method!(RbFlow::unique_lock, 2))?;
    Ok(())
}
