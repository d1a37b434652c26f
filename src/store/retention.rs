//! How much FiberJob keeps in Redis, in one place. Ruby reads these through
//! `FiberJob::Native` (for the README's promises and the Web UI).

/// Failure records kept in `failed` (newest first); older ones are trimmed.
pub const FAILED_CAP: isize = 1000;
/// Dead-set bounds, Sidekiq's defaults: 10,000 jobs, 180 days.
pub const DEAD_CAP: isize = 10_000;
pub const DEAD_MAX_AGE_SECS: f64 = 180.0 * 24.0 * 3600.0;
/// Throughput windows: 10-second counters, kept an hour (the dashboard shows 5 minutes).
pub const STAT_WINDOW_SECS: i64 = 10;
pub const STAT_WINDOW_TTL_SECS: i64 = 3600;
