//! The Redis data model: every key name (`keys`), every Lua script (`scripts`), the
//! job payload format and the one builder of new payloads (`payload`), and how much of
//! what is kept (`retention`). Plain Rust, no I/O.

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
