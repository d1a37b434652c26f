//! How much FiberJob keeps in Redis, in one place. Ruby reads these through
//! `FiberJob::Internal::Native` (for the README's promises and the Web UI).

/// Failure records kept in `failed` (newest first); older ones are trimmed.
pub const FAILED_CAP: isize = 1000;
/// Dead-set bounds, Sidekiq's defaults: 10,000 jobs, 180 days.
pub const DEAD_CAP: isize = 10_000;
pub const DEAD_MAX_AGE_SECS: f64 = 180.0 * 24.0 * 3600.0;
/// Throughput windows: 10-second counters, kept an hour (the dashboard shows 5 minutes).
pub const STAT_WINDOW_SECS: i64 = 10;
pub const STAT_WINDOW_TTL_SECS: i64 = 3600;
/// How long a worker's guard against counting twice (`Keys::counted`) is kept: counts
/// sent again later than this after Redis took them (a reply lost in an outage this
/// long) would count twice.
pub const COUNTED_TTL_SECS: i64 = 3600;

/// Per-class metrics (`worker/acker/metrics.rs`): one hash per minute, kept this long
/// (72 hours, and an hour for the last to be read whole).
pub const METRICS_MINUTE_TTL_SECS: i64 = 73 * 3600;
/// Upper bounds (seconds) of the execution-time histogram's bins; a last bin takes
/// the rest (+Inf). Prometheus's usual buckets, widened for long jobs.
pub const METRICS_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];
