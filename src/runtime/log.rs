//! Rust's log lines, bridged to Ruby's `FiberJob.logger`.
//!
//! A minimal `tracing` subscriber formats each event (message plus `key=value` fields)
//! into a bounded in-memory queue; a Ruby thread of the worker takes them (waiting
//! without the GVL) and writes them to `FiberJob.logger`, so an app sees one log
//! stream at the level it configured. Spans are not used by this crate and are ignored.

use std::collections::VecDeque;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// Lines kept while nobody drains them (e.g. in a process that only enqueues):
/// the oldest are dropped past this, and the drop is counted in the next line.
const CAPACITY: usize = 10_000;

/// Ruby Logger severities: DEBUG 0, INFO 1, WARN 2, ERROR 3.
fn severity(level: &Level) -> u8 {
    match *level {
        Level::TRACE | Level::DEBUG => 0,
        Level::INFO => 1,
        Level::WARN => 2,
        Level::ERROR => 3,
    }
}

pub struct Bridge {
    min: AtomicU8,
    lines: Mutex<VecDeque<(u8, String)>>,
    dropped: AtomicU64,
    ready: Condvar,
}

static BRIDGE: OnceLock<&'static Bridge> = OnceLock::new();

/// Installs the bridge as the global subscriber (once per process).
pub fn install() -> &'static Bridge {
    BRIDGE.get_or_init(|| {
        let bridge: &'static Bridge = Box::leak(Box::new(Bridge {
            min: AtomicU8::new(1),
            lines: Mutex::new(VecDeque::new()),
            dropped: AtomicU64::new(0),
            ready: Condvar::new(),
        }));
        let _ = tracing::subscriber::set_global_default(Forward(bridge));
        bridge
    })
}

impl Bridge {
    /// Lowest Ruby severity passed on (0 debug … 3 error).
    pub fn set_level(&self, severity: u8) {
        self.min.store(severity, Ordering::Relaxed);
    }

    /// Waits up to `timeout` for lines and takes them all.
    pub fn drain(&self, timeout: Duration, cancelled: &dyn Fn() -> bool) -> Vec<(u8, String)> {
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        if lines.is_empty() && !cancelled() {
            lines = self
                .ready
                .wait_timeout(lines, timeout)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        lines.drain(..).collect()
    }

    pub fn interrupt(&self) {
        let _guard = self.lines.lock();
        self.ready.notify_all();
    }

    fn push(&self, severity: u8, mut line: String) {
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let _ = write!(line, " ({dropped} earlier log lines dropped)");
        }
        if lines.len() >= CAPACITY {
            lines.pop_front();
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        lines.push_back((severity, line));
        self.ready.notify_all();
    }
}

struct Forward(&'static Bridge);

struct Line(String);

impl Visit for Line {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.insert_str(0, value);
        } else {
            let _ = write!(self.0, " {}={}", field.name(), value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0.insert_str(0, &format!("{value:?}"));
        } else {
            let _ = write!(self.0, " {}={:?}", field.name(), value);
        }
    }
}

impl Subscriber for Forward {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        severity(metadata.level()) >= self.0.min.load(Ordering::Relaxed)
    }

    fn new_span(&self, _span: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _span: &Id, _values: &Record<'_>) {}

    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut line = Line(String::new());
        event.record(&mut line);
        self.0.push(severity(event.metadata().level()), line.0);
    }

    fn enter(&self, _span: &Id) {}

    fn exit(&self, _span: &Id) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_reach_the_queue_with_their_fields_and_level() {
        let bridge = install();
        bridge.set_level(1);
        tracing::debug!("hidden");
        tracing::warn!(queue = "q", "Redis is back");
        let lines = bridge.drain(Duration::from_millis(10), &|| false);
        assert!(
            lines
                .iter()
                .any(|(s, l)| *s == 2 && l == "Redis is back queue=q"),
            "{lines:?}"
        );
        assert!(!lines.iter().any(|(_, l)| l.contains("hidden")));
    }
}
