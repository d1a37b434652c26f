//! The only code that touches Ruby, all under `FiberJob::Internal::Native` (private to
//! the gem): `client/` (one class per concern of `crate::client`), `worker` (the
//! engine and the taken job) and `native` (the module's functions), each with
//! `init`, called in order from here when `require "fiber_job/fiber_job"` loads the
//! extension; plus the helpers they share — the one GVL release (`nogvl`), arguments to
//! JSON (`encode`), JSON to Ruby (`convert`), errors to `FiberJob::…` (`error`), and
//! settings read strictly (`connection`).

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
    let internal = fiber_job.define_module("Internal")?;
    let native = internal.define_module("Native")?;
    native::init(native)?;
    client::init(ruby, native)?;
    worker::init(ruby, native)?;
    Ok(())
}
