//! The only code that touches Ruby. One file per Ruby class, each with `init`, called
//! in order from here when `require "fiber_job/fiber_job"` loads the extension.

mod client;
mod convert;
mod error;
mod nogvl;
mod worker;

use magnus::{prelude::*, Ruby};

#[magnus::init(name = "fiber_job")]
fn init(ruby: &Ruby) -> Result<(), magnus::Error> {
    let fiber_job = ruby.define_module("FiberJob")?;
    let native = fiber_job.define_module("Native")?;
    client::init(ruby, native)?;
    worker::init(ruby, native)?;
    native.const_set("HEARTBEAT_TTL", crate::engine::HEARTBEAT_TTL_SECS)?;
    Ok(())
}
