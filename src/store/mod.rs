//! The Redis data model, plain Rust, no I/O: every key name (`keys`); the Lua scripts —
//! the core's (`scripts`), batches' (`batch_scripts`), limits per key
//! (`flow_scripts`), the Sidekiq bridge's (`sidekiq_scripts`) and the pieces they
//! share (`lua`); the job payload format and the one builder of new payloads
//! (`payload`); what is written about a job besides it — failure records, dead
//! entries, revived payloads (`records`); payload bytes that are not UTF-8
//! (`base64`); and how much of what is kept (`retention`).

pub mod base64;
pub mod batch_scripts;
pub mod flow_scripts;
pub mod keys;
mod lua;
pub mod payload;
pub mod records;
pub mod retention;
pub mod scripts;
pub mod sidekiq_scripts;
