//! FiberJob's engine: a Rust core on tokio under a thin Ruby API.
//!
//! - `store`: the Redis data model — keys, Lua scripts, the payload format.
//! - `worker`: one worker process — fetching, dispatch, acking, scheduling, cron,
//!   heartbeats and recovery, as tasks around a shared state.
//! - `client`: what any process does — enqueue (and the direct path), and the admin
//!   reads and actions of dashboards.
//! - `runtime`: the tokio runtime and connections, cancellation, outages, logging.
//! - `batch`: batches' Redis work shared by the acker, the reaper and the client.
//! - `cron_expr`: crontab expressions.
//! - `ruby`: the only code that touches magnus; its `init` is the extension's entry.
//! - `error`: the one error type, with Redis's replies sorted and explained.
//! - `hashers`: cheap hashers for keys the process makes itself (ids, class names).
//!
//! Everything but `ruby` is plain Rust, tested with `cargo test`.

mod batch;
mod client;
mod cron_expr;
mod error;
mod hashers;
mod ruby;
mod runtime;
mod store;
mod worker;

#[cfg(test)]
mod tree_tests;
