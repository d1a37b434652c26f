//! `FiberJob::Internal::Native`'s module functions and constants: the payload builder for Ruby's
//! enqueue path, cron expressions, URL masking, the log bridge, and the limits the
//! engine keeps (so Ruby states them without repeating them).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use magnus::{function, prelude::*, RArray, RModule, Ruby};

use super::error::to_ruby;
use super::nogvl;
use crate::cron_expr::CronSpec;
use crate::error::Error;
use crate::store::payload::{self, Builder};
use crate::store::{records, retention};

/// `Native.payload(class, queue, args_json, extra_json)`: a new job's payload (JSON
/// text), from the same builder as the fast path. `args_json` is the JSON of the
/// argument Array, which Ruby has checked; `extra_json` a JSON object of further fields,
/// or nil.
fn build_payload(
    ruby: &Ruby,
    class: String,
    queue: String,
    args_json: String,
    extra_json: Option<String>,
) -> Result<String, magnus::Error> {
    let extra = match extra_json {
        Some(text) => match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => {
                return Err(magnus::Error::new(
                    ruby.exception_arg_error(),
                    "extra payload fields must be a JSON object",
                ))
            }
        },
        None => serde_json::Map::new(),
    };
    Ok(Builder::new(&class, &queue, payload::now())
        .payload(&args_json, &extra)
        .1)
}

/// `Native.cron_next(expression, utc, after)`: the first run after `after` (epoch
/// seconds), or raises InvalidCronError with the reason.
fn cron_next(ruby: &Ruby, expression: String, utc: bool, after: f64) -> Result<f64, magnus::Error> {
    use chrono::{DateTime, Local, Utc};
    let spec = CronSpec::parse(&expression).map_err(|reason| {
        to_ruby(
            ruby,
            Error::Cron(format!("invalid cron expression {expression:?}: {reason}")),
        )
    })?;
    let after = DateTime::<Utc>::from_timestamp(after.floor() as i64, 0).unwrap_or_else(Utc::now);
    let next = if utc {
        spec.next_after(&after).map(|t| t.timestamp())
    } else {
        spec.next_after(&after.with_timezone(&Local))
            .map(|t| t.timestamp())
    };
    next.map(|t| t as f64).ok_or_else(|| {
        to_ruby(
            ruby,
            Error::Cron(format!("cron expression {expression:?} never runs")),
        )
    })
}

/// `Native.mask_password(url)`: the URL with its password as `***`.
fn mask_password(url: String) -> String {
    crate::runtime::mask_password(&url)
}

/// `Native.monotonic`: seconds of `CLOCK_MONOTONIC`, the clock Ruby's
/// `Process.clock_gettime(Process::CLOCK_MONOTONIC)` reads (the same values, so the two
/// mix), for a third of its cost a call: Ruby's converts its unit argument every time,
/// and the worker reads the clock for every job.
fn monotonic() -> f64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec to write; CLOCK_MONOTONIC exists on every Unix.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as f64 + now.tv_nsec as f64 / 1e9
}

/// `Native.log_level = severity` (Ruby Logger numbering: 0 debug … 3 error).
fn set_log_level(severity: u8) {
    crate::runtime::log::install().set_level(severity);
}

/// `Native.drain_logs(timeout)`: waits up to `timeout` seconds (without the GVL) for the
/// engine's log lines; returns [[severity, message], …].
fn drain_logs(ruby: &Ruby, timeout: f64) -> Result<RArray, magnus::Error> {
    let bridge = crate::runtime::log::install();
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

pub fn init(native: RModule) -> Result<(), magnus::Error> {
    native.define_module_function("payload", function!(build_payload, 4))?;
    native.define_module_function("cron_next", function!(cron_next, 3))?;
    native.define_module_function("mask_password", function!(mask_password, 1))?;
    native.define_module_function("monotonic", function!(monotonic, 0))?;
    native.define_module_function("log_level=", function!(set_log_level, 1))?;
    native.define_module_function("drain_logs", function!(drain_logs, 1))?;
    native.const_set("BACKTRACE_LINES", records::BACKTRACE_LINES)?;
    native.const_set("FAILED_CAP", retention::FAILED_CAP)?;
    native.const_set("DEAD_CAP", retention::DEAD_CAP)?;
    native.const_set(
        "DEAD_MAX_AGE_DAYS",
        (retention::DEAD_MAX_AGE_SECS / 86_400.0) as i64,
    )?;
    native.const_set("METRICS_BUCKETS", retention::METRICS_BUCKETS.to_vec())?;
    crate::runtime::log::install();
    Ok(())
}
