//! What ends or interrupts a wait for Redis on a Ruby thread that released the GVL.
//!
//! Ruby calls the unblock function (`cancel`) whenever the waiting thread is
//! interrupted: Ctrl-C, `Thread#raise`, `Thread#kill`, `Thread#wakeup`, and any signal
//! with a trap (Puma's, a worker's TERM) — Ruby runs traps on the main thread. Most of
//! these must not end the wait: a trap that returns normally should leave the enqueue
//! it interrupted to finish, as it does for Ruby's own IO. So a `Cancel` made with
//! `resuming` hands each interrupt to its handler (which runs what interrupted the
//! thread, with the GVL) and the wait goes on unless that raised. A plain `Cancel`
//! stops at the first interrupt.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};

pub struct Cancel {
    /// An interrupt arrived and has not been handled yet.
    interrupted: AtomicBool,
    /// The wait was given up.
    stopped: AtomicBool,
    notify: tokio::sync::Notify,
    /// Runs what interrupted the thread; `true`: keep waiting. Called on the waiting
    /// thread itself.
    on_interrupt: Option<fn() -> bool>,
}

impl Default for Cancel {
    fn default() -> Self {
        Cancel {
            interrupted: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            notify: tokio::sync::Notify::new(),
            on_interrupt: None,
        }
    }
}

impl Cancel {
    /// A cancel whose interrupts go to `on_interrupt` first; the wait ends only when it
    /// returns `false`.
    pub fn resuming(on_interrupt: fn() -> bool) -> Cancel {
        Cancel {
            on_interrupt: Some(on_interrupt),
            ..Cancel::default()
        }
    }

    /// The unblock function: safe from any thread, never blocks.
    pub fn cancel(&self) {
        self.interrupted.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// The raw flag `cancel` sets (for waits that poll it themselves and stop at once).
    pub fn flag(&self) -> &AtomicBool {
        &self.interrupted
    }

    /// For the waiting thread, between steps of its wait: whether to give it up. An
    /// interrupt that arrived meanwhile is handled here (see the module comment).
    pub fn should_stop(&self) -> bool {
        if self.stopped.load(Ordering::Acquire) {
            return true;
        }
        if !self.interrupted.swap(false, Ordering::AcqRel) {
            return false;
        }
        if self.on_interrupt.is_some_and(|handle| handle()) {
            return false;
        }
        self.stopped.store(true, Ordering::Release);
        true
    }

    /// Whether the wait was given up (or, for a plain cancel, interrupted).
    pub fn is_cancelled(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
            || (self.on_interrupt.is_none() && self.interrupted.load(Ordering::Acquire))
    }

    /// Runs `fut` to its end unless the wait is given up first (`None`; `fut` is
    /// dropped — pass `&mut` to keep it).
    pub async fn run<T>(&self, fut: impl Future<Output = T>) -> Option<T> {
        tokio::pin!(fut);
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.should_stop() {
                return None;
            }
            tokio::select! {
                v = &mut fut => return Some(v),
                _ = notified => {}
            }
        }
    }
}
