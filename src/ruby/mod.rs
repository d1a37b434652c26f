//! The only code that touches Ruby. One file per Ruby class, each with `init`, called
//! in order from here when `require "fiber_job/fiber_job"` loads the extension.

mod admin;
mod client;
mod convert;
mod encode;
mod error;
mod nogvl;
mod worker;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use magnus::{function, prelude::*, RArray, Ruby};

/// `Native.log_level = severity` (Ruby Logger numbering: 0 debug … 3 error).
fn set_log_level(severity: u8) {
    crate::log::install().set_level(severity);
}

/// `Native.drain_logs(timeout)`: waits up to `timeout` seconds (without the GVL) for the
/// engine's log lines; returns [[severity, message], …].
fn drain_logs(ruby: &Ruby, timeout: f64) -> Result<RArray, magnus::Error> {
    let bridge = crate::log::install();
    let cancelled = AtomicBool::new(false);
    let lines = nogvl::without_gvl(
        || {
            bridge.drain(Duration::from_secs_f64(timeout), &|| {
                cancelled.load(Ordering::Acquire)
            })
        },
        || {
            cancelled.store(true, Ordering::Release);
            bridge.interrupt();
        },
    )?;
    Ok(ruby.ary_from_vec(lines))
}

#[magnus::init(name = "fiber_job")]
fn init(ruby: &Ruby) -> Result<(), magnus::Error> {
    let fiber_job = ruby.define_module("FiberJob")?;
    let native = fiber_job.define_module("Native")?;
    client::init(ruby, native)?;
    worker::init(ruby, native)?;
    native.const_set("HEARTBEAT_TTL", crate::engine::HEARTBEAT_TTL_SECS)?;
    native.define_module_function("log_level=", function!(set_log_level, 1))?;
    native.define_module_function("drain_logs", function!(drain_logs, 1))?;
    crate::log::install();
    Ok(())
}
