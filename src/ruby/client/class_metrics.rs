//! `Native::ClassMetrics` (`crate::client::ClassMetrics`): runs and execution times
//! per job class, for `FiberJob::ClassMetrics`.

use std::collections::HashMap;

use magnus::{function, method, prelude::*, RModule, Ruby};

use super::RbHandle;
use crate::client::ClassMetrics;
use crate::ruby::nogvl::blocking;

#[magnus::wrap(
    class = "FiberJob::Internal::Native::ClassMetrics",
    free_immediately,
    size
)]
pub struct RbClassMetrics(ClassMetrics);

impl RbClassMetrics {
    fn new(handle: &RbHandle) -> Self {
        RbClassMetrics(ClassMetrics::new(handle.shared()))
    }

    /// [all-time fields, [[minute epoch seconds, fields], …]] (per-class metrics).
    #[allow(clippy::type_complexity)]
    fn read(
        ruby: &Ruby,
        rb_self: &Self,
        minutes: i64,
    ) -> Result<(HashMap<String, u64>, Vec<(i64, HashMap<String, u64>)>), magnus::Error> {
        blocking(ruby, |c| rb_self.0.read(c, minutes))
    }
}

pub fn init(ruby: &Ruby, native: RModule) -> Result<(), magnus::Error> {
    let class = native.define_class("ClassMetrics", ruby.class_object())?;
    class.define_singleton_method("new", function!(RbClassMetrics::new, 1))?;
    class.define_method("_read", method!(RbClassMetrics::read, 1))?;
    Ok(())
}
