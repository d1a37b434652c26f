//! What any process (not only workers) does with Redis, one type per concern, each in
//! its file and each holding the process's `Handle` (`handle.rs`: the connection, key
//! names and deadline, shared so concurrent callers share pipelined round trips):
//! - `Enqueue` (`enqueue.rs`): pushes, scheduled and unique jobs, waking fetchers; a
//!   push made alone may take the direct path (`direct.rs`);
//! - `Admin` (`admin.rs`): queue metrics, totals, processes, throughput, Redis's INFO,
//!   the Web UI's secret;
//! - `ClassMetrics` (`class_metrics.rs`): runs and execution times per job class;
//! - `Jobs` (`jobs.rs`): jobs by queue and jid — list, find, delete, run now, clear;
//! - `DeadSet` (`dead.rs`): the failed list and the dead set, retry and delete;
//! - `Flow` (`flow.rs`): pausing, unique locks, what limits per key hold back;
//! - `Batches` (`batch.rs`), `Cron` (`cron.rs`), `Checkpoints` (`iteration.rs`:
//!   iterable jobs' cursors).
//!
//! Every call has a deadline (`network_timeout`); see `handle.rs`.

mod admin;
mod batch;
mod class_metrics;
mod cron;
mod dead;
mod direct;
mod enqueue;
mod flow;
mod handle;
mod iteration;
mod jobs;

pub use self::admin::Admin;
pub use self::batch::{Batches, Opening};
pub use self::class_metrics::ClassMetrics;
pub use self::cron::{Cron, CronLast};
pub use self::dead::DeadSet;
pub use self::enqueue::Enqueue;
pub use self::flow::Flow;
pub use self::handle::{Handle, Lossy};
pub use self::iteration::Checkpoints;
pub use self::jobs::{Jobs, Waiting};
