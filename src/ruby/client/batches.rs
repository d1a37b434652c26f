//! `Native::Batches` (`crate::client::Batches`): opening, filling and reading batches,
//! for `lib/fiber_job/batch.rb`.

use std::collections::HashMap;

use magnus::{function, method, prelude::*, RModule, Ruby};

use super::RbHandle;
use crate::client::{Batches, Opening};
use crate::ruby::nogvl::blocking;

#[magnus::wrap(class = "FiberJob::Internal::Native::Batches", free_immediately, size)]
pub struct RbBatches(Batches);

/// A new batch's callbacks ([[`cb:<event>`, JSON], …]) and their queues.
type NewBatch = (Vec<(String, String)>, Vec<String>);

impl RbBatches {
    fn new(handle: &RbHandle) -> Self {
        RbBatches(Batches::new(handle.shared()))
    }

    /// Opens a `jobs { }` block: `callbacks` nil reopens an existing batch, else
    /// [[`cb:<event>`, JSON], …] with the callbacks' `queues` makes a new one.
    fn open(
        ruby: &Ruby,
        rb_self: &Self,
        bid: String,
        token: String,
        description: String,
        callbacks: Option<NewBatch>,
    ) -> Result<String, magnus::Error> {
        let opening = match callbacks {
            None => Opening::Reopen,
            Some((callbacks, queues)) => Opening::New {
                description,
                callbacks,
                queues,
            },
        };
        blocking(ruby, |c| rb_self.0.open(c, &bid, &token, &opening))
    }

    /// Records [[jid, class], …] as members about to be pushed.
    fn add(
        ruby: &Ruby,
        rb_self: &Self,
        bid: String,
        token: String,
        jobs: Vec<(String, String)>,
    ) -> Result<i64, magnus::Error> {
        blocking(ruby, |c| rb_self.0.add(c, &bid, &token, &jobs))
    }

    fn undo(
        ruby: &Ruby,
        rb_self: &Self,
        bid: String,
        jobs: Vec<(String, String)>,
    ) -> Result<i64, magnus::Error> {
        blocking(ruby, |c| rb_self.0.undo(c, &bid, &jobs))
    }

    fn close(ruby: &Ruby, rb_self: &Self, bid: String, token: String) -> Result<(), magnus::Error> {
        blocking(ruby, |c| rb_self.0.close(c, &bid, &token))
    }

    /// The batch's fields and counts (Strings), or nil for an unknown bid.
    fn status(
        ruby: &Ruby,
        rb_self: &Self,
        bid: String,
    ) -> Result<Option<HashMap<String, String>>, magnus::Error> {
        blocking(ruby, |c| rb_self.0.status(c, &bid))
    }

    /// [[jid, class, state], …] of members `start..stop`, newest first.
    fn jobs(
        ruby: &Ruby,
        rb_self: &Self,
        bid: String,
        start: i64,
        stop: i64,
    ) -> Result<Vec<(String, String, String)>, magnus::Error> {
        blocking(ruby, |c| rb_self.0.jobs(c, &bid, start, stop))
    }

    /// [[fields, …], number of batches] of batches `start..stop`, newest first (each
    /// as `_status`).
    fn list(
        ruby: &Ruby,
        rb_self: &Self,
        start: i64,
        stop: i64,
    ) -> Result<(Vec<HashMap<String, String>>, u64), magnus::Error> {
        blocking(ruby, |c| rb_self.0.list(c, start, stop))
    }
}

pub fn init(ruby: &Ruby, native: RModule) -> Result<(), magnus::Error> {
    let class = native.define_class("Batches", ruby.class_object())?;
    class.define_singleton_method("new", function!(RbBatches::new, 1))?;
    class.define_method("_open", method!(RbBatches::open, 4))?;
    class.define_method("_add", method!(RbBatches::add, 3))?;
    class.define_method("_undo", method!(RbBatches::undo, 2))?;
    class.define_method("_close", method!(RbBatches::close, 2))?;
    class.define_method("_status", method!(RbBatches::status, 1))?;
    class.define_method("_jobs", method!(RbBatches::jobs, 3))?;
    class.define_method("_list", method!(RbBatches::list, 2))?;
    Ok(())
}
