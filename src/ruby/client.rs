//! `FiberJob::Native::Client`: enqueue and schedule, iterable jobs' checkpoints,
//! batches. Positional arguments, no
//! defaults; `lib/fiber_job/client.rb` validates and adds keywords.

use std::collections::HashMap;

use magnus::{function, method, prelude::*, RArray, RModule, Ruby, Value};

use super::error::to_ruby;
use super::nogvl::{blocking, refuse_inside_a_wait};
use crate::client::{Client, Opening};
use crate::store::payload::{self, Builder};

#[magnus::wrap(class = "FiberJob::Native::Client", free_immediately, size)]
pub struct RbClient(Client);

impl RbClient {
    /// `connection`: `Configuration#connection` (see `connection.rs`).
    fn new(ruby: &Ruby, connection: Value, prefix: String) -> Result<Self, magnus::Error> {
        let target = super::connection::target_settings(ruby, connection)?;
        Client::new(&target, &prefix)
            .map(RbClient)
            .map_err(|e| to_ruby(ruby, e))
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
            if !super::encode::write(args.as_value(), &mut args_json, 0) {
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
            None => blocking(ruby, |c| self.0.push(c, queue, payloads))?,
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

    /// Writes an iterable job's checkpoint; true when the job was cancelled.
    fn checkpoint(
        ruby: &Ruby,
        rb_self: &Self,
        queue: String,
        jid: String,
        fields: Vec<(String, String)>,
        ttl_secs: u64,
    ) -> Result<bool, magnus::Error> {
        blocking(ruby, |c| {
            rb_self.0.checkpoint(c, &queue, &jid, &fields, ttl_secs)
        })
    }

    /// An iterable job's checkpoint as [[field, value], …] (empty: none).
    fn read_checkpoint(
        ruby: &Ruby,
        rb_self: &Self,
        queue: String,
        jid: String,
    ) -> Result<Vec<(String, String)>, magnus::Error> {
        blocking(ruby, |c| rb_self.0.read_checkpoint(c, &queue, &jid))
    }

    fn delete_checkpoint(
        ruby: &Ruby,
        rb_self: &Self,
        queue: String,
        jid: String,
    ) -> Result<(), magnus::Error> {
        blocking(ruby, |c| rb_self.0.delete_checkpoint(c, &queue, &jid))
    }
}

/// A new batch's callbacks ([[`cb:<event>`, JSON], …]) and their queues.
type NewBatch = (Vec<(String, String)>, Vec<String>);

/// Batches (`lib/fiber_job/batch.rb`).
impl RbClient {
    /// Opens a `jobs { }` block: `callbacks` nil reopens an existing batch, else
    /// [[`cb:<event>`, JSON], …] with the callbacks' `queues` makes a new one.
    fn batch_open(
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
        blocking(ruby, |c| rb_self.0.batch_open(c, &bid, &token, &opening))
    }

    /// Records [[jid, class], …] as members about to be pushed.
    fn batch_add(
        ruby: &Ruby,
        rb_self: &Self,
        bid: String,
        token: String,
        jobs: Vec<(String, String)>,
    ) -> Result<i64, magnus::Error> {
        blocking(ruby, |c| rb_self.0.batch_add(c, &bid, &token, &jobs))
    }

    fn batch_undo(
        ruby: &Ruby,
        rb_self: &Self,
        bid: String,
        jobs: Vec<(String, String)>,
    ) -> Result<i64, magnus::Error> {
        blocking(ruby, |c| rb_self.0.batch_undo(c, &bid, &jobs))
    }

    fn batch_close(
        ruby: &Ruby,
        rb_self: &Self,
        bid: String,
        token: String,
    ) -> Result<(), magnus::Error> {
        blocking(ruby, |c| rb_self.0.batch_close(c, &bid, &token))
    }

    /// The batch's fields and counts (Strings), or nil for an unknown bid.
    fn batch_status(
        ruby: &Ruby,
        rb_self: &Self,
        bid: String,
    ) -> Result<Option<HashMap<String, String>>, magnus::Error> {
        blocking(ruby, |c| rb_self.0.batch_status(c, &bid))
    }

    /// [[jid, class, state], …] of members `start..stop`, newest first.
    fn batch_jobs(
        ruby: &Ruby,
        rb_self: &Self,
        bid: String,
        start: i64,
        stop: i64,
    ) -> Result<Vec<(String, String, String)>, magnus::Error> {
        blocking(ruby, |c| rb_self.0.batch_jobs(c, &bid, start, stop))
    }

    /// [[fields, …], number of batches] of batches `start..stop`, newest first (each
    /// as `_batch_status`).
    fn batches(
        ruby: &Ruby,
        rb_self: &Self,
        start: i64,
        stop: i64,
    ) -> Result<(Vec<HashMap<String, String>>, u64), magnus::Error> {
        blocking(ruby, |c| rb_self.0.batches(c, start, stop))
    }
}

pub fn init(ruby: &Ruby, native: RModule) -> Result<(), magnus::Error> {
    let class = native.define_class("Client", ruby.class_object())?;
    class.define_singleton_method("new", function!(RbClient::new, 2))?;
    class.define_method("_enqueue", method!(RbClient::enqueue, 3))?;
    class.define_method("_push", method!(RbClient::push, 2))?;
    class.define_method("_schedule", method!(RbClient::schedule, 2))?;
    class.define_method("_push_unique", method!(RbClient::push_unique, 3))?;
    class.define_method("_checkpoint", method!(RbClient::checkpoint, 4))?;
    class.define_method("_read_checkpoint", method!(RbClient::read_checkpoint, 2))?;
    class.define_method(
        "_delete_checkpoint",
        method!(RbClient::delete_checkpoint, 2),
    )?;
    class.define_method("_batch_open", method!(RbClient::batch_open, 4))?;
    class.define_method("_batch_add", method!(RbClient::batch_add, 3))?;
    class.define_method("_batch_undo", method!(RbClient::batch_undo, 2))?;
    class.define_method("_batch_close", method!(RbClient::batch_close, 2))?;
    class.define_method("_batch_status", method!(RbClient::batch_status, 1))?;
    class.define_method("_batch_jobs", method!(RbClient::batch_jobs, 3))?;
    class.define_method("_batches", method!(RbClient::batches, 2))?;
    Ok(())
}
