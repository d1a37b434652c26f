//! How many jobs of a queue a process may hold beyond the ones it runs.
//!
//! Prefetching hides the fetch round trip: a slot that frees finds a job in memory
//! instead of waiting on Redis, which is most of the throughput for short jobs.
//! Its cost is that a held job waits for a slot of *this* process while another
//! process may be idle. So the default (`Auto`) holds about what this process finishes
//! in `HORIZON`, measured: `limit × HORIZON / average run time` (Little's law), capped.
//! Short jobs get a deep buffer, jobs of a second or more get none (a held job would
//! wait longer than a fetch costs; at concurrency under 200), and a queue's first jobs
//! get none until some have finished.
//!
//! A fetcher has one fetch in flight and fetches again when half the depth is free, so
//! the half still held must last the fetch's round trip: `Auto` adds what the process
//! finishes in two measured round trips (issue → jobs buffered, each sample taken as at
//! most `MAX_ROUND_TRIP`, so one stalled fetch cannot deepen the buffer for long). On
//! loopback that is a fraction of a millisecond; with Redis across a network (1 ms), it
//! is what keeps short jobs from waiting on every fetch. A held job so waits about
//! `HORIZON` plus two round trips longer than it would in Redis, at most: about what
//! fetching it when its slot freed would have cost.
//!
//! Held jobs are memory: `Auto` holds at most `MAX_HELD_BYTES` of payloads beyond the
//! running jobs, by the queue's measured payload size (100 KiB payloads: 163 jobs).

use std::time::Duration;

/// About how long a prefetched job waits in a process's buffer.
pub const HORIZON: Duration = Duration::from_millis(5);
/// `Auto` holds at most this many times the queue's concurrency...
pub const MAX_PER_SLOT: usize = 10;
/// ...and never more than this many jobs.
pub const MAX_HELD: usize = 1000;
/// `Auto` holds at most about this many bytes of payloads.
pub const MAX_HELD_BYTES: usize = 16 << 20;
/// A fetch round trip counts as at most this long: a stall (a failover, a slow Redis)
/// is not the network's distance.
pub const MAX_ROUND_TRIP: Duration = Duration::from_millis(20);
/// Weight of the newest sample in the moving averages.
const WEIGHT: f64 = 0.1;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Prefetch {
    /// `config.prefetch = n`: always hold up to `n` more.
    Fixed(usize),
    /// The default: follows the queue's measured run time (see the module's text).
    Auto,
}

/// A queue's prefetch setting and what it measured.
#[derive(Debug)]
pub struct Depth {
    setting: Prefetch,
    /// Moving average of a job's run time (taken → finished), seconds; 0 until one
    /// finished.
    average: f64,
    /// Moving average of a fetch's round trip (issue → jobs buffered), seconds; 0
    /// until a fetch brought jobs.
    round_trip: f64,
    /// Moving average of a fetched payload's size, bytes; 0 until a fetch brought jobs.
    job_bytes: f64,
}

impl Depth {
    pub fn new(setting: Prefetch) -> Depth {
        Depth {
            setting,
            average: 0.0,
            round_trip: 0.0,
            job_bytes: 0.0,
        }
    }

    /// A job of the queue ran `took`.
    pub fn finished(&mut self, took: Duration) {
        if self.setting == Prefetch::Auto {
            follow(&mut self.average, took.as_secs_f64());
        }
    }

    /// A fetch of the queue took `took` from its issue to its jobs in the buffer, and
    /// its payloads were `bytes` long on average.
    pub fn fetched(&mut self, took: Duration, bytes: usize) {
        if self.setting == Prefetch::Auto {
            follow(&mut self.round_trip, took.min(MAX_ROUND_TRIP).as_secs_f64());
            follow(&mut self.job_bytes, bytes as f64);
        }
    }

