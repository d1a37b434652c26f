//! Logging and backoff for a loop that talks to Redis: an outage is logged once when it
//! starts and once when it ends, not once per attempt; retries back off up to a cap.

use std::time::{Duration, Instant};

/// First retry delay: short, so a blip costs little.
const FIRST_DELAY: Duration = Duration::from_millis(50);
/// Longest delay between attempts: Redis coming back is noticed within this time,
/// which keeps the "resumes within a second" promise.
const MAX_DELAY: Duration = Duration::from_millis(500);

pub struct Outage {
    what: String,
    since: Option<Instant>,
    delay: Duration,
}

impl Outage {
    pub fn new(what: String) -> Self {
        Outage {
            what,
            since: None,
            delay: FIRST_DELAY,
        }
    }

    /// Records a failed attempt and sleeps before the next one.
    pub async fn failed(&mut self, e: &(dyn std::fmt::Display + Sync)) {
        if self.since.is_none() {
            self.since = Some(Instant::now());
            tracing::error!("{}: Redis is unavailable ({e}); retrying", self.what);
        }
        tokio::time::sleep(self.delay).await;
        self.delay = (self.delay * 2).min(MAX_DELAY);
    }

    pub fn recovered(&mut self) {
        if let Some(since) = self.since.take() {
            tracing::warn!(
                "{}: Redis is back after {:.1}s",
                self.what,
                since.elapsed().as_secs_f64()
            );
        }
        self.delay = FIRST_DELAY;
    }
}
