//! The Redis server's clock, as this process sees it: the local wall clock plus an
//! offset learned from Redis `TIME`. Every time decision shared by processes — when a
//! scheduled job or retry is due, which cron tick it is — is made on this clock, or
//! inside a script with `TIME` where a sample's error (up to half a loaded round trip)
//! would matter: a throttle's window and a lease's end (`store::flow_scripts`), so a worker
//! whose own clock is minutes off (a VM with a drifting clock) decides like the others:
//! it neither runs scheduled jobs early nor repeats cron ticks.
//!
//! The heartbeat refreshes the offset every beat (`sync`), before the first
//! registration, so fetchers (which wait for it) never decide on an unlearned offset.
//! Until the first sync the offset is 0: the local clock, as before. Timestamps only
//! recorded (a payload's `enqueued_at`, a failure's `failed_at`) stay on the local
//! clock, as in Sidekiq. Under Redis Cluster the offset is learned from one node and
//! used for all: the nodes' clocks are assumed to agree (one machine, or NTP).

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use redis::aio::ConnectionLike;

use crate::store::payload;

/// Redis time minus local time, in microseconds.
static OFFSET_MICROS: AtomicI64 = AtomicI64::new(0);
/// Whether the offset was learned (a first sample is kept however loose).
static SYNCED: AtomicBool = AtomicBool::new(false);

/// A sample whose round trip took longer than this is too loose to replace a known
/// offset (its error is up to half the round trip); the next beat tries again.
const LOOSEST_SAMPLE_SECS: f64 = 0.25;

/// Seconds since the epoch on Redis's clock.
pub fn now() -> f64 {
    from_local(payload::now())
}

/// A time of the local clock (epoch seconds) moved onto Redis's clock: e.g. a retry
/// time Ruby computed from `Time.now`.
pub fn from_local(at: f64) -> f64 {
    at + offset()
}

/// Redis time minus local time, in seconds.
pub fn offset() -> f64 {
    OFFSET_MICROS.load(Ordering::Relaxed) as f64 / 1e6
}

/// Asks Redis for its time and keeps the offset: Redis's time against the midpoint of
/// the round trip. One command; the heartbeat calls it every beat.
pub async fn sync<C: ConnectionLike + Send>(c: &mut C) -> redis::RedisResult<()> {
    let before = payload::now();
    let (secs, micros): (i64, i64) = redis::cmd("TIME").query_async(c).await?;
    let after = payload::now();
    let redis_now = secs as f64 + micros as f64 / 1e6;
    if let Some(offset) = offset_from(before, redis_now, after, SYNCED.load(Ordering::Relaxed)) {
        OFFSET_MICROS.store((offset * 1e6).round() as i64, Ordering::Relaxed);
        SYNCED.store(true, Ordering::Relaxed);
    }
    Ok(())
}

/// The offset a `TIME` sample gives (Redis's `at`, asked between local `before` and
/// `after`), or None when it is too loose to replace a known one.
fn offset_from(before: f64, at: f64, after: f64, known: bool) -> Option<f64> {
    let round_trip = after - before;
    if known && !(0.0..=LOOSEST_SAMPLE_SECS).contains(&round_trip) {
        return None;
    }
    Some(at - (before + after) / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offset_is_redis_time_against_the_round_trips_midpoint() {
        assert_eq!(offset_from(100.0, 400.1, 100.2, true), Some(300.0));
        assert_eq!(offset_from(100.0, -19.9, 100.2, false), Some(-120.0));
    }

    #[test]
    fn a_loose_sample_does_not_replace_a_known_offset() {
        assert_eq!(offset_from(100.0, 400.0, 101.0, true), None);
        assert_eq!(offset_from(100.0, 400.5, 101.0, false), Some(300.0)); // better than none
        assert_eq!(offset_from(100.0, 400.0, 99.0, true), None); // the local clock stepped back
    }
}
