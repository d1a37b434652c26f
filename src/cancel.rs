//! A cancel token set by a Ruby unblock function (Ctrl-C, `Thread#kill`, `Thread#raise`
//! on a thread waiting without the GVL) and seen by the Rust code that waits.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Default)]
pub struct Cancel {
    flag: AtomicBool,
    notify: tokio::sync::Notify,
}

impl Cancel {
    pub fn cancel(&self) {
        self.flag.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    pub fn flag(&self) -> &AtomicBool {
        &self.flag
    }

    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    /// Runs `fut` unless cancelled first; `None` when cancelled.
    pub async fn run<T>(&self, fut: impl Future<Output = T>) -> Option<T> {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.is_cancelled() {
            return None;
        }
        tokio::select! {
            v = fut => Some(v),
            _ = notified => None,
        }
    }
}
