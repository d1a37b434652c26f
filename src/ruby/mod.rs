//! The only code that touches Ruby: one file per Ruby class (`client`, `admin`,
//! `worker`) and one for `FiberJob::Native`'s module functions (`native`), each with
//! `init`, called in order from here when `require "fiber_job/fiber_job"` loads the
//! extension; plus the helpers they share — the one GVL release (`nogvl`), arguments to
//! JSON (`encode`), JSON to Ruby (`convert`), errors to `FiberJob::…` (`error`), and
//! settings read strictly (`connection`).

mod admin;
mod client;
mod connection;
mod convert;
mod encode;
mod error;
mod native;
mod nogvl;
mod worker;

use magnus::{prelude::*, Ruby};

#[magnus::init(name = "fiber_job")]
fn init(ruby: &Ruby) -> Result<(), magnus::Error> {
    let fiber_job = ruby.define_module("FiberJob")?;
    let native = fiber_job.define_module("Native")?;
    native::init(native)?;
    client::init(ruby, native)?;
    admin::init(ruby, native)?;
    worker::init(ruby, native)?;
    Ok(())
}
