//! Logging and backoff for the loops that talk to Redis. An outage is logged once per
//! process when it starts (by the first task that notices) and once when it ends (by
//! the first task that gets through again), not once per task or per attempt. Each
//! task backs off on its own, up to a cap.
//!
//! Redis that answers but refuses (out of memory, a key of the wrong type) is not an
//! outage and is not called one: `refused` logs what Redis said, once per episode.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// First retry delay: short, so a blip costs little.
const FIRST_DELAY: Duration = Duration::from_millis(50);
/// Longest delay between attempts: Redis coming back is noticed within this time,
/// which keeps the "resumes within a second" promise.
const MAX_DELAY: Duration = Duration::from_millis(500);

/// When the current outage began, for the whole process.
static DOWN_SINCE: Mutex<Option<Instant>> = Mutex::new(None);
/// When Redis began refusing writes for want of memory, for the whole process.
static FULL_SINCE: Mutex<Option<Instant>> = Mutex::new(None);

pub struct Outage {
    what: String,
    /// Failed attempts in a row. One alone is often a connection that went stale
    /// while idle and works once reopened, so an outage is announced at the second.
    failures: u32,
    /// Refusals in a row (Redis answered with an error other than "not now").
    refusals: u32,
    delay: Duration,
}

impl Outage {
    pub fn new(what: String) -> Self {
        Outage {
            what,
            failures: 0,
            refusals: 0,
            delay: FIRST_DELAY,
        }
    }

    /// Records that Redis refused a command (it answered with an error, so nothing
    /// ran), logs it once per episode, and sleeps before the next attempt.
    pub async fn refused(&mut self, e: &redis::RedisError) {
        self.refusals += 1;
        if crate::error::is_out_of_memory(e) {
            let mut full = FULL_SINCE.lock().unwrap_or_else(|p| p.into_inner());
            if full.is_none() {
                *full = Some(Instant::now());
                tracing::error!(
                    "Redis is out of memory (over maxmemory) and refuses new work: jobs already taken \
                     finish and are recorded, nothing new is fetched, and enqueues raise \
                     FiberJob::RedisFullError until memory is freed or maxmemory is raised ({}: {e})",
                    self.what
                );
            }
        } else if self.refusals == 1 {
            tracing::error!(
                "{}: Redis refused a command: {}",
                self.what,
                crate::error::Error::from(e.clone())
            );
        }
        tokio::time::sleep(self.delay).await;
        self.delay = (self.delay * 2).min(MAX_DELAY);
    }

    /// Records a failed attempt and sleeps before the next one.
    pub async fn failed(&mut self, e: &(dyn std::fmt::Display + Sync)) {
        self.failures += 1;
        if self.failures == 2 {
            let mut down = DOWN_SINCE.lock().unwrap_or_else(|p| p.into_inner());
            if down.is_none() {
                *down = Some(Instant::now());
                tracing::error!(
                    "Redis is unavailable ({}: {e}); retrying with backoff",
                    self.what
                );
            }
        }
        tokio::time::sleep(self.delay).await;
        self.delay = (self.delay * 2).min(MAX_DELAY);
    }

    pub fn recovered(&mut self) {
        if self.refusals > 0 {
            self.refusals = 0;
            if let Some(since) = FULL_SINCE.lock().unwrap_or_else(|p| p.into_inner()).take() {
                tracing::warn!(
                    "Redis has room again after {:.1}s ({} went on first)",
                    since.elapsed().as_secs_f64(),
                    self.what
                );
            }
        }
        if self.failures > 0 {
            self.failures = 0;
            if let Some(since) = DOWN_SINCE.lock().unwrap_or_else(|p| p.into_inner()).take() {
                tracing::warn!(
                    "Redis is back after {:.1}s ({} reconnected first)",
                    since.elapsed().as_secs_f64(),
                    self.what
                );
            }
        }
        self.delay = FIRST_DELAY;
    }
}
