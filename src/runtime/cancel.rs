//! A cancel token set by a Ruby unblock function (Ctrl-C, `Thread#kill`, `Thread#raise`
//! on a thread waiting without the GVL) and seen by the Rust code that waits.

use std::future::Future;
use std::mem::ManuallyDrop;
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

pub struct Cancel {
    flag: AtomicBool,
    notify: tokio::sync::Notify,
    /// The socket a blocking read waits on (the direct enqueue path), or -1:
    /// cancelling shuts it down, which ends the read at once.
    socket: AtomicI32,
}

impl Default for Cancel {
    fn default() -> Self {
        Cancel {
            flag: AtomicBool::new(false),
            notify: tokio::sync::Notify::new(),
            socket: AtomicI32::new(-1),
        }
    }
}

/// Stops watching the socket when dropped (before the socket can be closed).
pub struct Watch<'a>(&'a Cancel);

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        self.0.socket.store(-1, Ordering::Release);
    }
}

impl Cancel {
    pub fn cancel(&self) {
        self.flag.store(true, Ordering::Release);
        self.notify.notify_waiters();
        let fd: RawFd = self.socket.load(Ordering::Acquire);
        if fd >= 0 {
            // SAFETY: the fd belongs to a stream that outlives the Watch that published
            // it; ManuallyDrop keeps this borrowed handle from closing it.
            let stream = ManuallyDrop::new(unsafe { TcpStream::from_raw_fd(fd) });
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Shuts `socket` down if cancelled while the returned guard lives. The guard must
    /// be dropped before the socket is.
    pub fn watch(&self, socket: &TcpStream) -> Watch<'_> {
        self.socket.store(socket.as_raw_fd(), Ordering::Release);
        Watch(self)
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
