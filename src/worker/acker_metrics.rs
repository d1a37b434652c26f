//! Per-class metrics of one acker wake-up (`acker.rs`): each class's processed and
//! failed runs, its total run time and its execution-time histogram, added to the
//! minute's hash and to the all-time hash (`Keys::metrics_minute`, `metrics_total`)
//! as plain `HINCRBY`s in the pipeline the acker sends anyway — a few commands per
//! class and wake-up, not per job. Bookkeeping, like the counters: a refused write is
//! logged and dropped, a lost reply may count twice.

use std::collections::HashMap;

use crate::store::keys::Keys;
use crate::store::retention::{METRICS_BUCKETS, METRICS_MINUTE_TTL_SECS};
use crate::worker::outcome::Ran;

#[derive(Default)]
struct ClassStats {
    processed: u64,
    failed: u64,
    micros: u64,
    bins: [u64; METRICS_BUCKETS.len() + 1],
}

pub(super) struct Metrics {
    minute: i64,
    classes: HashMap<String, ClassStats>,
}

impl Metrics {
    pub(super) fn new(now: f64) -> Metrics {
        Metrics {
            minute: (now as i64) / 60,
            classes: HashMap::new(),
        }
    }

    pub(super) fn add(&mut self, ran: Ran, failed: bool) {
        let stats = match self.classes.get_mut(&ran.class) {
            Some(s) => s,
            None => self.classes.entry(ran.class).or_default(),
        };
        if failed {
            stats.failed += 1;
        } else {
            stats.processed += 1;
        }
        stats.micros += (ran.secs * 1e6) as u64;
        let bin = METRICS_BUCKETS
            .iter()
            .position(|le| ran.secs <= *le)
            .unwrap_or(METRICS_BUCKETS.len());
        stats.bins[bin] += 1;
    }

    pub(super) fn clear(&mut self) {
        self.classes.clear();
    }

    /// Adds the commands to `pipe`; returns how many replies they have.
    pub(super) fn add_to(&self, keys: &Keys, pipe: &mut redis::Pipeline) -> usize {
        let (minute, total) = (keys.metrics_minute(self.minute), keys.metrics_total());
        let mut n = 0;
        for (class, s) in &self.classes {
            let mut fields = vec![
                ("p".to_string(), s.processed),
                ("f".into(), s.failed),
                ("s".into(), s.micros),
            ];
            fields.extend(
                s.bins
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (format!("b{i}"), *c)),
            );
            for (field, count) in fields.into_iter().filter(|(_, c)| *c > 0) {
                let field = format!("{class}|{field}");
                pipe.cmd("HINCRBY").arg(&minute).arg(&field).arg(count);
                pipe.cmd("HINCRBY").arg(&total).arg(&field).arg(count);
                n += 2;
            }
        }
        if n > 0 {
            pipe.cmd("EXPIRE").arg(&minute).arg(METRICS_MINUTE_TTL_SECS);
            n += 1;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_runs_per_class_into_bins() {
        let mut m = Metrics::new(120.0);
        for (secs, failed) in [(0.001, false), (0.2, false), (1000.0, true)] {
            m.add(
                Ran {
                    class: "A".into(),
                    secs,
                },
                failed,
            );
        }
        let a = &m.classes["A"];
        assert_eq!((a.processed, a.failed), (2, 1));
        assert_eq!((a.bins[0], a.bins[5], a.bins[14]), (1, 1, 1));
        let mut pipe = redis::pipe();
        // p, f, s and three bins, to two keys; then the minute's EXPIRE.
        assert_eq!(m.add_to(&Keys::new("x"), &mut pipe), 13);
        assert_eq!(m.minute, 2);
    }
}
