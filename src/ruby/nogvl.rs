//! The one place that releases the GVL.
//!
//! `without_gvl(func, ubf)` runs `func` on the calling (Ruby) thread without the GVL,
//! so other Ruby threads run meanwhile. `ubf` is the unblock function: Ruby calls it
//! from another thread when this thread is interrupted (Ctrl-C, `Thread#kill`,
//! `Thread#raise`, a timeout), and it must make `func` return soon (set a cancel token,
//! wake a condvar).
//!
//! Safety argument:
//! - `func` and its result are `Send`: magnus types that touch Ruby are not, so the
//!   compiler rejects any Ruby call inside `func`.
//! - It uses `rb_thread_call_without_gvl2`, which does not check interrupts after
//!   `func` returns, so no `longjmp` crosses these Rust frames from there. When any
//!   interrupt is pending it does not run `func` at all — that includes Ruby's routine
//!   thread-switch timer, not only Ctrl-C or `Thread#raise`. Then the interrupts are
//!   handled with `rb_thread_check_ints` inside `protect` (an exception it raises comes
//!   back as an `Err` and propagates as a Ruby exception), and the call is tried again.
//! - Panics in `func` and `ubf` are caught; a panic in `func` is resumed once the GVL
//!   is held again, where magnus turns it into a Ruby exception.
//! - `data1`/`data2` point at locals that outlive the call, which is synchronous.

use std::ffi::c_void;
use std::panic::{self, AssertUnwindSafe};

struct Call<F, R> {
    func: Option<F>,
    result: Option<std::thread::Result<R>>,
}

unsafe extern "C" fn call<F: FnOnce() -> R, R>(data: *mut c_void) -> *mut c_void {
    // SAFETY: `data` is the `&mut Call` passed below and nothing else touches it now.
    let call = unsafe { &mut *(data as *mut Call<F, R>) };
    if let Some(func) = call.func.take() {
        call.result = Some(panic::catch_unwind(AssertUnwindSafe(func)));
    }
    std::ptr::null_mut()
}

unsafe extern "C" fn unblock<U: Fn()>(data: *mut c_void) {
    // SAFETY: `data` is the `&U` passed below, alive for the whole call.
    let ubf = unsafe { &*(data as *const U) };
    let _ = panic::catch_unwind(AssertUnwindSafe(ubf));
}

/// Runs `func` without the GVL. `Err` only when a pending interrupt raised (Ctrl-C,
/// `Thread#raise`, `Thread#kill`) before `func` could run.
pub fn without_gvl<F, R, U>(func: F, ubf: U) -> Result<R, magnus::Error>
where
    F: FnOnce() -> R + Send,
    R: Send,
    U: Fn() + Sync,
{
    let mut data = Call {
        func: Some(func),
        result: None,
    };
    loop {
        // SAFETY: see the module comment; both pointers outlive this synchronous call.
        unsafe {
            rb_sys::rb_thread_call_without_gvl2(
                Some(call::<F, R>),
                &mut data as *mut Call<F, R> as *mut c_void,
                Some(unblock::<U>),
                &ubf as *const U as *mut c_void,
            );
        }
        if let Some(result) = data.result.take() {
            return match result {
                Ok(r) => Ok(r),
                Err(payload) => panic::resume_unwind(payload),
            };
        }
        // An interrupt was pending and `func` did not run: handle it, then try again.
        handle_interrupts()?;
    }
}

/// Runs what interrupted this thread (a signal trap, `Thread#raise`, `Thread#kill`);
/// `Err` with the exception it raised, if any. Call with the GVL held.
pub fn handle_interrupts() -> Result<(), magnus::Error> {
    magnus::rb_sys::protect(|| {
        // SAFETY: called with the GVL held, on a Ruby thread; may raise, which
        // `protect` catches.
        unsafe { rb_sys::rb_thread_check_ints() };
        rb_sys::Qnil as rb_sys::VALUE
    })
    .map(|_| ())
}

/// Runs a blocking engine call without the GVL; Ctrl-C or `Thread#kill` cancels it,
/// and its error becomes the matching `FiberJob::…` exception.
pub fn blocking<T: Send>(
    ruby: &magnus::Ruby,
    f: impl FnOnce(&crate::runtime::cancel::Cancel) -> crate::error::Result<T> + Send,
) -> Result<T, magnus::Error> {
    let cancel = crate::runtime::cancel::Cancel::default();
    without_gvl(|| f(&cancel), || cancel.cancel())?.map_err(|e| super::error::to_ruby(ruby, e))
}
