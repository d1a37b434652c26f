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
//! - `blocking`'s waits run what interrupts them (a signal trap) through
//!   `rb_thread_call_with_gvl`, on the waiting thread, inside `protect`; what raises
//!   is kept (registered with the GC) and raised once `func` has returned.
//! - Panics in `func` and `ubf` are caught; a panic in `func` is resumed once the GVL
//!   is held again, where magnus turns it into a Ruby exception.
//! - `data1`/`data2` point at locals that outlive the call, which is synchronous.

use std::cell::{Cell, RefCell};
use std::ffi::c_void;
use std::panic::{self, AssertUnwindSafe};
use std::ptr::NonNull;

use magnus::value::BoxValue;
use magnus::Value;

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

thread_local! {
    /// What running a wait's interrupts raised, kept from the GC (`BoxValue`) until
    /// `blocking` raises it.
    static RAISED: RefCell<Option<(magnus::Error, Option<BoxValue<Value>>)>> =
        const { RefCell::new(None) };
    /// Set while a wait's interrupts run (a signal trap): a FiberJob call made from
    /// there would wait inside the wait it interrupted.
    static IN_WAIT_INTERRUPT: Cell<bool> = const { Cell::new(false) };
}

unsafe extern "C" fn interrupts_with_gvl(_: *mut c_void) -> *mut c_void {
    IN_WAIT_INTERRUPT.set(true);
    let result = panic::catch_unwind(handle_interrupts);
    IN_WAIT_INTERRUPT.set(false);
    match result {
        Ok(Ok(())) => NonNull::<c_void>::dangling().as_ptr(),
        Ok(Err(e)) => {
            let kept = e.value().map(BoxValue::new);
            RAISED.with(|r| *r.borrow_mut() = Some((e, kept)));
            std::ptr::null_mut()
        }
        Err(_) => std::ptr::null_mut(),
    }
}

/// The interrupt handler of `blocking`'s waits, called on the waiting thread without
/// the GVL: takes the GVL, runs what interrupted the thread, and says whether to keep
/// waiting (nothing raised).
fn interrupts_during_wait() -> bool {
    // SAFETY: called only by a `Cancel::resuming` wait, on the Ruby thread that
    // released the GVL in `blocking`; the callback catches Ruby exceptions and panics.
    !unsafe { rb_sys::rb_thread_call_with_gvl(Some(interrupts_with_gvl), std::ptr::null_mut()) }
        .is_null()
}

/// Refuses a call made from a signal trap that interrupted a FiberJob wait on this
/// thread (it would wait inside that wait).
pub fn refuse_inside_a_wait(ruby: &magnus::Ruby) -> Result<(), magnus::Error> {
    if IN_WAIT_INTERRUPT.get() {
        return Err(super::error::to_ruby(
            ruby,
            crate::error::Error::Other(
                "FiberJob was called from a signal trap that interrupted FiberJob's own wait \
                 for Redis on this thread; enqueue from another thread (Thread.new { ... }) \
                 or after the trap returns"
                    .into(),
            ),
        ));
    }
    Ok(())
}

/// Runs a blocking engine call without the GVL. What interrupts it runs meanwhile: a
/// signal trap that returns lets the call go on (the call is not repeated: an enqueue
/// stores its jobs once); an exception (Ctrl-C's Interrupt, `Thread#raise`, a
/// timeout) ends the call and is raised. The call's own error becomes the matching
/// `FiberJob::…` exception.
pub fn blocking<T: Send>(
    ruby: &magnus::Ruby,
    f: impl FnOnce(&crate::runtime::cancel::Cancel) -> crate::error::Result<T> + Send,
) -> Result<T, magnus::Error> {
    refuse_inside_a_wait(ruby)?;
    let cancel = crate::runtime::cancel::Cancel::resuming(interrupts_during_wait);
    let result = without_gvl(|| f(&cancel), || cancel.cancel());
    if let Some((raised, _kept)) = RAISED.with(|r| r.borrow_mut().take()) {
        return Err(raised);
    }
    result?.map_err(|e| super::error::to_ruby(ruby, e))
}