    /// Jobs the process may hold beyond `limit` running ones.
    pub fn extra(&self, limit: usize) -> usize {
        match self.setting {
            Prefetch::Fixed(n) => n,
            Prefetch::Auto if self.average <= 0.0 => 0,
            Prefetch::Auto => {
                let per_second = limit as f64 / self.average;
                let fits = (per_second * HORIZON.as_secs_f64()) as usize;
                let in_flight = (per_second * 2.0 * self.round_trip) as usize;
                let by_bytes = if self.job_bytes > 0.0 {
                    (MAX_HELD_BYTES as f64 / self.job_bytes) as usize
                } else {
                    MAX_HELD
                };
                fits.min(limit * MAX_PER_SLOT)
                    .saturating_add(in_flight)
                    .min(MAX_HELD)
                    .min(by_bytes)
            }
        }
    }
}

/// Moves a moving average towards `sample` (the first sample sets it).
fn follow(average: &mut f64, t: f64) {
    *average = if *average == 0.0 {
        t
    } else {
        *average + WEIGHT * (t - *average)
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(runs: &[f64]) -> Depth {
        let mut d = Depth::new(Prefetch::Auto);
        for r in runs {
            d.finished(Duration::from_secs_f64(*r));
        }
        d
    }

    #[test]
    fn auto_holds_what_finishes_within_the_horizon() {
        assert_eq!(after(&[]).extra(10), 0, "nothing measured yet");
        assert_eq!(
            after(&[0.000_05]).extra(10),
            100,
            "short jobs: capped at 10 per slot"
        );
        assert_eq!(after(&[0.01]).extra(50), 25, "10 ms jobs at 50: 25");
        assert_eq!(after(&[0.1]).extra(1000), 50);
        assert_eq!(after(&[0.000_001]).extra(500), MAX_HELD);
        assert_eq!(after(&[2.0]).extra(10), 0, "long jobs: none");
    }

    #[test]
    fn auto_holds_what_runs_during_two_fetch_round_trips_more() {
        let mut d = after(&[0.01]);
        d.fetched(Duration::from_millis(1), 100);
        assert_eq!(
            d.extra(50),
            25 + 10,
            "10 ms jobs at 50, Redis 1 ms away: 10 more"
        );
        let mut short = after(&[0.000_05]);
        short.fetched(Duration::from_micros(200), 100);
        assert_eq!(short.extra(10), 100 + 80, "beyond the cap per slot");
        let mut tiny = after(&[0.000_01]);
        tiny.fetched(Duration::from_millis(20), 100);
        assert_eq!(tiny.extra(10), MAX_HELD, "never more than MAX_HELD");
        let mut slow = after(&[0.1]);
        slow.fetched(Duration::from_secs(5), 100); // a stalled fetch counts as 20 ms
        assert_eq!(slow.extra(10), 4, "100 ms jobs at 10: 0 + 100/s × 40 ms");
        let mut long = after(&[2.0]);
        long.fetched(Duration::from_millis(1), 100);
        assert_eq!(long.extra(10), 0, "long jobs: still none");
        let mut fixed = Depth::new(Prefetch::Fixed(7));
        fixed.fetched(Duration::from_millis(50), 100);
        assert_eq!(fixed.extra(3), 7);
    }

    #[test]
    fn auto_holds_at_most_max_held_bytes_of_payloads() {
        let mut big = after(&[0.000_05]);
        big.fetched(Duration::from_micros(200), 100 << 10);
        assert_eq!(big.extra(10), 163, "100 KiB payloads: 16 MiB");
        let mut fixed = Depth::new(Prefetch::Fixed(500));
        fixed.fetched(Duration::from_micros(200), 100 << 10);
        assert_eq!(fixed.extra(10), 500, "a fixed depth is the user's");
    }

    #[test]
    fn auto_follows_a_change_of_run_time() {
        let mut d = after(&[0.000_05; 5]);
        for _ in 0..60 {
            d.finished(Duration::from_secs(1));
        }
        assert_eq!(d.extra(10), 0);
    }

    #[test]
    fn fixed_is_fixed() {
        let mut d = Depth::new(Prefetch::Fixed(7));
        d.finished(Duration::from_secs(5));
        assert_eq!(d.extra(3), 7);
    }
}
