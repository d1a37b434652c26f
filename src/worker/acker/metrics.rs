//! Per-class metrics (`acker/mod.rs`): each class's processed and failed runs, its total
//! run time and its execution-time histogram, added to the minute's hash and to the
//! all-time hash (`Keys::metrics_minute`, `metrics_total`) as plain `HINCRBY`s.
//!
//! Counted in memory as jobs end (a map lookup per job) and sent at most once a
//! second — in the pipeline the acker sends anyway, or alone when it is idle — and at
//! every flush (shutdown): two `COUNT_ONCE` calls a second (the minute's hash, the
//! all-time hash), not per job. A run counts in the minute its second of counting
//! began. Bookkeeping, like the counters: a refused write is logged and dropped; sent
//! again after a lost reply, the counts are added once (the calls' number is the same).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::hashers::BuildFnv;
use crate::store::keys::Keys;
use crate::store::payload::ClassName;
use crate::store::retention::{COUNTED_TTL_SECS, METRICS_BUCKETS, METRICS_MINUTE_TTL_SECS};
use crate::store::scripts;
use crate::worker::outcome::Ran;

/// Numbers the counts a worker sends (`scripts::COUNT_ONCE`): increasing, so a guard
/// keeps only the last number it applied.
static NEXT_NUMBER: AtomicU64 = AtomicU64::new(1);

pub(super) fn next_number() -> u64 {
    NEXT_NUMBER.fetch_add(1, Ordering::Relaxed)
}

/// How long counts wait before they are sent.
pub(super) const SEND_EVERY: Duration = Duration::from_secs(1);

/// Fields per class: processed, failed, microseconds, then one per histogram bin.
const FIELDS: usize = 3 + METRICS_BUCKETS.len() + 1;

struct ClassStats {
    counts: [u64; FIELDS],
    /// `<class>|p`, `|f`, `|s`, `|b<i>`: made once per class and process.
    names: Vec<String>,
}

impl ClassStats {
    fn new(class: &str) -> ClassStats {
        let mut names: Vec<String> = ["p", "f", "s"]
            .iter()
            .map(|f| format!("{class}|{f}"))
            .collect();
        names.extend((0..=METRICS_BUCKETS.len()).map(|i| format!("{class}|b{i}")));
        ClassStats {
            counts: [0; FIELDS],
            names,
        }
    }
}

pub(super) struct Metrics {
    /// The minute (epoch seconds / 60), the instant counting began and the counts'
    /// number (`scripts::COUNT_ONCE`), while counts wait.
    pending: Option<(i64, Instant, u64)>,
    classes: HashMap<ClassName, ClassStats, BuildFnv>,
}

impl Metrics {
    pub(super) fn new() -> Metrics {
        Metrics {
            pending: None,
            classes: HashMap::default(),
        }
    }

    pub(super) fn add(&mut self, ran: Ran, failed: bool, now: f64) {
        self.pending
            .get_or_insert_with(|| ((now as i64) / 60, Instant::now(), next_number()));
        let stats = match self.classes.get_mut(&*ran.class) {
            Some(s) => s,
            None => {
                let s = ClassStats::new(&ran.class);
                self.classes.entry(ran.class).or_insert(s)
            }
        };
        stats.counts[usize::from(failed)] += 1;
        stats.counts[2] += (ran.secs * 1e6) as u64;
        let bin = METRICS_BUCKETS
            .iter()
            .position(|le| ran.secs <= *le)
            .unwrap_or(METRICS_BUCKETS.len());
        stats.counts[3 + bin] += 1;
    }

    /// Whether counts wait and should go now (`flush`: at once).
    pub(super) fn due(&self, flush: bool) -> bool {
        self.pending
            .is_some_and(|(_, since, _)| flush || since.elapsed() >= SEND_EVERY)
    }

    /// When the waiting counts are due (None: none wait).
    pub(super) fn due_in(&self) -> Option<Duration> {
        self.pending
            .map(|(_, since, _)| SEND_EVERY.saturating_sub(since.elapsed()))
    }

    /// Forgets what was sent (or refused).
    pub(super) fn sent(&mut self) {
        self.pending = None;
        for s in self.classes.values_mut() {
            s.counts = [0; FIELDS];
        }
    }

    /// Adds the commands to `pipe`; returns how many replies they have.
    pub(super) fn add_to(&self, keys: &Keys, identity: &str, pipe: &mut redis::Pipeline) -> usize {
        let Some((minute, _, number)) = self.pending else {
            return 0;
        };
        let fields: Vec<(&String, u64)> = self
            .classes
            .values()
            .flat_map(|s| s.names.iter().zip(s.counts))
            .filter(|(_, c)| *c > 0)
            .collect();
        if fields.is_empty() {
            return 0;
        }
        let minute = keys.metrics_minute(minute);
        for (hash, ttl) in [(minute, METRICS_MINUTE_TTL_SECS), (keys.metrics_total(), 0)] {
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(scripts::COUNT_ONCE.get_hash())
                .arg(2)
                .arg(&hash)
                .arg(keys.counted(&hash, identity, 0))
                .arg(number)
                .arg(COUNTED_TTL_SECS)
                .arg(ttl);
            for (name, count) in &fields {
                cmd.arg(*name).arg(*count);
            }
            pipe.add_command(cmd);
        }
        2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_runs_per_class_into_bins_and_sends_them_once_due() {
        let mut m = Metrics::new();
        assert!(!m.due(true));
        for (secs, failed) in [(0.001, false), (0.2, false), (1000.0, true)] {
            m.add(
                Ran {
                    class: "A".into(),
                    secs,
                },
                failed,
                120.0,
            );
        }
        let a = &m.classes["A"];
        assert_eq!((a.counts[0], a.counts[1]), (2, 1));
        assert_eq!((a.counts[3], a.counts[3 + 5], a.counts[3 + 14]), (1, 1, 1));
        assert!(m.due(true) && !m.due(false));
        let mut pipe = redis::pipe();
        // p, f, s and three bins, to two keys: a COUNT_ONCE call each.
        assert_eq!(m.add_to(&Keys::new("x"), "w1", &mut pipe), 2);
        let args = pipe.cmd_iter().next().unwrap().args_iter().count();
        assert_eq!(
            args,
            8 + 2 * 6,
            "EVALSHA sha 2 minute guard number ttl ttl, then 6 pairs"
        );
        m.sent();
        assert!(!m.due(true));
        assert_eq!(m.add_to(&Keys::new("x"), "w1", &mut redis::pipe()), 0);
    }
}
